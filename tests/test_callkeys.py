"""Keyed calls run at most once: the window of outcomes, and the ``key`` of an ``rpc`` frame as a client meets it."""

import asyncio
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zocket_django.callkeys import CALLER_FULL, INSTANCE_FULL, CallWindow, KeyReused, fingerprint
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


def test_only_age_removes_an_outcome_and_the_boundary_is_exact():
    window = CallWindow(per_caller=100, per_instance=100, seconds=10)
    fp = fingerprint("add", {"amount": 1})
    window.remember("a", "k", fp, '{"result":1}', now=100.0)
    assert window.lookup("a", "k", fp, now=109.999) == '{"result":1}'  # younger than CALL_KEY_SECONDS: kept
    assert window.lookup("a", "k", fp, now=110.0) is None  # CALL_KEY_SECONDS old: forgotten, it may run again
    assert len(window) == 0


def test_a_full_window_refuses_new_keys_and_still_answers_retries():
    window = CallWindow(per_caller=2, per_instance=3, seconds=10)
    for i in range(2):
        assert window.refusal("a", now=i) is None
        window.remember("a", f"k{i}", "f", str(i), now=i)
    assert window.refusal("a", now=2) == CALLER_FULL  # a's two places are taken ...
    assert window.refusal("b", now=2) is None  # ... b's are not
    window.remember("b", "x", "f", "x", now=2)
    assert window.refusal("c", now=3) == INSTANCE_FULL  # three in all
    assert [window.lookup("a", f"k{i}", "f", now=9.5) for i in range(2)] == ["0", "1"]  # nothing made room
    assert window.refusal("c", now=10) is None  # k0 is ten seconds old: its place is free again
    assert window.refusal("a", now=10) is None
    assert window.lookup("a", "k1", "f", now=10) == "1"


def test_a_saved_window_comes_back_and_bad_entries_are_skipped():
    window = CallWindow(per_caller=5, per_instance=5, seconds=100)
    window.remember("a", "k", "f", '{"result":1}', now=1)
    window.remember("b", "k", "f", '{"error":"no","code":"forbidden"}', now=2)
    again = CallWindow(per_caller=5, per_instance=5, seconds=100)
    again.load([*window.dump(), ["broken"], "x", ["a", "k2", "f", "soon", "{}"]], now=3)
    assert again.dump() == window.dump()
    again.load({"not": "a list"}, now=3)
    assert len(again) == 0


#: A caller's attempts: (identity, key, seconds since the previous attempt). Few keys, so retries are common.
attempts = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c"]), st.sampled_from([f"k{i}" for i in range(8)]), st.floats(0, 5)),
    max_size=80,
)


@given(attempts, st.integers(1, 4), st.integers(1, 10), st.floats(0.5, 30))
def test_a_retry_within_call_key_seconds_never_runs_twice(ops, per_caller, per_instance, seconds):
    """The runtime's use of the window (lookup, else refusal, else run and remember), at any rate:
    a key that ran is answered with its first outcome for ``seconds``; bounds only ever refuse."""
    window = CallWindow(per_caller, per_instance, seconds)
    now = 0.0
    ran: dict[tuple[str, str], tuple[float, str]] = {}  # what ran: when, and its outcome
    for n, (identity, key, step) in enumerate(ops):
        now += step
        known = window.lookup(identity, key, "f", now)
        first = ran.get((identity, key))
        if first is not None and now - first[0] < seconds:
            assert known == first[1]  # within CALL_KEY_SECONDS: answered, never run again
            continue
        assert known is None  # older: it may run again
        whose = window.refusal(identity, now)
        young = [at for at, _ in ran.values() if now - at < seconds]
        mine = [at for (i, _), (at, _) in ran.items() if i == identity and now - at < seconds]
        assert (whose is not None) == (len(young) >= per_instance or len(mine) >= per_caller)
        if whose is None:  # it runs
            ran[(identity, key)] = (now, str(n))
            window.remember(identity, key, "f", str(n), now)
        assert len(window) <= per_instance
        copy = CallWindow(per_caller, per_instance, seconds)
        copy.load(window.dump(), now)
        assert copy.dump() == window.dump()  # saved and restored whole


#: A store's use of the window: a step that keeps an outcome or is undone, a save that commits or fails, time.
store_ops = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(["step", "undone"]), st.sampled_from(["a", "b"]), st.sampled_from(["k0", "k1"])),
        st.tuples(st.just("save"), st.booleans(), st.just("")),
        st.tuples(st.just("wait"), st.floats(0, 4), st.just("")),
    ),
    max_size=60,
)


@given(store_ops)
def test_rows_saved_since_the_last_commit_rebuild_the_window(ops):
    """Each save writes only ``unsaved()``; after a committed save, the rows in the database (the
    young ones) load back into exactly the window, whatever was undone or failed before."""
    seconds = 10.0
    window = CallWindow(per_caller=100, per_instance=100, seconds=seconds)
    database: dict[tuple[str, str], list] = {}
    now = 0.0
    for n, (op, a, b) in enumerate(ops):
        if op in ("step", "undone"):
            if window.lookup(a, b, "f", now) is None:  # a new key runs: its outcome is kept ...
                window.remember(a, b, "f", str(n), now)
                if op == "undone":  # ... and forgotten when its step fails (``Instance.run``)
                    window.forget(a, b)
        elif op == "save":
            rows = window.unsaved()
            if a:  # committed: the rows are in the database (a newer row of a key replaces the older)
                database.update({(r[0], r[1]): r for r in rows})
                window.saved(rows)
                again = CallWindow(per_caller=100, per_instance=100, seconds=seconds)
                again.load([], now, [r for r in database.values() if now - r[3] < seconds])
                window.prune(now)
                # The same entries; of two kept at the same instant either may come first (the rows
                # load by time; ``prune`` stops at the first young entry, so ties never matter).
                assert sorted(again.dump()) == sorted(window.dump())
                assert [r[3] for r in again.dump()] == [r[3] for r in window.dump()]  # oldest first
                assert again.unsaved() == [] and window.unsaved() == []
        else:
            now += a  # type: ignore[operator]


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
    from zocket_django.models import CallOutcome

    assert [row.key async for row in CallOutcome.objects.filter(actor="journal", actor_id="j")] == ["j"]


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


async def test_a_full_window_answers_overloaded_and_runs_nothing(connect, settings):
    settings.ZOCKET = {"CALL_KEYS_PER_INSTANCE": 2}
    client = await connect()
    assert (await send(client, rpc("add", {"amount": 1}, key="k1", actor_id="full")))["result"] == 1
    assert (await send(client, rpc("add", {"amount": 1}, key="k2", actor_id="full")))["result"] == 2
    refused = await send(client, rpc("add", {"amount": 1}, key="k3", actor_id="full"))
    assert refused["code"] == "overloaded" and "CALL_KEYS_PER_INSTANCE" in refused["error"]
    assert (await send(client, rpc("add", {"amount": 1}, key="k1", actor_id="full")))["result"] == 1  # kept
    assert (await send(client, rpc("add", {"amount": 0}, actor_id="full")))["result"] == 2  # k3 did not run
