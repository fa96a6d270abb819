"""The recorder: random mutation programs on random nested models.

For every step: the recorded patches applied to the old dump give a fresh
full dump (as JSON text, key order included), the dump kept in place is that dump too, and a step that fails
leaves the state (and the dump) exactly as they were.
"""

from __future__ import annotations

import copy
import enum
import json
import threading
from typing import Any, Optional

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, create_model

from tests.dumps import logical_dump, undone_after_changes
from zocket_django.patches import apply, diff
from zocket_django.tracking import Recorder, fronts, shape_for
from zocket_django.tracking.dicts import TrackedDict
from zocket_django.tracking.fronts import CUT_AT, LONG, MAX_LISTS
from zocket_django.tracking.lists import TrackedList
from zocket_django.tracking.registry import NODES


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


# -- random types, as specs: ("int",) ("str",) ("color",) ("list", T) ("dict", T) ("opt", T) ("model", fields)

LEAVES = [("int",), ("str",), ("color",), ("pair",)]


def type_specs(depth: int = 3) -> st.SearchStrategy[tuple[Any, ...]]:
    leaf = st.sampled_from(LEAVES)
    if depth == 0:
        return leaf
    inner = type_specs(depth - 1)
    return st.one_of(
        leaf,
        st.tuples(st.just("list"), inner),
        st.tuples(st.just("dict"), inner),
        st.tuples(st.just("opt"), model_specs(depth - 1)),
        model_specs(depth - 1),
    )


def model_specs(depth: int) -> st.SearchStrategy[tuple[Any, ...]]:
    fields = st.lists(type_specs(depth) if depth > 0 else st.sampled_from(LEAVES), min_size=1, max_size=3)
    return st.tuples(st.just("model"), fields.map(tuple))


_models: dict[tuple[Any, ...], type[BaseModel]] = {}


def annotation(spec: tuple[Any, ...]) -> Any:
    kind = spec[0]
    if kind == "int":
        return int
    if kind == "str":
        return str
    if kind == "color":
        return Color
    if kind == "pair":
        return tuple[int, str]
    if kind == "list":
        return list[annotation(spec[1])]
    if kind == "dict":
        return dict[str, annotation(spec[1])]
    if kind == "opt":
        return Optional[annotation(spec[1])]  # noqa: UP045 - the typing form must work too
    model = _models.get(spec)
    if model is None:
        fields = {f"f{i}": (annotation(s), ...) for i, s in enumerate(spec[1])}
        model = _models[spec] = create_model(f"M{len(_models)}", **fields)  # type: ignore[call-overload]
    return model


def values(spec: tuple[Any, ...]) -> st.SearchStrategy[Any]:
    kind = spec[0]
    if kind == "int":
        return st.integers(-5, 5)
    if kind == "str":
        return st.sampled_from(["", "a", "b/c", "~"])
    if kind == "color":
        return st.sampled_from(Color)
    if kind == "pair":
        return st.tuples(st.integers(0, 2), st.sampled_from(["x", "y"]))
    if kind == "list":
        return st.lists(values(spec[1]), max_size=4)
    if kind == "dict":
        return st.dictionaries(st.sampled_from(["k", "l", "m/n", "~o"]), values(spec[1]), max_size=3)
    if kind == "opt":
        return st.none() | values(spec[1])
    model = annotation(spec)
    fields = {f"f{i}": values(s) for i, s in enumerate(spec[1])}
    return st.fixed_dictionaries(fields).map(lambda d: model(**d))


def nodes(value: Any, spec: tuple[Any, ...], found: list[tuple[Any, tuple[Any, ...]]]) -> None:
    """Every model, list and dict reachable in ``value`` (with its spec)."""
    kind = spec[0]
    if value is None or kind in ("int", "str", "color", "pair"):
        return
    if kind == "opt":
        nodes(value, spec[1], found)
        return
    found.append((value, spec))
    if kind == "list":
        for item in value:
            nodes(item, spec[1], found)
    elif kind == "dict":
        for item in value.values():
            nodes(item, spec[1], found)
    else:
        for i, field in enumerate(spec[1]):
            nodes(getattr(value, f"f{i}"), field, found)


