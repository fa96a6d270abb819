"""Subscribing again (docs/protocol.md, "Subscribing again"), through the real ASGI application.

A plain repeated ``state:sub`` of a subscription the socket holds costs no
snapshot unless the state moved since the last one it was sent (a client
that lost a patch resubscribes plainly: Zocket's protocol); ``"resync": true``
always gets one. Neither counts twice against ``MAX_SUBSCRIPTIONS``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.live import LiveClient, Worker, copy_of, single_env
from zocket_django.client import ZocketClient, ZocketRpcError
from zocket_django.fanout import LocalFanout
from zocket_django.messages import STATE, Deliver

SUB = {"type": "state:sub", "actor": "counter", "actorId": "main"}


def snapshots(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [f for f in frames if f["type"] == "state:snapshot"]


async def test_a_plain_repeated_subscription_gets_no_second_snapshot(connect):
    client = await connect()
    await client.send_json_to(SUB)
    first = await client.expect("state:snapshot", actor="counter", actorId="main")
    for _ in range(20):
        await client.send_json_to(SUB)
    await client.ping()
    assert await client.nothing_more() == []
    # The subscription is still in place: patches flow, once.
    assert await client.call("counter", "main", "increment") == 1
    patch = await client.next_patch("counter", "main")
    assert (patch["version"], patch["epoch"]) == (first["version"] + 1, first["epoch"])
    assert [f for f in await client.nothing_more() if f["type"].startswith("state:")] == []


async def test_resync_true_always_gets_a_fresh_snapshot(connect):
    client = await connect()
    await client.send_json_to(SUB)
    first = await client.expect("state:snapshot", actor="counter", actorId="main")
    for _ in range(3):
        await client.send_json_to({**SUB, "resync": True})
        again = await client.expect("state:snapshot", actor="counter", actorId="main")
        assert again == first
    # A first subscription may carry it too (the shipped test helper always sends it).
    other = await connect()
    await other.send_json_to({**SUB, "resync": True})
    assert await other.expect("state:snapshot", actor="counter", actorId="main") == first


async def test_a_client_that_lost_a_patch_gets_a_snapshot_when_it_resubscribes_plainly(connect, monkeypatch):
    """Zocket's rule for a gap: resubscribe. The state moved past its copy, so the repeat is answered."""
    client, writer = await connect(), await connect()
    await client.send_json_to(SUB)
    await client.expect("state:snapshot", actor="counter", actorId="main")
    deliver = LocalFanout.deliver
    lost: list[Deliver] = []

    async def lossy(self: LocalFanout, message: Deliver) -> None:
        if message.kind == STATE and not lost:
            lost.append(message)  # the patch of version 1 never reaches the node's sockets
            return
        await deliver(self, message)

    monkeypatch.setattr(LocalFanout, "deliver", lossy)
    assert await writer.call("counter", "main", "increment") == 1
    assert await writer.call("counter", "main", "increment") == 2
    patch = await client.next_patch("counter", "main")
    assert patch["version"] == 2  # a gap: version 1 is missing
    await client.send_json_to(SUB)
    snapshot = await client.expect("state:snapshot", actor="counter", actorId="main")
    assert (snapshot["state"], snapshot["version"]) == ({"count": 2}, 2)
    # Answered once: the next plain repeat finds nothing new.
    await client.send_json_to(SUB)
    await client.ping()
    assert snapshots(await client.nothing_more()) == []


async def test_a_repeat_after_a_change_is_answered_and_then_not_again(connect):
    client = await connect()
    await client.send_json_to(SUB)
    await client.expect("state:snapshot", actor="counter", actorId="main")
    assert await client.call("counter", "main", "increment") == 1
    await client.next_patch("counter", "main")
    await client.send_json_to(SUB)  # the version moved since its snapshot: answered
    again = await client.expect("state:snapshot", actor="counter", actorId="main")
    assert (again["state"], again["version"]) == ({"count": 1}, 1)
    await client.send_json_to(SUB)
    await client.ping()
    assert snapshots(await client.nothing_more()) == []


async def test_unsubscribing_then_subscribing_is_a_first_subscription(connect):
    client = await connect()
    await client.send_json_to(SUB)
    first = await client.expect("state:snapshot", actor="counter", actorId="main")
    await client.send_json_to({**SUB, "type": "state:unsub"})
    await client.send_json_to(SUB)
    assert await client.expect("state:snapshot", actor="counter", actorId="main") == first


