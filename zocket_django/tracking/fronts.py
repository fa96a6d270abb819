"""The first items of the dump's long lists, removed without moving every pointer.

CPython's ``list.pop(0)`` moves every pointer behind the item: at 100,000
items that takes longer than a whole step on a small state. The user's own
``del self.state.items[0]`` pays it once, in the state; the committed dump
(``jsondoc``) need not pay it again. Removing the first item of a list of at
least ``LONG`` items only counts it here; the items counted are cut out (one
``del lst[:k]``) once ``CUT_AT`` are pending, before a replacement diffs what
holds them, and before anyone outside the recorder reads the dump
(``Recorder.dump``). An item put first again takes a counted slot back.

Operations and patches keep logical indexes; ``jsondoc`` adds a list's
``offset`` to find an item in it. Every change here goes into the step's undo
log, so a step undone (``jsondoc.revert``) leaves the dump as it found it.
"""

from __future__ import annotations

from typing import Any

#: Lists shorter than this lose their first item with ``pop(0)``: moving their pointers is cheap.
LONG = 1024
#: Items counted before a list is cut: one move of its pointers per this many removals.
CUT_AT = 1024
#: Lists with counted items at once; past it all are cut (a list dropped from the dump stays held until then).
MAX_LISTS = 16


class Fronts:
    """The dump's lists whose first items are removed but not cut out yet."""

    __slots__ = ("pending",)

    def __init__(self) -> None:
        #: ``id`` of a list of the dump → ``[the list, how many of its first items are removed]``.
        self.pending: dict[int, list[Any]] = {}

    def offset(self, lst: list[Any]) -> int:
        entry = self.pending.get(id(lst))
        return entry[1] if entry is not None else 0

    def remove_first(self, lst: list[Any], undo: list[Any]) -> bool:
        """Count the first item of ``lst`` as removed; ``False`` when ``lst`` is too short to bother."""
        entry = self.pending.get(id(lst))
        if entry is None:
            if len(lst) < LONG:
                return False
            if len(self.pending) >= MAX_LISTS:
                self.cut_all(undo)
            entry = self.pending[id(lst)] = [lst, 0]
        entry[1] += 1
        undo.append((_uncount, (entry,)))
        if entry[1] >= CUT_AT:
            self.cut(lst, undo)
        return True

    def insert_first(self, lst: list[Any], value: Any, undo: list[Any]) -> bool:
        """Put ``value`` first, in the last slot counted as removed; ``False`` when there is none."""
        entry = self.pending.get(id(lst))
        if entry is None or entry[1] == 0:
            return False
        slot = entry[1] - 1
        undo.append((_refill, (entry, slot, lst[slot])))
        lst[slot] = value
        entry[1] = slot
        return True

    def cut(self, lst: list[Any], undo: list[Any] | None) -> None:
        """Cut out the items counted as removed from ``lst`` (``undo``: ``None`` outside a step)."""
        entry = self.pending.pop(id(lst))
        removed = lst[: entry[1]]
        del lst[: entry[1]]
        if undo is not None:
            undo.append((_uncut, (self, entry, removed)))

    def cut_all(self, undo: list[Any] | None) -> None:
        for lst, _ in list(self.pending.values()):
            self.cut(lst, undo)


def _uncount(entry: list[Any]) -> None:
    entry[1] -= 1


def _refill(entry: list[Any], slot: int, old: Any) -> None:
    entry[0][slot] = old
    entry[1] = slot + 1


def _uncut(fronts: Fronts, entry: list[Any], removed: list[Any]) -> None:
    """The same entry back: the undo entries before the cut hold it."""
    entry[0][0:0] = removed
    entry[1] = len(removed)
    fronts.pending[id(entry[0])] = entry
