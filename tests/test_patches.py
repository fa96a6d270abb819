"""apply(old, diff(old, new)) == new, for any JSON documents and any state mutations.

For states, equal as JSON text, key order included: the Python client applies patches with
this same ``jsonpatch.apply_patch`` (the JS client's side is tests/js/patch-order.test.mjs).
"""

import copy
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from zocket_django.patches import apply, diff

scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8)
)
keys = st.text(max_size=6) | st.sampled_from(["", "~", "/", "a/b", "~1", "0", "-"])
documents = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(keys, inner, max_size=6),
    max_leaves=40,
)


@given(documents, documents)
@settings(max_examples=400)
def test_diff_then_apply_gives_the_new_document(old, new):
    original = copy.deepcopy(old)
    patches = diff(old, new)
    assert apply(old, patches) == new
    assert old == original  # neither diff nor apply touches the input


def test_replace_keeps_the_key_in_its_place():
    old = {"cat": 0, "dog": 0, "fish": 0}
    assert diff(old, {"cat": 0, "dog": 1, "fish": 0}) == [{"op": "replace", "path": "/dog", "value": 1}]
    assert list(apply(old, diff(old, {"cat": 0, "dog": 1, "fish": 0}))) == ["cat", "dog", "fish"]


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ({"a": 1, "b": 2}, {"b": 2, "a": 0}),  # another order, and a change
        ({"a": 1, "b": 2}, {"z": 0, "a": 1, "b": 2}),  # a key added before the kept ones
        ({"a": 1, "b": 2, "c": 3}, {"c": 3, "b": 5}),  # kept keys in another order
    ],
)
def test_a_dict_in_another_order_is_replaced_whole(old, new):
    assert diff({"d": old}, {"d": new}) == [{"op": "replace", "path": "/d", "value": new}]
    assert json.dumps(apply({"d": old}, diff({"d": old}, {"d": new}))) == json.dumps({"d": new})


def test_keys_added_at_the_end_are_patched_member_by_member():
    assert diff({"a": 1, "b": 2}, {"b": 3, "c": 4}) == [
        {"op": "remove", "path": "/a"},
        {"op": "replace", "path": "/b", "value": 3},
        {"op": "add", "path": "/c", "value": 4},
    ]


@given(documents)
def test_equal_documents_need_no_patch(doc):
    assert diff(doc, copy.deepcopy(doc)) == []


def test_a_dict_whose_keys_only_moved_is_sent_whole():
    old, new = {"d": {"a": 1, "b": 2}}, {"d": {"b": 2, "a": 1}}  # e.g. del d["a"]; d["a"] = 1
    assert diff(old, new) == [{"op": "replace", "path": "/d", "value": {"b": 2, "a": 1}}]
    # inside a list found equal, key order is not looked for: the price of comparing at C speed
    assert diff({"l": [old]}, {"l": [new]}) == []


class Row(BaseModel):
    name: str = ""
    tags: list[str] = []


class Board(BaseModel):
    rows: list[Row] = []
    meta: dict[str, int] = {}
    title: str = ""


mutations = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.text(max_size=5)),
        st.tuples(st.just("insert"), st.integers(0, 10), st.text(max_size=5)),
        st.tuples(st.just("pop"), st.integers(0, 10)),
        st.tuples(st.just("tag"), st.integers(0, 10), st.text(max_size=3)),
        st.tuples(st.just("meta"), st.text(max_size=3), st.integers()),
        st.tuples(st.just("unmeta"), st.text(max_size=3)),
        st.tuples(st.just("premeta"), st.text(max_size=3), st.integers()),
        st.tuples(st.just("remeta"), st.text(max_size=3)),
        st.tuples(st.just("title"), st.text(max_size=5)),
    ),
    max_size=12,
)


def mutate(board: Board, ops) -> None:
    for op, *args in ops:
        if op == "append":
            board.rows.append(Row(name=args[0]))
        elif op == "insert":
            board.rows.insert(args[0], Row(name=args[1]))
        elif op == "pop" and board.rows:
            board.rows.pop(args[0] % len(board.rows))
        elif op == "tag" and board.rows:
            board.rows[args[0] % len(board.rows)].tags.append(args[1])
        elif op == "meta":
            board.meta[args[0]] = args[1]
        elif op == "premeta" and args[0] not in board.meta:  # a new key first: the dict in another order
            board.meta = {args[0]: args[1], **board.meta}
        elif op == "remeta" and args[0] in board.meta:  # the same member, moved to the end
            board.meta[args[0]] = board.meta.pop(args[0])
        elif op == "unmeta":
            board.meta.pop(args[0], None)
        elif op == "title":
            board.title = args[0]


@given(mutations, mutations)
@settings(max_examples=300)
def test_state_mutations_round_trip_through_patches(setup, change):
    board = Board()
    mutate(board, setup)
    old = board.model_dump(mode="json")
    mutate(board, change)
    new = board.model_dump(mode="json")
    patched = apply(old, diff(old, new))
    assert patched == new
    assert json.dumps(patched) == json.dumps(new)  # as a fresh snapshot: key order included


def test_booleans_and_numbers_are_told_apart():
    assert diff({"a": 1}, {"a": True}) == [{"op": "replace", "path": "/a", "value": True}]
    assert diff(1, True) == [{"op": "replace", "path": "", "value": True}]


def test_patches_are_proportional_to_the_change():
    items = [{"n": i} for i in range(10_000)]
    assert diff({"items": items}, {"items": [*items, {"n": -1}]}) == [
        {"op": "add", "path": "/items/10000", "value": {"n": -1}}
    ]
    assert diff({"items": items}, {"items": [{"n": -1}, *items]}) == [
        {"op": "add", "path": "/items/0", "value": {"n": -1}}
    ]
    assert diff(items, items[:5000] + items[5001:]) == [{"op": "remove", "path": "/5000"}]
    changed = [dict(x) for x in items]
    changed[7]["n"] = "seven"
    assert diff(items, changed) == [{"op": "replace", "path": "/7/n", "value": "seven"}]


def test_keys_are_escaped():
    assert diff({}, {"a/b~c": 1}) == [{"op": "add", "path": "/a~1b~0c", "value": 1}]
