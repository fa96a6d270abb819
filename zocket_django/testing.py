"""Helpers for testing actors through the real ASGI stack.

``ZocketCommunicator`` is Channels' ``WebsocketCommunicator`` that speaks the
protocol: it reads the ``welcome``, keeps frames it was not asked for in order,
and turns calls and subscriptions into one line each::

    async with ZocketCommunicator() as client:
        state, version = await client.subscribe_state("counter", "main")
        assert await client.call("counter", "main", "add", amount=5) == 5
        patch = await client.next_patch("counter", "main")
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from typing import Any

from channels.testing import WebsocketCommunicator

from .node import current_node, forget_node


class ZocketCallError(Exception):
    """An ``rpc:result`` with an error; ``code`` and ``details`` as sent."""

    def __init__(self, frame: dict[str, Any]) -> None:
        super().__init__(f"{frame.get('code')}: {frame.get('error')}")
        self.frame = frame
        self.code = frame.get("code")
        self.message = frame.get("error")
        self.details = frame.get("details")


def default_application() -> Any:
    """The project's ``ASGI_APPLICATION``."""
    from channels.routing import get_default_application

    return get_default_application()


class ZocketCommunicator(WebsocketCommunicator):
    """A protocol-aware test client over Channels' ``WebsocketCommunicator``."""

    _ids = itertools.count(1)

    def __init__(
        self,
        application: Any = None,
        path: str = "/ws/",
        headers: list[tuple[bytes, bytes]] | None = None,
        subprotocols: list[str] | None = None,
        timeout: float = 5.0,
    ) -> None:
        super().__init__(application or default_application(), path, headers, subprotocols)
        self.timeout = timeout
        self.client_id: str | None = None
        self.inbox: deque[dict[str, Any]] = deque()
        self._reading = asyncio.Lock()

    async def connect(self, timeout: float | None = None) -> tuple[bool, Any]:
        """Open the socket and read the ``welcome`` (sets ``client_id``)."""
        connected, detail = await super().connect(timeout or self.timeout)
        if connected:
            welcome = await self.receive_json_from(timeout or self.timeout)
            assert welcome["type"] == "welcome", welcome
            self.client_id = welcome["clientId"]
        return connected, detail

    async def __aenter__(self) -> ZocketCommunicator:
        connected, detail = await self.connect()
        if not connected:
            raise ConnectionError(f"the socket was refused: {detail}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.disconnect()

    # -- frames ---------------------------------------------------------------

    async def expect(self, type: str, timeout: float | None = None, **fields: Any) -> dict[str, Any]:
        """The next frame of ``type`` whose fields match; frames skipped stay queued.

        Safe to await from several tasks at once (concurrent calls on one socket).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (timeout or self.timeout)
        while True:
            async with self._reading:
                frame = self._take(type, fields)
                if frame is not None:
                    return frame
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise TimeoutError(f"no {type} frame matching {fields} (queued: {list(self.inbox)})")
                self.inbox.append(await self.receive_json_from(remaining))

    def _take(self, type: str, fields: dict[str, Any]) -> dict[str, Any] | None:
        for i, frame in enumerate(self.inbox):
            if _matches(frame, type, fields):
                del self.inbox[i]
                return frame
        return None

    async def nothing_more(self, wait: float = 0.1) -> list[dict[str, Any]]:
        """Frames that arrive within ``wait`` seconds (for asserting that none do)."""
        frames = list(self.inbox)
        self.inbox.clear()
        # receive_nothing, unlike a timed-out receive, leaves the application running.
        while not await self.receive_nothing(wait):
            frames.append(await self.receive_json_from())
        return frames

    # -- calls --------------------------------------------------------------------

    async def call_raw(
        self, actor: str, actor_id: str, method: str, input: Any = None, **kwargs: Any
    ) -> dict[str, Any]:
        """Send an ``rpc`` and return its ``rpc:result`` frame, error or not."""
        rpc_id = f"t{next(self._ids)}"
        frame: dict[str, Any] = {"type": "rpc", "id": rpc_id, "actor": actor, "actorId": actor_id, "method": method}
        if input is not None or kwargs:
            frame["input"] = {**(input or {}), **kwargs}
        await self.send_json_to(frame)
        return await self.expect("rpc:result", id=rpc_id)

    async def call(self, actor: str, actor_id: str, method: str, input: Any = None, **kwargs: Any) -> Any:
        """Call a method and return its result; raises ``ZocketCallError``."""
        frame = await self.call_raw(actor, actor_id, method, input, **kwargs)
        if "error" in frame:
            raise ZocketCallError(frame)
        return frame.get("result")

    # -- subscriptions ---------------------------------------------------------------

    async def subscribe_state(self, actor: str, actor_id: str) -> tuple[Any, int]:
        """``state:sub`` and wait for the snapshot: ``(state, version)``."""
        await self.send_json_to({"type": "state:sub", "actor": actor, "actorId": actor_id})
        snapshot = await self.expect("state:snapshot", actor=actor, actorId=actor_id)
        return snapshot["state"], snapshot["version"]

    async def next_patch(self, actor: str, actor_id: str) -> dict[str, Any]:
        return await self.expect("state:patch", actor=actor, actorId=actor_id)

    async def subscribe_events(self, actor: str, actor_id: str) -> None:
        """``event:sub``, confirmed by a ping round trip so that later events are not missed."""
        await self.send_json_to({"type": "event:sub", "actor": actor, "actorId": actor_id})
        await self.ping()

    async def next_event(self, actor: str, actor_id: str, event: str | None = None) -> dict[str, Any]:
        fields = {"actor": actor, "actorId": actor_id}
        if event is not None:
            fields["event"] = event
        return await self.expect("event", **fields)

    async def ping(self) -> None:
        ping_id = f"p{next(self._ids)}"
        await self.send_json_to({"type": "ping", "id": ping_id})
        await self.expect("pong", id=ping_id)


def _matches(frame: dict[str, Any], type: str, fields: dict[str, Any]) -> bool:
    return frame.get("type") == type and all(frame.get(k) == v for k, v in fields.items())


async def reset_actors() -> None:
    """Deactivate every hot instance and stop this event loop's node.

    Call it between tests (an autouse fixture) so no state leaks from one test
    into the next.
    """
    node = current_node()
    if node is not None:
        forget_node(node)
        await node.stop()
