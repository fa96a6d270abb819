"""docs/protocol.md through the real ASGI application, as a client meets it."""

import pytest

from zocket_django.testing import ZocketCallError


async def test_welcome_gives_a_unique_client_id(connect):
    a, b = await connect(), await connect()
    assert a.client_id and b.client_id and a.client_id != b.client_id


async def test_snapshot_patch_then_result(connect):
    client = await connect()
    await client.send_json_to({"type": "state:sub", "actor": "counter", "actorId": "main"})
    snapshot = await client.receive_json_from()
    epoch = snapshot["epoch"]  # the incarnation: an integer, the same on its patches
    assert isinstance(epoch, int)
    assert snapshot == {
        "type": "state:snapshot",
        "actor": "counter",
        "actorId": "main",
        "state": {"count": 0},
        "version": 0,
        "epoch": epoch,
    }
    await client.send_json_to(
        {"type": "rpc", "id": "r1", "actor": "counter", "actorId": "main", "method": "add", "input": {"amount": 5}}
    )
    # The subscribed caller sees the patch before its own result.
    assert await client.receive_json_from() == {
        "type": "state:patch",
        "actor": "counter",
        "actorId": "main",
        "patches": [{"op": "replace", "path": "/count", "value": 5}],
        "version": 1,
        "epoch": epoch,
    }
    assert await client.receive_json_from() == {"type": "rpc:result", "id": "r1", "result": 5}


async def test_invalid_input_has_details_and_changes_nothing(connect):
    client = await connect()
    await client.subscribe_state("counter", "main")
    frame = await client.call_raw("counter", "main", "add", amount="x")
    assert frame["code"] == "invalid_input"
    # The message says what was wrong (Zocket's own client keeps nothing else); details keep the structure.
    assert frame["error"] == (
        "Invalid input for add: amount: Input should be a valid integer, unable to parse string as an integer"
    )
    assert frame["details"] == [
        {
            "loc": ["amount"],
            "msg": "Input should be a valid integer, unable to parse string as an integer",
            "type": "int_parsing",
        }
    ]
    two = await client.call_raw("counter", "main", "add", {"amount": 1, "extra": 2, "more": 3})
    assert two["error"] == "Invalid input for add: extra: Extra inputs are not permitted (and 1 more problem)"
    assert [d["loc"] for d in two["details"]] == [["extra"], ["more"]]
    long = await client.call_raw("counter", "main", "add", {"amount": 1, "x" * 1000: 0})
    assert long["error"] == f"Invalid input for add: {'x' * 79}…: Extra inputs are not permitted"
    for bad in ({}, {"amount": 1, "extra": 2}, {"amount": None}):
        assert (await client.call_raw("counter", "main", "add", bad))["code"] == "invalid_input"
    await client.send_json_to(
        {"type": "rpc", "id": "n", "actor": "counter", "actorId": "main", "method": "add", "input": [1]}
    )
    assert (await client.expect("rpc:result", id="n"))["code"] == "invalid_input"
    assert await client.nothing_more() == []
    assert await client.call("counter", "main", "increment") == 1


