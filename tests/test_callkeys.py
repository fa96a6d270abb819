"""Keyed calls run at most once: the window of outcomes, and the ``key`` of an ``rpc`` frame as a client meets it."""

import asyncio
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zocket_django.callkeys import CallWindow, KeyReused, fingerprint
from zocket_django.node import current_node
from zocket_django.testing import ZocketCommunicator

# -- the window ----------------------------------------------------------------------------


def test_remembers_the_outcome_of_a_key_per_identity():
    window = CallWindow(per_caller=10, per_instance=100, seconds=60)
    fp = fingerprint("add", {"amount": 1})
    assert window.lookup("user:1", "k", fp, now=0) is None
    window.remember("user:1", "k", fp, '{"result":1}', now=0)
    assert window.lookup("user:1", "k", fp, now=1) == '{"result":1}'
    assert window.lookup("user:2", "k", fp, now=1) is None  # another identity's key is another key


def test_a_key_used_for_another_call_is_refused():
    window = CallWindow(per_caller=10, per_instance=100, seconds=60)
    window.remember("anonymous", "k", fingerprint("add", {"amount": 1}), '{"result":1}', now=0)
    with pytest.raises(KeyReused):
        window.lookup("anonymous", "k", fingerprint("add", {"amount": 2}), now=0)
    with pytest.raises(KeyReused):
        window.lookup("anonymous", "k", fingerprint("increment", {"amount": 1}), now=0)


def test_fingerprints_ignore_key_order_and_tell_inputs_apart():
    assert fingerprint("m", {"a": 1, "b": 2}) == fingerprint("m", {"b": 2, "a": 1})
    assert fingerprint("m", {"a": 1}) != fingerprint("m", {"a": "1"})


def test_bounds_drop_the_oldest_first():
    window = CallWindow(per_caller=2, per_instance=3, seconds=10)
    for i in range(3):
        window.remember("a", f"k{i}", "f", "{}", now=i)
    assert [k for _, k, *_ in window.dump()] == ["k1", "k2"]  # two per caller
    window.remember("b", "x", "f", "{}", now=3)
    window.remember("c", "y", "f", "{}", now=4)
    assert [k for _, k, *_ in window.dump()] == ["k2", "x", "y"]  # three in all
    window.prune(now=13.5)
    assert [k for _, k, *_ in window.dump()] == ["y"]  # ten seconds


def test_a_saved_window_comes_back_and_bad_entries_are_skipped():
    window = CallWindow(per_caller=5, per_instance=5, seconds=100)
    window.remember("a", "k", "f", '{"result":1}', now=1)
    window.remember("b", "k", "f", '{"error":"no","code":"forbidden"}', now=2)
    again = CallWindow(per_caller=5, per_instance=5, seconds=100)
    again.load([*window.dump(), ["broken"], "x", ["a", "k2", "f", "soon", "{}"]], now=3)
    assert again.dump() == window.dump()
    again.load({"not": "a list"}, now=3)
    assert len(again) == 0


operations = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c"]), st.sampled_from([f"k{i}" for i in range(8)]), st.floats(0, 5)),
    max_size=60,
)


@given(operations, st.integers(1, 4), st.integers(1, 10), st.floats(0.5, 30))
def test_the_window_keeps_its_bounds_and_the_latest_outcomes(ops, per_caller, per_instance, seconds):
    window = CallWindow(per_caller, per_instance, seconds)
    now = 0.0
    latest = {}
    for n, (identity, key, step) in enumerate(ops):
        now += step
        window.remember(identity, key, "f", str(n), now)
        latest[(identity, key)] = str(n)
        dump = window.dump()
        assert len(dump) <= per_instance
        for who in "abc":
            assert sum(1 for i, *_ in dump if i == who) <= per_caller
        assert all(now - at < seconds for *_, at, _ in dump)
        assert [at for *_, at, _ in dump] == sorted(at for *_, at, _ in dump)  # oldest first
        assert window.lookup(identity, key, "f", now) == str(n)  # what was just remembered is there
        for i, k, _, _, outcome in dump:
            assert latest[(i, k)] == outcome  # never an outdated outcome
        copy = CallWindow(per_caller, per_instance, seconds)
        copy.load(dump, now)
        assert copy.dump() == dump


# -- through the application ---------------------------------------------------------------

_ids = itertools.count()


def rpc(method, input=None, key=None, actor="counter", actor_id="main"):
    frame = {"type": "rpc", "id": f"k{next(_ids)}", "actor": actor, "actorId": actor_id, "method": method}
    if input is not None:
        frame["input"] = input
    if key is not None:
        frame["key"] = key
    return frame


async def send(client, frame):
    await client.send_json_to(frame)
    return await client.expect("rpc:result", id=frame["id"])


async def test_a_retried_key_answers_the_first_result_without_running_again(connect):
    client = await connect()
    first = await send(client, rpc("add", {"amount": 5}, key="abc"))
    again = await send(client, rpc("add", {"amount": 5}, key="abc"))
    assert first["result"] == again["result"] == 5
    assert first["id"] != again["id"]  # each attempt is answered under its own id
    assert (await send(client, rpc("add", {"amount": 5}, key="other")))["result"] == 10
    assert (await send(client, rpc("add", {"amount": 5})))["result"] == 15  # no key: runs every time
    assert (await send(client, rpc("add", {"amount": 5})))["result"] == 20


