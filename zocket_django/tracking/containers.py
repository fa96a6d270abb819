"""The recorded state: lists and dicts that journal their changes, and models that do too.

``attach`` puts a value into a recorded state: lists become ``TrackedList``,
dicts ``TrackedDict`` (a copy: Python cannot change a builtin list's class),
models get the hook ``model_setattr`` on their class, and every node gets an
``Entry`` (``registry``). A mutation of a registered node, inside a step,
converts the new value to JSON *before* changing anything (a value that cannot
be dumped raises and changes nothing), changes it, logs how to undo it and
records one coarse operation with the node's current path; ``jsondoc`` turns
those into patches at the end of the step. The same objects used outside any
recorded state (never attached, or removed from it) behave as plain lists,
dicts and models.

A mutation while no step runs (a background task or thread) is made as asked
and marks the recorder stale: the next step is diffed whole.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, SupportsIndex

from pydantic import BaseModel

from .registry import FLOATING, NODES, Entry, entry_of, inserted, key_at, relink, removed
from .shapes import DictShape, ListShape, ModelShape, OptionalShape, Shape

if TYPE_CHECKING:
    from .recorder import Recorder

#: Coarse operations (kind, path of the node, key, JSON value), see ``jsondoc.apply``.
ADD, REMOVE, SET, DELETE, WHOLE = "add", "remove", "set", "delete", "whole"
_MISSING: Any = object()
_base_setattr = BaseModel.__setattr__
_base_delattr = BaseModel.__delattr__


# -- attaching values to a state ------------------------------------------------------


def attach(value: Any, shape: Shape, up: Entry | None, key: Any, rec: Recorder) -> Any:
    """Register ``value`` (and what it holds) at ``up[key]``; returns what to store there."""
    if isinstance(shape, OptionalShape):
        if value is None:
            return value
        shape = shape.inner
    if not shape.node:
        return value
    known = entry_of(value) if id(value) in NODES else None
    if known is not None:
        if known.key is FLOATING and known.rec is rec and known.shape is shape:
            relink(known, up, key)  # moved within the state in this step
        else:
            rec.degrade("one object at two places of the state")
        return value
    if isinstance(shape, ModelShape):
        if not isinstance(value, shape.cls):
            rec.degrade(f"a {type(value).__name__} where a {shape.cls.__name__} belongs")
            return value
        if not _hooked(type(value)):
            rec.degrade(f"{type(value).__qualname__} defines __setattr__")
            return value
        entry = _register(value, rec, up, key, shape)
        fields = value.__dict__
        for name, field in shape.nodes:
            current = fields.get(name)
            stored = attach(current, field, entry, name, rec)
            if stored is not current:
                fields[name] = stored
        return value
    # A list or a dict: the same steps, with each kind's own item walk and raw store.
    assert isinstance(shape, ListShape | DictShape)
    plain, tracked, items, put = _LIST if isinstance(shape, ListShape) else _DICT
    if type(value) is tracked:
        node: Any = value
    elif type(value) is plain:
        node = tracked(value)
    else:
        rec.degrade(f"a {type(value).__name__} where a {plain.__name__} belongs")
        return value
    entry = _register(node, rec, up, key, shape)
    item = shape.item
    if item.node:
        for k, current in items(node):
            stored = attach(current, item, entry, k, rec)
            if stored is not current:
                put(node, k, stored)
    return node


def _register(node: Any, rec: Recorder, up: Entry | None, key: Any, shape: Shape) -> Entry:
    entry = NODES[id(node)] = Entry(node, rec, up, key, shape)
    rec.ids.add(id(node))
    return entry


def detach(value: Any, shape: Shape) -> None:
    """``value`` left the state.

    During a step it stays registered, *floating*: changes to it are not
    patches, but they are undone with the step (which may put it back), and it
    may be put back elsewhere in the state (a move). The recorder forgets
    floating nodes when the step ends.
    """
    if isinstance(shape, OptionalShape):
        shape = shape.inner
    if not shape.node or value is None:
        return
    entry = entry_of(value)
    if entry is None:
        return
    if entry.rec.recording:
        entry.up, entry.key = None, FLOATING
        entry.rec.floating.append(entry)
    else:
        forget(value, shape)


def forget(value: Any, shape: Shape) -> None:
    """Unregister ``value`` and what it holds."""
    if isinstance(shape, OptionalShape):
        shape = shape.inner
    if not shape.node or value is None:
        return
    entry = entry_of(value)
    if entry is None:
        return
    del NODES[id(value)]
    entry.rec.ids.discard(id(value))
    if isinstance(shape, ModelShape):
        fields = value.__dict__
        for name, field in shape.nodes:
            forget(fields.get(name), field)
    elif isinstance(shape, ListShape):
        if shape.item.node:
            for item in list.__iter__(value):
                forget(item, shape.item)
    elif isinstance(shape, DictShape) and shape.item.node:
        for item in dict.values(value):
            forget(item, shape.item)


def _hooked(cls: type) -> bool:
    """Make sure ``cls`` reports attribute changes (installing the hook on first use)."""
    setter = cls.__setattr__  # type: ignore[misc]
    if getattr(setter, "__zocket_hook__", False):
        return True
    if setter is not _base_setattr:
        return False
    cls.__setattr__ = model_setattr  # type: ignore[assignment,method-assign]
    cls.__delattr__ = model_delattr  # type: ignore[assignment,method-assign]
    return True


def _journal(node: Any) -> Entry | None:
    """The entry of ``node`` if a step may record on it; marks the recorder stale outside steps."""
    entry = NODES.get(id(node))
    if entry is None or entry.node is not node:
        return None
    if not entry.rec.recording:
        entry.rec.outside()
        return None
    return entry


# -- models -----------------------------------------------------------------------------


def model_setattr(self: BaseModel, name: str, value: Any) -> None:
    """``BaseModel.__setattr__``, recorded when ``self`` is part of a state in a step."""
    entry = _journal(self)
    shape = entry.shape.fields.get(name) if entry is not None else None  # type: ignore[attr-defined]
    if entry is None or shape is None:  # not in a state, or not a dumped field
        _base_setattr(self, name, value)
        return
    rec = entry.rec
    fields = self.__dict__
    old = fields.get(name, _MISSING)
    if value is old:  # ``self.state.items += [...]`` assigns the list it just extended
        _base_setattr(self, name, value)
        return
    new = shape.to_json(value) if rec.precise else None
    was_set = name in self.__pydantic_fields_set__
    _base_setattr(self, name, value)
    stored = _replace(fields.get(name), old, shape, entry, name, rec)
    if stored is not value:
        fields[name] = stored
    rec.undo.append((_undo_setattr, self, name, old, was_set, shape, entry))
    rec.record(entry, SET, name, new)


def model_delattr(self: BaseModel, name: str) -> None:
    """Deleting a field cannot be a patch the model would dump: the next diff is whole."""
    entry = entry_of(self)
    if entry is not None and name in type(self).model_fields:
        entry.rec.degrade(f"del {type(self).__name__}.{name}")
    _base_delattr(self, name)


model_setattr.__zocket_hook__ = True  # type: ignore[attr-defined]


def _replace(new: Any, old: Any, shape: Shape, up: Entry, key: Any, rec: Recorder) -> Any:
    if new is old:
        return new
    if old is not _MISSING:
        detach(old, shape)
    return attach(new, shape, up, key, rec)


def _undo_setattr(model: BaseModel, name: str, old: Any, was_set: bool, shape: Shape, entry: Entry) -> None:
    fields = model.__dict__
    current = fields.get(name)
    if old is _MISSING:
        fields.pop(name, None)
    else:
        fields[name] = _replace(old, current, shape, entry, name, entry.rec)
    if not was_set:
        model.__pydantic_fields_set__.discard(name)


# -- lists ------------------------------------------------------------------------------


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
        entry = _journal(self)
        if entry is None:
            list.append(self, value)
        else:
            self._insert(entry, len(self), value)

    def insert(self, index: SupportsIndex, value: Any, /) -> None:
        entry = _journal(self)
        if entry is None:
            list.insert(self, index, value)
            return
        i, size = operator.index(index), len(self)
        i = min(max(i + size if i < 0 else i, 0), size)
        self._insert(entry, i, value)

    def extend(self, values: Iterable[Any], /) -> None:
        entry = _journal(self)
        if entry is None:
            list.extend(self, values)
            return
        for value in list(values):
            self._insert(entry, len(self), value)

    def __iadd__(self, values: Iterable[Any]) -> TrackedList:  # type: ignore[override,misc]
        self.extend(values)
        return self

    def pop(self, index: SupportsIndex = -1, /) -> Any:
        entry = _journal(self)
        if entry is None:
            return list.pop(self, index)
        if not self:
            raise IndexError("pop from empty list")
        return self._remove(entry, _index(index, len(self), "pop"))

    def remove(self, value: Any, /) -> None:
        entry = _journal(self)
        if entry is None:
            list.remove(self, value)
        else:
            self._remove(entry, self.index(value))

    def __delitem__(self, index: SupportsIndex | slice) -> None:
        entry = _journal(self)
        if entry is None:
            list.__delitem__(self, index)
        elif isinstance(index, slice):
            self._whole(entry, lambda: list.__delitem__(self, index))
        else:
            self._remove(entry, _index(index, len(self), "list assignment"))

    def __setitem__(self, index: SupportsIndex | slice, value: Any) -> None:
        entry = _journal(self)
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
        list.__setitem__(self, i, _replace(value, old, item, entry, key_at(entry, i), rec))
        rec.undo.append((_undo_set, self, entry, i, old))
        rec.record(entry, SET, i, new)

    def clear(self) -> None:
        entry = _journal(self)
        if entry is None:
            list.clear(self)
        else:
            self._whole(entry, lambda: list.clear(self))

    def sort(self, *, key: Callable[[Any], Any] | None = None, reverse: bool = False) -> None:
        entry = _journal(self)
        if entry is None:
            list.sort(self, key=key, reverse=reverse)
        else:
            self._whole(entry, lambda: list.sort(self, key=key, reverse=reverse))

    def reverse(self) -> None:
        entry = _journal(self)
        if entry is None:
            list.reverse(self)
        else:
            self._whole(entry, lambda: list.reverse(self))

    def __imul__(self, times: SupportsIndex) -> TrackedList:  # type: ignore[override,misc]
        entry = _journal(self)
        if entry is None:
            list.__imul__(self, times)
        else:
            self._whole(entry, lambda: list.__imul__(self, times))
        return self

    def _whole(self, entry: Entry, change: Callable[[], Any]) -> None:
        """A change recorded as the whole new list (diffed against the old one at the end)."""
        before = list(list.__iter__(self))
        _reattach(self, entry, lambda: change())
        entry.rec.undo.append((_undo_whole, self, entry, before))
        entry.rec.record(entry, WHOLE, None, entry.shape.to_json(self) if entry.rec.precise else None)


def _reattach(node: TrackedList | TrackedDict, entry: Entry, change: Callable[[], Any]) -> None:
    """Run ``change`` on a node's contents with its children unregistered, then register them again."""
    item: Shape = entry.shape.item  # type: ignore[attr-defined]
    values = list.__iter__(node) if isinstance(node, list) else dict.values(node)
    if item.node:
        for value in list(values):
            detach(value, item)
    try:
        change()
    finally:
        if isinstance(node, list):
            entry.shifts, entry.base = [], 0
            if item.node:
                for i, value in enumerate(list(list.__iter__(node))):
                    stored = attach(value, item, entry, i, entry.rec)
                    if stored is not value:
                        list.__setitem__(node, i, stored)
        elif item.node:
            for k, value in list(dict.items(node)):
                stored = attach(value, item, entry, k, entry.rec)
                if stored is not value:
                    dict.__setitem__(node, k, stored)


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
    list.__setitem__(node, index, _replace(old, current, entry.shape.item, entry, key, entry.rec))  # type: ignore[attr-defined]


