"""After Redis lost its data, live workers are not taken for dead: their clients stay present.

Every worker's liveness key vanishes with Redis' data, and each puts its own
back on its next tick. An owner that looked in between used to conclude that
the other worker had died and run ``on_disconnect`` for its clients, which
were still connected (they seemed to leave and come back).
"""

import asyncio
import contextlib
import signal

import pytest

from tests.live import LiveClient, PrivateRedis, Worker, cluster_env, fresh_snapshot, migrate

pytestmark = [pytest.mark.redis, pytest.mark.slow]

TTL = 2.0


async def test_redis_restarts_do_not_part_the_clients_of_live_workers(tmp_path):
    redis = PrivateRedis().start()
    env = cluster_env(tmp_path, redis.url, LEASE_TTL=TTL)
    migrate(env)
    owner, other = Worker(env, tmp_path, "owner").start(), Worker(env, tmp_path, "other").start()
    here = there = None
    try:
        here = await LiveClient.connect(owner.url)
        await here.call("roster", "r", "touch")  # the owner takes it
        there = await LiveClient.connect(other.url)
        await there.subscribe_state("roster", "r")  # present, from the other worker
        for _ in range(5):
            redis.stop()
            await asyncio.sleep(0.3)
            redis.start()
            await asyncio.sleep(TTL * 0.8)
        await asyncio.sleep(TTL * 1.5)  # a lease after the last restart: a dead worker would be parted by now
        await here.call("roster", "r", "touch", timeout=20)
        log = (await fresh_snapshot(owner.url, "roster", "r"))["state"]["log"]
        came_and_went = [entry for entry in log if entry[1:] == there.client_id]
        assert came_and_went == [f"+{there.client_id}"], "a connected client was parted (on_disconnect) and came back"
        assert "is gone; its clients leave" not in owner.log()
        # A worker that really dies is still noticed: its clients leave once its key has expired.
        other.kill(signal.SIGKILL)
        await here.subscribe_state("roster", "r")
        await here.wait_state("r", lambda s: f"-{there.client_id}" in s["log"], timeout=TTL * 6)
    finally:
        for client in (here, there):
            if client is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.close(), 5)
        owner.stop()
        other.stop()
        redis.stop()
