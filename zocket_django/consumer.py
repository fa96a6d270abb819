"""The one WebSocket consumer that serves every actor, speaking docs/protocol.md.

This is the hottest code of the project, so it departs from Channels' generic
consumer in two places, both measured in docs/architecture.md ("Hot paths"):
it has no channel-layer channel of its own (the process's node receives for
every socket), and it does not run ``close_old_connections`` in a thread
before every frame nor on disconnect (database work only ever happens in
``db.to_thread``, which manages connections itself).

It is also the edge where identity and access rules are enforced (the Django
user object lives here): refusals are answered before anything is queued, so
a refused request changes nothing, not even which instances are hot.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from typing import Any

from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.sessions import InstanceSessionWrapper
from channels.utils import await_many_dispatch
from pydantic import BaseModel, ValidationError

from . import identity, protocol
from .access import Guard, Request, admit, gate
from .actor import ActorSpec, MethodSpec
from .auth import accepted_subprotocol, identify
from .callkeys import MAX_KEY_LENGTH
from .conf import ZocketSettings, zocket_settings
from .errors import AuthenticationFailed, ZocketError
from .node import Node, get_node
from .protocol import Code
from .registry import registry
from .runtime import EVENTS, STATE, Caller, debug_details
from .schema import first_problem, validation_details

log = logging.getLogger("zocket_django")

#: Longest ``id`` of an ``rpc`` or ``ping`` (it is echoed back).
MAX_ID_LENGTH = 128
#: Longest string (``type``, ``id``, ``actor``, ``actorId``) echoed in the ``ref`` of an ``error`` frame.
MAX_REF_LENGTH = 128
#: Close code of a connection whose credentials were refused.
CLOSE_UNAUTHENTICATED = 4401
#: Close code of a connection refused because its user has too many open (``MAX_CONNECTIONS_PER_USER``).
CLOSE_TOO_MANY_CONNECTIONS = 4429
#: Seconds between two warnings about one connection exceeding the rate limit.
OVERLOAD_WARNING_INTERVAL = 10.0


class Refusal(Exception):
    """A request the consumer answers with an error without queueing anything."""

    def __init__(self, code: Code, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.code, self.message, self.details = code, message, details


class ZocketConsumer(AsyncJsonWebsocketConsumer):
    """Serves every registered actor over one socket."""

    node: Node
    client_id: str
    caller: Caller
    limits: ZocketSettings

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        # Like AsyncConsumer.__call__, minus the per-connection channel.
        self.scope = scope
        self.base_send = send
        self._frames = _past_sessions(send)
        self.present: dict[str, tuple[ActorSpec, str]] = {}
        with contextlib.suppress(StopConsumer):
            await await_many_dispatch([receive], self.dispatch)

    async def send(self, text_data: str | None = None, bytes_data: bytes | None = None, close: bool = False) -> None:
        if text_data is not None and not close:  # a frame (every patch, event and answer goes this way)
            await self._frames({"type": "websocket.send", "text": text_data})
        else:
            await super().send(text_data, bytes_data, close)

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels' dispatch would call close_old_connections in a thread here.
        handler = self._asgi_handlers.get(message["type"])
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(self, message)

    # -- lifecycle ------------------------------------------------------------

    async def connect(self) -> None:
        self.node = await get_node()
        self.client_id = self.node.new_client_id()
        limits = self.limits = zocket_settings()
        self._valid_id = limits.actor_id_validator()
        self._rate = float(limits.MESSAGE_RATE or 0)
        self._burst = self._tokens = float(limits.MESSAGE_BURST)
        self._stamp = time.monotonic()
        self._refused = 0  # frames over the rate limit since the last warning
        self._warned_at = -OVERLOAD_WARNING_INTERVAL
        self.subscriptions: set[tuple[str, str, str]] = set()
        self.perm_cache: dict[str, bool] = {}
        self.revoked = False  # its identity no longer holds: closing, nothing more is served
        subprotocol = accepted_subprotocol(self.scope)
        try:
            user, user_id, claims = await identify(self.scope)
        except AuthenticationFailed as exc:
            log.warning(
                "zocket: connection refused: %s",
                exc.message,
                extra={"zocket": {"client": self.client_id, "code": Code.UNAUTHENTICATED, "reason": exc.message}},
            )
            await self.accept(subprotocol)
            await self._close_unauthenticated(exc.message)
            raise StopConsumer from None
        self.caller = Caller(
            self.client_id, self.node.channel, user_id, claims, user, key_scope=self._key_scope(user_id)
        )
        await self.accept(subprotocol)
        refused = self.node.attach(self)
        if refused is not None:
            log.warning("zocket: connection refused: %s", refused, extra={"zocket": {"user": user_id}})
            await self.send(text_data=protocol.error(Code.OVERLOADED, refused))
            await self.close(code=CLOSE_TOO_MANY_CONNECTIONS)
            raise StopConsumer
        if user_id is not None:
            identity.watch(self)  # its session or token is checked again while it is open
        await self.send(text_data=protocol.welcome(self.client_id))

    def _key_scope(self, user_id: str | None) -> str:
        """Whose keyed calls this socket makes: an identity that outlives the socket (``callkeys``).

        A user's keys are theirs on every socket; an anonymous socket's are its
        Django session's when it has one, else shared by every anonymous caller
        (the shipped clients' keys are random, 128 bits: they do not collide,
        and a key is bound to the call it was first used for).
        """
        if user_id is not None:
            return f"user:{user_id}"
        session_key = getattr(self.scope.get("session"), "session_key", None)
        return f"session:{session_key}" if session_key else "anonymous"

    async def _close_unauthenticated(self, reason: str) -> None:
        await self.send(text_data=protocol.error(Code.UNAUTHENTICATED, reason))
        await self.close(code=CLOSE_UNAUTHENTICATED)

    async def revoke(self, reason: str) -> None:
        """The identity this socket was opened with no longer holds (``identity``): close it with 4401.

        It leaves every instance at once; frames it sends meanwhile are ignored.
        """
        if self.revoked:
            return
        self.revoked = True
        log.warning(
            "zocket: closing %s: %s",
            self.client_id,
            reason,
            extra={"zocket": {"client": self.client_id, "user": self.caller.user_id, "code": Code.UNAUTHENTICATED}},
        )
        await self.node.detach(self)
        await self._close_unauthenticated(reason)

    async def end_subscription(self, spec: ActorSpec, actor_id: str, kind: str, refusal: ZocketError) -> None:
        """Its ``read`` rule refuses this socket now (``identity``): unsubscribe it and say why."""
        if (spec.name, actor_id, kind) not in self.subscriptions or self.revoked:
            return
        log.info(
            "zocket: %s:sub of %s/%s ended for %s: %s",
            kind,
            spec.name,
            actor_id,
            self.client_id,
            refusal.message,
            extra={"zocket": {"client": self.client_id, "user": self.caller.user_id, "code": str(refusal.code)}},
        )
        await self._drop_subscription(spec, actor_id, kind)
        ref = {"type": f"{kind}:sub", "actor": spec.name, "actorId": actor_id}
        await self.send(text_data=protocol.error(refusal.code, f"{refusal.message}; subscription ended", ref))

    async def _websocket_disconnect(self, message: dict[str, Any]) -> None:
        # Channels' websocket_disconnect also runs aclose_old_connections, a
        # database hop that fails where the database is off limits (a test
        # without DB access); zocket's database work manages its own connections.
        await self.disconnect(message.get("code", 1000))
        raise StopConsumer

    async def disconnect(self, code: int) -> None:
        node = getattr(self, "node", None)
        if node is not None and hasattr(self, "client_id"):
            identity.unwatch(self)
            if not self.revoked:  # a revoked socket left already
                await node.detach(self)

    # -- frames ------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any) -> None:
        if self.revoked:
            return
        limit = self.limits.MAX_FRAME_BYTES
        if text_data is None:
            if bytes_data is not None and len(bytes_data) > limit:
                await self._too_large(limit)
                return
        elif len(text_data) > limit or (len(text_data) * 4 > limit and _utf8_length(text_data) > limit):
            await self._too_large(limit)
            return
        if self._rate:  # token bucket: MESSAGE_RATE per second, MESSAGE_BURST at once
            now = time.monotonic()
            tokens = self._tokens + (now - self._stamp) * self._rate
            self._stamp = now
            if tokens < 1.0:
                self._tokens = tokens
                await self._overloaded(text_data)
                return
            self._tokens = tokens - 1.0 if tokens <= self._burst else self._burst - 1.0
        if text_data is None:
            await self.send(text_data=protocol.error(Code.BAD_REQUEST, "binary frames are not supported"))
            return
        try:
            message = protocol.decode(text_data)
        except (ValueError, RecursionError):
            await self.send(text_data=protocol.error(Code.BAD_REQUEST, "frame is not valid JSON"))
            return
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            await self.send(
                text_data=protocol.error(Code.BAD_REQUEST, "frame must be a JSON object with a string type")
            )
            return
        if "\\u" in text_data and protocol.has_lone_surrogate(text_data, message):
            # A JSON escape made a lone surrogate: no UTF-8 text can carry it back.
            await self._error(Code.BAD_REQUEST, "frame holds a lone surrogate (not valid Unicode)", {})
            return
        handler = self._frame_handlers.get(message["type"])
        if handler is None:
            await self._error(Code.UNKNOWN_TYPE, f"unknown message type {message['type'][:64]!r}", message)
            return
        await handler(self, message)

    async def _rpc(self, message: dict[str, Any]) -> None:
        rpc_id = message.get("id")
        if not isinstance(rpc_id, str):
            await self._error(Code.BAD_REQUEST, "rpc needs a string id", message)
            return
        if not 0 < len(rpc_id) <= MAX_ID_LENGTH:
            await self._error(Code.BAD_REQUEST, f"rpc id must be 1 to {MAX_ID_LENGTH} characters", message)
            return
        caller = self.caller
        key = message.get("key")
        try:
            if key is not None and not (isinstance(key, str) and 0 < len(key) <= MAX_KEY_LENGTH):
                raise Refusal(Code.BAD_REQUEST, f"rpc key must be a string of 1 to {MAX_KEY_LENGTH} characters")
            spec, actor_id = self._target(message)
            method = self._method(spec, message.get("method"))
            guard = method.guard
            if guard is not None:
                await gate(guard, caller.user, self.perm_cache)
            args = self._arguments(method, message.get("input"))
            if guard is not None and (guard.middleware or guard.checks):
                inputs = {name: getattr(args, name) for name in method.input_model.model_fields}
                caller = await self._admit(guard, "rpc", spec, actor_id, method.name, inputs)
            refused = self.node.quotas.call(caller.user_id)
            if refused is not None:
                raise Refusal(Code.OVERLOADED, refused)
            self._claim(spec, actor_id)
        except Refusal as refusal:
            await self.send(text_data=protocol.rpc_error(rpc_id, refusal.code, refusal.message, refusal.details))
            return
        except ZocketError as exc:
            self._log_refusal(exc, message)
            await self.send(text_data=protocol.rpc_error(rpc_id, exc.code, exc.message, exc.details))
            return
        except Exception as exc:
            self._log_failure(message)
            frame = protocol.rpc_error(rpc_id, Code.HANDLER_ERROR, "access check failed", debug_details(exc))
            await self.send(text_data=frame)
            return
        await self.node.call(spec, actor_id, caller, method, args, message.get("input"), rpc_id, key)

    async def _subscribe(self, message: dict[str, Any], kind: str) -> None:
        caller = self.caller
        try:
            spec, actor_id = self._target(message)
            key = (spec.name, actor_id, kind)
            if key not in self.subscriptions and len(self.subscriptions) >= self.limits.MAX_SUBSCRIPTIONS:
                raise Refusal(Code.OVERLOADED, f"too many subscriptions (at most {self.limits.MAX_SUBSCRIPTIONS})")
            guard = spec.read_guard
            if guard is not None:
                await gate(guard, caller.user, self.perm_cache)
                if guard.middleware or guard.checks:
                    caller = await self._admit(guard, message["type"], spec, actor_id, None, None)
            self._claim(spec, actor_id)
        except Refusal as refusal:
            await self._error(refusal.code, refusal.message, message)
            return
        except ZocketError as exc:
            self._log_refusal(exc, message)
            await self._error(exc.code, exc.message, message)
            return
        except Exception:
            self._log_failure(message)
            await self._error(Code.HANDLER_ERROR, "access check failed", message)
            return
        self.subscriptions.add(key)
        await self.node.subscribe(self, spec.name, actor_id, kind)
        await self.node.request_subscription(spec, actor_id, caller, kind)

    async def _unsubscribe(self, message: dict[str, Any], kind: str) -> None:
        try:
            spec, actor_id = self._target(message)
        except Refusal as refusal:
            await self._error(refusal.code, refusal.message, message)
            return
        await self._drop_subscription(spec, actor_id, kind)

    async def _drop_subscription(self, spec: ActorSpec, actor_id: str, kind: str) -> None:
        self.subscriptions.discard((spec.name, actor_id, kind))
        await self.node.unsubscribe(self, spec.name, actor_id, kind)
        await self.node.request_unsubscription(spec, actor_id, self.client_id, kind)

    async def _state_sub(self, message: dict[str, Any]) -> None:
        await self._subscribe(message, STATE)

    async def _state_unsub(self, message: dict[str, Any]) -> None:
        await self._unsubscribe(message, STATE)

    async def _event_sub(self, message: dict[str, Any]) -> None:
        await self._subscribe(message, EVENTS)

    async def _event_unsub(self, message: dict[str, Any]) -> None:
        await self._unsubscribe(message, EVENTS)

    async def _ping(self, message: dict[str, Any]) -> None:
        ping_id = message.get("id")
        if isinstance(ping_id, str):
            ping_id = ping_id if len(ping_id) <= MAX_ID_LENGTH else None
        elif not isinstance(ping_id, int) or isinstance(ping_id, bool) or abs(ping_id) >= 2**53:
            ping_id = None
        await self.send(text_data=protocol.pong(ping_id))

    # -- checks shared by every request ---------------------------------------------

    def _target(self, message: dict[str, Any]) -> tuple[ActorSpec, str]:
        actor, actor_id = message.get("actor"), message.get("actorId")
        if not isinstance(actor, str) or not isinstance(actor_id, str):
            raise Refusal(Code.BAD_REQUEST, "actor and actorId must be strings")
        spec = registry.get(actor)
        if spec is None:
            raise Refusal(Code.UNKNOWN_ACTOR, f"unknown actor {actor[:64]!r}")
        if not actor_id or len(actor_id) > self.limits.MAX_ACTOR_ID_LENGTH:
            raise Refusal(Code.BAD_REQUEST, f"actorId must be 1 to {self.limits.MAX_ACTOR_ID_LENGTH} characters")
        if not self._valid_id(actor_id):
            raise Refusal(Code.BAD_REQUEST, "actorId holds characters that are not allowed")
        return spec, actor_id

    @staticmethod
    def _method(spec: ActorSpec, name: Any) -> MethodSpec:
        if not isinstance(name, str):
            raise Refusal(Code.BAD_REQUEST, "method must be a string")
        method = spec.methods.get(name)
        if method is None:
            raise Refusal(Code.UNKNOWN_METHOD, f"{spec.name} has no method {name[:64]!r}")
        return method

    @staticmethod
    def _arguments(method: MethodSpec, given: Any) -> BaseModel:
        if given is None:
            given = {}
        if not isinstance(given, dict):
            raise Refusal(
                Code.INVALID_INPUT,
                f"Invalid input for {method.name}: expected a JSON object of its parameters",
                [{"loc": [], "msg": "Input should be an object", "type": "dict_type"}],
            )
        try:
            return method.input_model.model_validate(given)
        except ValidationError as exc:
            details = validation_details(exc)
            message = f"Invalid input for {method.name}: {first_problem(details)}"
            raise Refusal(Code.INVALID_INPUT, message, details) from None

    def _claim(self, spec: ActorSpec, actor_id: str) -> None:
        """Count the instance as used by this connection (it keeps it hot); ``Refusal`` past the caps."""
        group = self.node.group_name(spec.name, actor_id)
        if group in self.present:
            return
        refused = self.node.quotas.use(self.caller.user_id, self.present, group)
        if refused is not None:
            raise Refusal(Code.OVERLOADED, refused)
        self.present[group] = (spec, actor_id)

    async def _admit(
        self, guard: Guard, kind: str, spec: ActorSpec, actor_id: str, method: str | None, inputs: Any
    ) -> Caller:
        """Middleware and custom checks; the caller to queue with (enriched when middleware added values)."""
        caller = self.caller
        request = Request(
            kind=kind,
            actor=spec.name,
            actor_id=actor_id,
            method=method,
            input=inputs,
            client_id=self.client_id,
            user=caller.user,
            user_id=caller.user_id,
            claims=caller.claims,
            scope=self.scope,
        )
        extra = await admit(guard, request)
        return dataclasses.replace(caller, extra=extra) if extra else caller

    def _log_context(self, message: dict[str, Any], **more: Any) -> dict[str, Any]:
        context = {
            "actor": message.get("actor"),
            "actor_id": message.get("actorId"),
            "method": message.get("method"),
            "type": message.get("type"),
            "client": self.client_id,
            "user": self.caller.user_id,
        }
        return {"zocket": {k: v for k, v in context.items() if isinstance(v, str)} | more}

    def _log_refusal(self, exc: ZocketError, message: dict[str, Any]) -> None:
        log.info(
            "zocket: %s refused (%s): %s",
            message.get("type"),
            exc.code,
            exc.message,
            extra=self._log_context(message, code=str(exc.code)),
        )

    def _log_failure(self, message: dict[str, Any]) -> None:
        log.exception(
            "zocket: an access check or middleware raised; %s refused",
            message.get("type"),
            extra=self._log_context(message, code=Code.HANDLER_ERROR),
        )

    async def _overloaded(self, text_data: str | None) -> None:
        """A frame over the rate limit: refused, answered, and the connection goes on."""
        self._refused += 1
        now = time.monotonic()
        if now - self._warned_at >= OVERLOAD_WARNING_INTERVAL:  # one line per interval, not one per frame
            log.warning(
                "zocket: %s sends faster than %s frames/s; %d frame(s) refused",
                self.client_id,
                self._rate,
                self._refused,
                extra={
                    "zocket": {
                        "client": self.client_id,
                        "user": self.caller.user_id,
                        "code": Code.OVERLOADED,
                        "refused": self._refused,
                    }
                },
            )
            self._warned_at, self._refused = now, 0
        message: Any = None
        if text_data is not None:
            with contextlib.suppress(ValueError, RecursionError):
                message = protocol.decode(text_data)
        if not isinstance(message, dict):
            message = {}
        text = "too many messages; slow down"
        rpc_id = message.get("id")
        if message.get("type") == "rpc" and isinstance(rpc_id, str) and _echoable(rpc_id, MAX_ID_LENGTH):
            await self.send(text_data=protocol.rpc_error(rpc_id, Code.OVERLOADED, text))
            return
        await self._error(Code.OVERLOADED, text, message)

    async def _too_large(self, limit: int) -> None:
        log.warning(
            "zocket: frame over %d bytes from %s; closing",
            limit,
            self.client_id,
            extra={"zocket": {"client": self.client_id, "user": self.caller.user_id}},
        )
        await self.close(code=1009)

    async def _error(self, code: Code, text: str, message: dict[str, Any]) -> None:
        ref = {
            k: v
            for k in ("type", "id", "actor", "actorId")
            if (isinstance(v := message.get(k), str) and _echoable(v, MAX_REF_LENGTH))
            or (isinstance(v, int) and not isinstance(v, bool) and abs(v) < 2**53)
        }
        await self.send(text_data=protocol.error(code, text, ref))

    _frame_handlers = {
        "rpc": _rpc,
        "state:sub": _state_sub,
        "state:unsub": _state_unsub,
        "event:sub": _event_sub,
        "event:unsub": _event_unsub,
        "ping": _ping,
    }
    _asgi_handlers = {
        "websocket.connect": AsyncJsonWebsocketConsumer.websocket_connect,
        "websocket.receive": AsyncJsonWebsocketConsumer.websocket_receive,
        "websocket.disconnect": _websocket_disconnect,
    }


def _utf8_length(text: str) -> int:
    """Bytes of ``text`` in UTF-8; lone surrogates (impossible from a real socket) count as 3."""
    return len(text.encode("utf-8", "surrogatepass"))


def _echoable(text: str, limit: int) -> bool:
    """Short and printable (so valid Unicode): safe to send back to the client."""
    return 0 < len(text) <= limit and text.isprintable()


def _past_sessions(send: Any) -> Any:
    """``send`` without Channels' session wrappers, for frames.

    ``InstanceSessionWrapper.send`` acts on ``http.response.start`` only, but
    reads the lazy session (``modified``, ``is_empty()``) on every message: with
    1,000 subscribers that was a quarter of a change's CPU. The scope's session
    is untouched; closing and accepting still go through the wrappers.
    """
    while isinstance(getattr(send, "__self__", None), InstanceSessionWrapper):
        send = send.__self__.real_send
    return send
