"""Kept outcomes of keyed calls are rows of their own (``CallOutcome``), committed with their step.

Through the application (``ZocketCommunicator``), on SQLite and, with
DATABASE_URL, PostgreSQL: a save writes only the outcomes kept since the
last one; a crash keeps what was acknowledged; a save that fails or is
fenced off leaves no row; rows age out; a window saved whole by an earlier
version (``Snapshot.calls``) is still honoured.
"""

import asyncio
import time

from django.db import OperationalError

from zocket_django import call_rows, snapshot_rows
from zocket_django.callkeys import fingerprint
from zocket_django.models import CallOutcome, Snapshot
from zocket_django.node import current_node

from .test_callkeys import rpc, send


def ledger(method, input=None, key=None, actor_id="rows"):
    return rpc(method, input, key=key, actor="ledger", actor_id=actor_id)


async def kept(actor_id="rows", actor="ledger"):
    return sorted([r.key async for r in CallOutcome.objects.filter(actor=actor, actor_id=actor_id)])


async def test_each_save_writes_its_own_outcome_and_a_retry_after_a_crash_is_answered_from_the_row(
    connect, monkeypatch
):
    written = []
    original = snapshot_rows.write_outcomes

    def spy(actor, actor_id, rows, expire_before):
        written.append([r[1] for r in rows])
        original(actor, actor_id, rows, expire_before)

    monkeypatch.setattr(snapshot_rows, "write_outcomes", spy)
    client = await connect()
    for n in range(1, 6):
        assert (await send(client, ledger("add", {"amount": 1}, key=f"k{n}")))["result"] == n
    # the activation's save (on_activate changed the state) had none; then one row per save, whatever the window holds
    assert written == [[]] + [[f"k{n}"] for n in range(1, 6)]
    assert await kept() == [f"k{n}" for n in range(1, 6)]
    assert (await Snapshot.objects.aget(actor="ledger", actor_id="rows")).calls == []
    current_node().runtime.drop("ledger", "rows")  # the worker "crashes": nothing more is saved
    again = await send(client, ledger("add", {"amount": 1}, key="k3"))
    assert again["result"] == 3  # the first result, from the row
    assert (await send(client, ledger("peek")))["result"] == 5  # it did not run again


async def test_a_save_that_fails_after_the_row_was_written_leaves_no_row_and_the_retry_runs_once(
    connect, monkeypatch
):
    client = await connect()
    assert (await send(client, ledger("add", {"amount": 10}, key="a")))["result"] == 10
    original = snapshot_rows.write_outcomes

    def insert_then_fail(actor, actor_id, rows, expire_before):
        original(actor, actor_id, rows, expire_before)  # the row is in the transaction ...
        raise OperationalError("the disk is full")  # ... which then rolls back

    monkeypatch.setattr(snapshot_rows, "write_outcomes", insert_then_fail)
    frame = ledger("add", {"amount": 5}, key="b")
    assert (await send(client, frame))["code"] == "unavailable"
    assert await kept() == ["a"]
    monkeypatch.setattr(snapshot_rows, "write_outcomes", original)
    assert (await send(client, {**frame, "id": "retry"}))["result"] == 15  # it runs: nothing had stayed
    current_node().runtime.drop("ledger", "rows")
    assert (await send(client, {**frame, "id": "late"}))["result"] == 15  # and only once
    assert await kept() == ["a", "b"]


async def test_a_fenced_off_save_leaves_no_row(connect):
    client = await connect()
    assert (await send(client, ledger("add", {"amount": 1}, key="mine")))["result"] == 1
    # Another worker took the instance over and saved meanwhile (as after a lease lost while paused).
    await Snapshot.objects.filter(actor="ledger", actor_id="rows").aupdate(version=99)
    refused = await send(client, ledger("add", {"amount": 1}, key="stale"))
    assert refused["code"] == "unavailable"
    assert await kept() == ["mine"]


async def test_rows_older_than_call_key_seconds_are_not_loaded_and_are_deleted_in_bulk(connect):
    # Left by a worker that crashed before deleting it: a long-expired outcome of key "old".
    await Snapshot.objects.acreate(actor="ledger", actor_id="rows", state={"entries": [], "total": 0}, version=1)
    await CallOutcome.objects.acreate(
        actor="ledger", actor_id="rows", caller="anonymous", key="old", fingerprint="f",
        outcome='{"result":999}', at=time.time() - 3600,
    )
    client = await connect()
    assert (await send(client, ledger("add", {"amount": 2}, key="old")))["result"] == 2  # not answered from it
    assert await kept() == ["old"]
    row = await CallOutcome.objects.aget(actor="ledger", actor_id="rows", key="old")
    assert row.outcome == '{"result":2}' and row.at > time.time() - 60  # replaced by the new call's


async def test_expired_rows_go_with_a_later_save_by_age(connect, settings):
    settings.ZOCKET = {"CALL_KEY_SECONDS": 0.4}
    client = await connect()
    for n in range(3):
        await send(client, ledger("add", {"amount": 1}, key=f"early{n}"))
    assert len(await kept()) == 3
    await asyncio.sleep(0.4 * (1 + call_rows.EXPIRE_SLACK) + 0.1)
    await send(client, ledger("add", {"amount": 1}, key="late"))
    assert await kept() == ["late"]  # the three went in one delete, in the save's transaction
    assert (await send(client, ledger("add", {"amount": 1}, key="early0")))["result"] == 5  # aged out: runs


async def test_a_window_saved_whole_by_an_earlier_version_is_honoured_then_moved_to_rows(connect):
    legacy = [["anonymous", "before", fingerprint("add", {"amount": 7}), time.time(), '{"result":7}']]
    await Snapshot.objects.acreate(
        actor="ledger", actor_id="rows", state={"entries": [7], "total": 7}, version=1, calls=legacy
    )
    client = await connect()
    assert (await send(client, ledger("add", {"amount": 7}, key="before")))["result"] == 7  # answered, not run
    # The activation's save (on_activate changed the state) wrote it as a row and emptied the column.
    assert await kept() == ["before"]
    assert (await Snapshot.objects.aget(actor="ledger", actor_id="rows")).calls == []
    current_node().runtime.drop("ledger", "rows")
    assert (await send(client, ledger("add", {"amount": 7}, key="before")))["result"] == 7
    assert (await send(client, ledger("peek")))["result"] == 7


async def test_destroying_an_instance_deletes_its_rows(connect):
    client = await connect()
    await send(client, ledger("add", {"amount": 1}, key="gone"))
    await current_node().runtime.deactivate("ledger", "rows", destroy=True)
    assert await kept() == []


async def test_a_non_durable_actor_writes_no_rows(connect):
    client = await connect()
    first = await send(client, rpc("noop", key="mem", actor="lab", actor_id="m"))
    assert (await send(client, rpc("noop", key="mem", actor="lab", actor_id="m")))["result"] == first["result"]
    assert await CallOutcome.objects.acount() == 0
