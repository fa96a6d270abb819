"""The recorded operations of a step, applied to the committed dump in place.

Each operation names a node by its path (as the recorder found it when the
change was made), so applying them in order to the dump replays the step on
its JSON. Replacements are diffed against what the dump holds there
(``patches.diff_into``), so a patch is never larger than the full diff's:
assigning an equal value gives nothing, a new list that differs in one item
gives one operation. ``apply`` returns the patches and the way back, which
``revert`` takes when the step is undone after all (a save that failed).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

from ..patches import diff_into, pointer
from .containers import ADD, DELETE, REMOVE, SET, WHOLE, back_in_place
from .fronts import Fronts

Undo = list[tuple[Callable[..., Any], tuple[Any, ...]]]


class Inconsistent(Exception):
    """The operations do not fit the dump: the recorder lost track somewhere."""


def apply(
    doc: Any, ops: list[tuple[str, list[str | int], Any, Any]], fronts: Fronts
) -> tuple[list[dict[str, Any]], Undo]:
    """Apply ``ops`` to ``doc`` in place; returns the patches and the undo log.

    A list's first items may be removed already but not cut out (``fronts``):
    indexes here are logical, ``fronts.offset`` less than the physical ones.
    """
    patches: list[dict[str, Any]] = []
    undo: Undo = []
    pending = fronts.pending
    try:
        for kind, parts, key, value in ops:
            if kind == WHOLE:
                parts, key = parts[:-1], parts[-1]
            target = doc
            path = ""
            for part in parts:
                path = pointer(path, part)
                if pending and type(target) is list:
                    part += fronts.offset(target)  # type: ignore[operator]
                target = target[part]
            skip = fronts.offset(target) if pending and type(target) is list else 0
            if kind == ADD:
                if not 0 <= key <= len(target) - skip:
                    raise IndexError(key)
                item = _copy(value)
                if key or not fronts.insert_first(target, item, undo):
                    target.insert(key + skip, item)
                    undo.append((list.pop, (target, key + skip)))
                patches.append({"op": "add", "path": pointer(path, key), "value": value})
            elif kind == REMOVE:
                if not 0 <= key < len(target) - skip:
                    raise IndexError(key)
                if key or not fronts.remove_first(target, undo):
                    undo.append((list.insert, (target, key + skip, target.pop(key + skip))))
                patches.append({"op": "remove", "path": pointer(path, key)})
            elif kind == DELETE:  # ``value``: the key's position (``dicts.TrackedDict`` found it)
                undo.append((_put_back, (target, key, target.pop(key), value)))
                patches.append({"op": "remove", "path": pointer(path, key)})
            elif type(target) is list or key in target:  # SET, WHOLE: a replacement
                at = key
                if type(target) is list:
                    if not 0 <= key < len(target) - skip:
                        raise IndexError(key)
                    at += skip
                old = target[at]
                if pending and isinstance(old, (list, dict)):
                    fronts.cut_all(undo)  # the diff below must see the lists in ``old`` as they are
                    at = key
                diff_into(old, value, pointer(path, key), patches)
                target[at] = _copy(value)
                undo.append((operator.setitem, (target, at, old)))
            else:
                assert kind == SET
                target[key] = _copy(value)
                undo.append((dict.pop, (target, key)))
                patches.append({"op": "add", "path": pointer(path, key), "value": value})
    except (LookupError, TypeError, AttributeError) as exc:
        revert(undo)
        raise Inconsistent(f"{kind} at {parts}/{key}: {exc!r}") from None
    return patches, undo


def revert(undo: Undo) -> None:
    for fn, args in reversed(undo):
        fn(*args)


def _put_back(target: dict[str, Any], key: str, value: Any, position: int) -> None:
    target[key] = value
    back_in_place(target, position)


def _copy(value: Any) -> Any:
    """A copy for the dump, so that later changes to the dump never alter a patch not yet sent."""
    kind = type(value)
    if kind is dict:
        return {k: _copy(v) for k, v in value.items()}
    if kind is list:
        return [_copy(v) for v in value]
    return value
