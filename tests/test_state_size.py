"""Bounded state: a step that would grow the state past its limit fails, and no snapshot is lost silently."""

import json

from django.core import checks
from hypothesis import given, settings
from hypothesis import strategies as st

from zocket_django import hot_actors, protocol
from zocket_django.patches import diff
from zocket_django.statesize import Measure, StateTooLarge, after_step, measure


def encoded_size(state) -> int:
    return len(json.dumps(state, ensure_ascii=False, separators=(",", ":")).encode())


async def test_a_step_over_the_limit_fails_changes_nothing_and_says_why(connect):
    watcher = await connect()
    await watcher.subscribe_state("heap", "h")
    client = await connect()
    assert await client.call("heap", "h", "put", size=100, count=19) == 19  # 1,968 bytes
    # Its patch (19 add operations) is larger than the state: the state goes out instead.
    assert (await watcher.expect("state:snapshot", actor="heap", actorId="h"))["version"] == 1
    result = await client.call_raw("heap", "h", "put", size=100)
    assert result["code"] == "too_large"
    assert result["details"] == {"size": encoded_size({"blobs": ["x" * 100] * 20}), "limit": 2000}
    assert "heap/h" in result["error"] and "nothing changed" in result["error"]
    assert hot_actors.get("heap", "h").state.blobs == ["x" * 100] * 19
    assert await watcher.nothing_more() == []  # no patch of the refused step
    # Room made by one step is usable by the next.
    assert await client.call("heap", "h", "drop", count=2) == 17
    assert await client.call("heap", "h", "put", size=100) == 18
    state, version = await watcher.subscribe_state("heap", "h")
    assert (len(state["blobs"]), version) == (18, 3)


async def test_a_patch_larger_than_the_state_goes_out_as_a_snapshot(connect):
    client = await connect()
    await client.call("heap", "big", "put", size=150, count=10)
    assert await client.subscribe_state("heap", "big") == ({"blobs": ["x" * 150] * 10}, 1)
    await client.call("heap", "big", "rewrite", size=160)  # ten replace operations, each carrying its value
    frame = await client.expect("state:snapshot", actor="heap", actorId="big")
    assert frame["state"] == {"blobs": ["y" * 160] * 10} and frame["version"] == 2
    assert encoded_size(frame["state"]) <= 2000
    # Small changes are patches again.
    await client.call("heap", "big", "drop", count=1)
    patch = await client.next_patch("heap", "big")
    assert patch["version"] == 3 and len(patch["patches"]) == 1 and patch["patches"][0]["op"] == "remove"


async def test_a_state_too_large_for_one_frame_answers_its_subscribers_with_an_error(connect, settings):
    settings.ZOCKET = {"MAX_MESSAGE_BYTES": 3000, "MAX_STATE_BYTES": 1500}
    client = await connect()
    await client.call("hoard", "x", "put", size=100, count=20)
    early = await connect()
    await early.subscribe_state("hoard", "x")
    await client.call("hoard", "x", "put", size=100, count=25)  # a 3.4 KB patch, a 4.6 KB state: over one frame
    ref = {"type": "state:sub", "actor": "hoard", "actorId": "x"}
    error = await early.expect("error")
    assert (error["code"], error["ref"]) == ("too_large", ref)
    assert "too large to send" in error["error"]
    late = await connect()
    await late.send_json_to({"type": "state:sub", "actor": "hoard", "actorId": "x"})
    error = await late.expect("error")
    assert (error["code"], error["ref"]) == ("too_large", ref)
    assert await late.nothing_more() == []
    # Once it fits again, subscribing works.
    await client.call("hoard", "x", "drop", count=35)
    state, version = await late.subscribe_state("hoard", "x")
    assert (len(state["blobs"]), version) == (10, 3)


