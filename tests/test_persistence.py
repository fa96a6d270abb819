"""Durable actors: snapshots saved through the ORM and restored on activation.

Runs on SQLite by default and on PostgreSQL with ``DATABASE_URL`` (scripts/test
does both under CI=true). Database reads here use a worker thread of their own,
so they see only what was committed.
"""

import asyncio
import functools
import json
import logging
import time

import pytest
from django.db import OperationalError, connection
from django.test.utils import CaptureQueriesContext
from pydantic import BaseModel

from zocket_django import Actor, Persist, hot_actors, method, snapshot_rows
from zocket_django.consumer import ZocketConsumer
from zocket_django.db import to_thread
from zocket_django.models import Snapshot
from zocket_django.testing import isolate_actors


def _in_thread(fn):
    """Run ``fn`` off the loop as the runtime does, through ``db.to_thread``: on PostgreSQL in
    a pool thread with a connection of its own (so it sees only committed rows); on SQLite
    in Django's sync thread, taking the database's turn as the runtime's hops do (the test
    database is SQLite's shared-cache memory database, whose table locks do not wait)."""

    async def run(*args, **kwargs):
        call = functools.partial(fn, *args, **kwargs)
        sqlite = connection.vendor == "sqlite"
        return await to_thread(call, thread_sensitive=sqlite)()

    return run


@_in_thread
def row(actor: str, actor_id: str) -> dict | None:
    return Snapshot.objects.filter(actor=actor, actor_id=actor_id).values("state", "version", "schema_version").first()


@_in_thread
def put(actor: str, actor_id: str, state, version: int, schema_version: int = 1) -> None:
    Snapshot.objects.update_or_create(
        actor=actor,
        actor_id=actor_id,
        defaults={"state": state, "version": version, "schema_version": schema_version},
    )


async def wait_for(predicate, timeout: float = 3.0):
    for _ in range(int(timeout / 0.02)):
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


# -- round trips -----------------------------------------------------------------------


async def test_deactivate_saves_and_the_next_activation_restores_state_and_version(connect):
    client = await connect()
    assert await client.call("journal", "j", "write", line="one") == 1
    assert await client.call("journal", "j", "write", line="two") == 2
    assert await row("journal", "j") is None  # on-deactivate: nothing written yet
    assert await hot_actors.adeactivate("journal", "j") is True
    saved = await row("journal", "j")
    # on_deactivate's own change is part of the saved state.
    assert saved == {"state": {"lines": ["one", "two", "closed"]}, "version": 3, "schema_version": 1}

    watcher = await connect()
    assert await watcher.subscribe_state("journal", "j") == ({"lines": ["one", "two", "closed"]}, 3)
    assert await client.call("journal", "j", "write", line="three") == 4
    patch = await watcher.next_patch("journal", "j")
    assert patch["version"] == 4  # versions go on from the snapshot's


async def test_a_new_incarnation_waits_for_its_predecessor_to_be_saved(connect):
    client = await connect()
    await client.call("journal", "race", "write", line="before")
    closing = asyncio.ensure_future(hot_actors.adeactivate("journal", "race"))
    await asyncio.sleep(0)  # the instance is out of the hot set, its save still queued
    assert hot_actors.count() == 0
    # The call activates a new incarnation at once; it restores only after the old one saved.
    assert await client.call("journal", "race", "write", line="after") == 3
    assert await closing is True
    assert hot_actors.get("journal", "race").state.lines == ["before", "closed", "after"]


async def test_on_activate_runs_after_the_restore(connect):
    client = await connect()
    assert await client.call("ledger", "l", "add", amount=5) == 5
    assert hot_actors.get("ledger", "l").state.activations == 1
    await hot_actors.adeactivate("ledger", "l")
    assert await client.call("ledger", "l", "peek") == 5
    assert hot_actors.get("ledger", "l").state.activations == 2  # restored 1, then on_activate


async def test_an_unchanged_instance_writes_nothing(connect):
    client = await connect()
    await client.subscribe_state("counter", "quiet")
    await hot_actors.adeactivate("counter", "quiet")
    assert await row("counter", "quiet") is None


async def test_idle_eviction_saves(connect, settings):
    settings.ZOCKET = {"IDLE_TIMEOUT": 0.2}
    client = await connect()
    await client.call("journal", "idle", "write", line="hello")
    await client.disconnect()
    saved = await wait_for(lambda: row("journal", "idle"))
    assert saved["state"]["lines"] == ["hello", "closed"]
    assert hot_actors.count() == 0


