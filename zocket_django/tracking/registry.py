"""Where each followed object of a state is: one ``Entry`` per model, list and dict.

An entry links a node to its parent's entry and to its key there: a field
name, a dict key, or, in a list, an index *hint*. Hints go stale when items
are inserted or removed before them, and renumbering every later item would
make a step cost the size of the list. So a list child's hint is a *virtual*
index: its index plus the list's ``base``. Inserting or removing at the front
moves ``base`` and no hint (a queue's ``pop(0)`` costs the same at any size);
at the end nothing moves. Only an insert or removal in the middle is logged
(as a shift at a virtual index), and a child replays the shifts it has not
seen when it is next located (``locate``). A long log is settled by
renumbering the list once (the middle insert itself already moved every later
pointer of the list). ``locate`` checks every step of the way
(``parent[key] is node``): a node that is no longer where its entry says gives
``None``, and the recorder then falls back to a full diff rather than write a
wrong path.

The map is keyed by ``id()`` and holds its nodes, so an id cannot be reused
while it is registered; each recorder remembers its ids to let go of them.
"""

from __future__ import annotations

from itertools import islice
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .recorder import Recorder
    from .shapes import Shape

#: Shifts a list logs before it renumbers its children.
MAX_SHIFTS = 256
_MISSING = object()
#: The key of a node removed from the state during the current step (see ``containers.detach``).
FLOATING: Any = object()


class Entry:
    """One followed node: where it is, whose state it belongs to, its shape."""

    __slots__ = ("base", "epoch", "key", "node", "rec", "shape", "shifts", "up")

    def __init__(self, node: Any, rec: Recorder, up: Entry | None, key: Any, shape: Shape) -> None:
        self.node = node
        self.rec = rec
        self.up = up
        self.key = key
        self.shape = shape
        #: In a list: how many of the parent's shifts ``key`` already accounts for.
        self.epoch = len(up.shifts) if up is not None and up.shifts is not None else 0
        #: For a list node: (virtual index, +1 inserted / -1 removed) since the last renumbering.
        self.shifts: list[tuple[int, int]] | None = [] if isinstance(node, list) else None
        #: For a list node: the virtual index of its first item (children's keys are virtual).
        self.base = 0


def relink(entry: Entry, up: Entry | None, key: Any) -> None:
    """``entry``'s node is now at ``up[key]``."""
    entry.up, entry.key = up, key
    entry.epoch = len(up.shifts) if up is not None and up.shifts is not None else 0


NODES: dict[int, Entry] = {}


def entry_of(obj: Any) -> Entry | None:
    entry = NODES.get(id(obj))
    return entry if entry is not None and entry.node is obj else None


def locate(entry: Entry) -> list[str | int] | None:
    """The path of ``entry``'s node from the state's root.

    ``FLOATING`` when it was removed in this step, ``None`` when it is not
    where the entries say (the recorder lost track).
    """
    parts: list[str | int] = []
    e = entry
    while (up := e.up) is not None:
        parent = up.node
        if up.shifts is not None:
            if e.epoch != len(up.shifts):
                hint = _replay(up.shifts, e.epoch, e.key)
                if hint is None:
                    return None
                e.key, e.epoch = hint, len(up.shifts)
            i = e.key - up.base
            if not (0 <= i < len(parent) and list.__getitem__(parent, i) is e.node):
                return None
            parts.append(i)
        else:
            holder = parent if isinstance(parent, dict) else parent.__dict__
            if dict.get(holder, e.key, _MISSING) is not e.node:
                return None
            parts.append(e.key)
        e = up
    if e.key is FLOATING:
        return FLOATING  # type: ignore[no-any-return]
    if e.node is not e.rec.root:
        return None
    parts.reverse()
    return parts


def _replay(shifts: list[tuple[int, int]], since: int, hint: int) -> int | None:
    for at, delta in islice(shifts, since, None):
        if delta > 0:
            if hint >= at:
                hint += 1
        elif hint == at:
            return None
        elif hint > at:
            hint -= 1
    return hint


def key_at(entry: Entry, index: int) -> int:
    """The key (virtual index) of the child at ``index`` of the list of ``entry``."""
    return entry.base + index


def inserted(entry: Entry, at: int, size: int) -> int:
    """An item goes in at index ``at`` of the list of ``entry`` (``size`` items before): its key.

    Called before the child is attached (its entry counts the shift as seen).
    """
    if at == 0:
        entry.base -= 1  # every item moves up one, and so does every virtual index: nothing to log
    elif at < size:
        assert entry.shifts is not None
        if len(entry.shifts) >= MAX_SHIFTS:
            renumber(entry)  # before the insert, which the list does not hold yet
        entry.shifts.append((entry.base + at, +1))
    return entry.base + at


def removed(entry: Entry, at: int, size: int) -> None:
    """The item at index ``at`` of the list of ``entry`` (``size`` items after) left it."""
    if at == 0:
        entry.base += 1
    elif at < size:  # not the last one (nothing follows that)
        assert entry.shifts is not None
        entry.shifts.append((entry.base + at, -1))
        if len(entry.shifts) > MAX_SHIFTS:
            renumber(entry)  # after the removal, which the list already shows


def renumber(entry: Entry) -> None:
    """Give every child of a list its current index, and forget the shifts (and the base)."""
    entry.shifts = []
    entry.base = 0
    for i, item in enumerate(entry.node):
        child = NODES.get(id(item))
        if child is not None and child.up is entry and child.node is item:
            child.key, child.epoch = i, 0