def mutate(data: st.DataObject, node: Any, spec: tuple[Any, ...], others: list[Any]) -> None:
    """One random mutation of ``node``, as a handler would write it."""
    kind = spec[0]
    if kind == "model":
        i = data.draw(st.integers(0, len(spec[1]) - 1))
        field = spec[1][i]
        if field[0] == "int" and data.draw(st.booleans()):
            setattr(node, f"f{i}", getattr(node, f"f{i}") + 1)  # self.state.count += 1
        else:
            setattr(node, f"f{i}", data.draw(values(field)))
        return
    item = spec[1]
    if kind == "dict":
        key = data.draw(st.sampled_from(["k", "l", "m/n", "~o"]))
        op = data.draw(st.sampled_from(["set", "del", "pop", "setdefault", "update", "clear", "popitem", "bump"]))
        if op == "set":
            node[key] = data.draw(values(item))
        elif op == "bump" and item[0] == "int" and key in node:
            node[key] += 1  # self.state.votes[k] += 1
        elif op in ("del", "pop") and key in node:
            if op == "del":
                del node[key]
            else:
                node.pop(key)
        elif op == "setdefault":
            node.setdefault(key, data.draw(values(item)))
        elif op == "update":
            node.update({key: data.draw(values(item))})
        elif op == "clear":
            node.clear()
        elif op == "popitem" and node:
            node.popitem()
        return
    op = data.draw(
        st.sampled_from(
            [
                *("append", "insert", "pop", "del", "set", "extend", "iadd", "remove", "clear", "reverse", "sort"),
                *("slice", "delslice", "swap", "move", "alias"),
            ]
        )
    )
    size = len(node)
    if op == "append":
        node.append(data.draw(values(item)))
    elif op == "insert":
        node.insert(data.draw(st.integers(-size - 1, size + 1)), data.draw(values(item)))
    elif op == "extend":
        node.extend(data.draw(st.lists(values(item), max_size=3)))
    elif op == "iadd":
        node += data.draw(st.lists(values(item), max_size=2))
    elif op == "clear":
        node.clear()
    elif op == "reverse":
        node.reverse()
    elif op == "sort":
        node.sort(key=repr)
    elif op == "slice":
        node[0:1] = data.draw(st.lists(values(item), max_size=2))
    elif op == "delslice":
        del node[: data.draw(st.integers(0, 2))]
    elif size == 0:
        return
    elif op == "pop":
        node.pop(data.draw(st.integers(-size, size - 1)))
    elif op == "del":
        del node[data.draw(st.integers(-size, size - 1))]
    elif op == "set":
        node[data.draw(st.integers(-size, size - 1))] = data.draw(values(item))
    elif op == "remove":
        node.remove(node[data.draw(st.integers(0, size - 1))])
    elif op == "swap" and size >= 2:
        node[0], node[1] = node[1], node[0]  # one object at two places, for a moment
    elif op == "move":
        targets = [o for o, s in others if s == spec and o is not node]
        if targets:
            data.draw(st.sampled_from(targets)).append(node.pop(0))
    elif op == "alias":
        node.append(node[0])  # the same object twice: stays diffed whole while it lasts


class Failed(Exception):
    pass


