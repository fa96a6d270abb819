"""``TrackedDict``: a dict of a recorded state, journaling each change (see ``containers``).

A set or a delete is recorded as one operation at its key; an undone delete
puts the key back in its place (key order is state too). Importing this module
adds dicts to ``containers.KINDS``.
"""

from __future__ import annotations

from typing import Any

from .containers import DELETE, KINDS, MISSING, SET, WHOLE, back_in_place, detach, journal, reattach, replace
from .registry import Entry
from .shapes import DictShape


class TrackedDict(dict):  # type: ignore[type-arg]
    """A dict of a recorded state. Behaves as a plain dict when it is not in one."""

    __slots__ = ()

    def __setitem__(self, key: Any, value: Any) -> None:
        entry = journal(self)
        if entry is None:
            dict.__setitem__(self, key, value)
            return
        rec, item = entry.rec, entry.shape.item  # type: ignore[attr-defined]
        if not isinstance(key, str):
            rec.degrade(f"a dict key of type {type(key).__name__}")
        new = item.to_json(value) if rec.precise else None
        old = dict.get(self, key, MISSING)
        dict.__setitem__(self, key, replace(value, old, item, entry, key, rec))
        rec.undo.append((_undo_dict_set, self, entry, key, old))
        rec.record(entry, SET, key, new)

    def __delitem__(self, key: Any) -> None:
        entry = journal(self)
        if entry is None:
            dict.__delitem__(self, key)
            return
        position = list(dict.keys(self)).index(key)  # to put it back in its place: key order is state too
        old = dict.pop(self, key)
        detach(old, entry.shape.item)  # type: ignore[attr-defined]
        entry.rec.undo.append((_undo_dict_delete, self, entry, key, old, position))
        entry.rec.record(entry, DELETE, key, position)  # the dump's key order is the state's

    def pop(self, key: Any, *default: Any) -> Any:
        if key not in self:
            return dict.pop(self, key, *default)
        value = dict.__getitem__(self, key)
        del self[key]
        return value

    def popitem(self) -> tuple[Any, Any]:
        if not self:
            raise KeyError("popitem(): dictionary is empty")
        key = next(reversed(dict.keys(self)))
        return key, self.pop(key)

    def setdefault(self, key: Any, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return dict.__getitem__(self, key)

    def update(self, other: Any = (), /, **more: Any) -> None:
        pairs = other.items() if hasattr(other, "keys") else other
        for key, value in list(pairs):
            self[key] = value
        for key, value in more.items():
            self[key] = value

    def __ior__(self, other: Any) -> TrackedDict:  # type: ignore[override,misc]
        self.update(other)
        return self

    def clear(self) -> None:
        entry = journal(self)
        if entry is None:
            dict.clear(self)
            return
        before = dict(dict.items(self))
        reattach(self, entry, lambda: dict.clear(self))
        entry.rec.undo.append((_undo_dict_whole, self, entry, before))
        entry.rec.record(entry, WHOLE, None, {} if entry.rec.precise else None)


def _undo_dict_set(node: TrackedDict, entry: Entry, key: Any, old: Any) -> None:
    current = dict.get(node, key, MISSING)
    if old is MISSING:
        dict.pop(node, key, None)
        if current is not MISSING:
            detach(current, entry.shape.item)  # type: ignore[attr-defined]
    else:
        dict.__setitem__(node, key, replace(old, current, entry.shape.item, entry, key, entry.rec))  # type: ignore[attr-defined]


def _undo_dict_delete(node: TrackedDict, entry: Entry, key: Any, old: Any, position: int) -> None:
    _undo_dict_set(node, entry, key, old)  # back, at the end
    back_in_place(node, position)


def _undo_dict_whole(node: TrackedDict, entry: Entry, before: dict[Any, Any]) -> None:
    reattach(node, entry, lambda: (dict.clear(node), dict.update(node, before)))


KINDS[DictShape] = (dict, TrackedDict, dict.items, dict.__setitem__)
