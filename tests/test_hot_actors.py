"""``hot_actors`` answers for the whole cluster, from async code and from sync code (views, the shell)."""

import json

import pytest
from asgiref.sync import ThreadSensitiveContext, sync_to_async

from tests.live import LiveClient, Worker, cluster_env, manage, migrate, require_redis
from zocket_django import hot_actors


async def in_view(fn, *args, **kwargs):
    """Call ``fn`` as Django's ASGI handler runs a sync view: in a thread of its own request."""
    async with ThreadSensitiveContext():
        return await sync_to_async(fn)(*args, **kwargs)


async def test_sync_code_in_a_server_thread_sees_and_deactivates_the_hot_instances(connect):
    client = await connect()
    await client.call("counter", "a", "increment")
    await client.call("counter", "b", "increment")
    assert await in_view(hot_actors.count) == 2  # it said 0 here before
    listed = await in_view(hot_actors.list)
    assert sorted(i["actor_id"] for i in listed) == ["a", "b"]
    assert {i["version"] for i in listed} == {1}
    assert (await in_view(hot_actors.get, "counter", "a")).state.count == 1
    assert await in_view(hot_actors.count, local=True) == 2
    assert await in_view(hot_actors.deactivate, "counter", "a") is True
    assert await in_view(hot_actors.deactivate, "counter", "a") is False
    assert await in_view(hot_actors.destroy_all) == 1
    assert hot_actors.count() == 0


async def test_async_code_awaits_the_a_methods(connect):
    client = await connect()
    await client.call("counter", "c", "increment")
    assert await hot_actors.acount() == 1
    assert [i["actor_id"] for i in await hot_actors.alist(local=True)] == ["c"]
    assert await hot_actors.adeactivate("counter", "c") is True
    assert await hot_actors.acount() == 0


async def test_a_sync_action_on_the_event_loop_says_what_to_await_instead(connect):
    client = await connect()
    await client.call("counter", "d", "increment")
    with pytest.raises(RuntimeError, match=r"await hot_actors.adeactivate\(...\)"):
        hot_actors.deactivate("counter", "d")
    assert hot_actors.count() == 1  # reading this process needs no waiting: answered at once


def test_without_a_server_in_this_process_nothing_is_hot_here():
    """The shell of a single-process deployment: the in-memory layer reaches no other process."""
    assert hot_actors.count() == 0
    assert hot_actors.list(local=True) == []
    assert hot_actors.get("counter", "a") is None
    assert hot_actors.deactivate("counter", "a") is False


SHELL = """
import json
from zocket_django import hot_actors
listed = hot_actors.list()
print(json.dumps({
    "count": hot_actors.count(),
    "local": hot_actors.count(local=True),
    "where": sorted([i["actor_id"], i["worker"]] for i in listed),
    "deactivated": hot_actors.deactivate("counter", "on-b"),
    "again": hot_actors.deactivate("counter", "on-b"),
    "after": hot_actors.count(),
}))
"""


@pytest.mark.slow
@pytest.mark.redis
async def test_the_shell_sees_and_acts_on_every_worker(tmp_path):
    env = cluster_env(tmp_path, require_redis(), LEASE_TTL=5.0)
    migrate(env)
    a, b = Worker(env, tmp_path, "a").start(), Worker(env, tmp_path, "b").start()
    try:
        on_a, on_b = await LiveClient.connect(a.url), await LiveClient.connect(b.url)
        assert await on_a.call("counter", "on-a", "increment") == 1
        assert await on_b.call("counter", "on-b", "increment") == 1
        await on_a.close()
        await on_b.close()
        seen = json.loads(manage(env, "shell", "-c", SHELL).strip().splitlines()[-1])
        assert seen["count"] == 2 and seen["local"] == 0  # the shell runs no instance itself
        assert [actor_id for actor_id, _ in seen["where"]] == ["on-a", "on-b"]
        assert len({worker for _, worker in seen["where"]}) == 2  # one on each worker
        assert (seen["deactivated"], seen["again"], seen["after"]) == (True, False, 1)
    finally:
        a.stop()
        b.stop()
