"""The rows of kept keyed-call outcomes (``CallOutcome``), written with the state they belong to.

Plain functions run in zocket's database threads, always inside the
transaction of a fenced snapshot write (``snapshot_rows``) or of a load: an
outcome is committed exactly when the step that produced it is. A save
inserts only the outcomes kept since the previous save, so its cost follows
the step, not the size of the window (issue 17); expired rows are deleted in
bulk, by age, when the caller asks (``persistence`` decides when).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from django.db import connections, router

if TYPE_CHECKING:
    from .callkeys import CallWindow

#: A row as ``callkeys.CallWindow.dump`` shapes it: ``[identity, key, fingerprint, at, outcome]``.
Row = Sequence[Any]


def write_outcomes(actor: str, actor_id: str, rows: Sequence[Row], expire_before: float | None) -> None:
    """Insert ``rows`` (replacing a stale row of the same key) and delete rows from before ``expire_before``.

    A key can meet an older row of its own: its outcome aged out of the
    window but the row was not deleted yet. The insert then replaces it.
    """
    from .models import CallOutcome

    if expire_before is not None:
        CallOutcome.objects.filter(actor=actor, actor_id=actor_id, at__lt=expire_before).delete()
    if not rows:
        return
    # MySQL/MariaDB's upsert (ON DUPLICATE KEY UPDATE) takes no conflict target and refuses one:
    # the unique columns are named only where the backend supports it (SQLite, PostgreSQL).
    alias = router.db_for_write(CallOutcome)
    target = connections[alias].features.supports_update_conflicts_with_target
    CallOutcome.objects.using(alias).bulk_create(
        [
            CallOutcome(actor=actor, actor_id=actor_id, caller=i, key=k, fingerprint=fp, at=at, outcome=outcome)
            for i, k, fp, at, outcome in rows
        ],
        update_conflicts=True,
        unique_fields=["actor", "actor_id", "caller", "key"] if target else None,
        update_fields=["fingerprint", "outcome", "at"],
    )


def load_outcomes(actor: str, actor_id: str, since: float) -> tuple[list[list[Any]], float | None]:
    """The rows younger than ``since`` (oldest first), and the time of the oldest row kept at all.

    The second tells the store whether expired rows are still there (left by
    a worker that crashed before deleting them).
    """
    from django.db.models import Min

    from .models import CallOutcome

    mine = CallOutcome.objects.filter(actor=actor, actor_id=actor_id)
    rows = [
        list(r)
        for r in mine.filter(at__gt=since).order_by("at").values_list("caller", "key", "fingerprint", "at", "outcome")
    ]
    return rows, mine.aggregate(first=Min("at"))["first"]


def delete_outcomes(actor: str, actor_id: str) -> None:
    from .models import CallOutcome

    CallOutcome.objects.filter(actor=actor, actor_id=actor_id).delete()


#: Rows are deleted once the oldest is this share of ``CALL_KEY_SECONDS`` past its age: each delete
#: then takes a batch (about a quarter of a window's worth), not a row or two with every save.
EXPIRE_SLACK = 0.25


class OutcomeRows:
    """One instance's outcome rows as its store sees them: what a save writes, and what it deletes.

    A save writes the window's ``unsaved`` outcomes (``pending``) and, once
    committed, marks them saved (``committed``). ``oldest`` is the time of
    the oldest row that may still be in the database (a lower bound): a save
    deletes rows by age only when that one is well past ``seconds`` (``due``),
    in the save's own transaction.
    """

    def __init__(self, window: CallWindow) -> None:
        self.window = window
        self.seconds = window.seconds
        self.oldest: float | None = None

    def pending(self, now: float) -> tuple[list[list[Any]], float | None]:
        """``(rows, expire_before)`` for a save now."""
        return self.window.unsaved(), self.due(now)

    def due(self, now: float) -> float | None:
        """The ``expire_before`` for a save now: ``None`` unless old rows are worth deleting."""
        cutoff = now - self.seconds
        if self.oldest is None or self.oldest >= cutoff - self.seconds * EXPIRE_SLACK:
            return None
        return cutoff

    def committed(self, rows: Sequence[Row], expired_before: float | None) -> None:
        """A save committed ``rows`` (and deleted those before ``expired_before``, if set)."""
        self.window.saved(rows)
        if expired_before is not None:
            self.oldest = expired_before  # a lower bound of what is left
        firsts = [r[3] for r in rows]
        if firsts:
            first = min(firsts)
            self.oldest = first if self.oldest is None else min(self.oldest, first)
