"""A lease that was in doubt comes back (``Runtime.resume``): a fenced save, then a new epoch or a drop.

An owner whose lease was not renewed in time (a pause longer than
``LEASE_TTL``) and that finds it free again takes it back. Another worker may
have held it meanwhile, so the owner checks with a fenced save: if nobody saved
since its own last save, it goes on as a new incarnation (subscribers get the
same state and version under a larger epoch); if somebody did, its copy is
dropped and the next request starts from what that worker saved.

The first two tests drive ``Runtime.resume`` through the ASGI app (as the
cluster's housekeeping calls it); the last one makes it happen for real, with a
daphne worker paused longer than its lease.
"""

import asyncio
import signal
import time

import pytest
from asgiref.sync import sync_to_async
from django.db import connection

from tests.live import LiveClient, PrivateRedis, Watcher, Worker, cluster_env, fresh_snapshot, migrate
from zocket_django import snapshot_rows
from zocket_django.epochs import new_epoch
from zocket_django.models import Snapshot
from zocket_django.node import current_node


def _db(fn):
    """``fn`` in a thread with its own view of committed rows (as the runtime's saves)."""
    return sync_to_async(fn, thread_sensitive=connection.vendor == "sqlite")


@_db
def saved(actor: str, actor_id: str) -> dict:
    return Snapshot.objects.values("state", "version").get(actor=actor, actor_id=actor_id)


@_db
def save_elsewhere(actor: str, actor_id: str, state: dict, version: int, expected: int) -> None:
    """What another worker holding the lease meanwhile would have done: a fenced save of its own."""
    snapshot_rows.save_snapshot(actor, actor_id, state, version, 1, expected)


async def test_a_lease_back_with_nobody_in_between_goes_on_under_a_new_epoch(connect):
    client = await connect()
    await client.call("ledger", "r", "add", amount=2)
    await client.subscribe_state("ledger", "r")
    assert await client.call("ledger", "r", "add", amount=3) == 5
    patch = await client.next_patch("ledger", "r")
    epoch = new_epoch()
    assert epoch > patch["epoch"]

    current_node().runtime.resume("ledger", "r", epoch)

    snapshot = await client.expect("state:snapshot", actorId="r")
    assert snapshot["epoch"] == epoch  # announced: a copy of the old incarnation is never patched by the new one
    assert snapshot["version"] == patch["version"]  # the same state, nothing lost
    assert snapshot["state"]["entries"] == [2, 3]
    assert (await saved("ledger", "r"))["version"] == patch["version"]  # the fenced save went through
    assert await client.call("ledger", "r", "add", amount=1) == 6  # still hot here, serving
    after = await client.next_patch("ledger", "r")
    assert (after["epoch"], after["version"]) == (epoch, patch["version"] + 1)
    assert (await saved("ledger", "r"))["version"] == after["version"]


async def test_a_lease_back_after_another_worker_saved_drops_this_copy(connect):
    client = await connect()
    await client.subscribe_state("ledger", "s")
    await client.call("ledger", "s", "add", amount=2)
    patch = await client.next_patch("ledger", "s")
    theirs = {"entries": [2, 40], "total": 42, "activations": 2}
    await save_elsewhere("ledger", "s", theirs, patch["version"] + 1, expected=patch["version"])

    current_node().runtime.resume("ledger", "s", new_epoch())

    async def dropped() -> None:
        while ("ledger", "s") in current_node().runtime.instances:
            await asyncio.sleep(0.01)

    await asyncio.wait_for(dropped(), 5)
    assert await saved("ledger", "s") == {"state": theirs, "version": patch["version"] + 1}  # not overwritten
    assert not [f for f in await client.nothing_more() if f.get("type") == "state:snapshot"]  # ours never shown
    # The next request starts from what the other worker saved; the subscriber gets it as a new incarnation.
    assert await client.call("ledger", "s", "add", amount=1) == 43
    snapshot = await client.expect("state:snapshot", actorId="s")
    assert snapshot["epoch"] > patch["epoch"]
    assert snapshot["state"]["entries"][:2] == [2, 40]


TTL = 2.0


@pytest.mark.slow
@pytest.mark.redis
async def test_an_owner_paused_past_its_lease_takes_it_back_under_a_new_epoch(tmp_path):
    """SIGSTOP the owner longer than its lease while nobody asks for the instance: on SIGCONT it
    finds the lease free, takes it back, checks with a fenced save and announces a new epoch."""
    redis = PrivateRedis().start()
    env = cluster_env(tmp_path, redis.url, LEASE_TTL=TTL)
    migrate(env)
    owner, other = Worker(env, tmp_path, "owner").start(), Worker(env, tmp_path, "other").start()
    watcher = None
    caller = None
    try:
        caller = await LiveClient.connect(owner.url)
        assert await caller.call("ledger", "p", "add", amount=5) == 5  # the owner takes the lease
        watcher = await Watcher(await LiveClient.connect(other.url), "ledger", "p").start()
        await watcher.wait(lambda m: m.epoch is not None)
        before = watcher.mirror.epoch
        owner.proc.send_signal(signal.SIGSTOP)
        time.sleep(TTL * 2)  # the lease expires; nobody asks for the instance
        owner.proc.send_signal(signal.SIGCONT)
        await watcher.wait(lambda m: m.epoch != before)
        assert watcher.mirror.epoch > before
        assert watcher.mirror.state["entries"] == [5]  # nothing lost
        assert watcher.mirror.state["activations"] == 1  # the same incarnation went on (not a restore)
        assert await caller.call("ledger", "p", "add", amount=1, timeout=20) == 6
        await watcher.converge(await fresh_snapshot(other.url, "ledger", "p"))
        assert watcher.mirror.regressions == 0
        assert "dropping it here" not in owner.log()
    finally:
        if watcher is not None:
            await watcher.stop()
            await watcher.client.close()
        if caller is not None:
            await caller.close()
        owner.stop()
        other.stop()
        redis.stop()