async def test_a_retry_from_a_new_connection_of_the_same_user_is_answered_too(django_user_model):
    alice = await django_user_model.objects.acreate(username="alice")
    async with ZocketCommunicator(user=alice) as first:
        assert (await send(first, rpc("add", {"amount": 2}, key="once")))["result"] == 2
    async with ZocketCommunicator(user=alice) as second:
        assert (await send(second, rpc("add", {"amount": 2}, key="once")))["result"] == 2
    async with ZocketCommunicator() as anonymous:  # someone else's key is a new key
        assert (await send(anonymous, rpc("add", {"amount": 2}, key="once")))["result"] == 4


async def test_a_retry_queued_behind_the_first_attempt_waits_for_it(connect):
    client = await connect()
    frames = [rpc("slow", {"seconds": 0.2}, key="s", actor="lab") for _ in range(3)]
    for frame in frames:
        await client.send_json_to(frame)
    answers = [await client.expect("rpc:result", id=f["id"]) for f in frames]
    assert [a["result"] for a in answers] == ["done"] * 3
    state, _ = await client.subscribe_state("lab", "main")
    assert state["log"] == ["activated", "start", "end"]  # it ran once


async def test_a_handler_error_is_the_remembered_outcome(connect):
    client = await connect()
    first = await send(client, rpc("refuse", {"why": "no"}, key="r", actor="lab"))
    again = await send(client, rpc("refuse", {"why": "no"}, key="r", actor="lab"))
    assert first["code"] == again["code"] == "not_today"
    assert again["error"] == first["error"]


async def test_reusing_a_key_for_another_call_is_refused_and_runs_nothing(connect):
    client = await connect()
    await send(client, rpc("add", {"amount": 1}, key="mine"))
    refused = await send(client, rpc("add", {"amount": 7}, key="mine"))
    assert refused["code"] == "bad_request"
    assert (await send(client, rpc("add", {"amount": 0})))["result"] == 1


@pytest.mark.parametrize("key", ["", "x" * 129, 5, ["k"], {"k": 1}, True])
async def test_a_bad_key_is_a_bad_request_and_nothing_runs(connect, key):
    client = await connect()
    refused = await send(client, rpc("add", {"amount": 1}, key=key))
    assert refused["code"] == "bad_request"
    assert "key" in refused["error"]
    assert (await send(client, rpc("add", {"amount": 0})))["result"] == 0
    assert (await send(client, rpc("add", {"amount": 1}, key="x" * 128)))["result"] == 1  # 128 is allowed


async def test_a_write_through_actor_keeps_the_window_through_a_lost_instance(connect):
    client = await connect()
    assert (await send(client, rpc("add", {"amount": 3}, key="w", actor="ledger", actor_id="l")))["result"] == 3
    # The worker loses the instance without saving anything more (as after a crash or a failover).
    current_node().runtime.drop("ledger", "l")
    again = await send(client, rpc("add", {"amount": 3}, key="w", actor="ledger", actor_id="l"))
    assert again["result"] == 3
    assert (await send(client, rpc("peek", actor="ledger", actor_id="l")))["result"] == 3


async def test_an_on_deactivate_actor_saves_the_window_with_its_state(connect):
    client = await connect()
    frame = rpc("write", {"line": "hello"}, key="j", actor="journal", actor_id="j")
    first = await send(client, frame)
    await current_node().runtime.deactivate("journal", "j")
    again = await send(client, {**frame, "id": "again"})
    assert again["result"] == first["result"]
    await current_node().runtime.deactivate("journal", "j")
    from zocket_django.models import Snapshot

    row = await Snapshot.objects.aget(actor="journal", actor_id="j")
    assert [entry[1] for entry in row.calls] == ["j"]


async def test_concurrent_attempts_with_one_key_from_two_sockets_run_once(connect):
    a, b = await connect(), await connect()
    frame = rpc("add", {"amount": 4}, key="both", actor_id="c")
    results = await asyncio.gather(send(a, frame), send(b, {**frame, "id": "other"}))
    assert [r["result"] for r in results] == [4, 4]


async def test_the_window_goes_with_patch_rows_too(connect, monkeypatch):
    """A large write-through state saves steps as patch rows: the keys are saved with each of them."""
    from zocket_django import persistence

    monkeypatch.setattr(persistence, "REWRITE_ROWS", frozenset())
    monkeypatch.setattr(persistence, "LOG_MIN_BYTES", 0)
    client = await connect()
    for n in (1, 2):
        assert (await send(client, rpc("add", {"amount": n}, key=f"p{n}", actor="ledger", actor_id="pl")))["result"]
    current_node().runtime.drop("ledger", "pl")  # as after kill -9: rows and keys are what the database has
    again = await send(client, rpc("add", {"amount": 2}, key="p2", actor="ledger", actor_id="pl"))
    assert again["result"] == 3
    assert (await send(client, rpc("peek", actor="ledger", actor_id="pl")))["result"] == 3
