"""Coalesced patches (docs/protocol.md, "Coalesced patches"): several versions in one ``state:patch``.

Steps queued behind a slow one have their patches held and sent as one frame
with ``from``; the ops of that frame, applied to version ``from``, give the
state of ``version`` exactly as applying each version's patch would, and a
caller still sees the patch of its step before its ``rpc:result``.
"""

from __future__ import annotations

import copy
import itertools
import json
from typing import Any

import jsonpatch
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zocket_django import protocol
from zocket_django.coalesce import Coalescer, joined_ops

pytestmark = pytest.mark.django_db(transaction=True)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=12,
)
documents = st.dictionaries(st.sampled_from(["a", "b", "c", "~x", "/y"]), json_values, max_size=5)


@settings(max_examples=200, deadline=None)
@given(st.lists(documents, min_size=2, max_size=8), st.integers(1, 8))
def test_a_coalesced_patch_applied_to_its_base_gives_what_each_patch_gives(states: list[Any], most: int) -> None:
    """Frames built by the coalescer, applied in turn to the first state, end at the last, version by version."""
    coalescer = Coalescer()
    frames: list[dict[str, Any]] = []
    for version, (before, after) in enumerate(itertools.pairwise(states), start=1):
        ops = protocol.encode(jsonpatch.make_patch(before, after).patch)
        if not coalescer.fits(ops, most, 10**9, 7):
            frames.append(_frame(coalescer))
        coalescer.hold(ops, version, 7)
    frames.append(_frame(coalescer))
    copy_, at = copy.deepcopy(states[0]), 0
    for frame in frames:
        assert frame.get("from", frame["version"] - 1) == at
        assert "from" in frame or frame["version"] - at == 1
        copy_ = jsonpatch.apply_patch(copy_, frame["patches"])
        at = frame["version"]
        assert copy_ == states[at]  # the state of exactly that version
    assert at == len(states) - 1


def _frame(coalescer: Coalescer) -> dict[str, Any]:
    held = coalescer.take()
    assert held is not None
    base = held.base if len(held.ops) > 1 else None
    text = protocol.state_patch_ops(
        protocol.state_patch_head("a", "b"), joined_ops(held.ops), held.version, held.epoch, base
    )
    frame: dict[str, Any] = json.loads(text)
    assert frame["epoch"] == 7
    return frame


def test_a_held_patch_never_crosses_an_epoch_nor_skips_a_version() -> None:
    coalescer = Coalescer()
    coalescer.hold("[]", 4, 1)
    assert not coalescer.fits("[]", 10, 100, 2)
    with pytest.raises(ValueError):
        coalescer.hold("[]", 6, 1)
    with pytest.raises(ValueError):
        coalescer.hold("[]", 5, 2)


async def _burst(client: Any, actor_id: str, items: int) -> list[str]:
    """A slow step, then ``items`` calls queued behind it, all sent at once; their rpc ids."""
    ids = [f"slow-{actor_id}"] + [f"add-{actor_id}-{n}" for n in range(items)]
    frame = {"type": "rpc", "actor": "lab", "actorId": actor_id}
    await client.send_json_to({**frame, "id": ids[0], "method": "slow", "input": {"seconds": 0.3}})
    for n, rpc_id in enumerate(ids[1:]):
        await client.send_json_to({**frame, "id": rpc_id, "method": "add_item", "input": {"text": f"i{n}"}})
    return ids


async def _frames_until(client: Any, done: Any) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []
    while not done(frames):
        frames.append(await client.receive_json_from(10))
    return frames


async def test_steps_queued_behind_a_slow_one_arrive_as_one_patch_and_each_answer_after_its_change(connect):
    client = await connect()
    state, version = await client.subscribe_state("lab", "co")
    start = version
    ids = await _burst(client, "co", 20)
    frames = await _frames_until(client, lambda fs: sum(f["type"] == "rpc:result" for f in fs) == len(ids))
    patches = [f for f in frames if f["type"] == "state:patch"]
    assert any("from" in p for p in patches)  # coalesced
    assert len(patches) < 21
    for frame in frames:
        if frame["type"] == "state:patch":
            assert frame.get("from", frame["version"] - 1) == version
            assert len({p["epoch"] for p in patches}) == 1
            state = jsonpatch.apply_patch(state, frame["patches"])
            version = frame["version"]
        elif frame["id"] != ids[0]:  # the caller's copy already holds what its call added
            assert {"text": frame["result"]["text"], "done": False} in state["items"]
    assert version == start + 21
    assert (state, version) == await client.subscribe_state("lab", "co")


async def test_a_subscriber_arriving_during_a_burst_gets_a_snapshot_the_next_patch_follows(connect):
    caller, late = await connect(), await connect()
    _, start = await caller.subscribe_state("lab", "late")
    await _burst(caller, "late", 20)
    await late.send_json_to({"type": "state:sub", "actor": "lab", "actorId": "late"})
    snapshot = await late.expect("state:snapshot", actor="lab", actorId="late")
    state, version = snapshot["state"], snapshot["version"]
    while version < start + 21:
        patch = await late.next_patch("lab", "late")
        assert patch.get("from", patch["version"] - 1) == version
        state, version = jsonpatch.apply_patch(state, patch["patches"]), patch["version"]
    assert (state, version) == await caller.subscribe_state("lab", "late")


async def test_coalesce_patches_1_sends_one_patch_per_version(connect, settings):
    settings.ZOCKET = {"COALESCE_PATCHES": 1}
    client = await connect()
    _, version = await client.subscribe_state("lab", "one")
    ids = await _burst(client, "one", 10)
    frames = await _frames_until(client, lambda fs: sum(f["type"] == "rpc:result" for f in fs) == len(ids))
    patches = [f for f in frames if f["type"] == "state:patch"]
    assert [p["version"] for p in patches] == list(range(version + 1, version + 12))
    assert not any("from" in p for p in patches)


async def test_a_step_that_waits_does_not_hold_the_answers_before_it(connect):
    """A patch is held only while the steps behind it run without waiting: one that waits sends it first."""
    client = await connect()
    _, version = await client.subscribe_state("lab", "wait")
    frame = {"type": "rpc", "actor": "lab", "actorId": "wait"}
    await client.send_json_to({**frame, "id": "busy", "method": "slow", "input": {"seconds": 0.3}})
    await client.send_json_to({**frame, "id": "add", "method": "add_item", "input": {"text": "first"}})
    await client.send_json_to({**frame, "id": "long", "method": "slow", "input": {"seconds": 2}})
    frames = await _frames_until(client, lambda fs: any(f.get("id") == "add" for f in fs))
    # "busy" and "add" (held while "long" was queued) went out when "long" began to wait, not after it.
    patches = [f for f in frames if f["type"] == "state:patch"]
    assert patches[-1]["version"] == version + 2
    assert not any(f.get("id") == "long" for f in frames)
    assert (await client.expect("rpc:result", id="long"))["result"] == "done"