def _undo_whole(node: TrackedList, entry: Entry, before: list[Any]) -> None:
    _reattach(node, entry, lambda: list.__setitem__(node, slice(None), before))


# -- dicts ------------------------------------------------------------------------------


class TrackedDict(dict):  # type: ignore[type-arg]
    """A dict of a recorded state. Behaves as a plain dict when it is not in one."""

    __slots__ = ()

    def __setitem__(self, key: Any, value: Any) -> None:
        entry = _journal(self)
        if entry is None:
            dict.__setitem__(self, key, value)
            return
        rec, item = entry.rec, entry.shape.item  # type: ignore[attr-defined]
        if not isinstance(key, str):
            rec.degrade(f"a dict key of type {type(key).__name__}")
        new = item.to_json(value) if rec.precise else None
        old = dict.get(self, key, _MISSING)
        dict.__setitem__(self, key, _replace(value, old, item, entry, key, rec))
        rec.undo.append((_undo_dict_set, self, entry, key, old))
        rec.record(entry, SET, key, new)

    def __delitem__(self, key: Any) -> None:
        entry = _journal(self)
        if entry is None:
            dict.__delitem__(self, key)
            return
        position = list(dict.keys(self)).index(key)  # to put it back in its place: key order is state too
        old = dict.pop(self, key)
        detach(old, entry.shape.item)  # type: ignore[attr-defined]
        entry.rec.undo.append((_undo_dict_delete, self, entry, key, old, position))
        entry.rec.record(entry, DELETE, key, None)

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
        entry = _journal(self)
        if entry is None:
            dict.clear(self)
            return
        before = dict(dict.items(self))
        _reattach(self, entry, lambda: dict.clear(self))
        entry.rec.undo.append((_undo_dict_whole, self, entry, before))
        entry.rec.record(entry, WHOLE, None, {} if entry.rec.precise else None)