@given(spec=model_specs(3), data=st.data(), cut=st.sampled_from([None, 1, 2, 3]))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_recorded_patches_give_the_full_dump_and_failed_steps_roll_back(spec, data, cut):
    model = annotation(spec)
    state = data.draw(values(spec))
    recorder = Recorder(model, state)
    kept: list[tuple[Any, tuple[Any, ...]]] = []  # references kept across steps, as a handler might
    if cut is not None:  # the dump's first items only counted as removed, cut out every few (``fronts``)
        fronts.LONG, fronts.CUT_AT, fronts.MAX_LISTS = 1, cut, cut  # and every list cut past a few counted
    try:
        for _ in range(data.draw(st.integers(1, 5))):
            old_dump = logical_dump(recorder)
            assert old_dump == state.model_dump(mode="json")
            before = state.model_copy(deep=True)
            found: list[tuple[Any, tuple[Any, ...]]] = []
            nodes(state, spec, found)
            pool = found + kept
            fails = data.draw(st.booleans())
            recorder.begin()
            try:
                for _ in range(data.draw(st.integers(1, 4))):
                    node, node_spec = data.draw(st.sampled_from(pool))
                    mutate(data, node, node_spec, found)
                if fails:
                    raise Failed
            except Failed:
                state = recorder.rollback()
                assert state == before
                assert state.model_dump(mode="json") == old_dump
                assert logical_dump(recorder) == old_dump
                continue
            patches = recorder.changes(state)
            undone = undone_after_changes(data, recorder)
            if undone is not None:
                assert undone == before and logical_dump(recorder) == old_dump
                state = undone
                continue
            recorder.commit(state)
            fresh = state.model_dump(mode="json")
            patched = apply(old_dump, patches)
            assert json.dumps(patched) == json.dumps(fresh)  # equal as JSON text: key order too (issue 18)
            assert json.dumps(logical_dump(recorder)) == json.dumps(fresh)
            json.dumps(patches)  # plain JSON, nothing shared with live objects that could not be encoded
            kept = found[: data.draw(st.integers(0, 3))]
        assert json.dumps(recorder.dump) == json.dumps(state.model_dump(mode="json"))  # and once cut
    finally:
        fronts.LONG, fronts.CUT_AT, fronts.MAX_LISTS = LONG, CUT_AT, MAX_LISTS
        recorder.release()


class Item(BaseModel):
    id: int
    text: str = ""
    tags: list[str] = []


class Board(BaseModel):
    items: list[Item] = []
    votes: dict[str, int] = {}
    pinned: Item | None = None


def step(recorder: Recorder, state: Board, change: Any) -> list[dict[str, Any]]:
    old = copy.deepcopy(recorder.dump)
    recorder.begin()
    change(state)
    patches = recorder.changes(state)
    recorder.commit(state)
    assert apply(old, patches) == state.model_dump(mode="json")
    return patches


def board(n: int) -> tuple[Recorder, Board]:
    state = Board(items=[Item(id=i, text=f"item {i}") for i in range(n)], votes={"a": 1})
    return Recorder(Board, state), state


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda s: s.items.append(Item(id=9)),
         [{"op": "add", "path": "/items/5", "value": {"id": 9, "text": "", "tags": []}}]),
        (lambda s: s.votes.__setitem__("a", s.votes["a"] + 1), [{"op": "replace", "path": "/votes/a", "value": 2}]),
        (lambda s: s.items.__delitem__(0), [{"op": "remove", "path": "/items/0"}]),
        (lambda s: setattr(s.items[2], "text", "x"), [{"op": "replace", "path": "/items/2/text", "value": "x"}]),
        (lambda s: setattr(s, "items", [*s.items[:4], Item(id=4, text="changed")]),
         [{"op": "replace", "path": "/items/4/text", "value": "changed"}]),
        (lambda s: setattr(s, "pinned", Item(id=1)),
         [{"op": "replace", "path": "/pinned", "value": {"id": 1, "text": "", "tags": []}}]),
        (lambda s: s.items[3].tags.append("t"), [{"op": "add", "path": "/items/3/tags/0", "value": "t"}]),
        (lambda s: setattr(s.items[1], "text", "item 1"), []),
    ],
)  # fmt: skip
def test_one_change_gives_the_patch_a_full_diff_would(change, expected):
    recorder, state = board(5)
    old = copy.deepcopy(recorder.dump)
    patches = step(recorder, state, change)
    assert patches == expected
    assert patches == diff(old, state.model_dump(mode="json"))
    recorder.release()


def test_a_deletion_undone_after_its_patches_puts_the_key_back_in_its_place():
    """As when a write-through save fails: the dump's key order (what snapshots send) stays the state's."""
    state = Board(votes={"a": 1, "b": 2, "c": 3})
    recorder = Recorder(Board, state)
    recorder.begin()
    del state.votes["b"]
    assert recorder.changes(state) == [{"op": "remove", "path": "/votes/b"}]
    state = recorder.rollback()
    assert list(state.votes) == list(recorder.dump["votes"]) == ["a", "b", "c"]


