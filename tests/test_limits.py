"""Every limit of the ZOCKET settings: hit, answered, and the connection survives."""

import asyncio
import json
import time

import pytest
from django.core.exceptions import ImproperlyConfigured

from zocket_django import hot_actors
from zocket_django.conf import zocket_settings


async def test_a_connection_over_its_frame_rate_is_slowed_down_not_refused(connect, settings):
    settings.ZOCKET = {"MESSAGE_RATE": 20, "MESSAGE_BURST": 3}
    client = await connect()
    started = time.monotonic()
    for n in range(10):
        await client.send_json_to({"type": "ping", "id": n})
    await client.send_json_to({"type": "state:sub", "actor": "counter", "actorId": "m"})
    await client.send_json_to({"type": "rpc", "id": "r", "actor": "counter", "actorId": "m", "method": "increment"})
    assert [await client.receive_json_from() for _ in range(10)] == [{"type": "pong", "id": n} for n in range(10)]
    assert (await client.expect("state:snapshot"))["state"] == {"count": 0}
    assert (await client.expect("rpc:result", id="r"))["result"] == 1
    # 12 frames, 3 at once then 20 per second: at least (12 - 3) / 20 s, never an error.
    assert time.monotonic() - started >= 9 / 20
    assert [f["type"] for f in await client.nothing_more()] == ["state:patch"]


async def test_a_connection_over_its_byte_rate_is_slowed_down_not_refused(connect, settings):
    settings.ZOCKET = {"BYTE_RATE": 20_000, "BYTE_BURST": 10_000, "MESSAGE_RATE": None}
    client = await connect()
    started = time.monotonic()
    text = "y" * 4_000
    for n in range(6):
        await client.send_json_to(
            {"type": "rpc", "id": f"e{n}", "actor": "sink", "actorId": "b", "method": "echo", "input": {"value": text}}
        )
    for n in range(6):
        assert (await client.expect("rpc:result", id=f"e{n}"))["result"] == text
    # ~24 KB, 10 KB at once then 20 KB/s: at least 0.7 s.
    assert time.monotonic() - started >= 0.65


async def test_rate_limit_can_be_turned_off(connect, settings):
    settings.ZOCKET = {"MESSAGE_RATE": None, "MESSAGE_BURST": 1}
    client = await connect()
    for _ in range(20):
        await client.send_json_to({"type": "ping"})
    assert [await client.receive_json_from() for _ in range(20)] == [{"type": "pong"}] * 20


async def test_max_subscriptions_per_connection(connect, settings):
    settings.ZOCKET = {"MAX_SUBSCRIPTIONS": 2}
    client = await connect()
    await client.subscribe_state("counter", "a")
    await client.subscribe_events("counter", "a")
    await client.send_json_to({"type": "state:sub", "actor": "counter", "actorId": "b"})
    frame = await client.expect("error")
    assert (frame["code"], frame["ref"]) == ("overloaded", {"type": "state:sub", "actor": "counter", "actorId": "b"})
    assert hot_actors.get("counter", "b") is None
    # A resync of a held subscription is not a new one; dropping one makes room.
    assert await client.subscribe_state("counter", "a") == ({"count": 0}, 0)
    await client.send_json_to({"type": "event:unsub", "actor": "counter", "actorId": "a"})
    assert await client.subscribe_state("counter", "b") == ({"count": 0}, 0)


async def test_max_queued_calls_per_instance(connect, settings):
    settings.ZOCKET = {"MAX_QUEUED_CALLS": 2}
    client = await connect()
    first = asyncio.ensure_future(client.call("lab", "q", "slow", seconds=0.3))
    await asyncio.sleep(0.1)  # the first call is running, the queue is empty
    queued = [asyncio.ensure_future(client.call("lab", "q", "slow", seconds=0)) for _ in range(2)]
    await asyncio.sleep(0.02)
    frame = await client.call_raw("lab", "q", "slow", seconds=0)
    assert frame["code"] == "overloaded"
    assert await asyncio.gather(first, *queued) == ["done"] * 3
    assert await client.call("lab", "q", "slow", seconds=0) == "done"
    assert hot_actors.get("lab", "q").state.log.count("start") == 4


