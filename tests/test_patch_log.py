"""Write-through saves as a patch log: fenced, acknowledged only when committed, restored by replay.

On SQLite the store writes whole snapshots (SQLite rewrites a row to change
any column), so these tests turn the log on for every database with the
module's own knobs; on PostgreSQL (``DATABASE_URL``) it runs as deployed.
"""

import pytest

from tests.test_persistence import _in_thread, row
from zocket_django import hot_actors, persistence
from zocket_django.models import Snapshot, SnapshotPatch
from zocket_django.node import current_node


@pytest.fixture
def logged(monkeypatch):
    """Every write-through step of any size goes to the log; compaction after 4 rows."""
    monkeypatch.setattr(persistence, "REWRITE_ROWS", frozenset())
    monkeypatch.setattr(persistence, "LOG_MIN_BYTES", 0)
    monkeypatch.setattr(persistence, "MAX_LOG_ROWS", 4)
    monkeypatch.setattr(persistence, "FOLD_AT", 1000.0)


@_in_thread
def log_rows(actor: str, actor_id: str) -> list[tuple[int, list]]:
    rows = SnapshotPatch.objects.filter(actor=actor, actor_id=actor_id).order_by("version")
    return list(rows.values_list("version", "patches"))


@_in_thread
def state_version(actor: str, actor_id: str) -> int | None:
    return Snapshot.objects.filter(actor=actor, actor_id=actor_id).values_list("state_version", flat=True).first()


def crash(actor: str, actor_id: str) -> None:
    """As after kill -9: the instance is gone, nothing saved, the rows stay."""
    current_node().runtime.drop(actor, actor_id)


@_in_thread
def forge_row(actor: str, actor_id: str, version: int, patches: list) -> None:
    SnapshotPatch.objects.create(actor=actor, actor_id=actor_id, version=version, patches=patches)


async def test_steps_are_saved_as_patch_rows_then_folded_into_the_snapshot(connect, logged):
    client = await connect()
    assert await client.call("ledger", "l", "add", amount=1) == 1  # on_activate's save wrote the row whole
    assert await log_rows("ledger", "l") == [
        (2, [{"op": "add", "path": "/entries/0", "value": 1}, {"op": "replace", "path": "/total", "value": 1}])
    ]
    assert await client.call("ledger", "l", "add", amount=2) == 3
    # Acknowledged means committed: the row's version moved with the step, the state column did not.
    assert (await row("ledger", "l"))["version"] == 3
    assert (await row("ledger", "l"))["state"]["total"] == 0
    assert await state_version("ledger", "l") == 1
    for amount in (3, 4):
        await client.call("ledger", "l", "add", amount=amount)
    # Four rows: folded into the snapshot behind the step that made the fourth.
    assert await client.call("ledger", "l", "peek") == 10
    assert await log_rows("ledger", "l") == []
    assert await row("ledger", "l") == {
        "state": {"entries": [1, 2, 3, 4], "total": 10, "activations": 1},
        "version": 5,
        "schema_version": 1,
    }
    assert await state_version("ledger", "l") is None


async def test_restore_is_the_snapshot_plus_the_log(connect, logged):
    """A crash between the log and its compaction: the next activation replays the rows."""
    client = await connect()
    for amount in (1, 2, 3):
        await client.call("ledger", "c", "add", amount=amount)
    assert len(await log_rows("ledger", "c")) == 3
    crash("ledger", "c")
    assert await client.call("ledger", "c", "peek") == 6
    assert hot_actors.get("ledger", "c").state.entries == [1, 2, 3]
    assert hot_actors.get("ledger", "c").state.activations == 2
    assert (await row("ledger", "c"))["version"] == 5  # on_activate's change saved on top


async def test_rows_at_or_below_the_snapshot_are_leftovers_and_a_gap_is_refused(connect, logged, caplog):
    client = await connect()
    for amount in (1, 2):
        await client.call("ledger", "g", "add", amount=amount)
    crash("ledger", "g")
    await forge_row("ledger", "g", 1, [{"op": "replace", "path": "/total", "value": 999}])  # below: ignored
    assert await client.call("ledger", "g", "peek") == 3
    crash("ledger", "g")
    # A row missing in the middle of the log: the activation fails, nothing is overwritten.
    snapshot = await row("ledger", "g")
    await forge_row("ledger", "g", snapshot["version"] + 2, [{"op": "replace", "path": "/total", "value": 7}])
    await _set_version("ledger", "g", snapshot["version"] + 2)
    refused = await client.call_raw("ledger", "g", "peek")
    assert refused["code"] == "unavailable"
    assert "lacks version" in caplog.text


@_in_thread
def _set_version(actor, actor_id, version):
    snap = Snapshot.objects.get(actor=actor, actor_id=actor_id)
    Snapshot.objects.filter(pk=snap.pk).update(version=version, state_version=snap.state_version or snap.version)


async def test_a_stale_owner_cannot_append(connect, logged):
    client = await connect()
    for amount in (1, 2):
        await client.call("ledger", "s", "add", amount=amount)
    await _set_version("ledger", "s", 9)  # another owner moved on (its rows are not needed here)
    refused = await client.call_raw("ledger", "s", "add", amount=5)
    assert refused["code"] == "unavailable"
    assert hot_actors.get("ledger", "s") is None
    assert [v for v, _ in await log_rows("ledger", "s")] == [2, 3]
