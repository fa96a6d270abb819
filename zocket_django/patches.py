"""State changes as RFC 6902 patches: ``apply(old, diff(old, new)) == new``.

Both sides are JSON dumps of the state model. The diff walks both documents
(O(size of state)); ``bench/`` measures what that costs as states grow.
"""

from __future__ import annotations

from typing import Any

import jsonpatch


def diff(old: Any, new: Any) -> list[dict[str, Any]]:
    """The operations that turn ``old`` into ``new``; empty when they are equal."""
    if old == new:
        return []
    return jsonpatch.make_patch(old, new).patch


def apply(document: Any, patches: list[dict[str, Any]]) -> Any:
    """``document`` with ``patches`` applied, leaving ``document`` untouched."""
    return jsonpatch.apply_patch(document, patches, in_place=False)
