"""Nothing acknowledged is lost, nothing runs twice, nobody sees stale state: kill -9, Redis restarts, SIGSTOP.

Real daphne workers on Redis (both channels-redis layers where the layer
matters). Callers put a key on every call and retry it, with the same key,
after ``unavailable`` or a lost socket, as the shipped clients do; watchers
resync on a gap, as the shipped clients do. Every wait is bounded.
"""

import asyncio
import contextlib
import signal
import time
import uuid

import pytest
import websockets

from tests.live import (
    LiveClient,
    PrivateRedis,
    RpcError,
    Watcher,
    Worker,
    cluster_env,
    fresh_snapshot,
    migrate,
    require_redis,
)

pytestmark = [pytest.mark.redis, pytest.mark.slow]

TTL = 2.0
LAYERS = pytest.mark.parametrize("layer", ["core", "pubsub"])


class KeyedCaller:
    """Calls with a key, retried with it on ``unavailable`` or a lost socket, on any of the workers."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = urls
        self.turn = 0
        self.client: LiveClient | None = None
        self.acked: list[tuple[dict, object, float]] = []  # (input, result, when) of every acknowledged call
        self.retries = 0
        self.running = True

    async def _connected(self) -> LiveClient:
        while self.client is None:
            url = self.urls[self.turn % len(self.urls)]
            self.turn += 1
            try:
                self.client = await LiveClient.connect(url)
            except (OSError, TimeoutError, websockets.WebSocketException):
                await asyncio.sleep(0.1)
        return self.client

    async def call(self, actor: str, actor_id: str, method: str, patience: float = 60.0, **input: object) -> object:
        key = uuid.uuid4().hex
        deadline = time.monotonic() + patience
        while True:
            assert time.monotonic() < deadline, f"{method} with key {key} never got an answer"
            client = await self._connected()
            try:
                result = await client.call(actor, actor_id, method, timeout=15, key=key, **input)
            except RpcError as err:
                assert err.code == "unavailable", err
            except (TimeoutError, websockets.ConnectionClosed):
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.close(), 2)
                self.client = None
            else:
                self.acked.append((input, result, time.monotonic()))
                return result
            self.retries += 1
            await asyncio.sleep(0.05)

    async def loop(self, actor: str, actor_id: str, method: str, make_input=lambda n: {}) -> None:
        n = 0
        while self.running:
            n += 1
            await self.call(actor, actor_id, method, **make_input(n))

    async def close(self) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.client.close(), 2)


#: Places for CALL_KEY_SECONDS (60) of keyed calls (README, "Calls run exactly once"): these callers
#: make a few hundred calls a second to one instance; with the default 10,000 places new keys would
#: be answered ``overloaded`` (never forgotten) once the window is full.
WINDOW = {"CALL_KEYS_PER_CALLER": 30000, "CALL_KEYS_PER_INSTANCE": 30000}


def cluster(tmp_path, redis_url: str, layer: str = "core", **zocket) -> dict[str, str]:
    settings = {"LEASE_TTL": TTL, "CALL_TIMEOUT": 10, **WINDOW, **zocket}
    env = {**cluster_env(tmp_path, redis_url, **settings), "CHANNEL_LAYER": layer}
    migrate(env)
    return env


@LAYERS
async def test_owner_killed_mid_traffic_acknowledged_calls_ran_exactly_once(tmp_path, layer):
    env = cluster(tmp_path, require_redis(), layer)
    owner, survivor = Worker(env, tmp_path, "owner").start(), Worker(env, tmp_path, "survivor").start()
    reader = KeyedCaller([survivor.url])
    callers = [KeyedCaller(urls) for urls in ([owner.url, survivor.url], [survivor.url, owner.url]) * 2]
    try:
        await KeyedCaller([owner.url]).call("counter", "x1", "add", amount=0)  # the owner takes the lease
        tasks = [asyncio.create_task(c.loop("counter", "x1", "increment")) for c in callers]
        await asyncio.sleep(1.5)
        owner.kill(signal.SIGKILL)
        await asyncio.sleep(TTL + 2.5)
        for c in callers:
            c.running = False
        await asyncio.wait_for(asyncio.gather(*tasks), 90)
        count = await reader.call("counter", "x1", "add", amount=0)
        results = sorted(r for c in callers for _, r, _ in c.acked)
        retries = sum(c.retries for c in callers)
        print(f"{layer}: {len(results)} increments acknowledged, {retries} retries, count {count}")
        assert retries > 0  # the kill was felt
        assert results == list(range(1, count + 1))  # each acknowledged once: none lost, none twice
    finally:
        for c in [*callers, reader]:
            await c.close()
        owner.stop()
        survivor.stop()


RESTARTS = 10


@LAYERS
async def test_ten_redis_restarts_mid_traffic_leave_no_watcher_stale(tmp_path, layer):
    redis = PrivateRedis().start()
    env = cluster(tmp_path, redis.url, layer)
    a, b = Worker(env, tmp_path, "a").start(), Worker(env, tmp_path, "b").start()
    counters = [KeyedCaller([a.url, b.url]), KeyedCaller([b.url, a.url])]
    writers = [KeyedCaller([a.url, b.url]), KeyedCaller([b.url, a.url])]
    watchers: list[Watcher] = []
    try:
        for url in (a.url, b.url):
            for actor in ("counter", "journal"):
                watchers.append(await Watcher(await LiveClient.connect(url), actor, "rr").start())
        tasks = [asyncio.create_task(c.loop("counter", "rr", "increment")) for c in counters]
        tasks += [
            asyncio.create_task(w.loop("journal", "rr", "write", lambda n, i=i: {"line": f"{i}-{n}"}))
            for i, w in enumerate(writers)
        ]
        await asyncio.sleep(1.0)
        for _ in range(RESTARTS):
            redis.stop()
            await asyncio.sleep(0.3)
            redis.start()
            await asyncio.sleep(1.5)
        for c in counters + writers:
            c.running = False
        await asyncio.wait_for(asyncio.gather(*tasks), 90)
        count = (await fresh_snapshot(a.url, "counter", "rr"))["state"]["count"]
        results = sorted(r for c in counters for _, r, _ in c.acked)
        assert results == list(range(1, count + 1))  # write-through: exactly once
        journal = await fresh_snapshot(b.url, "journal", "rr")
        lines = journal["state"]["lines"]
        acknowledged = sum(len(w.acked) for w in writers)
        assert len(lines) == acknowledged == len(set(lines))  # saved on deactivation: nothing lost, none twice
        for w in watchers:
            await w.converge(await fresh_snapshot(a.url, w.actor, w.actor_id))
            assert w.mirror.regressions == 0, f"{w.actor}: a version went backwards within one epoch"
        print(f"{layer}: {RESTARTS} restarts, {count} increments, {acknowledged} lines, {len(watchers)} watchers")
    finally:
        for w in watchers:
            await w.stop()
        for c in counters + writers:
            await c.close()
        a.stop()
        b.stop()
        redis.stop()


# -- what each persistence mode promises through a crash, a pause and a Redis restart --------------

#: actor (in tests/testapp) → its persistence mode, and how to make one acknowledged change and see it.
ACTORS = {
    "ledger": ("WRITE_THROUGH", "add", lambda tag: {"amount": 1}),
    "journal": ("ON_DEACTIVATE", "write", lambda tag: {"line": tag}),
    "lab": ("NONE", "add_item", lambda tag: {"text": tag}),
}


def kept(actor: str, state: dict) -> list:
    """The acknowledged changes an instance's state holds (ledger: its entries; the others: their lines)."""
    if actor == "ledger":
        return state["entries"]
    if actor == "journal":
        return [line for line in state["lines"] if line != "closed"]
    return [item["text"] for item in state["items"]]


