"""Two daphne workers on one Redis behave as one server (issue: many workers)."""

import asyncio
import itertools

import pytest

from tests.live import LiveClient, Worker, cluster_env, migrate, require_redis

pytestmark = [pytest.mark.redis, pytest.mark.slow]


@pytest.fixture(scope="module", params=["core", "pubsub"])
def pair(request, tmp_path_factory):
    """Two workers on channels-redis: its list-based layer, then its pub/sub layer."""
    redis_url = require_redis()
    tmp = tmp_path_factory.mktemp("pair")
    env = {**cluster_env(tmp, redis_url, LEASE_TTL=2.0), "CHANNEL_LAYER": request.param}
    migrate(env)
    workers = [Worker(env, tmp, "a").start(), Worker(env, tmp, "b").start()]
    yield workers
    for w in workers:
        w.stop()


async def test_a_thousand_increments_from_both_workers_are_serialized(pair):
    a, b = pair
    callers = [await LiveClient.connect(w.url) for w in (a, b) for _ in range(4)]
    watchers = [await LiveClient.connect(w.url) for w in (a, b) for _ in range(2)]
    for w in watchers:
        assert (await w.subscribe_state("counter", "thousand"))["version"] == 0

    async def fire(client, n):
        return [
            await asyncio.gather(*(client.call("counter", "thousand", "increment") for _ in range(25)))
            for _ in range(n)
        ]

    results = await asyncio.gather(*(fire(c, 5) for c in callers))  # 8 clients x 125 calls
    flat = sorted(itertools.chain.from_iterable(itertools.chain.from_iterable(results)))
    assert flat == list(range(1, 1001))  # every result unique: one owner ran them one at a time
    for w in watchers:
        await w.wait_for(lambda f: f.get("type") == "state:patch" and f["version"] == 1000, timeout=30)
        # No gap, no duplicate, on either worker: each patch applies to the version before it
        # (several versions in one when the owner's queue was not empty: "from", coalesced).
        at = 0
        for patch in w.of_type("state:patch", "thousand"):
            assert patch.get("from", patch["version"] - 1) == at
            at = patch["version"]
        assert at == 1000
    for c in callers + watchers:
        await c.close()


async def test_chat_crosses_workers_and_presence_counts_both(pair):
    a, b = pair
    on_a, on_b = await LiveClient.connect(a.url), await LiveClient.connect(b.url)
    await on_b.subscribe_events("chat", "x-room")
    await on_b.subscribe_state("chat", "x-room")
    await on_a.call("chat", "x-room", "send", text="hello from A")
    event = await on_b.wait_for(lambda f: f.get("type") == "event" and f["event"] == "newMessage")
    assert event["payload"] == {"user": on_a.client_id, "text": "hello from A"}
    both = sorted([on_a.client_id, on_b.client_id])
    await on_b.wait_state("x-room", lambda s: sorted(s["online"]) == both)

    watcher = await LiveClient.connect(a.url)
    await watcher.subscribe_state("chat", "x-room")
    await watcher.wait_state("x-room", lambda s: sorted(s["online"]) == sorted([*both, watcher.client_id]))
    await on_a.close()  # a socket on worker A closes
    await watcher.wait_state("x-room", lambda s: sorted(s["online"]) == sorted([on_b.client_id, watcher.client_id]))
    await on_b.close()  # and one on worker B
    state = await watcher.wait_state("x-room", lambda s: s["online"] == [watcher.client_id])
    assert [m["text"] for m in state["messages"]] == ["hello from A"]
    assert watcher.mirror("x-room").gaps == 0
    await watcher.close()


async def test_emit_to_reaches_a_client_on_the_other_worker(pair):
    a, b = pair
    sender = await LiveClient.connect(a.url)
    target, other = await LiveClient.connect(b.url), await LiveClient.connect(b.url)
    for c in (target, other):
        await c.subscribe_events("lab", "to")
    await sender.call("lab", "to", "notify", text="just you", to=[target.client_id])
    await sender.call("lab", "to", "notify", text="everyone")
    event = await target.wait_for(lambda f: f.get("type") == "event" and f["payload"]["text"] == "everyone")
    assert [f["payload"]["text"] for f in target.of_type("event")] == ["just you", "everyone"]
    await other.wait_for(lambda f: f.get("type") == "event" and f["payload"]["text"] == "everyone")
    assert [f["payload"]["text"] for f in other.of_type("event")] == ["everyone"]
    assert event["actor"] == "lab"
    for c in (sender, target, other):
        await c.close()


async def test_an_idle_redis_backed_socket_stays_open_past_a_minute(tmp_path):
    """redis-py 8's 5 s read timeout once closed idle Redis sockets with 1011 (docs/architecture.md, "Hot paths")."""
    env = {**cluster_env(tmp_path, require_redis()), "CHANNEL_LAYER": "core"}
    migrate(env)
    worker = Worker(env, tmp_path, "idle").start()
    try:
        client = await LiveClient.connect(worker.url)
        await client.subscribe_state("counter", "idle")
        await asyncio.sleep(65)
        assert await client.call("counter", "idle", "increment") == 1
        patch = await client.wait_for(lambda f: f.get("type") == "state:patch")
        assert patch["version"] == 1
        assert "TimeoutError" not in worker.log()
        await client.close()
    finally:
        worker.stop()