def test_a_nested_model_fetched_earlier_is_followed_through_shifts():
    recorder, state = board(5)
    third = state.items[3]
    assert step(recorder, state, lambda s: (s.items.pop(0), s.items.insert(0, Item(id=7)), s.items.pop(1),
                                            setattr(third, "text", "moved"))) == [
        {"op": "remove", "path": "/items/0"},
        {"op": "add", "path": "/items/0", "value": {"id": 7, "text": "", "tags": []}},
        {"op": "remove", "path": "/items/1"},
        {"op": "replace", "path": "/items/2/text", "value": "moved"},
    ]  # fmt: skip
    # Kept across steps: still recorded, at its current place.
    assert step(recorder, state, lambda s: third.tags.append("x")) == [
        {"op": "add", "path": "/items/2/tags/0", "value": "x"}
    ]
    # Once removed, it is a plain object again: changing it changes nothing.
    step(recorder, state, lambda s: s.items.remove(third))
    assert step(recorder, state, lambda s: (setattr(third, "text", "gone"), third.tags.append("y"))) == []
    assert type(third.tags) is TrackedList and type(state.votes) is TrackedDict
    recorder.release()


def test_assigned_containers_are_recorded_copies():
    recorder, state = board(2)
    mine = ["a"]
    step(recorder, state, lambda s: setattr(s.items[0], "tags", mine))
    assert state.items[0].tags == ["a"] and state.items[0].tags is not mine
    assert step(recorder, state, lambda s: s.items[0].tags.append("b")) == [
        {"op": "add", "path": "/items/0/tags/1", "value": "b"}
    ]
    recorder.release()


def test_changes_outside_a_step_are_caught_by_a_whole_diff():
    recorder, state = board(3)

    def background() -> None:  # a thread (or task) changing the state between steps
        state.items[1].text = "from a thread"
        state.items.append(Item(id=5))

    worker = threading.Thread(target=background)
    worker.start()
    worker.join()
    assert recorder.stale
    patches = step(recorder, state, lambda s: s.votes.__setitem__("b", 1))
    assert {"op": "replace", "path": "/items/1/text", "value": "from a thread"} in patches
    assert not recorder.stale  # registered again: the next step is recorded
    assert step(recorder, state, lambda s: s.items[3].tags.append("t")) == [
        {"op": "add", "path": "/items/3/tags/0", "value": "t"}
    ]
    recorder.release()


def test_a_shared_object_keeps_the_state_diffed_whole_until_it_is_gone():
    recorder, state = board(3)
    step(recorder, state, lambda s: setattr(s, "pinned", s.items[0]))  # pinned *is* items[0]
    assert recorder.stale
    patches = step(recorder, state, lambda s: setattr(s.items[0], "text", "both"))
    assert {"op": "replace", "path": "/pinned/text", "value": "both"} in patches
    assert {"op": "replace", "path": "/items/0/text", "value": "both"} in patches
    step(recorder, state, lambda s: setattr(s, "pinned", None))
    assert not recorder.stale
    recorder.release()


def test_a_replaced_state_is_diffed_whole_and_a_failed_step_puts_the_old_one_back():
    recorder, state = board(3)
    recorder.begin()
    state.items.append(Item(id=3))
    replaced = Board(items=[Item(id=0)])
    recorder.changes(replaced)
    recorder.commit(replaced)
    assert recorder.dump == replaced.model_dump(mode="json")
    recorder.begin()
    replaced.items[0].text = "x"
    assert recorder.rollback() is replaced and replaced.items[0].text == ""
    recorder.release()


class Tagged(BaseModel):
    tags: set[str] = set()


def test_models_the_recorder_cannot_follow_are_diffed_whole():
    assert shape_for(Tagged) is None
    state = Tagged()
    recorder = Recorder(Tagged, state)
    recorder.begin()
    state.tags.add("x")
    assert recorder.changes(state) == [{"op": "add", "path": "/tags/0", "value": "x"}]
    recorder.commit(state)
    recorder.begin()
    state.tags.add("y")
    assert recorder.rollback().tags == {"x"}


def test_released_state_leaves_no_entries():
    before = len(NODES)
    recorder, _ = board(50)
    assert len(NODES) == before + 1 + 2 + 50 * 2  # the root, items and votes, 50 items and their tags
    recorder.release()
    assert len(NODES) == before