@pytest.mark.parametrize("resync", [False, True])
async def test_repeats_do_not_count_twice_against_max_subscriptions(connect, settings, resync):
    settings.ZOCKET = {"MAX_SUBSCRIPTIONS": 2}
    client = await connect()
    await client.send_json_to(SUB)
    await client.expect("state:snapshot", actor="counter", actorId="main")
    await client.send_json_to({**SUB, "type": "event:sub"})
    for _ in range(5):
        await client.send_json_to({**SUB, "resync": resync})
        await client.send_json_to({**SUB, "type": "event:sub"})
    await client.ping()
    assert [f for f in await client.nothing_more() if f["type"] == "error"] == []
    await client.send_json_to({**SUB, "actorId": "other"})
    refused = await client.expect("error")
    assert (refused["code"], refused["ref"]["actorId"]) == ("overloaded", "other")


async def test_a_refused_subscription_sent_again_is_answered_again(connect, settings):
    """A subscription the owner refused is not held: sending it again, plainly, retries it."""
    settings.ZOCKET = {"MAX_MESSAGE_BYTES": 3000, "MAX_STATE_BYTES": 1500}
    client, late = await connect(), await connect()
    await client.call("hoard", "x", "put", size=100, count=45)  # a 4.6 KB state: over one frame
    sub = {"type": "state:sub", "actor": "hoard", "actorId": "x"}
    for _ in range(2):
        await late.send_json_to(sub)
        error = await late.expect("error")
        assert (error["code"], error["ref"]) == ("too_large", sub)
    await client.call("hoard", "x", "drop", count=35)
    await late.send_json_to(sub)
    snapshot = await late.expect("state:snapshot", actor="hoard", actorId="x")
    assert len(snapshot["state"]["blobs"]) == 10


# -- through a real daphne ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def daphne(tmp_path_factory: pytest.TempPathFactory, migrated_sqlite: Path) -> Iterator[Worker]:
    tmp = tmp_path_factory.mktemp("resync")
    server = Worker(single_env(copy_of(migrated_sqlite, tmp)), tmp, "daphne").start()
    yield server
    server.stop()


@pytest.mark.slow
async def test_repeats_resyncs_and_gaps_through_daphne(daphne: Worker) -> None:
    client, writer = await LiveClient.connect(daphne.url), await LiveClient.connect(daphne.url)
    sub = {"type": "state:sub", "actor": "counter", "actorId": "daphne"}
    try:
        first = await client.subscribe_state("counter", "daphne")
        for _ in range(50):
            await client.send(sub)
        await client.send({"type": "ping", "id": "after-repeats"})
        await client.wait_for(lambda f: f.get("id") == "after-repeats")
        assert len(client.of_type("state:snapshot")) == 1  # fifty repeats, no second snapshot

        await client.send({**sub, "resync": True})
        await client.wait_for(lambda f: f["type"] == "state:snapshot" and f is not first)
        assert client.of_type("state:snapshot")[1] == first  # nothing moved: the same state, asked for

        # The state moves (a client that missed the patch would now be stale): a plain repeat is answered.
        assert await writer.call("counter", "daphne", "increment") == 1
        await client.wait_for(lambda f: f["type"] == "state:patch")
        await client.send(sub)
        fresh = await client.wait_for(lambda f: f["type"] == "state:snapshot" and f.get("version") == 1)
        assert fresh["state"] == {"count": 1}
        await client.send(sub)
        await client.send({"type": "ping", "id": "end"})
        await client.wait_for(lambda f: f.get("id") == "end")
        assert len(client.of_type("state:snapshot")) == 3
    finally:
        await client.close()
        await writer.close()


@pytest.mark.slow
async def test_the_python_client_raises_refused_subscriptions_through_daphne(daphne: Worker) -> None:
    async with ZocketClient(daphne.url, rpc_timeout=10, connect_timeout=10) as client:
        diary = client.actor("private_diary", "alice")  # only alice, logged in, reads it
        stream = diary.events("knocked")
        with pytest.raises(ZocketRpcError) as refused:
            async with asyncio.timeout(10):
                await anext(stream)
        assert refused.value.code == "unauthenticated"
        assert refused.value.ref == {"type": "event:sub", "actor": "private_diary", "actorId": "alice"}
        with pytest.raises(ZocketRpcError) as waited:
            await diary.state.wait_for(timeout=10)
        assert waited.value.code == "unauthenticated"
        assert await diary.knock() == 1  # anyone may knock: the socket is fine
