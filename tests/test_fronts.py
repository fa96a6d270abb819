"""``tracking.fronts``: the dump's first items counted as removed, cut out later, undone exactly.

The property tests of ``test_tracking`` and ``test_list_positions`` run whole
steps with tiny limits; these pin the rules one by one.
"""

from __future__ import annotations

import pytest

from zocket_django.tracking import fronts
from zocket_django.tracking.fronts import Fronts
from zocket_django.tracking.jsondoc import apply, revert


@pytest.fixture(autouse=True)
def small(monkeypatch):
    monkeypatch.setattr(fronts, "LONG", 3)
    monkeypatch.setattr(fronts, "CUT_AT", 4)
    monkeypatch.setattr(fronts, "MAX_LISTS", 1)


def test_a_short_list_pops_and_a_long_one_counts():
    doc = {"short": [1, 2], "long": [1, 2, 3, 4, 5]}
    counted = Fronts()
    patches, _ = apply(doc, [("remove", ["short"], 0, None), ("remove", ["long"], 0, None)], counted)
    assert patches == [{"op": "remove", "path": "/short/0"}, {"op": "remove", "path": "/long/0"}]
    assert doc == {"short": [2], "long": [1, 2, 3, 4, 5]} and counted.offset(doc["long"]) == 1


def test_indexes_stay_logical_and_an_insert_at_the_front_takes_a_slot_back():
    doc = {"l": [{"t": 0}, {"t": 1}, {"t": 2}, {"t": 3}]}
    counted = Fronts()
    apply(doc, [("remove", ["l"], 0, None), ("remove", ["l"], 0, None)], counted)
    patches, _ = apply(doc, [("set", ["l", 0], "t", 9), ("add", ["l"], 0, {"t": "new"})], counted)
    assert patches == [
        {"op": "replace", "path": "/l/0/t", "value": 9},
        {"op": "add", "path": "/l/0", "value": {"t": "new"}},
    ]
    assert doc["l"][counted.offset(doc["l"]) :] == [{"t": "new"}, {"t": 9}, {"t": 3}]
    assert doc["l"][0] == {"t": 0}  # still physically there, counted as removed


def test_the_list_is_cut_once_enough_are_counted():
    doc = {"l": list(range(10))}
    counted = Fronts()
    for _ in range(4):
        apply(doc, [("remove", ["l"], 0, None)], counted)
    assert doc["l"] == list(range(4, 10)) and counted.pending == {}


def test_undoing_a_step_undoes_its_counts_and_its_cuts():
    doc = {"a": list(range(5)), "b": list(range(5))}
    counted = Fronts()
    apply(doc, [("remove", ["a"], 0, None)], counted)  # committed: a counts one
    _, undo = apply(doc, [("remove", ["a"], 0, None), ("remove", ["b"], 0, None)], counted)
    assert doc["a"] == list(range(2, 5))  # b's count cut a (one list at a time), this step's removal too
    revert(undo)
    assert doc["a"][counted.offset(doc["a"]) :] == list(range(1, 5)) and doc["b"] == list(range(5))
    assert counted.offset(doc["b"]) == 0


def test_a_replacement_sees_the_lists_it_replaces_as_they_are():
    doc = {"box": {"l": list(range(5))}}
    counted = Fronts()
    apply(doc, [("remove", ["box", "l"], 0, None)], counted)
    patches, undo = apply(doc, [("set", ["box"], "l", [1, 2, 3, 4, 5])], counted)
    assert patches == [{"op": "add", "path": "/box/l/4", "value": 5}]  # diffed against [1, 2, 3, 4]
    revert(undo)
    assert doc["box"]["l"][counted.offset(doc["box"]["l"]) :] == [1, 2, 3, 4]
