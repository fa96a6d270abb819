"""A socket's cleanup runs however it ends, and one socket cannot hold up or break the others.

Every way a consumer can end: a normal close, an exception, cancellation (daphne
cancels an application that is still running ``application_close_timeout``
seconds after its socket closed), a frame over ``MAX_FRAME_BYTES``, a peer that
stops reading. Each time the instances it touched forget it (``on_disconnect``
runs), which ``lab.whoami`` shows: ``clients`` is what the instance knows.
The same paths against a real daphne: tests/test_robust_live.py.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from zocket_django import hot_actors
from zocket_django.consumer import ZocketConsumer
from zocket_django.node import current_node
from zocket_django.testing import ZocketCommunicator, default_application


async def known_clients(observer: ZocketCommunicator, actor_id: str = "room") -> list[str]:
    return (await observer.call("lab", actor_id, "whoami"))["clients"]


async def until(predicate, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(0.01)


async def joined(
    connect, actor_id: str = "room", *, own: bool = False
) -> tuple[ZocketCommunicator, ZocketCommunicator]:
    """An observer and a client both known to ``lab/<actor_id>`` (``own``: not closed by the fixture)."""
    observer = await connect()
    if own:
        client = ZocketCommunicator()
        assert (await client.connect())[0]
    else:
        client = await connect()
    await client.subscribe_state("lab", actor_id)
    assert sorted(await known_clients(observer, actor_id)) == sorted([observer.client_id, client.client_id])
    return observer, client


def sending_through(wrap) -> object:
    """The project's ASGI application, with each socket's ``send`` replaced by ``wrap(send)``."""
    inner = default_application()

    async def application(scope, receive, send):
        await inner(scope, receive, wrap(send))

    return application


async def test_a_normal_close_parts(connect):
    observer, client = await joined(connect)
    await client.disconnect()
    await until(lambda: _is(known_clients(observer), [observer.client_id]))


async def cancel(client: ZocketCommunicator) -> None:
    """What daphne does to an application still running ``application_close_timeout`` s after its socket closed."""
    client.future.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await client.future


async def test_a_cancelled_consumer_parts(connect):
    observer, client = await joined(connect, own=True)
    await cancel(client)
    await until(lambda: _is(known_clients(observer), [observer.client_id]))
    assert client.client_id not in current_node().fanout.sockets


async def test_a_cancelled_consumer_parts_while_it_is_slowed_down(connect, settings):
    settings.ZOCKET = {"MESSAGE_RATE": 1, "MESSAGE_BURST": 1}
    observer, client = await joined(connect, own=True)
    for _ in range(5):
        await client.send_json_to({"type": "ping"})  # waits for its budget: the consumer is "behind"
    await asyncio.sleep(0.1)
    await cancel(client)
    await until(lambda: _is(known_clients(observer), [observer.client_id]), timeout=10)


async def test_a_consumer_that_raises_parts(connect, monkeypatch):
    observer, client = await joined(connect)
    original = ZocketConsumer._frame

    async def exploding(self, message):
        if "boom" in (message.get("text") or ""):
            raise RuntimeError("boom")
        await original(self, message)

    monkeypatch.setattr(ZocketConsumer, "_frame", exploding)
    await client.send_to(text_data='{"type": "boom"}')
    await until(lambda: _is(known_clients(observer), [observer.client_id]))
    with pytest.raises(RuntimeError, match="boom"):
        await client.future


async def test_an_error_inside_one_frame_is_answered_and_the_socket_goes_on(connect, monkeypatch):
    client = await connect()

    async def broken(self, message):
        raise RuntimeError("bug")

    monkeypatch.setitem(ZocketConsumer._frame_handlers, "ping", broken)
    await client.send_json_to({"type": "ping"})
    frame = await client.expect("error")
    assert frame == {"type": "error", "code": "handler_error", "error": "the server could not handle this frame"}
    assert await client.call("counter", "c", "increment") == 1


async def test_an_oversized_frame_closes_with_4009_and_parts_at_once(connect, settings):
    settings.ZOCKET = {"MAX_FRAME_BYTES": 1000}
    observer, client = await joined(connect)
    await client.send_to(text_data='{"type":"ping","pad":"' + "x" * 2000 + '"}')
    assert (await client.receive_output())["code"] == 4009
    await until(lambda: _is(known_clients(observer), [observer.client_id]))


async def test_a_subscription_while_the_layer_fails_is_refused_and_can_be_retried(connect, monkeypatch):
    client = await connect()
    node = current_node()
    real = node.layer.group_add

    async def down(*args):
        raise ConnectionError("Redis is down")

    monkeypatch.setattr(node.layer, "group_add", down)
    await client.send_json_to({"type": "state:sub", "actor": "counter", "actorId": "r"})
    frame = await client.expect("error")
    assert frame["code"] == "unavailable"
    assert frame["ref"] == {"type": "state:sub", "actor": "counter", "actorId": "r"}
    assert hot_actors.get("counter", "r") is None  # nothing was asked of the instance
    monkeypatch.setattr(node.layer, "group_add", real)
    assert await client.subscribe_state("counter", "r") == ({"count": 0}, 0)
    assert await client.call("counter", "r", "increment") == 1
    assert (await client.next_patch("counter", "r"))["version"] == 1


async def test_parting_retries_while_the_layer_fails(connect, monkeypatch):
    observer, client = await joined(connect)
    node = current_node()
    real, failures = node.layer.group_discard, []

    async def flaky(*args):
        if not failures:
            failures.append(args)
            raise ConnectionError("Redis is restarting")
        await real(*args)

    monkeypatch.setattr(node.layer, "group_discard", flaky)
    await client.disconnect()
    await until(lambda: _is(known_clients(observer), [observer.client_id]))
    assert failures  # the group could not be left; the instance was told all the same


async def test_a_socket_that_does_not_read_is_closed_and_the_others_do_not_wait(connect, settings):
    settings.ZOCKET = {"MAX_OUTPUT_BYTES": 20_000, "MESSAGE_RATE": None}
    stuck = asyncio.Event()  # never set: this peer reads nothing after its welcome
    frames: list[dict] = []

    def stalled(send):
        async def stalled_send(message):
            if message["type"] == "websocket.send":
                if frames:
                    await stuck.wait()
                frames.append(message)
            await send(message)

        return stalled_send

    slow = ZocketCommunicator(sending_through(stalled))
    assert (await slow.connect())[0]
    try:
        writer = await connect()
        await slow.send_json_to({"type": "state:sub", "actor": "lab", "actorId": "big"})
        await until(lambda: _has_client("big", slow.client_id))
        for n in range(30):  # ~30 KB of patches for the slow socket; every call answered at once
            await writer.call("lab", "big", "add_item", text=f"{n}" * 1000)
        await until(lambda: _lacks_client("big", slow.client_id))
        assert slow.client_id not in current_node().fanout.sockets
    finally:
        slow.future.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await slow.future


async def test_a_subscriber_whose_send_fails_does_not_fail_the_step(connect):
    def broken(send):
        async def failing_send(message):
            if message["type"] == "websocket.send" and "welcome" not in message["text"]:
                raise RuntimeError("socket closing")
            await send(message)

        return failing_send

    dying = ZocketCommunicator(sending_through(broken))
    assert (await dying.connect())[0]
    try:
        await dying.send_json_to({"type": "state:sub", "actor": "counter", "actorId": "p"})
        await until(lambda: _counter_has(dying.client_id))
        reader, caller = await connect(), await connect()
        await reader.subscribe_state("counter", "p")
        assert await caller.call("counter", "p", "increment") == 1  # not handler_error
        assert (await reader.next_patch("counter", "p"))["version"] == 1
    finally:
        await dying.disconnect()


async def _is(awaitable, expected) -> bool:
    return await awaitable == expected


async def _has_client(actor_id: str, client_id: str) -> bool:
    inst = current_node().runtime.instances.get(("lab", actor_id))
    return inst is not None and client_id in inst.clients


async def _lacks_client(actor_id: str, client_id: str) -> bool:
    return not await _has_client(actor_id, client_id)


async def _counter_has(client_id: str) -> bool:
    inst = current_node().runtime.instances.get(("counter", "p"))
    return inst is not None and client_id in inst.clients