@pytest.mark.parametrize("event", ["kill", "pause", "redis"])
async def test_each_persistence_mode_keeps_its_promise(tmp_path, event):
    redis = PrivateRedis().start()
    env = cluster(tmp_path, redis.url)
    owner, other = Worker(env, tmp_path, "owner").start(), Worker(env, tmp_path, "other").start()
    callers = {actor: [KeyedCaller([other.url, owner.url]), KeyedCaller([owner.url, other.url])] for actor in ACTORS}
    watchers: list[Watcher] = []
    try:
        first = KeyedCaller([owner.url])
        for actor, (_, method, make) in ACTORS.items():
            await first.call(actor, "p", method, **make("first"))  # the owner holds all three
            watchers.append(await Watcher(await LiveClient.connect(other.url), actor, "p").start())
        await first.close()
        tasks = [
            asyncio.create_task(
                c.loop(actor, "p", ACTORS[actor][1], lambda n, i=i, make=ACTORS[actor][2]: make(f"{i}-{n}"))
            )
            for actor, pair in callers.items()
            for i, c in enumerate(pair)
        ]
        await asyncio.sleep(1.5)
        event_at = time.monotonic()
        if event == "kill":
            owner.kill(signal.SIGKILL)
            await asyncio.sleep(TTL + 3)
        elif event == "pause":
            owner.proc.send_signal(signal.SIGSTOP)  # longer than the lease: the other worker takes over
            await asyncio.sleep(TTL * 2.5)
            owner.proc.send_signal(signal.SIGCONT)
            await asyncio.sleep(3)
        else:
            redis.stop()
            await asyncio.sleep(0.5)
            redis.start()
            await asyncio.sleep(3)
        after = time.monotonic()
        await asyncio.sleep(1.0)
        for pair in callers.values():
            for c in pair:
                c.running = False
        await asyncio.wait_for(asyncio.gather(*tasks), 90)
        summary = []
        for actor, (mode, _, _) in ACTORS.items():
            snapshot = await fresh_snapshot(other.url, actor, "p")
            state = kept(actor, snapshot["state"])
            acked = [(inp, when) for c in callers[actor] for inp, _, when in c.acked]
            values = [next(iter(inp.values())) for inp, _ in acked]
            late = [next(iter(inp.values())) for inp, when in acked if when > after]  # after the recovery
            if actor == "ledger":  # every acknowledged amount, once
                assert len(state) == len(acked) + 1, (mode, event)
                lost = 0
            else:
                tags = set(state)
                assert len(tags) == len(state), f"{mode}: a change was applied twice"
                assert tags <= set(values) | {"first"}, f"{mode}: a change nobody acknowledged"
                assert set(late) <= tags, f"{mode}: lost a change acknowledged after the {event}"
                lost = len(set(values) - tags)
                if event == "redis" or mode == "WRITE_THROUGH":
                    assert lost == 0, f"{mode} lost {lost} acknowledged changes through a Redis restart"
            summary.append(f"{mode}: {len(acked)} acked, {lost} lost")
        for w in watchers:
            await w.converge(await fresh_snapshot(other.url, w.actor, w.actor_id))
            assert w.mirror.regressions == 0, f"{w.actor}: a version went backwards within one epoch"
        print(f"{event} at {event_at:.0f}: " + "; ".join(summary))
    finally:
        for w in watchers:
            await w.stop()
        for pair in callers.values():
            for c in pair:
                await c.close()
        owner.stop()
        other.stop()
        redis.stop()
