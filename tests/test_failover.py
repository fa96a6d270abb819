"""Workers die and Redis restarts mid-traffic; clients converge and nothing acknowledged is lost."""

import asyncio
import signal
import time

import pytest

from tests.live import LiveClient, PrivateRedis, RpcError, Worker, cluster_env, migrate, require_redis

pytestmark = [pytest.mark.redis, pytest.mark.slow]

TTL = 2.0


class Traffic:
    """Increments in a loop from one client; counts what was acknowledged."""

    def __init__(self, client: LiveClient, actor_id: str) -> None:
        self.client = client
        self.actor_id = actor_id
        self.acked = 0
        self.unknown = 0  # answered unavailable/timeout: may or may not have run
        self.successes: list[float] = []  # when calls sent after ``since`` succeeded
        self.since = 0.0
        self.running = True

    async def run(self) -> None:
        while self.running:
            started = time.monotonic()
            try:
                await self.client.call("counter", self.actor_id, "increment", timeout=30)
                self.acked += 1
                if started > self.since:  # only calls sent after the event count as recovered
                    self.successes.append(time.monotonic())
            except RpcError as err:
                assert err.code in ("unavailable", "timeout"), err
                self.unknown += 1
                await asyncio.sleep(0.05)


async def read_count(client: LiveClient, actor_id: str) -> int:
    return await client.call("counter", actor_id, "add", amount=0)


LAYERS = pytest.mark.parametrize("layer", ["core", "pubsub"])


@LAYERS
async def test_owner_killed_mid_traffic_fails_over_to_the_survivor(tmp_path, layer):
    env = {**cluster_env(tmp_path, require_redis(), LEASE_TTL=TTL, CALL_TIMEOUT=10), "CHANNEL_LAYER": layer}
    migrate(env)
    owner, survivor = Worker(env, tmp_path, "owner").start(), Worker(env, tmp_path, "survivor").start()
    try:
        on_owner = await LiveClient.connect(owner.url)
        await on_owner.call("counter", "fo", "increment")  # the owner now holds the lease
        caller = await LiveClient.connect(survivor.url)  # its calls are forwarded to the owner
        watcher = await LiveClient.connect(survivor.url)
        await watcher.subscribe_state("counter", "fo")
        traffic = Traffic(caller, "fo")
        task = asyncio.create_task(traffic.run())
        await asyncio.sleep(1.0)
        before = traffic.acked
        assert before > 10
        killed_at = traffic.since = time.monotonic()
        owner.kill(signal.SIGKILL)
        while not [t for t in traffic.successes if t > killed_at] and time.monotonic() - killed_at < TTL + 20:
            await asyncio.sleep(0.05)
        recovered = [t for t in traffic.successes if t > killed_at]
        assert recovered, f"no call succeeded after the owner died:\n{survivor.log()[-3000:]}"
        failover = recovered[0] - killed_at
        assert failover < TTL + 8
        await asyncio.sleep(0.5)
        traffic.running = False
        await asyncio.wait_for(task, 30)
        count = await read_count(caller, "fo")
        acked = traffic.acked + 1  # the first increment, on the owner
        assert acked <= count <= acked + traffic.unknown  # nothing acknowledged was lost
        state = await watcher.wait_state("fo", lambda s: s["count"] == count)
        assert state == {"count": count}
        print(f"failover took {failover:.2f}s; {traffic.acked} acked, {traffic.unknown} unknown")
    finally:
        owner.stop()
        survivor.stop()


@LAYERS
async def test_redis_restart_mid_traffic(tmp_path, layer):
    redis = PrivateRedis().start()
    env = {**cluster_env(tmp_path, redis.url, LEASE_TTL=TTL, CALL_TIMEOUT=10), "CHANNEL_LAYER": layer}
    migrate(env)
    a, b = Worker(env, tmp_path, "a").start(), Worker(env, tmp_path, "b").start()
    try:
        callers = [await LiveClient.connect(a.url), await LiveClient.connect(b.url)]
        watchers = [await LiveClient.connect(a.url), await LiveClient.connect(b.url)]
        for w in watchers:
            await w.subscribe_state("counter", "rr")
        traffics = [Traffic(c, "rr") for c in callers]
        tasks = [asyncio.create_task(t.run()) for t in traffics]
        await asyncio.sleep(1.0)
        redis.stop()
        await asyncio.sleep(1.0)
        redis.start()
        restarted_at = time.monotonic()
        for t in traffics:
            t.since = restarted_at
        while time.monotonic() - restarted_at < 30:
            if all([s for s in t.successes if s > restarted_at + 0.5] for t in traffics):
                break
            await asyncio.sleep(0.1)
        for t in traffics:
            assert [s for s in t.successes if s > restarted_at], "calls never succeeded again after the restart"
        await asyncio.sleep(1.0)
        for t in traffics:
            t.running = False
        await asyncio.wait_for(asyncio.gather(*tasks), 40)
        count = await read_count(callers[0], "rr")
        acked = sum(t.acked for t in traffics)
        assert acked <= count <= acked + sum(t.unknown for t in traffics)
        for w in watchers:
            await w.wait_state("rr", lambda s: s["count"] == count, timeout=20)
    finally:
        a.stop()
        b.stop()
        redis.stop()
