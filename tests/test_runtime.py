"""The runtime's rules: one step at a time, roll back on error, hooks, idle eviction."""

import asyncio

import pytest
from django.contrib.auth.models import User

from tests.testapp import actors as lab
from zocket_django import actor_activated, actor_deactivated, hot_actors


async def test_concurrent_increments_are_serialized_and_every_version_arrives(connect):
    clients = [await connect() for _ in range(10)]
    for c in clients:
        assert await c.subscribe_state("counter", "race") == ({"count": 0}, 0)

    async def fire(c, n):
        return await asyncio.gather(*(c.call("counter", "race", "increment") for _ in range(n)))

    results = await asyncio.gather(*(fire(c, 10) for c in clients))
    assert sorted(r for rs in results for r in rs) == list(range(1, 101))  # each result unique
    for c in clients:
        # Every version arrives, in order: one patch each, or several in one coalesced patch
        # ("from": the version its ops apply to) when steps were queued faster than sent.
        version, count = 0, 0
        while version < 100:
            patch = await c.next_patch("counter", "race")
            assert patch.get("from", patch["version"] - 1) == version
            assert len(patch["patches"]) == patch["version"] - version
            version = patch["version"]
            count = patch["patches"][-1]["value"]
        assert count == 100
    state, version = await clients[0].subscribe_state("counter", "race")
    assert (state, version) == ({"count": 100}, 100)


async def test_a_raising_handler_changes_nothing_and_emits_nothing(connect):
    client = await connect()
    state, version = await client.subscribe_state("lab", "x")
    await client.subscribe_events("lab", "x")
    frame = await client.call_raw("lab", "x", "fail_after_change")
    assert frame["code"] == "handler_error"
    assert "secret" not in frame["error"]  # the message stays generic
    assert await client.nothing_more() == []
    assert await client.subscribe_state("lab", "x") == (state, version)
    assert hot_actors.get("lab", "x").state.value == 0


async def test_zocket_error_passes_its_message_and_code_and_rolls_back(connect):
    client = await connect()
    _, version = await client.subscribe_state("lab", "x")
    frame = await client.call_raw("lab", "x", "refuse", why="closed on sundays")
    assert (frame["code"], frame["error"]) == ("not_today", "closed on sundays")
    assert (await client.subscribe_state("lab", "x"))[1] == version


async def test_an_invalid_event_payload_fails_the_call(connect):
    client = await connect()
    _, version = await client.subscribe_state("lab", "x")
    assert (await client.call_raw("lab", "x", "bad_event"))["code"] == "handler_error"
    assert (await client.subscribe_state("lab", "x"))[1] == version


async def test_steps_that_change_nothing_send_no_patch(connect):
    client = await connect()
    await client.subscribe_state("lab", "x")
    await client.call("lab", "x", "noop")
    assert await client.nothing_more() == []


async def test_calls_on_one_instance_never_overlap(connect):
    client = await connect()
    await asyncio.gather(*(client.call("lab", "one", "slow", seconds=0.02) for _ in range(5)))
    log = hot_actors.get("lab", "one").state.log
    assert log == ["activated"] + ["start", "end"] * 5


@pytest.mark.django_db(transaction=True)
async def test_sync_handlers_run_in_threads_one_at_a_time_per_instance(connect):
    await User.objects.acreate(username="ada")
    client = await connect()
    assert await client.call("lab", "db", "sync_count_users") == 1
    lab._peak.clear()
    peaks = await asyncio.gather(*(client.call("lab", f"i{i % 2}", "sync_overlap", seconds=0.05) for i in range(6)))
    assert max(peaks) == 1  # never two at once on one instance
    assert lab._peak["__all__"] == 2  # but two instances ran side by side


async def test_events_broadcast_to_and_except(connect):
    a, b, c = await connect(), await connect(), await connect()
    for x in (a, b, c):
        await x.subscribe_events("lab", "ev")
    await a.call("lab", "ev", "notify", text="all")
    for x in (a, b, c):
        assert (await x.next_event("lab", "ev", "note"))["payload"] == {"text": "all"}
    await a.call("lab", "ev", "notify", text="only b", to=[b.client_id])
    await a.call("lab", "ev", "notify", text="not b", skip=[b.client_id])
    assert [e["payload"]["text"] for e in await b.nothing_more()] == ["only b"]
    assert [e["payload"]["text"] for e in await a.nothing_more()] == ["not b"]
    assert [e["payload"]["text"] for e in await c.nothing_more()] == ["not b"]


