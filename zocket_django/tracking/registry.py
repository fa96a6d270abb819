"""Where each followed object of a state is: one ``Entry`` per model, list and dict.

An entry links a node to its parent's entry and to its key there: a field
name, a dict key, or, in a list, an index *hint*. Hints go stale when items
are inserted or removed before them; instead of renumbering every item, a
list keeps a log of those shifts, and a child replays the ones it has not seen
when it is next located (``locate``). A long log is settled by renumbering the
list once. ``locate`` checks every step of the way (``parent[key] is node``):
a node that is no longer where its entry says gives ``None``, and the recorder
then falls back to a full diff rather than write a wrong path.

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

    __slots__ = ("epoch", "key", "node", "rec", "shape", "shifts", "up")

    def __init__(self, node: Any, rec: Recorder, up: Entry | None, key: Any, shape: Shape) -> None:
        self.node = node
        self.rec = rec
        self.up = up
        self.key = key
        self.shape = shape
        #: In a list: how many of the parent's shifts ``key`` already accounts for.
        self.epoch = len(up.shifts) if up is not None and up.shifts is not None else 0
        #: For a list node: (index, +1 inserted / -1 removed) since the last renumbering.
        self.shifts: list[tuple[int, int]] | None = [] if isinstance(node, list) else None


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
            i = e.key
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


def shifted(entry: Entry, at: int, delta: int) -> None:
    """Items at ``at`` and after moved by ``delta`` (an insert, +1, or a removal, -1)."""
    shifts = entry.shifts
    assert shifts is not None
    shifts.append((at, delta))
    if len(shifts) > MAX_SHIFTS:
        renumber(entry)


def renumber(entry: Entry) -> None:
    """Give every child of a list its current index, and forget the shifts."""
    entry.shifts = []
    for i, item in enumerate(entry.node):
        child = NODES.get(id(item))
        if child is not None and child.up is entry and child.node is item:
            child.key, child.epoch = i, 0