async def test_checkpoints_save_a_changed_instance_while_it_is_hot(connect):
    client = await connect()
    await client.call("diary", "d", "write", line="a")
    saved = await wait_for(lambda: row("diary", "d"))
    assert saved["state"] == {"lines": ["a"]} and saved["version"] == 1
    assert hot_actors.count() == 1  # still hot
    await client.call("diary", "d", "write", line="b")
    saved = await wait_for(lambda: _version_at_least(("diary", "d"), 2))
    assert saved["state"] == {"lines": ["a", "b"]}


async def _version_at_least(key, version):
    saved = await row(*key)
    return saved if saved and saved["version"] >= version else None


async def test_destroy_deletes_the_snapshot_hot_or_cold(connect):
    client = await connect()
    await client.call("ledger", "gone", "add", amount=3)
    assert await row("ledger", "gone") is not None
    assert await hot_actors.adestroy("ledger", "gone") is True
    assert await row("ledger", "gone") is None
    assert await client.call("ledger", "gone", "peek") == 0  # defaults again

    await client.call("journal", "cold", "write", line="x")
    await hot_actors.adeactivate("journal", "cold")
    assert await row("journal", "cold") is not None
    assert await hot_actors.adestroy("journal", "cold") is True  # not hot: the snapshot alone
    assert await row("journal", "cold") is None
    assert await hot_actors.adestroy("journal", "cold") is False


# -- write-through ------------------------------------------------------------------------


async def test_write_through_commits_before_the_patch_and_the_result(connect, monkeypatch):
    """At the moment each patch and result reaches the socket, the database already holds it."""
    seen: list[tuple[str, int, int | None]] = []
    original = ZocketConsumer.send

    async def send(self, text_data=None, *args, **kwargs):
        frame = json.loads(text_data) if text_data else {}
        if frame.get("type") == "rpc:result" and "result" in frame:
            saved = await row("ledger", "w")
            seen.append(("result", frame["result"], saved["state"]["total"] if saved else None))
        elif frame.get("type") == "state:patch":
            saved = await row("ledger", "w")
            seen.append(("patch", frame["version"], saved["version"] if saved else None))
        return await original(self, text_data, *args, **kwargs)

    monkeypatch.setattr(ZocketConsumer, "send", send)
    client = await connect()
    await client.subscribe_state("ledger", "w")  # activation: version 1 (on_activate), saved
    for amount in (1, 2, 3):
        await client.call("ledger", "w", "add", amount=amount)
    assert seen == [
        ("patch", 2, 2),
        ("result", 1, 1),
        ("patch", 3, 3),
        ("result", 3, 3),
        ("patch", 4, 4),
        ("result", 6, 6),
    ]


async def test_a_failing_save_is_reported_not_acknowledged_and_undone(connect, monkeypatch, caplog):
    client = await connect()
    watcher = await connect()
    await client.call("ledger", "f", "add", amount=10)
    state, version = await watcher.subscribe_state("ledger", "f")
    assert (state["total"], version) == (10, 2)

    def broken_save(*args):
        raise OperationalError("the disk is full")

    monkeypatch.setattr(snapshot_rows, "save_snapshot", broken_save)
    with caplog.at_level(logging.ERROR, logger="zocket_django"):
        frame = await client.call_raw("ledger", "f", "add", amount=5)
    assert frame["code"] == "unavailable"
    assert "result" not in frame and "disk" not in frame["error"]
    assert any("could not save ledger/f at version 3" in r.getMessage() for r in caplog.records)
    assert await watcher.nothing_more() == []  # no patch was published
    assert hot_actors.get("ledger", "f").state.total == 10  # state undone
    assert hot_actors.get("ledger", "f").state.entries == [10]
    assert (await row("ledger", "f"))["version"] == 2

    monkeypatch.undo()
    assert await client.call("ledger", "f", "add", amount=1) == 11
    assert (await watcher.next_patch("ledger", "f"))["version"] == 3  # the version was undone too
    assert (await row("ledger", "f"))["state"]["total"] == 11


@pytest.fixture
def refusing_trigger():
    """A real database error on every snapshot update past version 2 (SQLite or PostgreSQL)."""
    table = Snapshot._meta.db_table
    if connection.vendor == "postgresql":
        create = [
            "CREATE FUNCTION zocket_refuse() RETURNS trigger AS $$ BEGIN "
            "IF NEW.version > 2 THEN RAISE EXCEPTION 'refused by trigger'; END IF; RETURN NEW; END $$ "
            "LANGUAGE plpgsql",
            f"CREATE TRIGGER zocket_refuse BEFORE UPDATE ON {table} FOR EACH ROW EXECUTE FUNCTION zocket_refuse()",
        ]
        drop = [f"DROP TRIGGER zocket_refuse ON {table}", "DROP FUNCTION zocket_refuse()"]
    elif connection.vendor == "sqlite":
        create = [
            f"CREATE TRIGGER zocket_refuse BEFORE UPDATE ON {table} WHEN NEW.version > 2 "
            "BEGIN SELECT RAISE(ABORT, 'refused by trigger'); END"
        ]
        drop = ["DROP TRIGGER zocket_refuse"]
    else:
        pytest.skip(f"no trigger for {connection.vendor}")
    with connection.cursor() as cursor:
        for sql in create:
            cursor.execute(sql)
    yield
    with connection.cursor() as cursor:
        for sql in drop:
            cursor.execute(sql)