def _undo_dict_set(node: TrackedDict, entry: Entry, key: Any, old: Any) -> None:
    current = dict.get(node, key, _MISSING)
    if old is _MISSING:
        dict.pop(node, key, None)
        if current is not _MISSING:
            detach(current, entry.shape.item)  # type: ignore[attr-defined]
    else:
        dict.__setitem__(node, key, _replace(old, current, entry.shape.item, entry, key, entry.rec))  # type: ignore[attr-defined]


def _undo_dict_delete(node: TrackedDict, entry: Entry, key: Any, old: Any, position: int) -> None:
    _undo_dict_set(node, entry, key, old)  # back, at the end; then the keys that followed it go after it again
    for later in list(dict.keys(node))[position:-1]:
        dict.__setitem__(node, later, dict.pop(node, later))


def _undo_dict_whole(node: TrackedDict, entry: Entry, before: dict[Any, Any]) -> None:
    _reattach(node, entry, lambda: (dict.clear(node), dict.update(node, before)))


#: ``(plain type, tracked type, (key, item) walk, raw store)`` of each container kind, for ``attach``.
_LIST: tuple[type, type, Any, Any] = (list, TrackedList, enumerate, list.__setitem__)
_DICT: tuple[type, type, Any, Any] = (dict, TrackedDict, dict.items, dict.__setitem__)
