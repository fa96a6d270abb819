"""The rows of durable actors (``Snapshot``, ``SnapshotPatch``, ``CallOutcome``), read and written in worker threads.

Plain functions, run off the event loop by ``in_db_thread``; ``persistence``
decides when to call them. Every write is fenced by the version the writer
last read or wrote, so a stale owner never overwrites another worker's save.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from django.db import IntegrityError, connections, router, transaction
from django.db.backends.sqlite3.creation import DatabaseCreation
from django.utils import timezone

from . import protocol, transactions
from .call_rows import Row, delete_outcomes, load_outcomes, write_outcomes
from .conf import zocket_settings
from .db import database_threads, to_thread
from .patches import apply as apply_patches

T = TypeVar("T")


def load_snapshot(actor: str, actor_id: str) -> tuple[Any, int, int, int, Any] | None:
    """``(state, version, schema_version, patch rows, calls)`` of the saved snapshot, or ``None``.

    ``calls`` is the ``calls`` column: a window saved whole by an earlier
    version (outcomes are ``CallOutcome`` rows now, ``load_measured``).

    The state is brought to ``version`` by the patch log's rows (in version
    order); rows at or below ``state_version`` are leftovers of a compaction
    and are skipped. A gap in the log is a damaged snapshot: ``ValueError``.
    """
    from .models import Snapshot

    # One transaction, the snapshot row locked: a compaction that moves ``state_version`` and
    # deletes the rows below it commits either wholly before this read or wholly after it. Read
    # in two statements without the lock, PostgreSQL (read committed) could show the old
    # snapshot and then the log without the rows the compaction just folded: a false gap.
    # Inside ``load_measured``'s transaction it joins that one: a read needs no savepoint.
    with transaction.atomic(using=router.db_for_write(Snapshot), savepoint=False):
        return _load_locked(actor, actor_id)


def _load_locked(actor: str, actor_id: str) -> tuple[Any, int, int, int, Any] | None:
    from .models import Snapshot, SnapshotPatch

    row = (
        Snapshot.objects.filter(actor=actor, actor_id=actor_id)
        .select_for_update()
        .values_list("state", "version", "schema_version", "state_version", "calls")
        .first()
    )
    if row is None:
        return None
    state, version, schema_version, state_version, calls = row
    if state_version is None or state_version == version:
        return state, version, schema_version, 0, calls
    logged = SnapshotPatch.objects.filter(
        actor=actor, actor_id=actor_id, version__gt=state_version, version__lte=version
    ).order_by("version")
    rows = 0
    for at, ops in logged.values_list("version", "patches").iterator():
        if at != state_version + rows + 1:
            break
        state = apply_patches(state, ops, in_place=True)
        rows += 1
    if state_version + rows != version:
        raise ValueError(f"the patch log of {actor}/{actor_id} lacks version {state_version + rows + 1}")
    return state, version, schema_version, rows, calls


class SnapshotConflict(Exception):
    """The saved snapshot is not the one this instance last read or wrote.

    Another worker took the instance over (a lease that expired while this
    one stalled) and saved since: writing now would lose its changes.
    """


def save_snapshot(
    actor: str,
    actor_id: str,
    state: Any,
    version: int,
    schema_version: int,
    expected: int | None,
    logged: bool = False,
    calls: Sequence[Row] = (),
    expire_before: float | None = None,
) -> None:
    """Write the whole snapshot if the stored one is still at ``expected`` (``None``: there is none).

    The condition fences off a stale owner; it costs nothing more than the
    write itself (one UPDATE, or one INSERT for a new instance). ``logged``:
    the instance has patch rows, which the new state makes obsolete (deleted
    in the same transaction). ``calls``, the outcomes of keyed calls kept
    since the last save (``callkeys``), are inserted as rows in the same
    transaction, and rows from before ``expire_before`` deleted (``call_rows``).
    The snapshot's ``calls`` column, where earlier versions kept the whole
    window, is emptied: its entries came back as unsaved and are among ``calls``.
    """
    from .models import Snapshot, SnapshotPatch

    if expected is None:
        try:
            with transaction.atomic():
                Snapshot.objects.create(
                    actor=actor,
                    actor_id=actor_id,
                    state=state,
                    version=version,
                    schema_version=schema_version,
                    calls=[],
                )
                write_outcomes(actor, actor_id, calls, expire_before)
        except IntegrityError:
            raise SnapshotConflict(f"{actor}/{actor_id} was saved by someone else meanwhile") from None
        return
    with transaction.atomic():
        updated = Snapshot.objects.filter(actor=actor, actor_id=actor_id, version=expected).update(
            state=state,
            version=version,
            schema_version=schema_version,
            state_version=None,
            calls=[],
            updated_at=timezone.now(),
        )
        if not updated:
            raise SnapshotConflict(f"{actor}/{actor_id} is no longer at version {expected} in the database")
        write_outcomes(actor, actor_id, calls, expire_before)
        if logged:
            SnapshotPatch.objects.filter(actor=actor, actor_id=actor_id, version__lte=version).delete()


def append_patches(
    actor: str,
    actor_id: str,
    patches: list[dict[str, Any]],
    version: int,
    expected: int,
    calls: Sequence[Row] = (),
    expire_before: float | None = None,
) -> None:
    """Save one step as a patch row, if the snapshot is still at ``expected`` (``calls`` with it, as rows).

    Fenced like ``save_snapshot``: the snapshot row's ``version`` moves to the
    step's in the same transaction, conditionally (on PostgreSQL that UPDATE
    leaves the TOASTed state where it is: its cost does not grow with it).
    The state column stays at ``state_version``.
    """
    from django.db.models import F
    from django.db.models.functions import Coalesce

    from .models import Snapshot, SnapshotPatch

    with transaction.atomic():
        updated = Snapshot.objects.filter(actor=actor, actor_id=actor_id, version=expected).update(
            version=version,
            state_version=Coalesce(F("state_version"), F("version")),
            updated_at=timezone.now(),
        )
        if not updated:
            raise SnapshotConflict(f"{actor}/{actor_id} is no longer at version {expected} in the database")
        write_outcomes(actor, actor_id, calls, expire_before)
        SnapshotPatch.objects.create(actor=actor, actor_id=actor_id, version=version, patches=patches)


def delete_snapshot(actor: str, actor_id: str) -> bool:
    from .models import Snapshot, SnapshotPatch

    with transaction.atomic():
        SnapshotPatch.objects.filter(actor=actor, actor_id=actor_id).delete()
        delete_outcomes(actor, actor_id)
        deleted, _ = Snapshot.objects.filter(actor=actor, actor_id=actor_id).delete()
    return deleted > 0


def snapshot_connection() -> Any:
    """The connection (of this thread) that snapshots are written with."""
    from .models import Snapshot

    return connections[router.db_for_write(Snapshot)]


def vendor() -> str:
    return str(snapshot_connection().vendor)


def load_measured(
    actor: str, actor_id: str, since: float
) -> tuple[Any, int, int, int, Any, int, list[list[Any]], float | None] | None:
    """``load_snapshot``, the size of the state as JSON (what patch rows are weighed against), and
    the kept call outcomes younger than ``since`` with the time of the oldest row (``load_outcomes``).
    """
    from .models import Snapshot

    # One transaction for both reads (``load_snapshot``'s block joins it, no savepoint): the
    # outcomes are read while the snapshot row is still locked, so a save (which moves that row
    # and writes its outcomes in one transaction) commits wholly before or wholly after. On
    # PostgreSQL (read committed) two transactions could show the snapshot before a save and
    # its outcomes after it: outcomes of steps the loaded state does not hold.
    with transaction.atomic(using=router.db_for_write(Snapshot)):
        row = load_snapshot(actor, actor_id)
        if row is None:
            return None
        outcomes, oldest = load_outcomes(actor, actor_id, since)
    return (*row, len(protocol.encode(row[0])), outcomes, oldest)


def save_measured(save: Callable[[], None], state: Any, measure: bool) -> int:
    """Run ``save`` (a ``save_snapshot`` of ``state``); the state's size as JSON when ``measure``, else 0.

    Both in the database thread: a large state is encoded off the event loop.
    The size is wanted only where steps may be saved as patch rows (weighed against it).
    """
    save()
    return len(protocol.encode(state)) if measure else 0


async def in_db_thread(fn: Callable[..., T], *args: Any, reads_only: bool = False) -> T:
    """Run ``fn`` in one of zocket's database threads, off the event loop, with Django's connection handling.

    Not Django's one thread-sensitive thread, where sockets are authenticated:
    ``DB_THREADS`` threads of their own, so that different instances load and
    save in parallel. SQLite allows one writer at a time: its writes have one
    thread instead of racing for the lock, and so does everything on an
    in-memory SQLite database (tests), whose shared cache locks whole tables;
    on SQLite each call also takes the database's turn (``db.sqlite_turn``).
    Inside a step whose sync handler holds a transaction, ``fn`` runs in that
    transaction instead: the save commits with the handler's own writes.
    """
    held = transactions.held()
    if held is not None:
        return await held.run(fn, *args)

    # From the settings, not ``connections[alias]``: on the event loop that makes a new
    # DatabaseWrapper in every task's context (a tenth of the loop's time in a burst of activations).
    from .models import Snapshot

    database = connections.settings[router.db_for_write(Snapshot)]
    if not str(database.get("ENGINE", "")).endswith("sqlite3"):
        threads = database_threads("zocket-db", zocket_settings().DB_THREADS)
    elif reads_only and not DatabaseCreation.is_in_memory_db(database.get("NAME", "")):
        # One: SQLite statements take turns anyway (``db.sqlite_turn``); more threads
        # would only wait for the turn and compete with the event loop for the GIL.
        threads = database_threads("zocket-db-read", 1)
    else:
        threads = database_threads("zocket-db-write", 1)
    return await to_thread(fn, executor=threads)(*args)