async def test_a_database_error_on_save_undoes_the_step(connect, refusing_trigger):
    client = await connect()
    assert await client.call("ledger", "t", "add", amount=1) == 1  # version 2: allowed
    frame = await client.call_raw("ledger", "t", "add", amount=1)
    assert (frame["code"], frame["error"]) == ("unavailable", "the change could not be saved; nothing changed")
    assert hot_actors.get("ledger", "t").state.total == 1
    assert (await row("ledger", "t"))["state"]["total"] == 1


# -- restoring what no longer fits ----------------------------------------------------------


async def test_a_stale_owner_never_overwrites_a_newer_snapshot(connect):
    """Another worker saved meanwhile (this one's lease lapsed): the write is refused, the instance let go."""
    client = await connect()
    assert await client.call("counter", "fenced", "add", amount=2) == 2
    await put("counter", "fenced", {"count": 40}, 7)  # the other owner's later save
    refused = await client.call_raw("counter", "fenced", "increment")
    assert refused["code"] == "unavailable"
    assert await row("counter", "fenced") == {"state": {"count": 40}, "version": 7, "schema_version": 1}
    assert hot_actors.get("counter", "fenced") is None
    assert await client.call("counter", "fenced", "increment") == 41  # restored from the newer snapshot
    assert (await row("counter", "fenced"))["version"] == 8


async def test_an_old_snapshot_goes_through_upgrade_state(connect):
    await put("profile", "ada", {"first": "Ada", "last": "Lovelace"}, version=7, schema_version=1)
    client = await connect()
    assert await client.subscribe_state("profile", "ada") == ({"full_name": "Ada Lovelace", "tags": []}, 7)
    await hot_actors.adeactivate("profile", "ada")
    # Written back in the new shape, with the new schema_version, though no step changed it.
    assert await row("profile", "ada") == {
        "state": {"full_name": "Ada Lovelace", "tags": []},
        "version": 7,
        "schema_version": 2,
    }


async def test_a_failing_upgrade_fails_the_activation(connect, caplog):
    await put("profile", "bad", {"first": "Ada"}, version=3, schema_version=1)  # no "last"
    client = await connect()
    with caplog.at_level(logging.ERROR, logger="zocket_django"):
        frame = await client.call_raw("profile", "bad", "rename", full_name="x")
    assert frame["code"] == "unavailable"
    assert frame["error"] == "profile/bad is unavailable: its saved state could not be upgraded"
    assert any("Profile.upgrade_state failed" in r.getMessage() for r in caplog.records)
    assert hot_actors.count() == 0
    assert (await row("profile", "bad"))["state"] == {"first": "Ada"}  # untouched


async def test_an_invalid_snapshot_is_refused_loudly_and_never_replaced(connect, caplog):
    await put("strict", "s", {"count": "many"}, version=4)
    client = await connect()
    with caplog.at_level(logging.ERROR, logger="zocket_django"):
        calls = await asyncio.gather(*(client.call_raw("strict", "s", "bump") for _ in range(3)))
        await client.send_json_to({"type": "state:sub", "actor": "strict", "actorId": "s"})
        error = await client.expect("error")
    # Every request queued behind the failed activation is answered, none ran.
    for frame in calls:
        assert frame["code"] == "unavailable"
        assert frame["error"] == "strict/s is unavailable: its saved state does not fit the actor any more"
    assert error["code"] == "unavailable"
    assert error["ref"] == {"type": "state:sub", "actor": "strict", "actorId": "s"}
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("refused the snapshot of strict/s (version 4)" in m and "StrictState" in m for m in logged)
    assert hot_actors.count() == 0  # nothing broken stays hot
    await hot_actors.adeactivate_all()
    assert (await row("strict", "s"))["state"] == {"count": "many"}  # never overwritten by defaults

    # Once the snapshot is repaired, the next request activates the instance.
    await put("strict", "s", {"count": 41}, version=4)
    assert await client.call("strict", "s", "bump") == 42


