"""The client's state and what its parts share: calls, waiting for a connection, listeners, shutdown."""

from __future__ import annotations

import asyncio
import inspect
import itertools
import random
import secrets
from collections.abc import Mapping
from typing import Any

from .base import UNSET, Backoff, Callback, ConnectionStatus, Unset, Unsubscribe, logger
from .connection import Connection
from .errors import (
    ZocketConnectionError,
    ZocketRefused,
    ZocketRpcDisconnected,
    ZocketRpcError,
    ZocketRpcTimeout,
)
from .frames import dumps
from .handles import ActorHandle


def _retry_delay(attempt: int) -> float:
    """Seconds before retry number ``attempt`` (0-based) of a call answered ``unavailable``."""
    return min(1.0, 0.05 * 2**attempt) * random.uniform(0.5, 1.0)


class ClientCore:
    """State of a ``ZocketClient`` and the internals its handles use (see ``ClientLink``)."""

    def __init__(
        self,
        url: str,
        *,
        rpc_timeout: float | None = 10.0,
        connect_timeout: float | None = 10.0,
        reconnect: bool = True,
        backoff_min: float = 0.25,
        backoff_max: float = 10.0,
        max_attempts: int | None = None,
        heartbeat_interval: float | None = 15.0,
        heartbeat_timeout: float = 10.0,
        headers: Mapping[str, str] | None = None,
        origin: str | None = None,
        connect_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        self.url = url
        self.rpc_timeout = rpc_timeout
        self.connect_timeout = connect_timeout
        self.reconnect = reconnect
        self.backoff = Backoff(backoff_min, backoff_max, max_attempts)
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_timeout = heartbeat_timeout
        self._connect_kwargs: dict[str, Any] = {
            # Our JSON ping/pong proves the server's consumer is alive, which
            # the protocol-level keepalive cannot; don't run both by default.
            "ping_interval": None if heartbeat_interval else 20,
            "close_timeout": 2.0,
            "open_timeout": None,  # connect_timeout bounds the whole attempt
            # Snapshots of big states must fit (websockets' default is 1 MiB).
            "max_size": 16 * 2**20,
            "additional_headers": dict(headers) if headers else None,
            "origin": origin,
            **(connect_kwargs or {}),
        }
        self._status = ConnectionStatus.DISCONNECTED
        self._conn: Connection | None = None
        self._handles: dict[tuple[str, str], ActorHandle] = {}
        self._status_listeners: dict[int, Callback] = {}
        self._error_listeners: dict[int, Callback] = {}
        self._tokens = itertools.count(1)
        self._ids = itertools.count(1)
        self._supervisor: asyncio.Task[None] | None = None
        self._changed: asyncio.Future[None] | None = None
        self._background: set[asyncio.Future[Any]] = set()
        self._closed = False
        self._close_reason: str | None = None
        self._refusal: ZocketRefused | None = None
        self._ever_connected = False

    async def _call(
        self,
        actor: str,
        actor_id: str,
        method: str,
        input: Any,
        timeout: float | Unset | None,
    ) -> Any:
        if timeout is UNSET:
            timeout = self.rpc_timeout
        rid = f"r{next(self._ids)}"
        frame: dict[str, Any] = {
            "type": "rpc",
            "id": rid,
            "actor": actor,
            "actorId": actor_id,
            "method": method,
            # One key for every attempt: the server runs it at most once (docs/protocol.md, "Keyed calls").
            "key": secrets.token_urlsafe(16),
        }
        if input is not UNSET:
            frame["input"] = input
        raw = dumps(frame)  # in the caller: input that is not JSON fails here
        loop = asyncio.get_running_loop()
        deadline = asyncio.timeout(timeout)
        last: ZocketRpcError | None = None  # why the last attempt did not settle the call
        try:
            async with deadline:
                for attempt in itertools.count():
                    conn = await self._wait_connected()
                    fut: asyncio.Future[Any] = loop.create_future()
                    conn.pending[rid] = (fut, method)
                    try:
                        conn.outbox.put_nowait(raw)
                        return await fut
                    except ZocketRpcDisconnected as exc:  # the socket dropped: again on the next one
                        last = exc
                    except ZocketRpcError as exc:
                        if exc.code != "unavailable" or isinstance(exc, ZocketRefused):
                            raise
                        last = exc  # nothing ran, or its owner is moving: again after a pause
                        await asyncio.sleep(_retry_delay(attempt))
                    finally:
                        conn.pending.pop(rid, None)
        except TimeoutError:
            if deadline.expired():
                why = f" (last attempt: {last.code}: {last.message})" if last is not None else ""
                raise ZocketRpcTimeout(
                    "timeout",
                    f"{actor}.{method} got no answer within {timeout}s{why}",
                    method=method,
                ) from None
            raise
        except ZocketRefused as exc:
            exc.method = method
            raise
        except ZocketRpcError:
            raise
        except ZocketConnectionError as exc:
            raise ZocketRpcDisconnected("disconnected", str(exc), method=method) from None

    async def _wait_connected(self) -> Connection:
        while True:
            if self._refusal is not None:
                raise self._refusal.copy()
            if self._closed:
                raise ZocketConnectionError(self._close_reason or "client is closed")
            if self._conn is not None:
                return self._conn
            if self._supervisor is None:
                raise ZocketConnectionError("not connected: call connect() first")
            if self._changed is None:
                self._changed = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._changed)

    def _notify(self) -> None:
        """Wake everything waiting for the connection to appear or the client to close."""
        changed, self._changed = self._changed, None
        if changed is not None and not changed.done():
            changed.set_result(None)

    def _send(self, frame: Mapping[str, Any]) -> None:
        """Send now if connected; otherwise the subscription is restored on connect."""
        if self._conn is not None:
            self._conn.send(frame)

    def _set_status(self, status: ConnectionStatus) -> None:
        self._notify()
        if status == self._status:
            return
        self._status = status
        for callback in list(self._status_listeners.values()):
            self._invoke(callback, status, "status")

    def _shutdown(self, reason: str) -> None:
        """Final state after close() or giving up: nothing pending, nothing left hanging."""
        self._closed = True
        self._close_reason = self._close_reason or reason
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.fail_pending(self._close_reason)
        for handle in list(self._handles.values()):
            handle._shutdown(self._close_reason)
        self._set_status(ConnectionStatus.DISCONNECTED)

    def _add_listener(self, listeners: dict[int, Callback], callback: Callback) -> Unsubscribe:
        token = next(self._tokens)
        listeners[token] = callback

        def unsubscribe() -> None:
            listeners.pop(token, None)

        return unsubscribe

    def _invoke(self, callback: Callback, arg: Any, what: str) -> None:
        """Run a user callback; exceptions are logged, coroutines run as tasks."""
        try:
            result = callback(arg)
        except Exception:
            logger.exception("%s callback %r raised", what, callback)
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            self._background.add(task)
            task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Future[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("async callback raised", exc_info=task.exception())
