"""The one WebSocket consumer that serves every actor, speaking PROTOCOL.md.

This is the hottest code of the project, so it departs from Channels' generic
consumer in two places, both documented in DESIGN.md ("Hot paths"): it has no
channel-layer channel of its own (the process's node receives for every
socket), and it does not run ``close_old_connections`` in a thread before every
frame (database work only ever happens inside ``database_sync_to_async``,
which manages connections itself).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.utils import await_many_dispatch
from pydantic import BaseModel, ValidationError

from . import protocol
from .actor import ActorSpec, MethodSpec
from .auth import identify
from .conf import zocket_settings
from .node import Node, get_node
from .protocol import Code
from .registry import registry
from .runtime import EVENTS, STATE, Caller
from .schema import validation_details

log = logging.getLogger("zocket_django")


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

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        # Like AsyncConsumer.__call__, minus the per-connection channel.
        self.scope = scope
        self.base_send = send
        self.present: dict[str, tuple[ActorSpec, str]] = {}
        with contextlib.suppress(StopConsumer):
            await await_many_dispatch([receive], self.dispatch)

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
        user, user_id, claims = await identify(self.scope)
        self.caller = Caller(self.client_id, self.node.channel, user_id, claims, user)
        await self.accept()
        self.node.attach(self)
        await self.send(text_data=protocol.welcome(self.client_id))

    async def disconnect(self, code: int) -> None:
        node = getattr(self, "node", None)
        if node is not None and hasattr(self, "client_id"):
            await node.detach(self)

    # -- frames ------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any) -> None:
        if text_data is None:
            await self.send(text_data=protocol.error(Code.BAD_REQUEST, "binary frames are not supported"))
            return
        limit = zocket_settings().MAX_FRAME_BYTES
        if len(text_data) > limit or (len(text_data) * 4 > limit and len(text_data.encode()) > limit):
            log.warning("zocket: frame over %d bytes from %s; closing", limit, self.client_id)
            await self.close(code=1009)
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
        try:
            spec, actor_id = self._target(message)
            method = self._method(spec, message.get("method"))
            args = self._arguments(method, message.get("input"))
        except Refusal as refusal:
            await self.send(text_data=protocol.rpc_error(rpc_id, refusal.code, refusal.message, refusal.details))
            return
        self._touch(spec, actor_id)
        await self.node.call(spec, actor_id, self.caller, method, args, message.get("input"), rpc_id)

    async def _subscribe(self, message: dict[str, Any], kind: str) -> None:
        try:
            spec, actor_id = self._target(message)
        except Refusal as refusal:
            await self._error(refusal.code, refusal.message, message)
            return
        await self.node.subscribe(self, spec.name, actor_id, kind)
        self._touch(spec, actor_id)
        await self.node.request_subscription(spec, actor_id, self.caller, kind)

    async def _unsubscribe(self, message: dict[str, Any], kind: str) -> None:
        try:
            spec, actor_id = self._target(message)
        except Refusal as refusal:
            await self._error(refusal.code, refusal.message, message)
            return
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
        await self.send(text_data=protocol.pong(ping_id if isinstance(ping_id, str | int) else None))

    # -- checks shared by every request ---------------------------------------------

    def _target(self, message: dict[str, Any]) -> tuple[ActorSpec, str]:
        actor, actor_id = message.get("actor"), message.get("actorId")
        if not isinstance(actor, str) or not isinstance(actor_id, str):
            raise Refusal(Code.BAD_REQUEST, "actor and actorId must be strings")
        spec = registry.get(actor)
        if spec is None:
            raise Refusal(Code.UNKNOWN_ACTOR, f"unknown actor {actor[:64]!r}")
        if not actor_id or len(actor_id) > zocket_settings().MAX_ACTOR_ID_LENGTH:
            raise Refusal(Code.BAD_REQUEST, f"actorId must be 1 to {zocket_settings().MAX_ACTOR_ID_LENGTH} characters")
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
            raise Refusal(Code.INVALID_INPUT, f"Invalid input for {method.name}", validation_details(exc)) from None

    def _touch(self, spec: ActorSpec, actor_id: str) -> None:
        group = self.node.group_name(spec.name, actor_id)
        if group not in self.present:
            self.present[group] = (spec, actor_id)

    async def _error(self, code: Code, text: str, message: dict[str, Any]) -> None:
        ref = {k: message[k] for k in ("type", "id", "actor", "actorId") if isinstance(message.get(k), str | int)}
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
        "websocket.disconnect": AsyncJsonWebsocketConsumer.websocket_disconnect,
    }