async def test_method_without_input_accepts_absent_or_empty_input(connect):
    client = await connect()
    assert await client.call("counter", "a", "increment") == 1
    assert await client.call("counter", "a", "increment", {}) == 2
    assert await client.call("counter", "a", "reset") is None


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", "bad_request"),
        ("[1, 2]", "bad_request"),
        ('{"no": "type"}', "bad_request"),
        ('{"type": 7}', "bad_request"),
        ('{"type": "launch"}', "unknown_type"),
        ('{"type": "rpc", "actor": "counter"}', "bad_request"),
        ('{"type": "state:sub", "actor": "nope", "actorId": "x"}', "unknown_actor"),
        ('{"type": "event:sub", "actor": "counter", "actorId": 5}', "bad_request"),
        ('{"type": "state:sub", "actor": "counter", "actorId": ""}', "bad_request"),
        (
            '{"type": "rpc", "id": "x", "actor": "counter", "actorId": "m", "method": "add", "input": NaN}',
            "bad_request",
        ),
        ("[" * 100000, "bad_request"),
    ],
)
async def test_bad_frames_get_errors_and_the_connection_survives(connect, frame, code):
    client = await connect()
    await client.send_to(text_data=frame)
    reply = await client.receive_json_from()
    assert reply["type"] == "error" and reply["code"] == code, reply
    await client.ping()
    assert await client.call("counter", "main", "increment") == 1


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"actor": "nope", "actorId": "x", "method": "m"}, "unknown_actor"),
        ({"actor": "counter", "actorId": "x", "method": "explode"}, "unknown_method"),
        ({"actor": "counter", "actorId": "x", "method": 3}, "bad_request"),
        ({"actor": "counter", "actorId": ["x"], "method": "add"}, "bad_request"),
        ({"actor": "counter", "actorId": "x" * 1000, "method": "increment"}, "bad_request"),
    ],
)
async def test_bad_rpc_is_answered_with_its_id(connect, fields, code):
    client = await connect()
    await client.send_json_to({"type": "rpc", "id": "q", **fields})
    reply = await client.receive_json_from()
    assert reply["type"] == "rpc:result" and reply["id"] == "q" and reply["code"] == code
    assert "result" not in reply


async def test_rpc_without_string_id_is_an_error_frame(connect):
    client = await connect()
    await client.send_json_to({"type": "rpc", "id": 5, "actor": "counter", "actorId": "x", "method": "increment"})
    reply = await client.receive_json_from()
    assert reply == {
        "type": "error",
        "code": "bad_request",
        "error": "rpc needs a string id",
        "ref": {"type": "rpc", "id": 5, "actor": "counter", "actorId": "x"},
    }


async def test_binary_frames_are_refused_politely(connect):
    client = await connect()
    await client.send_to(bytes_data=b"\x00\x01")
    assert (await client.receive_json_from())["code"] == "bad_request"
    await client.ping()


async def test_oversized_frame_closes_with_4009(connect, settings):
    # 4009, not 1009: servers let applications close only with 1000 or 3000-4999 (tested on daphne in test_robust_live).
    settings.ZOCKET = {"MAX_FRAME_BYTES": 1000}
    client = await connect()
    await client.send_to(text_data='{"type":"ping","pad":"' + "x" * 2000 + '"}')
    assert await client.receive_output() == {"type": "websocket.close", "code": 4009, "reason": "frame over 1000 bytes"}


async def test_ping_pong_echoes_the_id(connect):
    client = await connect()
    await client.send_json_to({"type": "ping", "id": "abc"})
    assert await client.receive_json_from() == {"type": "pong", "id": "abc"}
    await client.send_json_to({"type": "ping"})
    assert await client.receive_json_from() == {"type": "pong"}


async def test_subscribing_twice_gives_one_stream_and_a_fresh_snapshot(connect):
    client = await connect()
    await client.subscribe_state("counter", "main")
    await client.call("counter", "main", "increment")
    await client.next_patch("counter", "main")
    state, version = await client.subscribe_state("counter", "main")
    assert (state, version) == ({"count": 1}, 1)
    await client.call("counter", "main", "increment")
    await client.next_patch("counter", "main")
    assert [f for f in await client.nothing_more() if f["type"] == "state:patch"] == []


async def test_unsubscribing_stops_delivery(connect):
    watcher, actor = await connect(), await connect()
    await watcher.subscribe_state("counter", "main")
    await watcher.subscribe_events("counter", "main")
    await watcher.send_json_to({"type": "state:unsub", "actor": "counter", "actorId": "main"})
    await watcher.send_json_to({"type": "event:unsub", "actor": "counter", "actorId": "main"})
    await watcher.ping()
    await actor.call("counter", "main", "increment")
    await actor.call("counter", "main", "reset")
    assert await watcher.nothing_more() == []


async def test_errors_from_calls_raise_in_the_helper(connect):
    client = await connect()
    with pytest.raises(ZocketCallError) as err:
        await client.call("counter", "main", "add", amount="x")
    assert err.value.code == "invalid_input"
