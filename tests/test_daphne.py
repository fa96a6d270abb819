"""Durability against a real daphne process: kill -9, SIGTERM and SIGINT.

Each test copies a migrated SQLite file and serves the demo project from a
``python -m daphne`` subprocess on a free port, speaking to it with the
``websockets`` client, as a browser or script would.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import sqlite3

import pytest
import websockets

from tests.live import DEMO_SETTINGS, Worker, copy_of, single_env

pytestmark = pytest.mark.slow


def saved(worker: Worker, actor: str, actor_id: str) -> tuple[dict, int] | None:
    """The snapshot row, read straight from the worker's SQLite file."""
    with sqlite3.connect(worker.env["DATABASE_URL"].removeprefix("sqlite:///")) as db:
        row = db.execute(
            "SELECT state, version FROM zocket_django_snapshot WHERE actor = ? AND actor_id = ?", (actor, actor_id)
        ).fetchone()
    return (json.loads(row[0]), row[1]) if row else None


class Client:
    """Just enough of the protocol, over the websockets library."""

    _ids = itertools.count(1)

    def __init__(self, ws) -> None:
        self.ws = ws

    @classmethod
    async def open(cls, url: str) -> Client:
        client = cls(await websockets.connect(url, open_timeout=10))
        welcome = json.loads(await asyncio.wait_for(client.ws.recv(), 10))
        assert welcome["type"] == "welcome"
        return client

    async def next(self, type: str, **fields) -> dict:
        async with asyncio.timeout(10):
            while True:
                frame = json.loads(await self.ws.recv())
                if frame["type"] == type and all(frame.get(k) == v for k, v in fields.items()):
                    return frame

    async def call(self, actor: str, actor_id: str, method: str, **input) -> object:
        rpc_id = f"r{next(self._ids)}"
        await self.ws.send(
            json.dumps(
                {"type": "rpc", "id": rpc_id, "actor": actor, "actorId": actor_id, "method": method, "input": input}
            )
        )
        frame = await self.next("rpc:result", id=rpc_id)
        assert "error" not in frame, frame
        return frame.get("result")

    async def state(self, actor: str, actor_id: str) -> tuple[dict, int]:
        await self.ws.send(json.dumps({"type": "state:sub", "actor": actor, "actorId": actor_id}))
        frame = await self.next("state:snapshot", actor=actor, actorId=actor_id)
        return frame["state"], frame["version"]

    async def close(self) -> None:
        await self.ws.close()


@pytest.fixture
def daphne(tmp_path, migrated_sqlite):
    server = Worker(single_env(copy_of(migrated_sqlite, tmp_path)), tmp_path, "daphne", settings=DEMO_SETTINGS)
    yield server
    server.stop()


async def test_acknowledged_write_through_changes_survive_kill_9(daphne):
    daphne.start()
    client = await Client.open(daphne.url)
    for n in range(1, 51):
        assert await client.call("counter", "k9", "increment") == n  # each one acknowledged
    assert saved(daphne, "counter", "k9") == ({"count": 50}, 50)  # already there before the kill
    daphne.kill()  # SIGKILL: no shutdown hook, no last save

    daphne.start()
    client = await Client.open(daphne.url)
    assert await client.state("counter", "k9") == ({"count": 50}, 50)
    await client.close()
    assert daphne.kill(signal.SIGTERM) == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_a_clean_stop_saves_on_deactivate_actors(daphne, sig):
    daphne.start()
    client = await Client.open(daphne.url)
    for text in ("one", "two", "three"):
        await client.call("chat", "room", "send", text=text)
    assert saved(daphne, "chat", "room") is None  # it saves only on deactivation
    assert daphne.kill(sig) == 0, daphne.log()  # with the socket still open
    assert "1 hot instance(s) deactivated" in daphne.log()
    state, version = saved(daphne, "chat", "room")
    assert [m["text"] for m in state["messages"]] == ["one", "two", "three"]

    daphne.start()
    client = await Client.open(daphne.url)
    state, version = await client.state("chat", "room")
    assert [m["text"] for m in state["messages"]] == ["one", "two", "three"]
    assert len(state["online"]) == 1  # this client only: stale presence was cleared by on_activate
    assert version >= 4
    await client.close()
    assert daphne.kill(signal.SIGTERM) == 0
