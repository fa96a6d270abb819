"""The admin sees, and acts on, the hot actors of two daphne workers on one Redis (issue #6)."""

import asyncio
import signal

import pytest

from tests.admin_live import AdminSession, create_staff
from tests.live import LiveClient, Worker, cluster_env, migrate, require_redis
from zocket_django.admin_hot_actors import hot_actor_url

pytestmark = [pytest.mark.redis, pytest.mark.slow]

INVENTORY = "/admin/zocket_django/hotactor/inventory.json"


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    redis_url = require_redis()
    tmp = tmp_path_factory.mktemp("admin-pair")
    # Liveness keys outlive a stopped worker by several seconds: long enough to see it stay silent.
    env = cluster_env(tmp, redis_url, LEASE_TTL=20.0)
    migrate(env)
    create_staff(env, "ops")
    workers = [Worker(env, tmp, "a").start(), Worker(env, tmp, "b").start()]
    yield workers
    for w in workers:
        w.stop()


async def session(worker):
    return await asyncio.to_thread(lambda: AdminSession(worker.port).login("ops"))


def by_id(data):
    return {i["actor_id"]: i for i in data["instances"]}


async def test_actors_hot_on_both_workers_appear_with_their_worker(pair):
    a, b = pair
    on_a, on_b = await LiveClient.connect(a.url), await LiveClient.connect(b.url)
    await on_a.call("counter", "adm-a", "add", amount=3)  # worker A takes the lease
    await on_b.call("counter", "adm-b", "add", amount=7)  # worker B takes this one
    await on_a.subscribe_state("counter", "adm-b")  # a client of A on B's instance
    await on_b.subscribe_events("chat", "adm-room")

    for worker in (a, b):  # either worker's admin sees the whole cluster
        admin = await session(worker)
        data = await asyncio.to_thread(admin.get_json, INVENTORY)
        workers = {w["channel"]: w for w in data["workers"]}
        assert all(w["answered"] for w in workers.values()), workers
        pids = {w["described"]["pid"] for w in workers.values()}
        assert {a.proc.pid, b.proc.pid} <= pids
        found = by_id(data)
        pid_of = {ch: w["described"]["pid"] for ch, w in workers.items()}
        assert pid_of[found["adm-a"]["worker"]] == a.proc.pid
        assert pid_of[found["adm-b"]["worker"]] == b.proc.pid
        assert pid_of[found["adm-room"]["worker"]] == b.proc.pid
        assert found["adm-a"]["clients"] == 1
        assert found["adm-b"]["clients"] == 2 and found["adm-b"]["state_subscribers"] == 1
        assert found["adm-room"]["event_subscribers"] == 1

        status, page = await asyncio.to_thread(admin.get, "/admin/zocket_django/hotactor/?actor=counter")
        assert status == 200
        assert f":{a.proc.pid}</td>" in page and f":{b.proc.pid}</td>" in page
        assert "did not answer" not in page

    # The detail of B's instance, asked on A: state and clients come from B.
    live = await asyncio.to_thread(admin.get_json, hot_actor_url("counter", "adm-b") + "live.json")
    assert live["hot"] is True and '"count": 7' in live["state"]
    fields = {key: value for key, _, value in live["fields"]}
    assert f":{b.proc.pid}" in fields["worker"]
    client_workers = {row[0]: row[2] for row in live["clients"]}
    assert client_workers[on_a.client_id].endswith(f":{a.proc.pid}")
    assert client_workers[on_b.client_id].endswith(f":{b.proc.pid}")
    for c in (on_a, on_b):
        await c.close()


async def test_deactivating_an_instance_of_the_other_worker_is_forwarded(pair):
    a, b = pair
    on_b = await LiveClient.connect(b.url)
    await on_b.call("counter", "adm-far", "add", amount=5)  # hot on B
    admin = await session(a)  # the operator is on A
    persist = by_id(await asyncio.to_thread(admin.get_json, INVENTORY))["adm-far"]["persist"]
    status, url, page = await asyncio.to_thread(
        admin.post, hot_actor_url("counter", "adm-far") + "deactivate/", {"post": "yes"}
    )
    assert status == 200 and url.endswith("/admin/zocket_django/hotactor/")
    assert "“counter / adm-far” was deactivated" in page
    assert "adm-far" not in by_id(await asyncio.to_thread(admin.get_json, INVENTORY))
    # Its next call activates it again, wherever the lease lands: afresh, or from what the
    # deactivation saved when the actor persists (once persistence is merged).
    assert await on_b.call("counter", "adm-far", "increment") == (1 if persist is None else 6)
    await on_b.close()


async def test_a_worker_that_does_not_answer_is_shown_as_such(pair):
    a, b = pair
    on_a = await LiveClient.connect(a.url)
    await on_a.call("counter", "adm-alive", "increment")
    admin = await session(a)
    b.proc.send_signal(signal.SIGSTOP)  # alive for Redis (its liveness key lasts), but deaf
    try:
        data = await asyncio.to_thread(admin.get_json, INVENTORY)
        status, page = await asyncio.to_thread(admin.get, "/admin/zocket_django/hotactor/")
    finally:
        b.proc.send_signal(signal.SIGCONT)
    silent = [w for w in data["workers"] if not w["answered"]]
    assert [w["described"]["pid"] for w in silent] == [b.proc.pid]
    assert "adm-alive" in by_id(data)
    assert status == 200 and f":{b.proc.pid} (" in page and "did not answer within" in page
    await on_a.close()
