"""A prototype diff for the report, not used by zocket_django: what skipping equal parts would save.

``jsonpatch.make_patch`` (1.47) JSON-encodes every element of both lists to
compare them, so one ``append`` to a list of n items costs 2n ``json.dumps``
calls (jsonpatch 1.33 compared lists index by index instead: fast for an
append, but 2n operations for an insert at the front). This prototype walks
dicts by key, trims the common prefix and suffix of lists with C-level ``==``
and hands only the differing middle to jsonpatch. Caveat for a real version: Python's ``==``
equates ``1``, ``1.0`` and ``True``; states dumped by pydantic in JSON mode
from precise types do not mix them, but ``Any``/union fields could.
"""

from __future__ import annotations

from typing import Any

import jsonpatch


def _ptr(path: str, key: Any) -> str:
    return f"{path}/{str(key).replace('~', '~0').replace('/', '~1')}"


def diff(old: Any, new: Any, path: str = "") -> list[dict[str, Any]]:
    if old == new and type(old) is type(new):
        return []
    if isinstance(old, dict) and isinstance(new, dict):
        ops: list[dict[str, Any]] = []
        for key in old.keys() - new.keys():
            ops.append({"op": "remove", "path": _ptr(path, key)})
        for key, value in new.items():
            if key not in old:
                ops.append({"op": "add", "path": _ptr(path, key), "value": value})
            else:
                ops.extend(diff(old[key], value, _ptr(path, key)))
        return ops
    if isinstance(old, list) and isinstance(new, list):
        n, m = len(old), len(new)
        p = 0
        while p < n and p < m and old[p] == new[p]:
            p += 1
        s = 0
        while s < n - p and s < m - p and old[n - 1 - s] == new[m - 1 - s]:
            s += 1
        mid_old, mid_new = old[p : n - s], new[p : m - s]
        if not mid_old:
            return [{"op": "add", "path": _ptr(path, p + i), "value": v} for i, v in enumerate(mid_new)]
        if not mid_new:
            return [{"op": "remove", "path": _ptr(path, p)} for _ in mid_old]
        if len(mid_old) == len(mid_new):
            pairs = enumerate(zip(mid_old, mid_new, strict=True))
            return [op for i, (a, b) in pairs for op in diff(a, b, _ptr(path, p + i))]
        # Only the differing middle goes to jsonpatch; its indices move up by p.
        return [_shifted(op, path, p) for op in jsonpatch.make_patch(mid_old, mid_new).patch]
    return [{"op": "replace", "path": path, "value": new}]


def _shifted(op: dict[str, Any], path: str, offset: int) -> dict[str, Any]:
    def move(pointer: str) -> str:
        head, sep, rest = pointer[1:].partition("/")
        index = str(int(head) + offset) if head.isdigit() else head
        return f"{path}/{index}{sep}{rest}"

    op = {**op, "path": move(op["path"])}
    if "from" in op:
        op["from"] = move(op["from"])
    return op