async def test_call_timeout_answers_timeout_and_undoes_the_step(connect, settings):
    settings.ZOCKET = {"CALL_TIMEOUT": 0.1}
    client = await connect()
    _, version = await client.subscribe_state("lab", "t")
    frame = await client.call_raw("lab", "t", "slow", seconds=1)
    assert frame["code"] == "timeout"
    assert (await client.subscribe_state("lab", "t"))[1] == version
    assert await client.call("lab", "t", "noop") == 0


@pytest.mark.parametrize("actor_id", ["a\x00b", "tab\there", "line\nbreak", "\u200bzero-width", "\x7f"])
async def test_actor_ids_with_control_characters_are_refused(connect, actor_id):
    client = await connect()
    frame = await client.call_raw("counter", actor_id, "increment")
    assert (frame["code"], frame["error"]) == ("bad_request", "actorId holds characters that are not allowed")
    assert await client.call("counter", "plain id with spaces and ünïcödé", "increment") == 1


async def test_actor_id_pattern_setting(connect, settings):
    settings.ZOCKET = {"ACTOR_ID_PATTERN": r"[a-z0-9-]+"}
    client = await connect()
    assert (await client.call_raw("counter", "Room 1", "increment"))["code"] == "bad_request"
    assert await client.call("counter", "room-1", "increment") == 1


async def test_lone_surrogates_are_refused_not_echoed(connect):
    client = await connect()
    await client.send_to(text_data='{"type":"rpc","id":"\\ud800","actor":"counter","actorId":"x","method":"increment"}')
    frame = await client.receive_json_from()
    assert (frame["type"], frame["code"]) == ("error", "bad_request")
    await client.send_to(text_data='{"type":"state:sub","actor":"counter","actorId":"\\udfff"}')
    assert (await client.receive_json_from())["code"] == "bad_request"
    # A proper pair is fine, escaped or not.
    assert await client.call("counter", "\U0001f600", "increment") == 1
    await client.send_to(text_data=json.dumps({"type": "ping", "id": "\U0001f600"}))
    assert await client.receive_json_from() == {"type": "pong", "id": "\U0001f600"}


async def test_long_ids_are_not_echoed(connect):
    client = await connect()
    await client.send_json_to({"type": "rpc", "id": "i" * 129, "actor": "counter", "actorId": "x", "method": "m"})
    frame = await client.receive_json_from()
    assert frame == {"type": "error", "code": "bad_request", "error": "rpc id must be 1 to 128 characters",
                     "ref": {"type": "rpc", "actor": "counter", "actorId": "x"}}  # fmt: skip
    await client.send_json_to({"type": "ping", "id": "p" * 1000})
    assert await client.receive_json_from() == {"type": "pong"}


@pytest.mark.parametrize("number", ["1e400", "-1e400", "1" * 5000])
async def test_numbers_json_cannot_carry_back_are_bad_requests(connect, number):
    client = await connect()
    frame = f'{{"type":"rpc","id":"n","actor":"lab","actorId":"x","method":"noop","x":{number}}}'
    await client.send_to(text_data=frame)
    assert (await client.receive_json_from())["code"] == "bad_request"
    await client.ping()


async def test_oversized_binary_frames_close_with_4009(connect, settings):
    settings.ZOCKET = {"MAX_FRAME_BYTES": 100}
    client = await connect()
    await client.send_to(bytes_data=b"x" * 101)
    assert await client.receive_output() == {"type": "websocket.close", "code": 4009, "reason": "frame over 100 bytes"}


@pytest.mark.parametrize(
    "bad",
    [
        {"MAX_SUBSCRIPTIONS": 0},
        {"MESSAGE_RATE": -1},
        {"MESSAGE_BURST": 0},
        {"BYTE_RATE": -5},
        {"BYTE_BURST": 0},
        {"MAX_OUTPUT_BYTES": 0},
        {"MAX_QUEUED_CALLS": "many"},
        {"ACTOR_ID_PATTERN": "("},
        {"TOKEN_MAX_AGE": True},
    ],
)
def test_bad_limits_are_reported(settings, bad):
    settings.ZOCKET = bad
    with pytest.raises(ImproperlyConfigured):
        zocket_settings()


@pytest.mark.parametrize("value", ["Infinity", "-Infinity", "NaN", "inf"])
async def test_float_parameters_refuse_non_finite_strings(connect, value):
    client = await connect()
    frame = await client.call_raw("lab", "x", "slow", seconds=value)
    assert frame["code"] == "invalid_input"
    assert hot_actors.get("lab", "x") is None
