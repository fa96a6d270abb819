"""MAX_CALLS_IN_FLIGHT: a connection with that many calls unanswered is not read until answers come back."""

from __future__ import annotations

import time

import pytest

from zocket_django.inflight import InFlight


def test_only_rpc_results_count_as_answers() -> None:
    inflight = InFlight(2)
    inflight.sent()
    inflight.sent()
    assert inflight.full
    inflight.answered('{"type":"state:patch","actor":"a"}')
    assert inflight.full
    inflight.answered('{"type":"rpc:result","id":"x","result":1}')
    assert not inflight.full
    inflight.answered('{"type":"rpc:result","id":"y","result":1}')
    inflight.answered('{"type":"rpc:result","id":"z","result":1}')  # never below zero
    assert inflight.count == 0


async def test_a_lost_answer_stops_nobody_for_good() -> None:
    inflight = InFlight(1)
    inflight.sent()
    await inflight.room(0.05)
    assert not inflight.full


@pytest.mark.django_db(transaction=True)
async def test_calls_past_the_bound_wait_and_are_all_answered_while_others_are_served(connect, settings):
    settings.ZOCKET = {"MAX_CALLS_IN_FLIGHT": 2}
    flood, other = await connect(), await connect()
    ids = [f"f{n}" for n in range(6)]
    started = time.monotonic()
    for n, rpc_id in enumerate(ids):  # six slow calls on six instances: two at a time are read
        frame = {"type": "rpc", "id": rpc_id, "actor": "lab", "actorId": f"slow{n}", "method": "slow"}
        await flood.send_json_to({**frame, "input": {"seconds": 0.3}})
    assert await other.call("lab", "other", "noop") == 0  # served while the flood waits for its own
    answered = [await flood.expect("rpc:result", id=rpc_id) for rpc_id in ids]
    assert [a.get("result") for a in answered] == ["done"] * 6
    # Two at a time: three rounds of 0.3 s (all six read at once would take one). A lower bound only.
    assert time.monotonic() - started >= 0.85
    assert [m for m in await flood.nothing_more() if m.get("type") == "rpc:result"] == []
