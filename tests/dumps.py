"""The recorder's committed dump as its readers see it, without cutting its lists (``tracking.fronts``).

``Recorder.dump`` cuts the items removed from the front of long lists before it
answers; a test that read it between steps would cut them every time, and never
see removals pile up across steps. This reads the same, leaving them pending.
"""

from __future__ import annotations

from typing import Any

from zocket_django.tracking import Recorder


def logical_dump(recorder: Recorder) -> Any:
    """A deep copy of the committed dump, each list without the first items counted as removed."""
    fronts = recorder.fronts

    def copy(node: Any) -> Any:
        if type(node) is dict:
            return {k: copy(v) for k, v in node.items()}
        if type(node) is list:
            return [copy(v) for v in node[fronts.offset(node) :]]
        return node

    return copy(recorder._dump)
