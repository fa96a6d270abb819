"""Durability against a real daphne process: kill -9, SIGTERM and SIGINT.

Each test migrates a temporary SQLite file and serves the demo project from a
``python -m daphne`` subprocess on a free port, speaking to it with the
``websockets`` client, as a browser or script would.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import websockets

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Daphne:
    """The demo project under daphne, on its own SQLite file."""

    def __init__(self, db: Path, log: Path) -> None:
        self.db = db
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "DJANGO_SETTINGS_MODULE": "demo_project.settings",
            "DATABASE_URL": f"sqlite:///{db}",
            "PYTHONUNBUFFERED": "1",
        }
        self.log = log
        self.proc: subprocess.Popen | None = None
        self.port = 0

    def migrate(self) -> None:
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput"],
            cwd=ROOT,
            env=self.env,
            check=True,
            capture_output=True,
            timeout=120,
        )

    def start(self) -> None:
        self.port = free_port()
        with self.log.open("a") as log:
            log.write(f"--- starting on port {self.port}\n")
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "daphne",
                    "-b",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "demo_project.asgi:application",
                ],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        listening = f"Listening on TCP address 127.0.0.1:{self.port}"
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"daphne exited early:\n{self.log.read_text()}"
            if listening in self.log.read_text():
                return
            time.sleep(0.05)
        raise AssertionError(f"daphne did not listen in time:\n{self.log.read_text()}")

    def stop(self, sig: int) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(
                f"daphne did not stop on {signal.Signals(sig).name}:\n{self.log.read_text()}"
            ) from None

    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/"

    def saved(self, actor: str, actor_id: str) -> tuple[dict, int] | None:
        """The snapshot row, read straight from the SQLite file."""
        with sqlite3.connect(self.db) as db:
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


@pytest.fixture(scope="module")
def migrated(tmp_path_factory) -> Path:
    """A migrated SQLite file, made once and copied for each test."""
    template = tmp_path_factory.mktemp("daphne") / "template.sqlite3"
    Daphne(template, template.with_suffix(".log")).migrate()
    return template


@pytest.fixture
def daphne(tmp_path, migrated):
    shutil.copyfile(migrated, tmp_path / "db.sqlite3")
    server = Daphne(tmp_path / "db.sqlite3", tmp_path / "daphne.log")
    yield server
    if server.proc is not None and server.proc.poll() is None:
        server.proc.kill()
        server.proc.wait()


async def test_acknowledged_write_through_changes_survive_kill_9(daphne):
    daphne.start()
    client = await Client.open(daphne.url())
    for n in range(1, 51):
        assert await client.call("counter", "k9", "increment") == n  # each one acknowledged
    assert daphne.saved("counter", "k9") == ({"count": 50}, 50)  # already there before the kill
    daphne.proc.kill()  # SIGKILL: no shutdown hook, no last save
    daphne.proc.wait(timeout=10)

    daphne.start()
    client = await Client.open(daphne.url())
    assert await client.state("counter", "k9") == ({"count": 50}, 50)
    await client.close()
    assert daphne.stop(signal.SIGTERM) == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_a_clean_stop_saves_on_deactivate_actors(daphne, sig):
    daphne.start()
    client = await Client.open(daphne.url())
    for text in ("one", "two", "three"):
        await client.call("chat", "room", "send", text=text)
    assert daphne.saved("chat", "room") is None  # it saves only on deactivation
    assert daphne.stop(sig) == 0, daphne.log.read_text()  # with the socket still open
    assert "1 hot instance(s) deactivated" in daphne.log.read_text()
    state, version = daphne.saved("chat", "room")
    assert [m["text"] for m in state["messages"]] == ["one", "two", "three"]

    daphne.start()
    client = await Client.open(daphne.url())
    state, version = await client.state("chat", "room")
    assert [m["text"] for m in state["messages"]] == ["one", "two", "three"]
    assert len(state["online"]) == 1  # this client only: stale presence was cleared by on_activate
    assert version >= 4
    await client.close()
    assert daphne.stop(signal.SIGTERM) == 0
