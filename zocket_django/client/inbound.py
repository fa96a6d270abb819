"""Frames from the server, each routed to the call, handle or listener it is for."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, Final

from .base import logger
from .connection import Connection
from .core import ClientCore
from .frames import InvalidFrame, checked_patch, frame_error, optional_version, required_str
from .handles import ActorHandle


class Inbound(ClientCore):
    """Reads the server's frames; never raises into the read loop."""

    def _dispatch(self, conn: Connection, raw: str | bytes) -> None:
        """Route one frame; never raise into the read loop."""
        if not isinstance(raw, str):
            logger.warning("ignoring binary frame (%d bytes)", len(raw))
            return
        try:
            msg = json.loads(raw)
        except (ValueError, RecursionError):
            logger.warning("ignoring frame that is not JSON: %.200r", raw)
            return
        if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
            logger.warning("ignoring frame without a string 'type': %.200r", raw)
            return
        kind = msg["type"]
        handler = self._HANDLERS.get(kind)
        if handler is None:
            logger.warning("ignoring frame of unknown type %r", kind)
            return
        try:
            handler(self, conn, msg)
        except InvalidFrame as exc:
            logger.warning("ignoring invalid %r frame: %s", kind, exc)
        except Exception:
            logger.exception("error while handling a %r frame", kind)

    def _on_welcome(self, conn: Connection, msg: dict[str, Any]) -> None:
        conn.client_id = required_str(msg, "clientId")

    def _on_rpc_result(self, conn: Connection, msg: dict[str, Any]) -> None:
        rid = required_str(msg, "id")
        entry = conn.pending.pop(rid, None)
        if entry is None:
            logger.debug("rpc:result for unknown or expired call %r", rid)
            return
        fut, method = entry
        if fut.done():
            return
        error = msg.get("error")
        if error is not None:
            fut.set_exception(frame_error(msg, str(error), method=method, ref=rid))
        else:
            fut.set_result(msg.get("result"))

    def _on_event(self, conn: Connection, msg: dict[str, Any]) -> None:
        handle = self._route(msg)
        name = required_str(msg, "event")
        if handle is not None:
            handle._deliver(name, msg.get("payload"))

    def _on_snapshot(self, conn: Connection, msg: dict[str, Any]) -> None:
        handle = self._route(msg)
        if "state" not in msg:
            raise InvalidFrame("missing field 'state'")
        version, epoch = optional_version(msg), optional_version(msg, "epoch")
        if handle is not None:
            handle.state._on_snapshot(msg["state"], version, epoch)

    def _on_patch(self, conn: Connection, msg: dict[str, Any]) -> None:
        handle = self._route(msg)
        if handle is None:
            return
        try:
            version, epoch = optional_version(msg), optional_version(msg, "epoch")
            base = optional_version(msg, "from")  # a coalesced patch: the version its ops apply to
            ops = checked_patch(msg.get("patches"))
        except InvalidFrame as exc:
            # We cannot tell what changed: the copy is no longer trustworthy.
            handle.state._resync(f"invalid patch: {exc}")
            return
        handle.state._on_patch(ops, version, epoch, base)

    def _on_pong(self, conn: Connection, msg: dict[str, Any]) -> None:
        ping_id = msg.get("id")
        if ping_id is None:
            futs = list(conn.pongs.values())
        else:
            futs = [conn.pongs[ping_id]] if isinstance(ping_id, str) and ping_id in conn.pongs else []
        for fut in futs:
            if not fut.done():
                fut.set_result(None)

    def _on_error(self, conn: Connection, msg: dict[str, Any]) -> None:
        message = str(msg.get("error", "server error"))
        ref = msg.get("ref")
        if ref is None:  # about the connection itself, such as the reason of a refusal
            conn.last_error = message
        err = frame_error(msg, message, ref=ref)
        logger.warning("server error frame: %s (ref=%r)", err, ref)
        if isinstance(ref, dict):
            rid = ref.get("id")
            if isinstance(rid, str) and rid in conn.pending:
                fut, method = conn.pending.pop(rid)
                err.method = method
                if not fut.done():
                    fut.set_exception(err)
            actor, actor_id = (
                ref.get("actor", msg.get("actor")),
                ref.get("actorId", msg.get("actorId")),
            )
            handle = (
                self._handles.get((actor, actor_id)) if isinstance(actor, str) and isinstance(actor_id, str) else None
            )
            if handle is not None and ref.get("type") == "state:sub":
                handle.state._on_error(err)
            elif handle is not None and ref.get("type") == "event:sub":
                handle._on_events_error(err)
        for callback in list(self._error_listeners.values()):
            self._invoke(callback, err, "error")

    _HANDLERS: Final[dict[str, Callable[[Inbound, Connection, dict[str, Any]], None]]] = {
        "welcome": _on_welcome,
        "rpc:result": _on_rpc_result,
        "event": _on_event,
        "state:snapshot": _on_snapshot,
        "state:patch": _on_patch,
        "pong": _on_pong,
        "error": _on_error,
    }

    def _route(self, msg: Mapping[str, Any]) -> ActorHandle | None:
        return self._handles.get((required_str(msg, "actor"), required_str(msg, "actorId")))
