"""The outcomes of recent keyed calls of one instance: what makes a retried call run once.

A client may put a ``key`` on an ``rpc`` frame. The first call with that key
runs; its outcome (a result, or the error the handler ended with) is kept
here, and every later call with the same key from the same caller identity is
answered with it instead of running again.

The guarantee is by age: an outcome is kept for ``CALL_KEY_SECONDS`` after its
call ran, whatever the call rate, and only age ever removes one. Evicting the
oldest entry to make room would break exactly the promise under load: at ~130
calls/s a window of 1,000 forgot outcomes after ~8 s, and a retry that came
later ran a second time. Memory is bounded instead by refusing: a new keyed
call is answered ``overloaded`` (nothing runs; retrying later is safe) while the
instance keeps ``CALL_KEYS_PER_INSTANCE`` outcomes, or its caller's identity
``CALL_KEYS_PER_CALLER`` (so one caller cannot take every place), all younger
than ``CALL_KEY_SECONDS``. A retry of a kept key is always answered.

A key is tied to the call it was first used for (a fingerprint of the method
and its validated input): reusing it for a different call is refused rather
than answered with someone else's result.

For durable actors each outcome is saved as a row of its own in the same
commit as the state (``unsaved`` / ``saved``: a save writes only what was
kept since the last one, not the whole window), so a retry after a crash or
a failover finds the outcome the first attempt committed. Times are
wall-clock seconds because they outlive the process.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

#: Longest accepted key (the frame's ``key`` field).
MAX_KEY_LENGTH = 128


class KeyReused(Exception):
    """The key was already used by this caller for a different call."""


#: Why a new keyed call was refused (``CallWindow.refusal``): whose bound is reached.
INSTANCE_FULL, CALLER_FULL = "instance", "caller"


@dataclass(frozen=True, slots=True)
class Entry:
    fingerprint: str
    at: float
    #: Encoded ``{"result": ...}`` or ``{"error": ..., "code": ...}``: an ``rpc:result`` minus type and id.
    outcome: str


def fingerprint(method: str, arguments: Any) -> str:
    """A short digest of a call: the same method with the same input gives the same one."""
    text = json.dumps([method, arguments], sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


class CallWindow:
    """Recent outcomes by (identity, key), oldest first, each kept for ``seconds``.

    ``per_caller`` and ``per_instance`` bound how many there may be: past them
    new keys are refused (``refusal``), never made room for.
    """

    def __init__(self, per_caller: int, per_instance: int, seconds: float) -> None:
        self.per_caller = per_caller
        self.per_instance = per_instance
        self.seconds = seconds
        self._order: OrderedDict[tuple[str, str], Entry] = OrderedDict()
        self._count: dict[str, int] = {}
        #: Entries kept since the last save (insertion order; the values are unused).
        self._unsaved: dict[tuple[str, str], None] = {}

    def __len__(self) -> int:
        return len(self._order)

    def lookup(self, identity: str, key: str, fp: str, now: float) -> str | None:
        """The remembered outcome, ``None`` if the key is new; ``KeyReused`` for a different call."""
        self.prune(now)
        entry = self._order.get((identity, key))
        if entry is None:
            return None
        if entry.fingerprint != fp:
            raise KeyReused(key)
        return entry.outcome

    def refusal(self, identity: str, now: float) -> str | None:
        """Whose bound a new key of ``identity`` would pass (``INSTANCE_FULL``, ``CALLER_FULL``), or ``None``.

        Asked before a new keyed call runs: its outcome must have a place for
        ``seconds``, and no kept one may be given up for it.
        """
        self.prune(now)
        if len(self._order) >= self.per_instance:
            return INSTANCE_FULL
        if self._count.get(identity, 0) >= self.per_caller:
            return CALLER_FULL
        return None

    def remember(self, identity: str, key: str, fp: str, outcome: str, now: float) -> None:
        """Keep ``outcome`` for the key for ``seconds`` (the bounds were checked by ``refusal``)."""
        self.forget(identity, key)
        self._order[(identity, key)] = Entry(fp, now, outcome)
        self._unsaved[(identity, key)] = None
        self._count[identity] = self._count.get(identity, 0) + 1
        self.prune(now)

    def forget(self, identity: str, key: str) -> None:
        self._unsaved.pop((identity, key), None)
        if self._order.pop((identity, key), None) is not None:
            left = self._count[identity] - 1
            if left:
                self._count[identity] = left
            else:
                del self._count[identity]

    def prune(self, now: float) -> None:
        """Drop entries older than ``seconds`` (the oldest are first)."""
        while self._order:
            (identity, key), entry = next(iter(self._order.items()))
            if now - entry.at < self.seconds:
                break
            self.forget(identity, key)

    # -- saved with the state -------------------------------------------------------------

    def unsaved(self) -> list[list[Any]]:
        """The outcomes kept since the last save, as ``dump`` rows: what the next save must write."""
        rows = []
        for identity, key in self._unsaved:  # every unsaved entry is kept (``forget`` drops both)
            entry = self._order[(identity, key)]
            rows.append([identity, key, entry.fingerprint, entry.at, entry.outcome])
        return rows

    def saved(self, rows: Sequence[Sequence[Any]]) -> None:
        """``rows`` (from ``unsaved``) are committed; an entry replaced since stays unsaved."""
        for identity, key, _, at, _ in rows:
            entry = self._order.get((identity, key))
            if entry is not None and entry.at == at:
                self._unsaved.pop((identity, key), None)

    def dump(self) -> list[list[Any]]:
        """JSON form, oldest first: ``[identity, key, fingerprint, at, outcome]`` each."""
        return [[i, k, e.fingerprint, e.at, e.outcome] for (i, k), e in self._order.items()]

    def load(self, data: Any, now: float, rows: Any = ()) -> None:
        """Replace the window with a saved one; malformed entries are skipped.

        ``rows`` are saved outcome rows; ``data`` a window as earlier versions
        saved it whole (``Snapshot.calls``), whose entries count as unsaved:
        the next save writes them as rows. Every saved outcome younger than
        ``seconds`` comes back, even past the bounds (saved by a worker with
        larger ones): new keys wait until they have aged out.
        """
        self._order.clear()
        self._count.clear()
        self._unsaved.clear()
        legacy = [i for i in data if _well_formed(i)] if isinstance(data, list) else []
        stored = [r for r in map(list, rows) if _well_formed(r)]
        kept = {(i[0], i[1]) for i in stored}
        legacy = [i for i in legacy if (i[0], i[1]) not in kept]
        for item in sorted([*legacy, *stored], key=lambda i: i[3]):
            identity, key, fp, at, outcome = item
            self.remember(identity, key, fp, outcome, at)
        self.saved(stored)
        self.prune(now)


def _well_formed(item: Any) -> bool:
    return (
        isinstance(item, list)
        and len(item) == 5
        and isinstance(item[0], str)
        and isinstance(item[1], str)
        and isinstance(item[2], str)
        and isinstance(item[3], int | float)
        and isinstance(item[4], str)
    )