async def test_a_database_outage_at_activation_is_retried_by_the_next_request(connect, monkeypatch):
    await put("strict", "o", {"count": 1}, version=1)

    def down(*args):
        raise OperationalError("connection refused")

    monkeypatch.setattr(snapshot_rows, "load_snapshot", down)
    client = await connect()
    frame = await client.call_raw("strict", "o", "bump")
    assert (frame["code"], frame["error"]) == (
        "unavailable",
        "strict/o is unavailable: its saved state could not be loaded",
    )
    monkeypatch.undo()
    assert await client.call("strict", "o", "bump") == 2  # not the defaults: the snapshot came back


def test_a_snapshot_and_its_outcomes_are_read_in_one_transaction_without_a_savepoint():
    """``load_measured`` holds the transaction (the outcomes are read under the snapshot's lock);
    ``load_snapshot`` joins it instead of opening a savepoint on every activation."""
    snapshot_rows.save_snapshot("strict", "one", {"count": 3}, 3, 1, None)
    with CaptureQueriesContext(snapshot_rows.snapshot_connection()) as queries:
        loaded = snapshot_rows.load_measured("strict", "one", 0.0)
    assert loaded is not None and loaded[:2] == ({"count": 3}, 3)
    assert [q["sql"] for q in queries.captured_queries if "SAVEPOINT" in q["sql"].upper()] == []


async def test_a_schema_version_change_without_a_hook_is_refused(connect):
    await put("strict", "v", {"count": 1}, version=1, schema_version=3)
    client = await connect()
    assert (await client.call_raw("strict", "v", "bump"))["code"] == "unavailable"


# -- declarations ---------------------------------------------------------------------------


@isolate_actors()
def test_persistence_options_are_checked():
    class S(BaseModel):
        n: int = 0

    class BadMode(Actor):
        name = "bad_mode_test"
        State = S
        persist = "sometimes"

    class CheckpointWithoutPersist(Actor):
        name = "checkpoint_test"
        State = S
        checkpoint_every = 5

    class BadSchema(Actor):
        name = "bad_schema_test"
        State = S
        persist = Persist.WRITE_THROUGH
        schema_version = 0

        def upgrade_state(self, data, schema_version):  # not a classmethod
            return data

    assert [p.id for p in BadMode.spec.problems] == ["zocket.E007"]
    assert "must be one of Persist.NONE" in BadMode.spec.problems[0].message
    assert "needs persist = Persist.ON_DEACTIVATE" in CheckpointWithoutPersist.spec.problems[0].message
    assert [p.message.split(" ")[0] for p in BadSchema.spec.problems] == ["schema_version", "upgrade_state"]
    assert all(p.hint and p.obj is BadSchema for p in BadSchema.spec.problems)


@isolate_actors()
def test_modes_are_plain_strings_too():
    class S(BaseModel):
        n: int = 0

    class ByString(Actor):
        name = "by_string_test"
        State = S
        persist = "write_through"

        @method
        async def noop(self, ctx) -> None:
            pass

    assert ByString.spec.persist is Persist.WRITE_THROUGH and ByString.spec.problems == []


# -- PostgreSQL specifics ----------------------------------------------------------------------


@pytest.mark.postgres
async def test_postgresql_stores_the_state_as_jsonb(connect):
    client = await connect()
    await client.call("ledger", "pg", "add", amount=2)

    @_in_thread
    def column_type():
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT pg_typeof(state)::text FROM {Snapshot._meta.db_table} WHERE actor_id = 'pg'")
            return cursor.fetchone()[0]

    assert await column_type() == "jsonb"


@pytest.mark.postgres
async def test_postgresql_saves_of_different_instances_run_in_parallel(connect, monkeypatch):
    """Write-through saves use the thread pool on PostgreSQL: a slow save does not hold up other instances."""
    original = snapshot_rows.save_snapshot
    running, peak = 0, 0

    def slow_save(*args):
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        try:
            time.sleep(0.2)
            return original(*args)
        finally:
            running -= 1

    monkeypatch.setattr(snapshot_rows, "save_snapshot", slow_save)
    client = await connect()
    assert await asyncio.gather(*(client.call("ledger", f"p{i}", "add", amount=i) for i in range(3))) == [0, 1, 2]
    assert peak >= 2


def test_actor_ids_must_fit_the_snapshot_table(settings):
    from django.core import checks

    settings.ZOCKET = {"MAX_ACTOR_ID_LENGTH": 300}
    errors = [e for e in checks.run_checks(tags=["zocket"]) if e.id == "zocket.E012"]
    assert len(errors) == 1 and "at most 255 characters" in errors[0].msg
    settings.ZOCKET = {"MAX_ACTOR_ID_LENGTH": 255}
    assert not [e for e in checks.run_checks(tags=["zocket"]) if e.id == "zocket.E012"]
