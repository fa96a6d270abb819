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

import asyncio
import contextlib
import dataclasses
import logging
import time
from typing import Any

from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from . import identity, protocol, request_checks
from .access import Guard, Request, admit, gate
from .actor import ActorSpec
from .auth import accepted_subprotocol, identify
from .budget import Budget
from .caller import Caller
from .callkeys import MAX_KEY_LENGTH
from .conf import ZocketSettings, zocket_settings
from .consumer_identity import ConsumerIdentity
from .consumer_output import ConsumerOutput
from .errors import AuthenticationFailed, ZocketError
from .inflight import InFlight
from .messages import EVENTS, STATE
from .node import Node, get_node
from .output import Output
from .protocol import Code
from .runtime import debug_details
from .transport import DaphneSocket, socket_of

log = logging.getLogger(__name__)

#: Longest ``id`` of an ``rpc`` or ``ping`` (it is echoed back).
MAX_ID_LENGTH = 128
#: Close code of a connection refused because its user has too many open (``MAX_CONNECTIONS_PER_USER``).
CLOSE_TOO_MANY_CONNECTIONS = 4429


class ZocketConsumer(ConsumerIdentity, ConsumerOutput, AsyncJsonWebsocketConsumer):
    """Serves every registered actor over one socket.

    Its output and limits are ``consumer_output``'s, its identity callbacks ``consumer_identity``'s.
    """

    node: Node
    client_id: str
    caller: Caller
    limits: ZocketSettings
    socket: DaphneSocket | None
    output: Output
    budget: Budget

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Serve one socket until it closes, and clean up however that happens.

        Like ``AsyncConsumer.__call__``, minus the per-connection channel and
        the task per ``receive``. The cleanup (``node.detach``: the socket's
        subscriptions, and ``on_disconnect`` in every instance it touched)
        runs on a normal close, on an error, on cancellation (daphne cancels
        an application still running ``application_close_timeout`` seconds
        after its socket closed) and when its output overflows.
        """
        self.scope = scope
        self.present: dict[str, tuple[ActorSpec, str]] = {}
        self.limits = limits = zocket_settings()
        self.socket = socket_of(send)
        self.output = Output(send, self.socket, limits.MAX_OUTPUT_BYTES, self._overflowed)
        self.budget = Budget(
            limits.MESSAGE_RATE, limits.MESSAGE_BURST, limits.BYTE_RATE, limits.BYTE_BURST, time.monotonic()
        )
        self.inflight = InFlight(limits.MAX_CALLS_IN_FLIGHT)
        self._attached = False
        try:
            while True:
                message = await receive()
                kind = message["type"]
                if kind == "websocket.receive":
                    await self._frame(message)
                elif kind == "websocket.connect":
                    await self.websocket_connect(message)
                elif kind == "websocket.disconnect":
                    break
        except StopConsumer:
            pass
        finally:
            self._detach()
            if self.socket is not None:
                self.socket.resume_reading()
            await asyncio.shield(self.output.stop())

    def _detach(self) -> None:
        """Forget this socket everywhere (once; never raises, never waits)."""
        if self._attached:
            self._attached = False
            try:
                identity.unwatch(self)
                self.node.detach(self)
            except Exception:
                log.exception("zocket: could not detach %s", self.client_id)

    # -- lifecycle ------------------------------------------------------------

    async def connect(self) -> None:
        self.node = await get_node()
        self.client_id = self.node.new_client_id()
        self._valid_id = self.limits.actor_id_validator()
        self.subscriptions: set[tuple[str, str, str]] = set()
        self.perm_cache: dict[str, bool] = {}
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
            self.push(protocol.error(Code.OVERLOADED, refused))
            await self.close(code=CLOSE_TOO_MANY_CONNECTIONS)
            raise StopConsumer
        self._attached = True
        if user_id is not None:
            identity.watch(self)  # its session or token is checked again while it is open
        self.push(protocol.welcome(self.client_id))

    # -- frames ------------------------------------------------------------------

    async def _frame(self, message: dict[str, Any]) -> None:
        """One ``websocket.receive``: size, then budget (waiting, not reading, when short), then the frame."""
        if self.revoked:
            return  # closing with 4401: nothing more is served
        text_data, bytes_data = message.get("text"), message.get("bytes")
        limit = self.limits.MAX_FRAME_BYTES
        if text_data is not None:
            size = len(text_data)
            if size * 4 > limit:  # maybe over: count the UTF-8 bytes
                size = protocol.utf8_length(text_data)
        else:
            size = len(bytes_data or b"")
        if size > limit:
            await self._too_large(limit)
            raise StopConsumer
        wait = self.budget.charge(size, time.monotonic())
        if wait > 0:
            self._throttled(wait)
            if self.socket is not None:
                self.socket.pause_reading()
            try:
                await asyncio.sleep(wait)
            finally:
                if self.socket is not None:
                    self.socket.resume_reading()
        if self.inflight.full:  # its calls are not answered as fast as it sends them: others first
            await self._wait_for_answers()
        try:
            await self.receive(text_data=text_data, bytes_data=bytes_data)
        except StopConsumer:
            raise
        except Exception:
            log.exception(
                "zocket: a frame from %s could not be handled",
                self.client_id,
                extra={"zocket": {"client": self.client_id, "user": self.caller.user_id}},
            )
            self.push(protocol.error(Code.HANDLER_ERROR, "the server could not handle this frame"))

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any) -> None:
        if text_data is None:
            self.push(protocol.error(Code.BAD_REQUEST, "binary frames are not supported"))
            return
        try:
            message = protocol.decode(text_data)
        except (ValueError, RecursionError):
            self.push(protocol.error(Code.BAD_REQUEST, "frame is not valid JSON"))
            return
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            self.push(protocol.error(Code.BAD_REQUEST, "frame must be a JSON object with a string type"))
            return
        # "\\" in: a one-character search (memchr), unlike "\\u" (~1 ms for 240 KB).
        if "\\" in text_data and protocol.has_lone_surrogate(text_data, message):
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
                raise request_checks.Unlogged(
                    f"rpc key must be a string of 1 to {MAX_KEY_LENGTH} characters", code=Code.BAD_REQUEST
                )
            spec, actor_id = request_checks.target(message, self.limits, self._valid_id)
            method = request_checks.method_of(spec, message.get("method"))
            guard = method.guard
            if guard is not None:
                await gate(guard, caller.user, self.perm_cache)
            args = request_checks.arguments(method, message.get("input"))
            if guard is not None and (guard.middleware or guard.checks):
                inputs = {name: getattr(args, name) for name in method.input_model.model_fields}
                caller = await self._admit(guard, "rpc", spec, actor_id, method.name, inputs)
            refused = self.node.quotas.call(caller.user_id)
            if refused is not None:
                raise request_checks.Unlogged(refused, code=Code.OVERLOADED)
            self._claim(spec, actor_id)
        except ZocketError as exc:
            request_checks.log_refusal(exc, message, self.client_id, self.caller.user_id)
            self.push(protocol.rpc_error(rpc_id, exc.code, exc.message, exc.details))
            return
        except Exception as exc:
            request_checks.log_failure(message, self.client_id, self.caller.user_id)
            frame = protocol.rpc_error(rpc_id, Code.HANDLER_ERROR, "access check failed", debug_details(exc))
            self.push(frame)
            return
        self.inflight.sent()
        await self.node.call(spec, actor_id, caller, method, args, message.get("input"), rpc_id, key)

    async def _subscribe(self, message: dict[str, Any], kind: str) -> None:
        caller = self.caller
        try:
            spec, actor_id = request_checks.target(message, self.limits, self._valid_id)
            key = (spec.name, actor_id, kind)
            held = key in self.subscriptions  # sent again (a resync): the socket already reads it
            if not held and len(self.subscriptions) >= self.limits.MAX_SUBSCRIPTIONS:
                raise request_checks.Unlogged(
                    f"too many subscriptions (at most {self.limits.MAX_SUBSCRIPTIONS})", code=Code.OVERLOADED
                )
            guard = spec.read_guard
            if guard is not None:
                await gate(guard, caller.user, self.perm_cache)
                if guard.middleware or guard.checks:
                    caller = await self._admit(guard, message["type"], spec, actor_id, None, None)
            self._claim(spec, actor_id)
        except ZocketError as exc:
            request_checks.log_refusal(exc, message, self.client_id, self.caller.user_id)
            await self._error(exc.code, exc.message, message)
            return
        except Exception:
            request_checks.log_failure(message, self.client_id, self.caller.user_id)
            await self._error(Code.HANDLER_ERROR, "access check failed", message)
            return
        try:
            await self.node.subscribe(self, spec.name, actor_id, kind)
        except Exception:  # the channel layer (Redis) is away: nothing changed
            request_checks.log_unavailable(message, self.client_id, self.caller.user_id)
            await self._error(Code.UNAVAILABLE, "cannot subscribe now; try again", message)
            return
        # A plain repeat of a held state subscription is answered only if the state moved since
        # this connection's last snapshot; `"resync": true` always is (docs/protocol.md).
        repeat = held and message.get("resync") is not True
        self.subscriptions.add(key)
        try:
            await self.node.router.request_subscription(spec, actor_id, caller, kind, if_moved=repeat)
        except Exception:  # the owner cannot be known (Redis is away)
            if held:
                # Kept, not undone: this socket was already reading the instance's
                # frames. Undoing it would leave a client that believes it
                # subscribes with nothing arriving: no patch, so no gap, so no
                # resync, ever (watchers froze for good after Redis restarts).
                # The snapshot it asked for is owed instead: asked again on the
                # next housekeeping tick, until the owner is reached.
                self.node.router.ask_again(spec, actor_id, caller, kind)
                return
            request_checks.log_unavailable(message, self.client_id, self.caller.user_id)
            self.subscriptions.discard(key)
            with contextlib.suppress(Exception):
                await self.node.unsubscribe(self, spec.name, actor_id, kind)
            await self._error(Code.UNAVAILABLE, "cannot subscribe now; try again", message)

    async def _unsubscribe(self, message: dict[str, Any], kind: str) -> None:
        try:
            spec, actor_id = request_checks.target(message, self.limits, self._valid_id)
        except ZocketError as exc:
            await self._error(exc.code, exc.message, message)
            return
        await self._drop_subscription(spec, actor_id, kind)

    async def _drop_subscription(self, spec: ActorSpec, actor_id: str, kind: str) -> None:
        self.subscriptions.discard((spec.name, actor_id, kind))
        await self.node.unsubscribe(self, spec.name, actor_id, kind)
        await self.node.router.request_unsubscription(spec, actor_id, self.client_id, kind)

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
        self.push(protocol.pong(ping_id))

    # -- checks shared by every request ---------------------------------------------

    def _claim(self, spec: ActorSpec, actor_id: str) -> None:
        """Count the instance as used by this connection (it keeps it hot); ``ZocketError`` past the caps."""
        group = self.node.group_name(spec.name, actor_id)
        if group in self.present:
            return
        refused = self.node.quotas.use(self.caller.user_id, self.present, group)
        if refused is not None:
            raise request_checks.Unlogged(refused, code=Code.OVERLOADED)
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

    async def _error(self, code: Code | str, text: str, message: dict[str, Any]) -> None:
        self.push(protocol.error(code, text, request_checks.error_ref(message)))

    _frame_handlers = {
        "rpc": _rpc,
        "state:sub": _state_sub,
        "state:unsub": _state_unsub,
        "event:sub": _event_sub,
        "event:unsub": _event_unsub,
        "ping": _ping,
    }
