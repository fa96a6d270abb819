"""One client cannot hurt the others, against a real daphne (what tests/test_cleanup.py checks in process).

Close codes daphne really sends, cleanup however a socket ends (oversized
frame, cancellation after ``application_close_timeout``, a peer that stops
reading), publishing that survives subscribers closing mid-step, senders slowed
down by not reading their socket, one log line per event, no exception
messages in answers without DEBUG. ``lab.census`` reports what the worker
holds: hot instances, the connections they know, live sockets.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
import time
from pathlib import Path

import pytest
import websockets

from tests.live import LiveClient, RpcError, Worker, copy_of, single_env

pytestmark = pytest.mark.slow
MB = 1024 * 1024


def worker(tmp_path: Path, migrated_sqlite: Path, zocket: dict | None = None, args: tuple[str, ...] = ()) -> Worker:
    env = {**single_env(copy_of(migrated_sqlite, tmp_path)), "ZOCKET_JSON": json.dumps(zocket or {})}
    return Worker(env, tmp_path, "daphne", args=args).start()


def rss_mb(server: Worker) -> float:
    assert server.proc is not None
    for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


class RawSocket:
    """A WebSocket peer written by hand: it sends frames and reads only when asked (a peer that does not read)."""

    def __init__(self, port: int, receive_buffer: int = 4096) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.settimeout(10)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET /ws/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(1)
        assert b" 101 " in head, head

    @staticmethod
    def frame(payload: bytes) -> bytes:
        """One masked text frame (clients must mask)."""
        n = len(payload)
        if n < 126:
            head = bytes([0x81, 0x80 | n])
        elif n < 65536:
            head = bytes([0x81, 0x80 | 126]) + struct.pack("!H", n)
        else:
            head = bytes([0x81, 0x80 | 127]) + struct.pack("!Q", n)
        mask = os.urandom(4)
        whole = (mask * (n // 4 + 1))[:n]
        return head + mask + (int.from_bytes(payload, "big") ^ int.from_bytes(whole, "big")).to_bytes(n, "big")

    def send(self, message: dict) -> None:
        self.sock.sendall(self.frame(json.dumps(message).encode()))

    def close(self) -> None:
        self.sock.close()


async def census(client: LiveClient) -> dict:
    return await client.call("lab", "census", "census")


async def settles(client: LiveClient, expected: dict, timeout: float = 30.0) -> dict:
    """Wait (bounded) until ``lab.census`` reports ``expected``; returns the last report."""
    deadline = time.monotonic() + timeout
    while True:
        found = await census(client)
        if found == expected or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.2)


@pytest.fixture
def server(tmp_path, migrated_sqlite):
    started: list[Worker] = []

    def start(zocket: dict | None = None, args: tuple[str, ...] = ()) -> Worker:
        started.append(worker(tmp_path, migrated_sqlite, zocket, args))
        return started[-1]

    yield start
    for w in started:
        w.stop()


async def test_an_oversized_frame_closes_with_4009_and_leaves_no_ghost(server):
    daphne = server({"IDLE_TIMEOUT": 1})
    good = await LiveClient.connect(daphne.url)
    await good.subscribe_state("chat", "room")
    sockets = []
    for n in range(20):
        client = await LiveClient.connect(daphne.url)
        await client.send({"type": "state:sub", "actor": "chat", "actorId": "room"})
        for k in range(5):
            await client.send({"type": "rpc", "id": f"{k}", "actor": "lab", "actorId": f"o{n}-{k}", "method": "noop"})
        sockets.append(client)
    await good.wait_state("room", lambda s: len(s["online"]) == 21, timeout=30)
    assert (await census(good))["sockets"] == 21
    for client in sockets:
        await client.ws.send("x" * 300_000)  # over the default MAX_FRAME_BYTES (256 KiB)
    for client in sockets:
        await asyncio.wait_for(client.ws.wait_closed(), 15)
        assert client.ws.close_code == 4009, client.ws.close_code  # 1009 daphne would refuse, and send 1011
    # Idle instances go; the room and the census actor stay, known to the good client only.
    assert await settles(good, {"hot": 2, "presences": 2, "sockets": 1}) == {"hot": 2, "presences": 2, "sockets": 1}
    state = await good.wait_state("room", lambda s: len(s["online"]) == 1)
    assert state["online"] == [good.client_id]
    log = daphne.log()
    assert log.count("frame over 262144 bytes from") == 20  # one line per event, not two
    assert "Exception inside application" not in log
    await good.close()


async def test_a_consumer_cancelled_by_daphne_still_parts(server):
    # Every frame waits for its budget (1 per second): the consumer is far behind when its socket closes,
    # and daphne cancels it one second later.
    daphne = server(
        {"IDLE_TIMEOUT": 1, "MESSAGE_RATE": 1, "MESSAGE_BURST": 2}, args=("--application-close-timeout", "1")
    )
    good = await LiveClient.connect(daphne.url)
    await good.subscribe_state("chat", "room")
    raws = []
    for n in range(10):
        raw = RawSocket(daphne.port, receive_buffer=1 << 20)
        raw.send({"type": "state:sub", "actor": "chat", "actorId": "room"})
        raw.send({"type": "rpc", "id": "1", "actor": "lab", "actorId": f"c{n}", "method": "noop"})
        for _ in range(30):
            raw.send({"type": "ping"})
        raws.append(raw)
    await good.wait_state("room", lambda s: len(s["online"]) == 11, timeout=30)
    for raw in raws:
        raw.close()
    assert await settles(good, {"hot": 2, "presences": 2, "sockets": 1}) == {"hot": 2, "presences": 2, "sockets": 1}
    assert (await good.wait_state("room", lambda s: len(s["online"]) == 1))["online"] == [good.client_id]
    assert "took too long to shut down and was killed" in daphne.log()  # the cancellation did happen
    await good.close()


async def test_a_peer_that_does_not_read_is_cut_off_and_its_memory_given_back(server):
    daphne = server({"IDLE_TIMEOUT": 1, "MESSAGE_RATE": None})
    good = await LiveClient.connect(daphne.url)
    for k in range(5):  # ~0.9 MB of state
        await good.call("lab", "big", "add_item", text=str(k) * 180_000)
    before = rss_mb(daphne)
    raw = RawSocket(daphne.port)
    for _ in range(200):  # ~180 MB of snapshots if every one were queued
        raw.send({"type": "state:sub", "actor": "lab", "actorId": "big", "resync": True})
    # The good client alone is known, to lab/big and lab/census.
    assert await settles(good, {"hot": 2, "presences": 2, "sockets": 1}) == {"hot": 2, "presences": 2, "sockets": 1}
    assert rss_mb(daphne) - before < 60, (before, rss_mb(daphne))
    assert await good.call("lab", "big", "noop") == 0  # the others were served throughout
    assert "over MAX_OUTPUT_BYTES); closing with 4008" in daphne.log()
    raw.close()
    await good.close()


async def test_a_slow_reader_that_reads_sees_close_code_4008(server):
    daphne = server({"MAX_OUTPUT_BYTES": 1 * MB, "MESSAGE_RATE": None})
    good = await LiveClient.connect(daphne.url)
    await good.call("lab", "big", "add_item", text="x" * 200_000)
    slow = await websockets.connect(daphne.url, max_size=None, max_queue=1)
    await slow.recv()
    for _ in range(40):
        await slow.send(json.dumps({"type": "state:sub", "actor": "lab", "actorId": "big", "resync": True}))
    await asyncio.sleep(2)  # it does not read meanwhile
    with pytest.raises(websockets.ConnectionClosed):
        while True:
            await asyncio.wait_for(slow.recv(), 10)
    assert slow.close_code in (4008, 1006)  # 4008 when the close frame got through before autobahn gave up
    await good.close()


async def test_subscribers_closing_while_a_change_is_published_cause_no_false_error(server):
    daphne = server()
    good = await LiveClient.connect(daphne.url)
    errors: list[str] = []

    async def talk() -> None:
        for n in range(150):
            try:
                await good.call("chat", "busy", "send", text=f"m{n}")
            except RpcError as exc:
                errors.append(str(exc.code))

    async def churn() -> None:
        async def one() -> None:
            async with websockets.connect(daphne.url, open_timeout=20) as ws:
                await ws.recv()
                await ws.send(json.dumps({"type": "state:sub", "actor": "chat", "actorId": "busy"}))
                await asyncio.sleep(0.01)

        for _ in range(15):
            await asyncio.gather(*(one() for _ in range(20)))

    await asyncio.gather(talk(), churn())
    assert errors == []
    state = await good.subscribe_state("chat", "busy")
    assert state["state"]["messages"][-1]["text"] == "m149"  # (the chat keeps a bounded history)
    assert "rolled back" not in daphne.log()
    await good.close()


async def test_a_sender_over_its_byte_budget_is_not_read(server):
    daphne = server({"BYTE_RATE": 20_000, "BYTE_BURST": 300_000, "MESSAGE_RATE": None})
    good = await LiveClient.connect(daphne.url)
    before = rss_mb(daphne)
    raw = RawSocket(daphne.port)
    raw.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    frame = RawSocket.frame(
        json.dumps(
            {
                "type": "rpc",
                "id": "e",
                "actor": "sink",
                "actorId": "s",
                "method": "echo",
                "input": {"value": "y" * 200_000},
            }
        ).encode()
    )
    raw.sock.setblocking(False)
    accepted, deadline = 0, time.monotonic() + 5
    while time.monotonic() < deadline and accepted < 100 * len(frame):
        try:
            accepted += raw.sock.send(frame[accepted % len(frame) :])
        except BlockingIOError:
            await asyncio.sleep(0.05)
    # Without the pause daphne would read (and queue) all 20 MB at once.
    assert accepted < 40 * len(frame), accepted
    assert rss_mb(daphne) - before < 40, (before, rss_mb(daphne))
    assert await good.call("lab", "p", "noop") == 0  # others are served meanwhile
    raw.close()
    await good.close()


async def test_without_debug_answers_carry_no_exception_message(server):
    daphne = server()
    client = await LiveClient.connect(daphne.url)
    with pytest.raises(RpcError) as failed:
        await client.call("lab", "d", "fail_after_change")
    assert failed.value.code == "handler_error"
    frame = client.of_type("rpc:result")[-1]
    assert "details" not in frame, frame
    await client.close()
