"""State changes as RFC 6902 patches: ``apply(old, diff(old, new)) == new``.

Both sides are JSON dumps of the state model. ``diff`` walks them together:
dicts key by key, lists by trimming their common start and end (C-level
``==`` on whole slices first, so an append to a long list costs one
comparison, not one per element) and pairing what remains. Equal parts cost a
comparison and produce nothing; the patch is proportional to the change. The
operations are only ``add``, ``remove`` and ``replace``. Applied by a client that
replaces in place and appends added keys (both of ours, jsonpatch), the patched copy
is the new document as JSON text, key order included.

Python's ``==`` equates ``True`` and ``1``. Scalars are compared with their
types, so a field that turns from ``1`` to ``true`` is patched; inside lists
or dicts found equal by ``==`` that distinction is not looked for (pydantic
dumps of precisely typed states never mix them). Key order is: a dict member of a
dict whose keys changed order is sent whole, except inside a list found equal.
"""

from __future__ import annotations

from typing import Any

import jsonpatch

_SCALARS = (str, int, float, bool, type(None))


def diff(old: Any, new: Any) -> list[dict[str, Any]]:
    """The operations that turn ``old`` into ``new``; empty when they are equal."""
    ops: list[dict[str, Any]] = []
    _diff(old, new, "", ops)
    return ops


def diff_into(old: Any, new: Any, path: str, ops: list[dict[str, Any]]) -> None:
    """Append to ``ops`` the operations that turn ``old`` into ``new``, both found at ``path``."""
    _diff(old, new, path, ops)


def pointer(path: str, key: str | int) -> str:
    """The JSON pointer of ``key`` under ``path`` (RFC 6901 escaping)."""
    return _pointer(path, key)


def apply(document: Any, patches: list[dict[str, Any]], *, in_place: bool = False) -> Any:
    """``document`` with ``patches`` applied (leaving ``document`` untouched unless ``in_place``)."""
    return jsonpatch.apply_patch(document, patches, in_place=in_place)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, _SCALARS) or isinstance(b, _SCALARS):
        return type(a) is type(b) and a == b
    return a == b


def _pointer(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}/{key}"
    return f"{path}/{key.replace('~', '~0').replace('/', '~1')}"


def _diff(old: Any, new: Any, path: str, ops: list[dict[str, Any]]) -> None:
    if type(old) is dict and type(new) is dict:
        if not _same_order(old, new):
            ops.append({"op": "replace", "path": path, "value": new})
            return
        for key in old:
            if key not in new:
                ops.append({"op": "remove", "path": _pointer(path, key)})
        for key, value in new.items():
            if key not in old:
                ops.append({"op": "add", "path": _pointer(path, key), "value": value})
            elif not _same(old[key], value) or (type(value) is dict and not _same_order(old[key], value)):
                _diff(old[key], value, _pointer(path, key), ops)
    elif type(old) is list and type(new) is list:
        _diff_lists(old, new, path, ops)
    elif not _same(old, new):
        ops.append({"op": "replace", "path": path, "value": new})


def _same_order(old: Any, new: dict[str, Any]) -> bool:
    """Whether patching ``old`` member by member gives ``new``'s key order.

    A client replaces a member in place and appends an added one, so the kept keys
    must come first in ``new``, in ``old``'s order. A model's fields always do; a
    dict rebuilt in another order is replaced whole, so that a patched copy and a
    fresh snapshot are the same JSON text.
    """
    if type(old) is not dict:
        return True
    kept = [key for key in old if key in new]
    return all(a == b for a, b in zip(new, kept, strict=False))


def _diff_lists(old: list[Any], new: list[Any], path: str, ops: list[dict[str, Any]]) -> None:
    m, n = len(old), len(new)
    if n == 0 and m > 1:  # emptied: one operation, not one per item
        ops.append({"op": "replace", "path": path, "value": []})
        return
    shortest = min(m, n)
    # The common start, then the common end (not overlapping it).
    if old[:shortest] == new[:shortest]:
        start = shortest
    else:
        start = 0
        while start < shortest and _same(old[start], new[start]):
            start += 1
    end = 0
    if old[m - (shortest - start) :] == new[n - (shortest - start) :] and shortest > start:
        end = shortest - start
    else:
        while end < shortest - start and _same(old[m - 1 - end], new[n - 1 - end]):
            end += 1
    # What remains in the middle: pair up, then remove the surplus or add the rest.
    middle_old, middle_new = m - start - end, n - start - end
    for i in range(min(middle_old, middle_new)):
        _diff(old[start + i], new[start + i], _pointer(path, start + i), ops)
    if middle_old > middle_new:
        at = _pointer(path, start + middle_new)
        ops.extend({"op": "remove", "path": at} for _ in range(middle_old - middle_new))
    for i in range(middle_old, middle_new):
        ops.append({"op": "add", "path": _pointer(path, start + i), "value": new[start + i]})