async def test_an_activation_that_makes_the_state_too_large_fails_with_the_reason(connect):
    client = await connect()
    result = await client.call_raw("bloat", "b", "size")
    assert result["code"] == "too_large"
    assert "bloat/b is unavailable: on_activate made its state too large" in result["error"]
    assert hot_actors.get("bloat", "b") is None
    await client.send_json_to({"type": "state:sub", "actor": "bloat", "actorId": "b"})
    error = await client.expect("error")
    assert error["code"] == "too_large"


def test_the_limits_are_checked(settings):
    from zocket_django.actor import Actor, _build_spec
    from zocket_django.checks import check_state_sizes
    from zocket_django.conf import zocket_settings
    from zocket_django.registry import registry

    class Nonsense(Actor):
        State = None  # not registered: no name
        max_state_bytes = "big"

    problems = [p.message for p in _build_spec(Nonsense).problems if p.id == "zocket.E018"]
    assert problems == ["max_state_bytes must be a positive integer, not 'big'"]

    settings.ZOCKET = {"MAX_MESSAGE_BYTES": 50_000, "MAX_STATE_BYTES": 40_000}
    warnings = check_state_sizes()
    assert [w.id for w in warnings] == ["zocket.W003"]  # hoard: 100,000 bytes
    assert isinstance(warnings[0], checks.Warning) and warnings[0].obj is registry.get("hoard").cls
    assert registry.get("hoard").max_state_bytes == 100_000

    settings.ZOCKET = {"MAX_MESSAGE_BYTES": 10_000, "MAX_STATE_BYTES": 9_500}
    try:
        zocket_settings()
    except Exception as exc:
        assert "MAX_STATE_BYTES" in str(exc) and "1024" in str(exc)
    else:
        raise AssertionError("MAX_STATE_BYTES too close to MAX_MESSAGE_BYTES was accepted")


def test_a_shrinking_step_is_allowed_over_the_limit():
    old = {"blobs": ["x" * 100] * 30}
    new = {"blobs": ["x" * 100] * 29}
    frame = protocol.state_patch("a", "b", diff(old, new), 1, 1)
    after = after_step("a/b", 1000, measure(old), lambda: new, frame)
    assert after.exact and after.bound == encoded_size(new)
    grown = {"blobs": ["x" * 100] * 31}
    try:
        frame = protocol.state_patch("a", "b", [], 1, 1)
        after_step("a/b", 1000, Measure(encoded_size(old), False), lambda: grown, frame)
    except StateTooLarge as exc:
        assert exc.details == {"size": encoded_size(grown), "limit": 1000}
    else:
        raise AssertionError("a growing step over the limit was let through")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(old=json_values, new=json_values)
def test_the_size_bound_never_underestimates(old, new):
    """The bound an instance keeps (old size + patch frame) is never below the true size."""
    before = measure(old)
    frame = protocol.state_patch("a", "b", diff(old, new), 7, 1)
    after = after_step("a/b", 10**9, before, lambda: new, frame)
    assert after.bound >= encoded_size(new)


async def test_the_demo_chat_keeps_a_bounded_history(connect, monkeypatch):
    from demo_project.chat import actors as chat

    monkeypatch.setattr(chat, "HISTORY", 3)
    client = await connect()
    for n in range(5):
        await client.call("chat", "bounded", "send", text=f"m{n}")
    state, _ = await client.subscribe_state("chat", "bounded")
    assert [m["text"] for m in state["messages"]] == ["m2", "m3", "m4"]


async def test_the_demo_board_refuses_an_item_over_its_bound_before_writing_it(connect, monkeypatch):
    from demo_project.board import actors as board
    from demo_project.board.models import Todo

    monkeypatch.setattr(board, "MAX_ITEMS", 2)
    client = await connect()
    await client.call("board", "full", "add", text="one")
    await client.call("board", "full", "add", text="two")
    result = await client.call_raw("board", "full", "add", text="three")
    assert result["code"] == "too_large" and "full" in result["error"]
    assert await Todo.objects.filter(board="full").acount() == 2
