"""Tests of zocket_django.client against a scripted in-process fake server.

The fake server speaks docs/protocol.md for one ``counter`` actor and exposes knobs
to misbehave (silence, version gaps, garbage, restarts). The client itself
needs no Django and no database.
Every wait is bounded, so a regression fails instead of hanging.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from pydantic import BaseModel
from websockets.asyncio.server import Server, ServerConnection, serve

from zocket_django.client import (
    Backoff,
    ConnectionStatus,
    ZocketClient,
    ZocketConnectionError,
    ZocketRefused,
    ZocketRpcDisconnected,
    ZocketRpcError,
    ZocketRpcTimeout,
    ZocketTimeoutError,
)

pytestmark = pytest.mark.asyncio

CLIENT_LOGGER = "zocket_django.client"


# ---------------------------------------------------------------------------
# Fake server
# ---------------------------------------------------------------------------


class FakeServer:
    """A minimal zocket server: one ``counter`` actor with versioned patches."""

    def __init__(self) -> None:
        self.server: Server | None = None
        self.port = 0
        self.received: asyncio.Queue[tuple[ServerConnection, dict[str, Any]]] = asyncio.Queue()
        self.connections: list[ServerConnection] = []
        self.state_subs: set[ServerConnection] = set()
        self.event_subs: set[ServerConnection] = set()
        self.client_ids: dict[ServerConnection, str] = {}
        self.answer_pings = True
        self.count = 0
        self.version = 0
        self.versioned = True
        self.flaky_attempts: list[Any] = []  # the keys of every "flaky" call received
        self.reject_status: int | None = None
        self.close_after_welcome = False
        # (close code, error code, message): accept, send that error frame and close, as
        # zocket-django does with credentials it refuses (4401), instead of the welcome.
        self.refusal: tuple[int, str, str] | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/"

    async def start(self) -> None:
        self.server = await serve(self._handler, "127.0.0.1", self.port, process_request=self._process_request)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None
        self.state_subs.clear()
        self.event_subs.clear()

    async def restart(self, downtime: float = 0.0) -> None:
        await self.stop()
        await asyncio.sleep(downtime)
        await self.start()

    def _process_request(self, connection: ServerConnection, request: Any) -> Any:
        if self.reject_status is not None:
            return connection.respond(self.reject_status, "refused\n")
        return None

    async def _handler(self, ws: ServerConnection) -> None:
        self.connections.append(ws)
        client_id = f"client-{len(self.connections)}"
        self.client_ids[ws] = client_id
        if self.refusal is not None:
            await self.refuse(ws, *self.refusal)
            return
        await ws.send(json.dumps({"type": "welcome", "clientId": client_id}))
        if self.close_after_welcome:
            await ws.close(1011, "flapping")
            return
        try:
            async for raw in ws:
                msg = json.loads(raw)
                await self.received.put((ws, msg))
                await self._respond(ws, msg)
        finally:
            self.state_subs.discard(ws)
            self.event_subs.discard(ws)

    async def _respond(self, ws: ServerConnection, msg: dict[str, Any]) -> None:
        kind = msg["type"]
        if kind == "ping":
            if self.answer_pings:
                await ws.send(json.dumps({"type": "pong", "id": msg.get("id")}))
        elif kind == "state:sub":
            self.state_subs.add(ws)
            await ws.send(json.dumps(self.snapshot()))
        elif kind == "state:unsub":
            self.state_subs.discard(ws)
        elif kind == "event:sub":
            self.event_subs.add(ws)
        elif kind == "event:unsub":
            self.event_subs.discard(ws)
        elif kind == "rpc":
            await self._rpc(ws, msg)

    async def _rpc(self, ws: ServerConnection, msg: dict[str, Any]) -> None:
        rid, method, data = msg["id"], msg["method"], msg.get("input")

        async def result(value: Any) -> None:
            await ws.send(json.dumps({"type": "rpc:result", "id": rid, "result": value}))

        async def error(code: str, text: str, details: Any = None) -> None:
            frame = {"type": "rpc:result", "id": rid, "error": text, "code": code}
            if details is not None:
                frame["details"] = details
            await ws.send(json.dumps(frame))

        if method == "increment":
            await self.set_count(self.count + 1)
            await result(self.count)
        elif method == "add":
            amount = data.get("amount") if isinstance(data, dict) else None
            if not isinstance(amount, int):
                await error("invalid_input", "Invalid input for add", [{"loc": ["amount"]}])
                return
            await self.set_count(self.count + amount)
            await result(self.count)
        elif method == "reset":
            await self.set_count(0)
            await self.emit("reset", {"by": self.client_ids[ws]})
            await result(None)
        elif method == "echo":
            await result({"has_input": "input" in msg, "input": data})
        elif method == "say":
            await self.emit("newMessage", {"text": data["text"]})
            await result(None)
        elif method == "slow":
            return  # never answers
        elif method == "always_unavailable":
            await error("unavailable", "moving to another worker")
        elif method == "flaky":  # unavailable until the third attempt, then ran once
            self.flaky_attempts.append(msg.get("key"))
            if len(self.flaky_attempts) < 3:
                await error("unavailable", "moving to another worker")
            else:
                await result(len(self.flaky_attempts))
        else:
            await error("unknown_method", f"Unknown method {method}")

    # -- what the server pushes -------------------------------------------------

    def snapshot(self, **extra: Any) -> dict[str, Any]:
        frame: dict[str, Any] = {
            "type": "state:snapshot",
            "actor": "counter",
            "actorId": "main",
            "state": {"count": self.count},
        }
        if self.versioned:
            frame["version"] = self.version
        return {**frame, **extra}

    async def set_count(self, value: int) -> None:
        self.count = value
        self.version += 1
        ops = [{"op": "replace", "path": "/count", "value": value}]
        await self.broadcast(self.patch(ops))

    def patch(self, ops: list[Any], version: int | None = None) -> dict[str, Any]:
        frame: dict[str, Any] = {
            "type": "state:patch",
            "actor": "counter",
            "actorId": "main",
            "patches": ops,
        }
        if self.versioned:
            frame["version"] = self.version if version is None else version
        return frame

    async def emit(self, event: str, payload: Any) -> None:
        frame = {
            "type": "event",
            "actor": "counter",
            "actorId": "main",
            "event": event,
            "payload": payload,
        }
        for ws in list(self.event_subs):
            await ws.send(json.dumps(frame))

    async def broadcast(self, frame: dict[str, Any]) -> None:
        for ws in list(self.state_subs):
            await ws.send(json.dumps(frame))

    async def refuse(self, ws: ServerConnection, close_code: int, code: str, message: str) -> None:
        await ws.send(json.dumps({"type": "error", "code": code, "error": message}))
        await ws.close(close_code)

    async def send_all(self, frame: dict[str, Any] | str | bytes) -> None:
        raw = frame if isinstance(frame, str | bytes) else json.dumps(frame)
        for ws in self.connections:
            if ws.state.name == "OPEN":
                await ws.send(raw)

    # -- what the client sent ---------------------------------------------------

    async def expect(self, kind: str, timeout: float = 2.0) -> dict[str, Any]:
        """The next frame of ``kind`` the client sent; earlier frames are skipped."""
        async with asyncio.timeout(timeout):
            while True:
                _, msg = await self.received.get()
                if msg["type"] == kind:
                    return msg

    def drain(self) -> list[dict[str, Any]]:
        """Every frame received so far, pings excluded."""
        frames = []
        while not self.received.empty():
            _, msg = self.received.get_nowait()
            if msg["type"] != "ping":
                frames.append(msg)
        return frames


async def wait_until(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


async def roundtrip(client: ZocketClient) -> None:
    """An RPC answered by the server proves every earlier frame was processed."""
    await client.actor("counter", "main").call("echo")


@pytest_asyncio.fixture
async def server() -> AsyncIterator[FakeServer]:
    srv = FakeServer()
    await srv.start()
    yield srv
    await srv.stop()


def make_client(url: str, **options: Any) -> ZocketClient:
    defaults: dict[str, Any] = {
        "rpc_timeout": 2.0,
        "connect_timeout": 2.0,
        "backoff_min": 0.01,
        "backoff_max": 0.05,
        "heartbeat_interval": None,
    }
    return ZocketClient(url, **{**defaults, **options})


@pytest_asyncio.fixture
async def client(server: FakeServer) -> AsyncIterator[ZocketClient]:
    c = make_client(server.url)
    await c.connect()
    yield c
    await c.close()


# ---------------------------------------------------------------------------
# Connection
# ---------------------------------------------------------------------------


async def test_connect_welcome_and_close(server: FakeServer) -> None:
    statuses: list[ConnectionStatus] = []
    c = make_client(server.url)
    c.on_status(statuses.append)
    assert c.status is ConnectionStatus.DISCONNECTED
    async with c as entered:
        assert entered is c
        assert c.status is ConnectionStatus.CONNECTED
        assert c.client_id == "client-1"
    assert c.closed
    assert c.client_id is None
    assert statuses == ["connecting", "connected", "disconnected"]
    await c.close()  # idempotent


async def test_connect_fails_when_nobody_listens() -> None:
    srv = FakeServer()
    await srv.start()
    url = srv.url
    await srv.stop()
    c = make_client(url, max_attempts=3)
    with pytest.raises(ZocketConnectionError, match="after 3 attempt"):
        await c.connect()
    assert c.status is ConnectionStatus.DISCONNECTED
    assert c.closed


async def test_connect_timeout_while_retrying() -> None:
    srv = FakeServer()
    await srv.start()
    url = srv.url
    await srv.stop()
    c = make_client(url, connect_timeout=0.3)
    with pytest.raises(ZocketConnectionError, match=r"within 0\.3s"):
        await c.connect()
    assert c.closed
    assert c.close_reason is not None and "within 0.3s" in c.close_reason


async def test_http_refusal_is_not_retried(server: FakeServer) -> None:
    server.reject_status = 403
    c = make_client(server.url, connect_timeout=5.0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(ZocketConnectionError, match="403"):
        await c.connect()
    assert loop.time() - started < 1.0
    assert server.connections == []


async def test_client_cannot_be_reused_after_close(server: FakeServer) -> None:
    c = make_client(server.url)
    await c.connect()
    await c.close()
    with pytest.raises(ZocketConnectionError):
        await c.connect()


async def test_backoff_is_full_jitter_and_capped() -> None:
    backoff = Backoff(min_delay=0.5, max_delay=4.0)
    rng = random.Random(7)
    for attempt, cap in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (10, 4.0), (500, 4.0)]:
        samples = [backoff.delay(attempt, rng) for _ in range(200)]
        assert all(0.0 <= s <= cap for s in samples)
        assert max(samples) > cap * 0.8  # spread over the whole range...
        assert min(samples) < cap * 0.2  # ...including near zero


# ---------------------------------------------------------------------------
# RPC
# ---------------------------------------------------------------------------


async def test_call_forms(server: FakeServer, client: ZocketClient) -> None:
    counter = client.actor("counter", "main")
    assert client.actor("counter", "main") is counter
    assert await counter.call("add", amount=5) == 5
    assert await counter.call("add", {"amount": 2}) == 7
    assert await counter.add(amount=3) == 10
    assert await counter.increment() == 11
    rpc = [m for m in server.drain() if m["type"] == "rpc"]
    assert [m["method"] for m in rpc] == ["add", "add", "add", "increment"]
    assert len({m["key"] for m in rpc}) == 4  # a random key per call (docs/protocol.md, "Keyed calls")
    assert all(len(m["key"]) == 22 for m in rpc)
    assert rpc[0] == {
        "type": "rpc",
        "id": rpc[0]["id"],
        "key": rpc[0]["key"],
        "actor": "counter",
        "actorId": "main",
        "method": "add",
        "input": {"amount": 5},
    }
    assert "input" not in rpc[3]  # no input at all, as the browser client sends
    assert len({m["id"] for m in rpc}) == 4


async def test_call_input_variants(client: ZocketClient) -> None:
    counter = client.actor("counter", "main")
    assert await counter.echo() == {"has_input": False, "input": None}
    assert await counter.echo(None) == {"has_input": True, "input": None}
    assert await counter.echo([1, "a"]) == {"has_input": True, "input": [1, "a"]}

    class Amount(BaseModel):
        amount: int

    assert await counter.echo(Amount(amount=4)) == {
        "has_input": True,
        "input": {"amount": 4},
    }
    # `timeout` is the client's; a field of that name goes in a dict.
    assert await counter.call("echo", {"timeout": 1}, timeout=1.0) == {
        "has_input": True,
        "input": {"timeout": 1},
    }
    with pytest.raises(TypeError):
        await counter.call("echo", {"a": 1}, b=2)
    with pytest.raises(TypeError):
        await counter.echo(object())


async def test_call_error_carries_code_and_details(client: ZocketClient) -> None:
    counter = client.actor("counter", "main")
    with pytest.raises(ZocketRpcError) as info:
        await counter.add(amount="x")
    err = info.value
    assert (err.code, err.message, err.details, err.method) == (
        "invalid_input",
        "Invalid input for add",
        [{"loc": ["amount"]}],
        "add",
    )
    assert "invalid_input" in str(err)
    with pytest.raises(ZocketRpcError) as info:
        await counter.nope()
    assert info.value.code == "unknown_method"
    assert await counter.increment() == 1  # the connection is fine


async def test_call_timeout(client: ZocketClient) -> None:
    counter = client.actor("counter", "main")
    with pytest.raises(ZocketRpcTimeout) as info:
        await counter.call("slow", timeout=0.1)
    assert info.value.code == "timeout"
    assert isinstance(info.value, TimeoutError)
    assert await counter.increment() == 1  # a late answer would be ignored


async def test_unavailable_is_retried_with_the_same_key(server: FakeServer, client: ZocketClient) -> None:
    assert await client.actor("counter", "main").call("flaky") == 3
    assert len(server.flaky_attempts) == 3
    assert len(set(server.flaky_attempts)) == 1


async def test_other_errors_are_not_retried(server: FakeServer, client: ZocketClient) -> None:
    with pytest.raises(ZocketRpcError) as info:
        await client.actor("counter", "main").call("add", amount="x")
    assert info.value.code == "invalid_input"
    assert [m["method"] for m in server.drain() if m["type"] == "rpc"] == ["add"]


async def test_unavailable_until_the_timeout_raises_timeout(server: FakeServer, client: ZocketClient) -> None:
    with pytest.raises(ZocketRpcTimeout, match="unavailable"):
        await client.actor("counter", "main").call("always_unavailable", timeout=0.3)


async def test_call_before_connect_fails(server: FakeServer) -> None:
    c = make_client(server.url)
    with pytest.raises(ZocketRpcDisconnected) as info:
        await c.actor("counter", "main").increment()
    assert info.value.code == "disconnected"


async def test_actor_accepts_a_class_with_a_name(client: ZocketClient) -> None:
    class Counter:  # stands in for a server Actor subclass
        name = "counter"

    handle = client.actor(Counter, "main")
    assert handle is client.actor("counter", "main")
    assert (handle.name, handle.id) == ("counter", "main")
    assert await handle.increment() == 1
    with pytest.raises(TypeError):
        client.actor(object, "main")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        client.actor("counter", 1)  # type: ignore[arg-type]


async def test_private_attributes_are_not_rpcs(client: ZocketClient) -> None:
    counter = client.actor("counter", "main")
    with pytest.raises(AttributeError):
        counter._secret  # noqa: B018


# ---------------------------------------------------------------------------
# Events
# ---------------------------------------------------------------------------


async def test_event_subscription_is_lazy_and_reference_counted(server: FakeServer, client: ZocketClient) -> None:
    counter = client.actor("counter", "main")
    await roundtrip(client)
    server.drain()

    resets: list[Any] = []
    messages: list[Any] = []
    off_reset = counter.on("reset", resets.append)
    assert await server.expect("event:sub") == {
        "type": "event:sub",
        "actor": "counter",
        "actorId": "main",
    }
    off_message = counter.on("newMessage", messages.append)
    off_twice = counter.on("reset", resets.append)

    await counter.reset()
    await counter.say({"text": "hi"})
    assert resets == [{"by": "client-1"}, {"by": "client-1"}]
    assert messages == [{"text": "hi"}]
    assert [m["type"] for m in server.drain()] == ["rpc", "rpc"]  # one event:sub only

    off_reset()
    off_reset()  # idempotent
    off_twice()
    await counter.reset()
    assert len(resets) == 2
    assert [m["type"] for m in server.drain()] == ["rpc"]  # newMessage still listened
    off_message()
    assert await server.expect("event:unsub") == {
        "type": "event:unsub",
        "actor": "counter",
        "actorId": "main",
    }


async def test_async_and_failing_event_callbacks(client: ZocketClient, caplog: pytest.LogCaptureFixture) -> None:
    counter = client.actor("counter", "main")
    got = asyncio.Event()

    async def on_async(payload: Any) -> None:
        await asyncio.sleep(0)
        got.set()

    def on_broken(payload: Any) -> None:
        raise RuntimeError("user bug")

    counter.on("reset", on_broken)
    counter.on("reset", on_async)
    with caplog.at_level(logging.ERROR, logger=CLIENT_LOGGER):
        await counter.reset()
        await asyncio.wait_for(got.wait(), 2)
    assert "user bug" in caplog.text
    assert await counter.increment() == 1


async def test_event_stream(server: FakeServer, client: ZocketClient) -> None:
    counter = client.actor("counter", "main")
    stream = counter.events("newMessage")
    await server.expect("event:sub")  # subscribed before iterating: nothing is lost
    for text in ("a", "b", "c"):
        await counter.say({"text": text})
    received = []
    async with asyncio.timeout(2):
        async for payload in stream:
            received.append(payload["text"])
            if len(received) == 3:
                break
    assert received == ["a", "b", "c"]
    del stream  # leaving the loop and dropping the stream unsubscribes
    assert (await server.expect("event:unsub"))["actor"] == "counter"


async def test_event_stream_context_manager_and_overflow(
    server: FakeServer, client: ZocketClient, caplog: pytest.LogCaptureFixture
) -> None:
    counter = client.actor("counter", "main")
    with caplog.at_level(logging.WARNING, logger=CLIENT_LOGGER):
        async with counter.events("newMessage", max_queue=2) as stream:
            for text in ("a", "b", "c"):
                await counter.say({"text": text})
            assert [await anext(stream), await anext(stream)] == [
                {"text": "b"},
                {"text": "c"},
            ]
    assert "dropped 1" in caplog.text
    await server.expect("event:sub")
    await server.expect("event:unsub")


async def test_event_stream_ends_when_client_closes(server: FakeServer) -> None:
    c = make_client(server.url)
    await c.connect()
    stream = c.actor("counter", "main").events("newMessage")

    async def consume() -> list[Any]:
        return [item async for item in stream]

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.05)
    await c.close()
    assert await asyncio.wait_for(task, 2) == []


# ---------------------------------------------------------------------------
# Live state
# ---------------------------------------------------------------------------


async def test_state_snapshot_and_patches(server: FakeServer, client: ZocketClient) -> None:
    counter = client.actor("counter", "main")
    assert counter.state.get() is None
    seen: list[Any] = []
    unsubscribe = counter.state.subscribe(seen.append)
    assert await server.expect("state:sub") == {
        "type": "state:sub",
        "actor": "counter",
        "actorId": "main",
    }
    await wait_until(lambda: counter.state.get() is not None)
    assert (counter.state.get(), counter.state.version) == ({"count": 0}, 0)

    await counter.add(amount=5)
    await counter.increment()
    assert (counter.state.get(), counter.state.version) == ({"count": 6}, 2)
    assert seen == [{"count": 0}, {"count": 5}, {"count": 6}]

    # A late subscriber gets the known state at once, without a new state:sub.
    late: list[Any] = []
    unsubscribe_late = counter.state.subscribe(late.append)
    assert late == [{"count": 6}]
    unsubscribe()
    await roundtrip(client)
    assert [m["type"] for m in server.drain()] == ["rpc", "rpc", "rpc"]
    unsubscribe_late()
    await server.expect("state:unsub")
    assert counter.state.get() is None  # nobody keeps it current any more


async def test_version_gap_resyncs(server: FakeServer, client: ZocketClient) -> None:
    counter = client.actor("counter", "main")
    counter.state.subscribe()
    assert "resync" not in await server.expect("state:sub")  # a first subscription is plain
    await counter.increment()
    assert counter.state.version == 1

    # The server "loses" version 2: the client must not apply version 3.
    server.count, server.version = 10, 3
    await server.broadcast(server.patch([{"op": "replace", "path": "/count", "value": 10}]))
    resync = await server.expect("state:sub")
    # A held subscription asked again: `resync` gets a snapshot even where the server sees no gap.
    assert (resync["actor"], resync.get("resync")) == ("counter", True)
    # The fake answered the resync with a snapshot of version 3.
    await wait_until(lambda: counter.state.version == 3)
    assert counter.state.get() == {"count": 10}
    await counter.increment()
    assert (counter.state.get(), counter.state.version) == ({"count": 11}, 4)


async def test_a_coalesced_patch_applies_from_its_base_and_one_from_elsewhere_resyncs(
    server: FakeServer, client: ZocketClient
) -> None:
    counter = client.actor("counter", "main")
    counter.state.subscribe()
    await server.expect("state:sub")
    await counter.increment()
    assert counter.state.version == 1
    # Versions 2..4 in one frame ("from": 1, the version its ops apply to).
    server.count, server.version = 4, 4
    ops = [{"op": "replace", "path": "/count", "value": n} for n in (2, 3, 4)]
    await server.broadcast({**server.patch(ops), "from": 1})
    await wait_until(lambda: counter.state.version == 4)
    assert counter.state.get() == {"count": 4}
    # One whose base is not the copy's version: the copy is stale, resync.
    server.count, server.version = 9, 9
    await server.broadcast({**server.patch([{"op": "replace", "path": "/count", "value": 9}]), "from": 6})
    await server.expect("state:sub")
    await wait_until(lambda: counter.state.version == 9)
    assert counter.state.get() == {"count": 9}


async def test_old_or_repeated_version_resyncs(server: FakeServer, client: ZocketClient) -> None:
    counter = client.actor("counter", "main")
    counter.state.subscribe()
    await server.expect("state:sub")
    await counter.increment()
    await server.expect("rpc")
    # A failover restarted the instance at version 1: anything but last+1 resyncs.
    await server.broadcast(server.patch([{"op": "replace", "path": "/count", "value": 99}], version=1))
    await server.expect("state:sub")
    await wait_until(lambda: counter.state.get() is not None)
    assert counter.state.get() == {"count": 1}


async def test_gap_drops_state_until_snapshot(server: FakeServer, client: ZocketClient) -> None:
    counter = client.actor("counter", "main")
    counter.state.subscribe()
    await server.expect("state:sub")
    await wait_until(lambda: counter.state.version == 0)
    # Pretend the snapshot answer is slow: send the gap, then more patches.
    original = server._respond

    async def no_snapshot(ws: ServerConnection, msg: dict[str, Any]) -> None:
        if msg["type"] != "state:sub":
            await original(ws, msg)

    server._respond = no_snapshot  # type: ignore[method-assign]
    await server.broadcast(server.patch([{"op": "replace", "path": "/count", "value": 5}], version=5))
    await server.expect("state:sub")
    assert counter.state.get() is None and counter.state.version is None
    await server.broadcast(server.patch([{"op": "replace", "path": "/count", "value": 6}], version=6))
    await roundtrip(client)
    assert counter.state.get() is None  # patches are ignored until a snapshot
    assert [m["type"] for m in server.drain()] == ["rpc"]  # and no second state:sub
    await server.broadcast(server.snapshot(state={"count": 6}, version=6))
    await wait_until(lambda: counter.state.version == 6)
    assert counter.state.get() == {"count": 6}


async def test_epochs_keep_one_incarnation_in_the_copy(server: FakeServer, client: ZocketClient) -> None:
    counter = client.actor("counter", "main")
    counter.state.subscribe()
    await server.expect("state:sub")
    await server.broadcast(server.snapshot(state={"count": 5}, version=5, epoch=100))
    await wait_until(lambda: counter.state.version == 5)

    def patch(count: int, version: int, epoch: int) -> dict[str, Any]:
        return {**server.patch([{"op": "replace", "path": "/count", "value": count}], version=version), "epoch": epoch}

    await server.broadcast(patch(99, 6, 50))  # a straggler of an older incarnation: ignored
    await server.broadcast(server.snapshot(state={"count": 3}, version=3, epoch=100))  # older version: ignored
    await server.broadcast(server.snapshot(state={"count": 9}, version=9, epoch=40))  # older epoch: ignored
    await roundtrip(client)
    assert (counter.state.get(), counter.state.version) == ({"count": 5}, 5)
    assert [m["type"] for m in server.drain()] == ["rpc"]  # no resync for stragglers

    await server.broadcast(patch(1, 1, 200))  # a newer incarnation: the copy is stale
    assert (await server.expect("state:sub"))["resync"] is True
    await server.broadcast(server.snapshot(state={"count": 0}, version=0, epoch=200))
    await wait_until(lambda: counter.state.get() == {"count": 0})
    await server.broadcast(patch(1, 1, 200))
    await wait_until(lambda: counter.state.get() == {"count": 1})


async def test_unsolicited_snapshot_replaces_state(server: FakeServer, client: ZocketClient) -> None:
    counter = client.actor("counter", "main")
    seen: list[Any] = []
    counter.state.subscribe(seen.append)
    await server.expect("state:sub")
    await server.broadcast(server.snapshot(state={"count": 42}, version=17))
    await wait_until(lambda: counter.state.version == 17)
    assert counter.state.get() == {"count": 42}
    await server.broadcast(server.patch([{"op": "add", "path": "/extra", "value": [1]}], version=18))
    await wait_until(lambda: counter.state.version == 18)
    assert counter.state.get() == {"count": 42, "extra": [1]}
    assert seen[-2:] == [{"count": 42}, {"count": 42, "extra": [1]}]
    # Returned states are never mutated in place by later patches.
    assert seen[-2] == {"count": 42}


@pytest.mark.parametrize(
    "ops",
    [
        [{"op": "add", "path": "/__proto__/polluted", "value": True}],
        [{"op": "replace", "path": "/constructor", "value": 1}],
        [{"op": "copy", "from": "/prototype", "path": "/x"}],
        [{"op": "remove", "path": "/missing"}],
        [{"op": "test", "path": "/count", "value": -1}],
        [{"op": "frobnicate", "path": "/count"}],
        [{"op": "replace", "path": "count", "value": 1}],
        [{"op": "replace", "path": 5, "value": 1}],
        ["not an op"],
        {"op": "replace", "path": "/count", "value": 1},
    ],
    ids=lambda ops: json.dumps(ops)[:40],
)
async def test_bad_or_unsafe_patch_resyncs(server: FakeServer, client: ZocketClient, ops: Any) -> None:
    counter = client.actor("counter", "main")
    counter.state.subscribe()
    await server.expect("state:sub")
    await wait_until(lambda: counter.state.version == 0)
    server.version = 1  # the bad patch is in sequence: only its content is wrong
    await server.broadcast(server.patch(ops, version=1))
    assert (await server.expect("state:sub"))["resync"] is True  # nothing the server could see: it must ask
    await wait_until(lambda: counter.state.version == 1)
    assert counter.state.get() == {"count": 0}
    assert "__proto__" not in json.dumps(counter.state.get())


async def test_replace_keeps_the_key_order(server: FakeServer, client: ZocketClient) -> None:
    counter = client.actor("counter", "main")
    counter.state.subscribe()
    await server.expect("state:sub")
    await wait_until(lambda: counter.state.version == 0)
    adds = [{"op": "add", "path": f"/{pet}", "value": 0} for pet in ("cat", "dog", "fish")]
    await server.broadcast(server.patch(adds, version=1))
    await server.broadcast(server.patch([{"op": "replace", "path": "/dog", "value": 1}], version=2))
    await wait_until(lambda: counter.state.version == 2)
    # as a fresh snapshot would have it: the replaced member stays in its place
    assert json.dumps(counter.state.get()) == '{"count": 0, "cat": 0, "dog": 1, "fish": 0}'


async def test_unversioned_server_applies_patches_in_order(server: FakeServer, client: ZocketClient) -> None:
    server.versioned = False  # e.g. Zocket's own TypeScript server
    counter = client.actor("counter", "main")
    counter.state.subscribe()
    await server.expect("state:sub")
    await counter.add(amount=2)
    await counter.add(amount=3)
    assert counter.state.get() == {"count": 5}
    assert counter.state.version is None


async def test_wait_for(server: FakeServer, client: ZocketClient) -> None:
    counter = client.actor("counter", "main")

    async def bump() -> None:
        for _ in range(3):
            await counter.increment()

    bumping = asyncio.create_task(bump())
    state = await counter.state.wait_for(lambda s: s["count"] >= 3, timeout=2)
    await bumping
    assert state == {"count": 3}
    assert await counter.state.wait_for(timeout=2) == {"count": 3}  # any state
    await roundtrip(client)
    kinds = [m["type"] for m in server.drain()]
    assert kinds.count("state:sub") == 2 and kinds.count("state:unsub") == 2
    assert not counter.state.subscribed

    with pytest.raises(ZocketTimeoutError):
        await counter.state.wait_for(lambda s: s["count"] > 100, timeout=0.1)
    with pytest.raises(ZeroDivisionError):
        await counter.state.wait_for(lambda s: 1 / 0, timeout=1)


async def test_refused_state_subscription_fails_wait_for(server: FakeServer, client: ZocketClient) -> None:
    ghost = client.actor("ghost", "1")
    errors: list[ZocketRpcError] = []
    client.on_error(errors.append)
    waiting = asyncio.create_task(ghost.state.wait_for(timeout=2))
    await server.expect("state:sub")
    await server.send_all(
        {
            "type": "error",
            "code": "unknown_actor",
            "error": "No actor named ghost",
            "ref": {"type": "state:sub", "actor": "ghost", "actorId": "1"},
        }
    )
    with pytest.raises(ZocketRpcError) as info:
        await waiting
    assert info.value.code == "unknown_actor"
    assert [e.code for e in errors] == ["unknown_actor"]


@pytest.mark.parametrize("code", ["forbidden", "unavailable", "overloaded"])
async def test_refused_event_subscription_raises_in_the_event_stream(
    server: FakeServer, client: ZocketClient, code: str
) -> None:
    counter = client.actor("counter", "main")
    errors: list[ZocketRpcError] = []
    client.on_error(errors.append)
    stream, other = counter.events("newMessage"), counter.events("reset")
    await server.expect("event:sub")
    await server.send_all({"type": "event", "actor": "counter", "actorId": "main", "event": "newMessage", "payload": 1})
    ref = {"type": "event:sub", "actor": "counter", "actorId": "main"}
    await server.send_all({"type": "error", "code": code, "error": "refused", "ref": ref})
    async with asyncio.timeout(2):
        assert await anext(stream) == 1  # what came before the refusal is read first
        with pytest.raises(ZocketRpcError) as info:
            await anext(stream)
        assert (info.value.code, info.value.ref) == (code, ref)
        with pytest.raises(StopAsyncIteration):  # then it has ended
            await anext(stream)
        with pytest.raises(ZocketRpcError):  # every stream of the instance: they share the subscription
            async for _ in other:
                pass
    assert [e.code for e in errors] == [code]  # and the client's error listeners hear it once
    assert (await server.expect("event:unsub"))["actor"] == "counter"


async def test_a_refusal_of_another_instance_leaves_the_stream_alone(server: FakeServer, client: ZocketClient) -> None:
    stream = client.actor("counter", "main").events("newMessage")
    await server.expect("event:sub")
    ref = {"type": "event:sub", "actor": "counter", "actorId": "other"}
    await server.send_all({"type": "error", "code": "forbidden", "error": "no", "ref": ref})
    state_ref = {"type": "state:sub", "actor": "counter", "actorId": "main"}
    await server.send_all({"type": "error", "code": "too_large", "error": "big", "ref": state_ref})
    await server.send_all({"type": "event", "actor": "counter", "actorId": "main", "event": "newMessage", "payload": 2})
    async with asyncio.timeout(2):
        assert await anext(stream) == 2
    await stream.aclose()


async def test_error_frame_with_rpc_ref_fails_the_call(server: FakeServer, client: ZocketClient) -> None:
    counter = client.actor("counter", "main")
    call = asyncio.create_task(counter.call("slow"))
    rpc = await server.expect("rpc")
    await server.send_all(
        {
            "type": "error",
            "code": "overloaded",
            "error": "Too many calls",
            "ref": {"type": "rpc", "id": rpc["id"]},
        }
    )
    with pytest.raises(ZocketRpcError) as info:
        await call
    assert (info.value.code, info.value.method) == ("overloaded", "slow")


# ---------------------------------------------------------------------------
# Garbage in
# ---------------------------------------------------------------------------


async def test_invalid_frames_are_logged_and_ignored(
    server: FakeServer, client: ZocketClient, caplog: pytest.LogCaptureFixture
) -> None:
    counter = client.actor("counter", "main")
    messages: list[Any] = []
    counter.on("newMessage", messages.append)
    counter.state.subscribe()
    await server.expect("event:sub")
    await server.expect("state:sub")
    await wait_until(lambda: counter.state.version == 0)
    garbage: list[Any] = [
        "not json",
        "[" * 100_000,  # too deep for json: RecursionError, not ValueError
        "[1, 2]",
        "null",
        '"text"',
        "{}",
        '{"type": 5}',
        b"\x00\x01binary",
        {"type": "who-knows"},
        {"type": "rpc:result", "id": 7, "result": 1},
        {"type": "rpc:result", "id": "never-sent", "result": 1},
        {"type": "event", "actor": "counter", "actorId": "main"},
        {
            "type": "event",
            "actor": ["counter"],
            "actorId": "main",
            "event": "newMessage",
        },
        {"type": "state:snapshot", "actor": "counter", "actorId": "main"},
        {
            "type": "state:snapshot",
            "actor": "counter",
            "actorId": "main",
            "state": {},
            "version": "1",
        },
        {"type": "state:patch", "actor": None, "actorId": "main", "patches": []},
        {"type": "welcome"},
        {"type": "pong", "id": {"x": 1}},
        {"type": "error"},
        {
            "type": "event",
            "actor": "other",
            "actorId": "main",
            "event": "newMessage",
            "payload": 1,
        },
    ]
    with caplog.at_level(logging.WARNING, logger=CLIENT_LOGGER):
        for frame in garbage:
            await server.send_all(frame)
        await counter.say({"text": "still alive"})
    assert messages == [{"text": "still alive"}]
    assert counter.state.get() == {"count": 0} and counter.state.version == 0
    assert client.status is ConnectionStatus.CONNECTED
    assert client.client_id == "client-1"
    warnings = [r for r in caplog.records if r.name == CLIENT_LOGGER]
    assert len(warnings) >= 12
    assert any("not JSON" in r.getMessage() for r in warnings)
    assert any("binary" in r.getMessage() for r in warnings)
    assert any("unknown type" in r.getMessage() for r in warnings)
    assert all(r.levelno < logging.ERROR for r in warnings)  # no handler crashed


# ---------------------------------------------------------------------------
# Heartbeat and reconnection
# ---------------------------------------------------------------------------


async def test_heartbeat_keeps_a_healthy_connection(server: FakeServer) -> None:
    async with make_client(server.url, heartbeat_interval=0.05, heartbeat_timeout=0.5) as c:
        ping = await server.expect("ping")
        assert isinstance(ping.get("id"), str)
        await asyncio.sleep(0.3)
        assert c.status is ConnectionStatus.CONNECTED
        assert len(server.connections) == 1


async def test_silent_server_is_dropped_by_heartbeat(server: FakeServer) -> None:
    server.answer_pings = False
    statuses: list[str] = []
    c = make_client(server.url, heartbeat_interval=0.05, heartbeat_timeout=0.1)
    c.on_status(statuses.append)
    async with c:
        call = asyncio.create_task(c.actor("counter", "main").call("slow", timeout=1))
        await wait_until(lambda: len(server.connections) >= 2, timeout=3)
        with pytest.raises(ZocketRpcTimeout, match="heartbeat"):  # sent again on the new socket: no answer
            await asyncio.wait_for(call, 3)
        server.answer_pings = True
        await wait_until(lambda: c.status is ConnectionStatus.CONNECTED)
        assert c.client_id != "client-1"
    assert statuses[:4] == ["connecting", "connected", "reconnecting", "connected"]


async def test_reconnect_restores_subscriptions_and_fails_pending_calls(
    server: FakeServer,
) -> None:
    statuses: list[str] = []
    c = make_client(server.url)
    c.on_status(statuses.append)
    async with c:
        counter = c.actor("counter", "main")
        resets: list[Any] = []
        counter.on("reset", resets.append)
        counter.state.subscribe()
        await counter.add(amount=4)
        await wait_until(lambda: counter.state.get() == {"count": 4})
        server.drain()
        pending = asyncio.create_task(counter.call("slow", timeout=1.5))
        first = await server.expect("rpc")

        await server.restart(downtime=0.1)
        # Calls made while reconnecting wait for the new socket; the call in flight is sent again.
        assert await counter.increment() == 5
        assert c.client_id == "client-2"
        with pytest.raises(ZocketRpcTimeout) as info:
            await pending
        assert "disconnected" in str(info.value)
        frames = server.drain()
        assert {"event:sub", "state:sub"} <= {m["type"] for m in frames}
        # A new socket holds nothing: its subscription is a first one, sent plainly.
        assert [m.get("resync") for m in frames if m["type"] == "state:sub"] == [None]
        again = [m for m in frames if m["type"] == "rpc" and m["method"] == "slow"]
        assert [m["key"] for m in again] == [first["key"]]  # the same key: the server runs it once
        await wait_until(lambda: counter.state.get() == {"count": 5})
        await counter.reset()
        assert resets == [{"by": "client-2"}]
    assert statuses == [
        "connecting",
        "connected",
        "reconnecting",
        "connected",
        "disconnected",
    ]


async def test_state_is_dropped_while_disconnected(server: FakeServer) -> None:
    async with make_client(server.url, backoff_min=0.3, backoff_max=0.3) as c:
        counter = c.actor("counter", "main")
        counter.state.subscribe()
        await wait_until(lambda: counter.state.version == 0)
        await server.restart()
        await wait_until(lambda: c.status is ConnectionStatus.RECONNECTING)
        assert counter.state.get() is None
        await wait_until(lambda: counter.state.get() == {"count": 0})


async def test_a_client_bug_costs_the_socket_not_the_client(
    server: FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    async with make_client(server.url) as c:
        dispatch = c._dispatch

        def buggy(conn: Any, raw: str | bytes) -> None:
            if raw == '{"type":"boom"}':
                raise RuntimeError("bug in the client")
            dispatch(conn, raw)

        c._dispatch = buggy  # type: ignore[method-assign]
        with caplog.at_level(logging.ERROR, logger=CLIENT_LOGGER):
            await server.send_all('{"type":"boom"}')
            await wait_until(lambda: len(server.connections) == 2)
        assert "bug in the client" in caplog.text
        assert await c.actor("counter", "main").increment() == 1
        assert c.client_id == "client-2"


async def test_gives_up_after_max_attempts(server: FakeServer) -> None:
    c = make_client(server.url, max_attempts=3)
    await c.connect()
    counter = c.actor("counter", "main")
    stream = counter.events("newMessage")
    await server.stop()
    await wait_until(lambda: c.closed, timeout=3)
    assert c.status is ConnectionStatus.DISCONNECTED
    with pytest.raises(ZocketRpcDisconnected, match="3 attempt"):
        await counter.increment()
    with pytest.raises(ZocketConnectionError):
        await counter.state.wait_for(timeout=1)
    assert [item async for item in stream] == []
    await c.close()


async def test_a_flapping_server_counts_as_failed_attempts(server: FakeServer) -> None:
    server.close_after_welcome = True
    c = make_client(server.url, max_attempts=3)
    await c.connect()  # the welcome arrived: connected, if briefly
    await wait_until(lambda: c.closed, timeout=3)
    assert len(server.connections) == 3
    assert c.close_reason == "connection dropped 3 time(s) in a row"


async def test_no_reconnect_when_disabled(server: FakeServer) -> None:
    c = make_client(server.url, reconnect=False)
    await c.connect()
    await server.stop()
    await wait_until(lambda: c.closed)
    assert c.status is ConnectionStatus.DISCONNECTED
    assert c.close_reason == "connection lost"
    await c.close()


@pytest.mark.parametrize(("close_code", "code"), [(4401, "unauthenticated"), (4403, "forbidden")])
async def test_a_refused_connection_is_final(server: FakeServer, close_code: int, code: str) -> None:
    server.refusal = (close_code, code, "token expired")
    statuses: list[str] = []
    errors: list[ZocketRpcError] = []
    c = make_client(server.url, connect_timeout=5.0)
    c.on_status(statuses.append)
    c.on_error(errors.append)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(ZocketRefused) as info:
        await c.connect()
    assert loop.time() - started < 4.0  # at once: not retried until the 5 s connect timeout
    assert (info.value.code, info.value.close_code) == (code, close_code)
    assert "token expired" in info.value.message
    assert isinstance(info.value, ZocketConnectionError)
    assert len(server.connections) == 1
    assert c.closed and c.status is ConnectionStatus.DISCONNECTED
    assert statuses == ["connecting", "disconnected"]
    assert c.close_reason == f"the server refused the connection (close code {close_code}): token expired"
    assert c.refusal is not None and c.refusal.code == code
    assert [e.code for e in errors] == [code]  # the error frame reaches on_error, as after a welcome
    with pytest.raises(ZocketRefused) as info:
        await c.actor("counter", "main").increment()
    assert (info.value.code, info.value.method) == (code, "increment")
    await asyncio.sleep(0.1)
    assert len(server.connections) == 1


async def test_a_refused_reconnection_is_final(server: FakeServer) -> None:
    """The token expired while the socket was down: the reconnection is refused, and that is the end."""
    statuses: list[str] = []
    c = make_client(server.url, rpc_timeout=5.0)
    c.on_status(statuses.append)
    await c.connect()
    counter = c.actor("counter", "main")
    counter.state.subscribe()
    await wait_until(lambda: counter.state.version == 0)
    server.refusal = (4401, "unauthenticated", "token expired")
    await server.restart(downtime=0.2)
    await wait_until(lambda: c.status is ConnectionStatus.RECONNECTING)
    waiting = asyncio.create_task(counter.increment())  # waits for a socket that never comes
    with pytest.raises(ZocketRefused) as info:
        await asyncio.wait_for(waiting, 2.0)
    assert info.value.code == "unauthenticated"
    assert info.value.method == "increment"
    assert c.closed and c.status is ConnectionStatus.DISCONNECTED
    assert "close code 4401" in (c.close_reason or "")
    assert counter.state.get() is None
    with pytest.raises(ZocketConnectionError):
        await counter.state.wait_for(timeout=1)
    assert statuses == ["connecting", "connected", "reconnecting", "disconnected"]
    await asyncio.sleep(0.1)
    assert len(server.connections) == 2
    await c.close()


async def test_4401_on_an_open_connection_fails_pending_calls_as_unauthenticated(server: FakeServer) -> None:
    c = make_client(server.url)
    await c.connect()
    pending = asyncio.create_task(c.actor("counter", "main").call("slow"))
    await server.expect("rpc")
    await server.refuse(server.connections[0], 4401, "unauthenticated", "session ended")
    with pytest.raises(ZocketRefused) as info:
        await pending
    assert (info.value.code, info.value.method, info.value.close_code) == ("unauthenticated", "slow", 4401)
    assert "session ended" in info.value.message
    await wait_until(lambda: c.closed)
    assert c.status is ConnectionStatus.DISCONNECTED
    await asyncio.sleep(0.1)
    assert len(server.connections) == 1


async def test_other_application_close_codes_are_retried(server: FakeServer) -> None:
    server.refusal = (4400, "bad_request", "not a refusal")
    c = make_client(server.url, max_attempts=2)
    with pytest.raises(ZocketConnectionError) as info:
        await c.connect()
    assert not isinstance(info.value, ZocketRefused)
    assert c.refusal is None
    assert len(server.connections) == 2


async def test_close_fails_pending_calls(server: FakeServer) -> None:
    c = make_client(server.url)
    await c.connect()
    pending = asyncio.create_task(c.actor("counter", "main").call("slow"))
    await server.expect("rpc")
    await c.close()
    with pytest.raises(ZocketRpcDisconnected, match="client closed"):
        await pending


# ---------------------------------------------------------------------------
# Packaging
# ---------------------------------------------------------------------------


async def _python(code: str) -> tuple[int, str, str]:
    """Run ``code`` in a fresh interpreter at the repository root, without Django settings."""
    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        cwd=root,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, stdout.decode().strip(), stderr.decode()


async def test_the_client_loads_neither_django_nor_the_server() -> None:
    code = (
        "import sys, zocket_django.client as c; "
        "print(c.ZocketClient.__name__, sorted({m.split('.')[0] for m in sys.modules} & "
        "{'django', 'channels', 'pydantic', 'daphne'}), "
        "sorted(m for m in sys.modules if m.startswith('zocket_django.') and not m.startswith('zocket_django.client')))"
    )
    returncode, stdout, stderr = await _python(code)
    assert returncode == 0, stderr
    assert stdout == "ZocketClient [] []"


async def test_without_websockets_the_client_names_the_extra_to_install() -> None:
    code = "import sys; sys.modules['websockets'] = None; import zocket_django.client"
    returncode, _, stderr = await _python(code)
    assert returncode == 1
    assert 'needs the websockets package: pip install "zocket-django[client]"' in stderr


async def test_the_package_exports_its_public_names_lazily() -> None:
    import zocket_django

    code = (
        "import sys, zocket_django as z; before = 'zocket_django.actor' in sys.modules; "
        "from zocket_django import Actor, hot_actors; "
        "print(before, Actor.__module__, hot_actors is z.hot_actors, sorted(z.__all__) == sorted(z._EXPORTS))"
    )
    returncode, stdout, stderr = await _python(code)
    assert returncode == 0, stderr
    assert stdout == "False zocket_django.actor True True"
    assert set(zocket_django.__all__) <= set(dir(zocket_django))
    with pytest.raises(AttributeError, match="has no attribute 'Nope'"):
        zocket_django.Nope  # noqa: B018