async def test_event_frame_shape(connect):
    client = await connect()
    await client.subscribe_events("counter", "main")
    await client.call("counter", "main", "reset")
    assert await client.next_event("counter", "main") == {
        "type": "event",
        "actor": "counter",
        "actorId": "main",
        "event": "reset",
        "payload": {"by": client.client_id},
    }


async def test_chat_presence_follows_connections(connect):
    a = await connect()
    state, _ = await a.subscribe_state("chat", "lobby")
    assert state["online"] == [a.client_id]
    b = await connect()
    await b.call("chat", "lobby", "send", text="hi")
    assert hot_actors.get("chat", "lobby").state.online == [a.client_id, b.client_id]
    await b.disconnect()
    for _ in range(50):
        if hot_actors.get("chat", "lobby").state.online == [a.client_id]:
            break
        await asyncio.sleep(0.01)
    assert hot_actors.get("chat", "lobby").state.online == [a.client_id]
    messages = hot_actors.get("chat", "lobby").state.messages
    assert [(m.user, m.text) for m in messages] == [(b.client_id, "hi")]


async def test_chat_validates_text_length(connect):
    client = await connect()
    assert (await client.call_raw("chat", "lobby", "send", text=""))["code"] == "invalid_input"
    assert (await client.call_raw("chat", "lobby", "send", text="x" * 501))["code"] == "invalid_input"
    assert (await client.call("chat", "lobby", "send", text="x" * 500))["text"] == "x" * 500


async def test_context_carries_identity_and_clients(connect):
    a, b = await connect(), await connect()
    await a.subscribe_events("lab", "who")
    seen = await b.call("lab", "who", "whoami")
    assert seen == {
        "client_id": b.client_id,
        "user_id": None,
        "claims": {},
        "clients": sorted([a.client_id, b.client_id]),
    }


async def test_idle_instances_deactivate_and_signals_fire(connect, settings):
    settings.ZOCKET = {"IDLE_TIMEOUT": 0.2}
    activated, deactivated = [], []

    def on_activated(sender, actor_id, instance, **kw):
        activated.append((sender.name, actor_id))

    def on_deactivated(sender, actor_id, instance, **kw):
        deactivated.append((sender.name, actor_id))

    actor_activated.connect(on_activated)
    actor_deactivated.connect(on_deactivated)
    try:
        client = await connect()
        await client.call("lab", "idle", "noop")
        assert activated == [("lab", "idle")]
        await asyncio.sleep(0.5)
        assert hot_actors.count() == 1  # the caller's connection keeps it hot
        await client.disconnect()
        for _ in range(100):
            if deactivated:
                break
            await asyncio.sleep(0.02)
        assert deactivated == [("lab", "idle")]
        assert "idle" in lab.DEACTIVATED
        assert hot_actors.count() == 0
    finally:
        actor_activated.disconnect(on_activated)
        actor_deactivated.disconnect(on_deactivated)


async def test_manager_lists_and_deactivates(connect):
    client = await connect()
    await client.subscribe_state("counter", "a")
    await client.call("counter", "b", "increment")
    assert hot_actors.count() == 2
    info = {(i["actor"], i["actor_id"]): i for i in hot_actors.list()}
    assert info[("counter", "a")]["state_subscribers"] == 1
    assert info[("counter", "b")]["version"] == 1
    assert await hot_actors.adeactivate("counter", "b") is True
    assert await hot_actors.adeactivate("counter", "b") is False
    assert hot_actors.count() == 1
    assert await client.call("counter", "b", "increment") == 2  # a new incarnation, restored (write-through)


async def test_a_destroyed_instance_sends_its_subscribers_a_fresh_snapshot(connect):
    watcher, actor = await connect(), await connect()
    await watcher.subscribe_state("counter", "z")
    await actor.call("counter", "z", "add", amount=3)
    assert (await watcher.next_patch("counter", "z"))["version"] == 1
    await hot_actors.adestroy("counter", "z")
    await actor.call("counter", "z", "increment")
    snapshot = await watcher.expect("state:snapshot", actor="counter", actorId="z")
    assert (snapshot["state"], snapshot["version"]) == ({"count": 0}, 0)
    patch = await watcher.next_patch("counter", "z")
    assert (patch["patches"], patch["version"]) == ([{"op": "replace", "path": "/count", "value": 1}], 1)


async def test_deactivate_all(connect):
    client = await connect()
    for i in range(3):
        await client.call("counter", str(i), "increment")
    assert await hot_actors.adeactivate_all() == 3
    assert hot_actors.count() == 0
