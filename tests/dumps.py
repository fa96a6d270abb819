"""The recorder's committed dump as its readers see it, without cutting its lists (``tracking.fronts``).

``Recorder.dump`` cuts the items removed from the front of long lists before it
answers; a test that read it between steps would cut them every time, and never
see removals pile up across steps. This reads the same, leaving them pending.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st
from pydantic import BaseModel

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


def undone_after_changes(data: st.DataObject, recorder: Recorder) -> BaseModel | None:
    """How a step ends after ``changes``, drawn: kept (``None``), or undone as when its write-through save
    fails (the rolled-back state), the dump read before or not (reading it cuts its lists within the step)."""
    end = data.draw(st.sampled_from(["kept", "save fails", "save reads, fails"]))
    if end == "kept":
        return None
    if end == "save reads, fails":
        recorder.dump  # noqa: B018
    return recorder.rollback()
