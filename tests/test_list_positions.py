"""Where the recorder finds a list's items after inserts and removals (``tracking.registry``).

A list child's key is a virtual index: moving the front (``pop(0)``,
``insert(0, x)``) or the end leaves every key as it was, a change in the middle
is logged and replayed. The property: after any sequence of such changes, in
steps that succeed or fail, a change to an item fetched earlier is recorded at
its current index, from the journal (no whole diff), and the patches give the
fresh dump.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from tests.dumps import logical_dump, undone_after_changes
from zocket_django.patches import apply
from zocket_django.tracking import Recorder, fronts, registry
from zocket_django.tracking.fronts import CUT_AT, LONG
from zocket_django.tracking.registry import MAX_SHIFTS, entry_of


class Item(BaseModel):
    id: int
    text: str = ""


class Queue(BaseModel):
    items: list[Item] = []


class Failed(Exception):
    pass


def change(data: st.DataObject, state: Queue, kept: list[Item], serial: list[int]) -> None:
    items = state.items
    size = len(items)
    op = data.draw(st.sampled_from(["front", "back", "insert", "pop0", "pop", "popat", "set", "edit", "edit", "edit"]))
    serial[0] += 1
    new = Item(id=serial[0])
    if op == "front":
        items.insert(0, new)
    elif op == "back":
        items.append(new)
    elif op == "insert":
        items.insert(data.draw(st.integers(0, size)), new)
    elif size == 0:
        return
    elif op == "pop0":
        items.pop(0)
    elif op == "pop":
        items.pop()
    elif op == "popat":
        items.pop(data.draw(st.integers(0, size - 1)))
    elif op == "set":
        items[data.draw(st.integers(0, size - 1))] = new
    elif kept:
        data.draw(st.sampled_from(kept)).text = f"edit {serial[0]}"  # an item fetched in an earlier step


@given(
    data=st.data(),
    size=st.integers(0, 6),
    log=st.sampled_from([1, 2, 3, MAX_SHIFTS]),
    cut=st.sampled_from([None, 1, 2, 3]),
)
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_items_fetched_earlier_are_found_after_any_inserts_and_removals(data, size, log, cut):
    state = Queue(items=[Item(id=i) for i in range(size)])
    recorder = Recorder(Queue, state)
    serial = [size]
    registry.MAX_SHIFTS = log  # a short log: renumbered between (and during) steps
    if cut is not None:  # the dump's first items only counted as removed, cut out every few (``fronts``)
        fronts.LONG, fronts.CUT_AT = 1, cut
    try:
        for _ in range(data.draw(st.integers(1, 8))):
            kept = list(state.items)  # references kept across steps, as a handler might
            old = logical_dump(recorder)
            before = state.model_copy(deep=True)
            recorder.begin()
            try:
                for _ in range(data.draw(st.integers(1, 6))):
                    change(data, state, kept, serial)
                if data.draw(st.booleans()):
                    raise Failed
            except Failed:
                state = recorder.rollback()
                assert state == before and logical_dump(recorder) == old
                continue
            patches = recorder.changes(state)
            assert recorder.precise, "the step fell back to a whole diff: a position was lost"
            undone = undone_after_changes(data, recorder)
            if undone is not None:
                assert undone == before and logical_dump(recorder) == old
                state = undone
                continue
            recorder.commit(state)
            assert apply(old, patches) == state.model_dump(mode="json") == logical_dump(recorder)
        assert recorder.dump == state.model_dump(mode="json")  # and once cut
    finally:
        registry.MAX_SHIFTS = MAX_SHIFTS
        fronts.LONG, fronts.CUT_AT = LONG, CUT_AT
        recorder.release()


def step(recorder: Recorder, state: Queue, fn: Any) -> list[dict[str, Any]]:
    recorder.begin()
    fn()
    patches = recorder.changes(state)
    assert recorder.precise
    recorder.commit(state)
    return patches


def test_a_queue_leaves_nothing_to_replay():
    state = Queue(items=[Item(id=i) for i in range(1000)])
    recorder = Recorder(Queue, state)
    last = state.items[-1]
    for i in range(3 * MAX_SHIFTS):  # more than a renumbering's worth: none happens
        step(recorder, state, lambda i=i: (state.items.pop(0), state.items.append(Item(id=1000 + i))))
        step(recorder, state, lambda i=i: state.items.insert(0, Item(id=-i)))
    lists = entry_of(state.items)
    assert lists is not None and lists.shifts == []
    assert step(recorder, state, lambda: setattr(last, "text", "x")) == [
        {"op": "replace", "path": f"/items/{state.items.index(last)}/text", "value": "x"}
    ]
    recorder.release()


def test_changes_in_the_middle_are_renumbered_once_the_log_is_long():
    state = Queue(items=[Item(id=i) for i in range(10)])
    recorder = Recorder(Queue, state)
    ninth = state.items[9]
    for i in range(MAX_SHIFTS + 5):
        step(recorder, state, lambda i=i: state.items.insert(5, Item(id=100 + i)))
        step(recorder, state, lambda: state.items.pop(0))
    lists = entry_of(state.items)
    assert lists is not None and len(lists.shifts or []) < MAX_SHIFTS
    index = state.items.index(ninth)
    assert step(recorder, state, lambda: setattr(ninth, "text", "x")) == [
        {"op": "replace", "path": f"/items/{index}/text", "value": "x"}
    ]
    recorder.release()
