"""Frames written by ``transport.DaphneSocket.write`` straight to daphne's transport arrive intact.

The write builds the WebSocket frame itself (it skips autobahn's per-frame
debug formatting), so every length encoding is crossed here: 7-bit lengths up
to 125 bytes, 16-bit ones up to 65,535, 64-bit beyond, in ASCII and in
multi-byte UTF-8, read by the ``websockets`` client (which checks framing and
UTF-8 strictly).
"""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets

from tests.live import LiveClient, Worker, copy_of, single_env

pytestmark = pytest.mark.slow

#: The ``rpc:result`` around an echoed string ``"…"``: ``{"type":"rpc:result","id":"rN","result":"…"}``.
ENVELOPE = len(json.dumps({"type": "rpc:result", "id": "r1", "result": ""}, separators=(",", ":")))


@pytest.fixture
def daphne(tmp_path, migrated_sqlite):
    # Also on a Unix socket (``daphne -u``): Twisted's ``unix.Server`` is the other transport written to directly.
    unix = ("-u", str(tmp_path / "daphne.sock"))
    worker = Worker(single_env(copy_of(migrated_sqlite, tmp_path)), tmp_path, "daphne", args=unix).start()
    yield worker
    worker.stop()


async def test_frames_of_every_length_encoding_arrive_intact(daphne):
    client = await LiveClient.connect(daphne.url)
    try:
        sizes = [*range(120 - ENVELOPE, 132 - ENVELOPE), *range(65530 - ENVELOPE, 65542 - ENVELOPE), 200_000]
        for size in sizes:
            value = "x" * size
            assert await client.call("sink", "s", "echo", value=value) == value
        for size in (1, 60, 40_000):  # 2 bytes per character: crosses the boundaries again
            value = "é" * size
            assert await client.call("sink", "s", "echo", value=value) == value
        assert await client.call("sink", "s", "echo", value={"ünïcode": ["😀", 1.5, None]}) == {
            "ünïcode": ["😀", 1.5, None]
        }
    finally:
        await client.close()


@pytest.mark.parametrize("over", ["tcp", "unix"])
async def test_frames_behind_a_full_socket_buffer_arrive_whole_and_in_order(daphne, over):
    """A client that stops reading fills the kernel's buffer: the rest of a frame and every frame
    after it wait in Twisted's buffer, none overtakes another (``DaphneSocket._send``)."""
    if over == "tcp":
        connecting = websockets.connect(daphne.url, max_size=None)
    else:
        connecting = websockets.unix_connect(daphne.args[1], daphne.url, max_size=None)
    async with connecting as ws:
        assert json.loads(await ws.recv())["type"] == "welcome"
        values = [chr(ord("a") + i) * (150_000 + i) for i in range(20)]  # ~3 MB of answers, under MAX_OUTPUT_BYTES
        for i, value in enumerate(values):
            call = {"type": "rpc", "id": f"r{i}", "actor": "sink", "actorId": "s", "method": "echo"}
            await ws.send(json.dumps({**call, "input": {"value": value}}))
        await asyncio.sleep(1.0)  # not reading meanwhile: the answers pile up behind the socket
        answers = [json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in values]
    assert [a["id"] for a in answers] == [f"r{i}" for i in range(len(values))]
    assert [a["result"] for a in answers] == values
