"""The recorded state: values attached to it, and the journal their changes go to.

This is what every kind of node shares; models' hooks are here too, lists are
``lists.TrackedList`` and dicts ``dicts.TrackedDict``. ``attach`` puts a value
into a recorded state: lists become ``TrackedList``, dicts ``TrackedDict`` (a
copy: Python cannot change a builtin list's class),
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

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from .registry import FLOATING, NODES, Entry, entry_of, relink
from .shapes import DictShape, ListShape, ModelShape, OptionalShape, Shape

if TYPE_CHECKING:
    from .recorder import Recorder

#: Coarse operations (kind, path of the node, key, JSON value; for DELETE the key's position), see ``jsondoc.apply``.
ADD, REMOVE, SET, DELETE, WHOLE = "add", "remove", "set", "delete", "whole"
MISSING: Any = object()
#: ``(plain type, tracked type, (key, item) walk, raw store)`` of each container shape, for ``attach``.
#: ``lists`` and ``dicts`` add theirs when imported (``recorder`` imports both), so this module needs neither.
KINDS: dict[type[Shape], tuple[type, type, Any, Any]] = {}
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
    plain, tracked, items, put = KINDS[type(shape)]
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


def journal(node: Any) -> Entry | None:
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
    entry = journal(self)
    shape = entry.shape.fields.get(name) if entry is not None else None  # type: ignore[attr-defined]
    if entry is None or shape is None:  # not in a state, or not a dumped field
        _base_setattr(self, name, value)
        return
    rec = entry.rec
    fields = self.__dict__
    old = fields.get(name, MISSING)
    if value is old:  # ``self.state.items += [...]`` assigns the list it just extended
        _base_setattr(self, name, value)
        return
    new = shape.to_json(value) if rec.precise else None
    was_set = name in self.__pydantic_fields_set__
    _base_setattr(self, name, value)
    stored = replace(fields.get(name), old, shape, entry, name, rec)
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


def replace(new: Any, old: Any, shape: Shape, up: Entry, key: Any, rec: Recorder) -> Any:
    if new is old:
        return new
    if old is not MISSING:
        detach(old, shape)
    return attach(new, shape, up, key, rec)


def _undo_setattr(model: BaseModel, name: str, old: Any, was_set: bool, shape: Shape, entry: Entry) -> None:
    fields = model.__dict__
    current = fields.get(name)
    if old is MISSING:
        fields.pop(name, None)
    else:
        fields[name] = replace(old, current, shape, entry, name, entry.rec)
    if not was_set:
        model.__pydantic_fields_set__.discard(name)


def reattach(node: list[Any] | dict[Any, Any], entry: Entry, change: Callable[[], Any]) -> None:
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


def back_in_place(node: dict[Any, Any], position: int) -> None:
    """The key just put back at the end of ``node`` moves to ``position`` (the keys after it follow it again).

    Key order is state too: undoing a deletion, in the live state (``dicts``) and in the dump (``jsondoc``).
    Plain ``dict`` methods, so a tracked dict records nothing.
    """
    for later in list(dict.keys(node))[position:-1]:
        dict.__setitem__(node, later, dict.pop(node, later))
