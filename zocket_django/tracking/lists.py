"""``TrackedList``: a list of a recorded state, journaling each change (see ``containers``).

Inserts and removals are recorded as single operations at an index (and move
the index hints of the items after it: ``registry.inserted``, ``registry.removed``); sorts, reversals,
slice changes and ``clear`` are recorded as the whole new list, diffed against
the old one at the end of the step. Importing this module adds lists to
``containers.KINDS``.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable
from typing import Any, SupportsIndex

from .containers import ADD, KINDS, REMOVE, SET, WHOLE, attach, detach, journal, reattach, replace
from .registry import Entry, inserted, key_at, removed
from .shapes import ListShape, Shape


def _index(i: SupportsIndex, size: int, what: str) -> int:
    index = operator.index(i)
    if index < 0:
        index += size
    if not 0 <= index < size:
        raise IndexError(f"{what} index out of range")
    return index


class TrackedList(list):  # type: ignore[type-arg]
    """A list of a recorded state. Behaves as a plain list when it is not in one."""

    __slots__ = ()

    def _insert(self, entry: Entry, index: int, value: Any) -> None:
        rec = entry.rec
        item: Shape = entry.shape.item  # type: ignore[attr-defined]
        new = item.to_json(value) if rec.precise else None
        key = inserted(entry, index, len(self))
        list.insert(self, index, attach(value, item, entry, key, rec))
        rec.undo.append((_undo_insert, self, entry, index))
        rec.record(entry, ADD, index, new)

    def _remove(self, entry: Entry, index: int) -> Any:
        value = list.pop(self, index)
        removed(entry, index, len(self))
        detach(value, entry.shape.item)  # type: ignore[attr-defined]
        entry.rec.undo.append((_undo_remove, self, entry, index, value))
        entry.rec.record(entry, REMOVE, index, None)
        return value

    def append(self, value: Any, /) -> None:
        entry = journal(self)
        if entry is None:
            list.append(self, value)
        else:
            self._insert(entry, len(self), value)

    def insert(self, index: SupportsIndex, value: Any, /) -> None:
        entry = journal(self)
        if entry is None:
            list.insert(self, index, value)
            return
        i, size = operator.index(index), len(self)
        i = min(max(i + size if i < 0 else i, 0), size)
        self._insert(entry, i, value)

    def extend(self, values: Iterable[Any], /) -> None:
        entry = journal(self)
        if entry is None:
            list.extend(self, values)
            return
        for value in list(values):
            self._insert(entry, len(self), value)

    def __iadd__(self, values: Iterable[Any]) -> TrackedList:  # type: ignore[override,misc]
        self.extend(values)
        return self

    def pop(self, index: SupportsIndex = -1, /) -> Any:
        entry = journal(self)
        if entry is None:
            return list.pop(self, index)
        if not self:
            raise IndexError("pop from empty list")
        return self._remove(entry, _index(index, len(self), "pop"))

    def remove(self, value: Any, /) -> None:
        entry = journal(self)
        if entry is None:
            list.remove(self, value)
        else:
            self._remove(entry, self.index(value))

    def __delitem__(self, index: SupportsIndex | slice) -> None:
        entry = journal(self)
        if entry is None:
            list.__delitem__(self, index)
        elif isinstance(index, slice):
            self._whole(entry, lambda: list.__delitem__(self, index))
        else:
            self._remove(entry, _index(index, len(self), "list assignment"))

    def __setitem__(self, index: SupportsIndex | slice, value: Any) -> None:
        entry = journal(self)
        if entry is None:
            list.__setitem__(self, index, value)  # type: ignore[index]
            return
        if isinstance(index, slice):
            self._whole(entry, lambda: list.__setitem__(self, index, value))
            return
        i = _index(index, len(self), "list assignment")
        rec, item = entry.rec, entry.shape.item  # type: ignore[attr-defined]
        new = item.to_json(value) if rec.precise else None
        old = list.__getitem__(self, i)
        list.__setitem__(self, i, replace(value, old, item, entry, key_at(entry, i), rec))
        rec.undo.append((_undo_set, self, entry, i, old))
        rec.record(entry, SET, i, new)

    def clear(self) -> None:
        entry = journal(self)
        if entry is None:
            list.clear(self)
        else:
            self._whole(entry, lambda: list.clear(self))

    def sort(self, *, key: Callable[[Any], Any] | None = None, reverse: bool = False) -> None:
        entry = journal(self)
        if entry is None:
            list.sort(self, key=key, reverse=reverse)
        else:
            self._whole(entry, lambda: list.sort(self, key=key, reverse=reverse))

    def reverse(self) -> None:
        entry = journal(self)
        if entry is None:
            list.reverse(self)
        else:
            self._whole(entry, lambda: list.reverse(self))

    def __imul__(self, times: SupportsIndex) -> TrackedList:  # type: ignore[override,misc]
        entry = journal(self)
        if entry is None:
            list.__imul__(self, times)
        else:
            self._whole(entry, lambda: list.__imul__(self, times))
        return self

    def _whole(self, entry: Entry, change: Callable[[], Any]) -> None:
        """A change recorded as the whole new list (diffed against the old one at the end)."""
        before = list(list.__iter__(self))
        reattach(self, entry, lambda: change())
        entry.rec.undo.append((_undo_whole, self, entry, before))
        entry.rec.record(entry, WHOLE, None, entry.shape.to_json(self) if entry.rec.precise else None)


def _undo_insert(node: TrackedList, entry: Entry, index: int) -> None:
    value = list.pop(node, index)
    removed(entry, index, len(node))
    detach(value, entry.shape.item)  # type: ignore[attr-defined]


def _undo_remove(node: TrackedList, entry: Entry, index: int, value: Any) -> None:
    key = inserted(entry, index, len(node))
    list.insert(node, index, attach(value, entry.shape.item, entry, key, entry.rec))  # type: ignore[attr-defined]


def _undo_set(node: TrackedList, entry: Entry, index: int, old: Any) -> None:
    current = list.__getitem__(node, index)
    key = key_at(entry, index)
    list.__setitem__(node, index, replace(old, current, entry.shape.item, entry, key, entry.rec))  # type: ignore[attr-defined]


def _undo_whole(node: TrackedList, entry: Entry, before: list[Any]) -> None:
    reattach(node, entry, lambda: list.__setitem__(node, slice(None), before))


KINDS[ListShape] = (list, TrackedList, enumerate, list.__setitem__)
