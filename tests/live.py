"""Real servers for tests: daphne subprocesses, a private Redis, a raw WebSocket client.

Only loopback addresses; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import websockets

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI") == "true"


def need(service: str, available: bool, how: str) -> None:
    """Skip with a visible reason when a service is missing; under CI=true, fail instead."""
    if available:
        return
    message = f"{service} is not available ({how})"
    if IN_CI:
        pytest.fail(message + "; CI=true requires it")
    pytest.skip(message)


def postgres_url() -> str | None:
    """``DATABASE_URL`` when it names PostgreSQL (the suite then runs on it)."""
    url = os.environ.get("DATABASE_URL") or ""
    return url if urlparse(url).scheme in ("postgres", "postgresql") else None


def postgres_problem(url: str, timeout: float = 3.0) -> str | None:
    """Why PostgreSQL at ``url`` cannot be used, or ``None`` when it answers."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install -r requirements-dev.txt)"
    parsed = urlparse(url)
    try:
        # The maintenance database: pytest-django creates test_<name> itself.
        with psycopg.connect(
            host=parsed.hostname or "localhost",
            port=parsed.port or 5432,
            user=parsed.username or None,
            password=parsed.password or None,
            dbname="postgres",
            connect_timeout=max(1, int(timeout)),
        ):
            return None
    except Exception as exc:  # any failure to connect means "not available"
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 20.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(port):
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port} after {timeout}s")


def require_redis() -> str:
    need("Redis", port_open(6379), "127.0.0.1:6379")
    return "redis://127.0.0.1:6379/0"


LIVE_SETTINGS = "tests.live_settings"  # the demo plus tests.testapp; ZOCKET from ZOCKET_JSON
DEMO_SETTINGS = "demo_project.settings"  # the demo exactly as it ships
ASGI_APPLICATION = "demo_project.asgi:application"


def _environ(env: dict[str, str], settings: str) -> dict[str, str]:
    return {**os.environ, "DJANGO_SETTINGS_MODULE": settings, "PYTHONUNBUFFERED": "1", **env}


class Worker:
    """One daphne process serving the demo project on a free port.

    ``env`` goes over this process's environment (``cluster_env`` for workers
    sharing a Redis, ``single_env`` for one on its own); ``settings`` is the
    settings module. The port is chosen once: ``start()`` again after
    ``kill()`` or ``stop()`` serves the same URL, as a restarted server would.
    Every start appends to one log file, ``log_dir / f"{name}.log"``.
    """

    def __init__(
        self,
        env: dict[str, str],
        log_dir: Path,
        name: str,
        *,
        settings: str = LIVE_SETTINGS,
        args: tuple[str, ...] = (),
    ) -> None:
        self.env = env
        self.settings = settings
        self.args = args  # more daphne options, e.g. ("--application-close-timeout", "1")
        self.port = free_port()
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/"

    def start(self, timeout: float = 30.0) -> Worker:
        """Start daphne and wait until it listens; fails with the log's tail if it does not."""
        with self.log_path.open("ab") as log:  # the child keeps its own descriptor
            log.write(f"--- starting on port {self.port}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port), *self.args, ASGI_APPLICATION],
                cwd=ROOT,
                env=_environ(self.env, self.settings),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_for_port(self.port, timeout, proc=self.proc)
        except (RuntimeError, TimeoutError) as exc:
            self.stop()
            raise RuntimeError(f"daphne: {exc}\n{self.log()[-4000:]}") from None
        return self

    def kill(self, sig: int = signal.SIGKILL, timeout: float = 30.0) -> int:
        """Send ``sig`` (SIGKILL: a crash; SIGTERM, SIGINT: a clean stop) and return the exit code.

        A process still running after ``timeout`` is killed, and the test fails with its log.
        """
        assert self.proc is not None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            name = signal.Signals(sig).name
            raise AssertionError(f"daphne did not stop on {name} within {timeout}s:\n{self.log()[-4000:]}") from None

    def stop(self) -> None:
        """SIGKILL if still running (teardown); it ends a process paused with SIGSTOP as well."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def manage(self, *args: str) -> str:
        """``manage.py`` against this worker's settings and database; returns its stdout."""
        return manage(self.env, *args, settings=self.settings)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def manage(env: dict[str, str], *args: str, settings: str = LIVE_SETTINGS) -> str:
    """Run ``manage.py`` with ``env`` over this process's environment; returns its stdout."""
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=_environ(env, settings),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args[:1])} exited with {result.returncode}:\n{result.stderr[-4000:]}")
    return result.stdout


def migrate(env: dict[str, str], settings: str = LIVE_SETTINGS) -> None:
    manage(env, "migrate", "--noinput", "-v0", settings=settings)


def copy_of(database: Path, directory: Path) -> Path:
    """A copy of the SQLite file ``database`` in ``directory`` (e.g. of the ``migrated_sqlite`` fixture)."""
    return Path(shutil.copyfile(database, directory / "db.sqlite3"))


def single_env(database: Path) -> dict[str, str]:
    """Environment for one worker on its own: the in-memory channel layer, the SQLite file ``database``
    (migrated: the demo's actors are durable; ``copy_of(migrated_sqlite, tmp_path)``)."""
    return {"DATABASE_URL": f"sqlite:///{database}", "REDIS_URL": ""}


def cluster_env(tmp_path: Path, redis_url: str, **zocket: Any) -> dict[str, str]:
    """Environment for workers sharing one Redis (a fresh key prefix) and one SQLite file.

    Clients here call as fast as answers come back, so the per-connection rate
    budget (``MESSAGE_RATE``, ``BYTE_RATE``) is off unless given.
    """
    zocket = {"MESSAGE_RATE": None, "BYTE_RATE": None, **zocket}
    return {
        "REDIS_URL": redis_url,
        "CHANNEL_LAYER_PREFIX": f"t{uuid.uuid4().hex[:8]}",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "ZOCKET_JSON": json.dumps(zocket),
    }


class PrivateRedis:
    """A redis-server of the test's own, so that it can be killed and restarted."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        binary = shutil.which("redis-server")
        need("redis-server", binary is not None, "binary not on PATH")
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, proc=self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


class RpcError(Exception):
    def __init__(self, frame: dict[str, Any]) -> None:
        super().__init__(f"{frame.get('code')}: {frame.get('error')}")
        self.code = frame.get("code")


class LiveClient:
    """A plain WebSocket client that knows only docs/protocol.md."""

    def __init__(self, ws: Any, client_id: str) -> None:
        self.ws = ws
        self.client_id = client_id
        self.frames: list[dict[str, Any]] = []
        self._changed = asyncio.Condition()
        self._ids = 0
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def connect(cls, url: str, **kwargs: Any) -> LiveClient:
        ws = await websockets.connect(url, open_timeout=10, max_size=None, **kwargs)
        welcome = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert welcome["type"] == "welcome"
        return cls(ws, welcome["clientId"])

    async def _read(self) -> None:
        try:
            async for text in self.ws:
                async with self._changed:
                    self.frames.append(json.loads(text))
                    self._changed.notify_all()
        except websockets.ConnectionClosed:
            pass
        finally:
            async with self._changed:
                self._changed.notify_all()

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(frame))

    async def wait_for(self, predicate: Any, timeout: float = 10.0) -> dict[str, Any]:
        """The first received frame (ever) that satisfies ``predicate``."""
        async with self._changed:
            deadline = time.monotonic() + timeout
            while True:
                for frame in self.frames:
                    if predicate(frame):
                        return frame
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._reader.done():
                    raise TimeoutError(f"no matching frame; last frames: {self.frames[-5:]}")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), remaining)

    async def call(
        self, actor: str, actor_id: str, method: str, timeout: float = 15.0, key: str | None = None, **input: Any
    ) -> Any:
        self._ids += 1
        rpc_id = f"r{self._ids}"
        frame = {"type": "rpc", "id": rpc_id, "actor": actor, "actorId": actor_id, "method": method, "input": input}
        if key is not None:
            frame["key"] = key
        await self.send(frame)
        frame = await self.wait_for(lambda f: f.get("type") == "rpc:result" and f.get("id") == rpc_id, timeout)
        if "error" in frame:
            raise RpcError(frame)
        return frame.get("result")

    async def subscribe_state(self, actor: str, actor_id: str) -> dict[str, Any]:
        await self.send({"type": "state:sub", "actor": actor, "actorId": actor_id})
        return await self.wait_for(lambda f: f.get("type") == "state:snapshot" and f.get("actorId") == actor_id)

    async def subscribe_events(self, actor: str, actor_id: str) -> None:
        await self.send({"type": "event:sub", "actor": actor, "actorId": actor_id})
        self._ids += 1
        ping_id = f"p{self._ids}"
        await self.send({"type": "ping", "id": ping_id})
        await self.wait_for(lambda f: f.get("type") == "pong" and f.get("id") == ping_id)

    def mirror(self, actor_id: str) -> StateMirror:
        """This client's copy of an instance's state, rebuilt from every frame so far."""
        mirror = StateMirror()
        mirror.feed([f for f in self.frames if f.get("actorId") == actor_id])
        return mirror

    async def wait_state(self, actor_id: str, predicate: Any, timeout: float = 10.0) -> Any:
        """Wait until this client's copy of the state satisfies ``predicate``; returns it."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.mirror(actor_id).state
            if state is not None and predicate(state):
                return state
            if time.monotonic() > deadline:
                raise TimeoutError(f"state of {actor_id} never matched; it is {state}")
            await asyncio.sleep(0.02)

    def of_type(self, type: str, actor_id: str | None = None) -> list[dict[str, Any]]:
        return [f for f in self.frames if f.get("type") == type and (actor_id is None or f.get("actorId") == actor_id)]

    async def close(self) -> None:
        await self.ws.close()
        await asyncio.wait_for(self._reader, 5)


async def fresh_snapshot(url: str, actor: str, actor_id: str) -> dict[str, Any]:
    """The ``state:snapshot`` frame a new client subscribing at ``url`` gets now (the current state)."""
    client = await LiveClient.connect(url)
    try:
        return await client.subscribe_state(actor, actor_id)
    finally:
        await client.close()


class StateMirror:
    """A client's copy of one instance's state, kept as a careful client keeps it.

    Versions count within one epoch (incarnation): a patch applies only at the
    next version of the same epoch; a snapshot older than the copy (an earlier
    epoch, or an earlier version of the same one) is not applied. ``gaps``
    counts patches that could not apply (a careful client resyncs);
    ``regressions`` counts frames of the copy's own epoch whose version went
    backwards (what must never happen: an older state sent as current).
    """

    def __init__(self) -> None:
        self.state: Any = None
        self.version: int | None = None
        self.epoch: int | None = None
        self.gaps = 0
        self.regressions = 0
        self.stale = False  # a patch did not apply since the last snapshot

    def feed(self, frames: list[dict[str, Any]]) -> None:
        import jsonpatch

        for f in frames:
            if f["type"] not in ("state:snapshot", "state:patch"):
                continue
            epoch, version = f.get("epoch"), f["version"]
            same = self.version is not None and epoch == self.epoch
            if f["type"] == "state:snapshot":
                if same and version < self.version:
                    self.regressions += 1
                elif self.epoch is None or epoch is None or epoch >= self.epoch:
                    self.state, self.version, self.epoch, self.stale = f["state"], version, epoch, False
            elif f["type"] == "state:patch":
                if same and version <= self.version:
                    self.regressions += 1
                elif same and f.get("from", version - 1) == self.version and not self.stale:  # from: coalesced
                    self.state = jsonpatch.apply_patch(self.state, f["patches"])
                    self.version = version
                elif self.epoch is None or epoch is None or epoch >= self.epoch:
                    self.gaps += 1
                    self.stale = True


class Watcher:
    """A state subscriber that resyncs with a plain ``state:sub`` when a patch does not apply.

    Zocket's form of a resync (the shipped clients send ``"resync": true``):
    the server answers a plain repeat only when the state moved since its last
    snapshot to this socket, which a gap implies, so the live tests that use it
    also prove that clients speaking only Zocket's protocol are never left stale.
    """

    def __init__(self, client: LiveClient, actor: str, actor_id: str) -> None:
        self.client, self.actor, self.actor_id = client, actor, actor_id
        self.mirror = StateMirror()
        self.resyncs = 0  # state:sub frames sent after a gap
        self._fed = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> Watcher:
        await self.client.subscribe_state(self.actor, self.actor_id)
        self._task = asyncio.get_running_loop().create_task(self._follow())
        return self

    def _pump(self) -> None:
        frames = self.client.frames
        new = [f for f in frames[self._fed :] if f.get("actorId") == self.actor_id and "version" in f]
        self._fed = len(frames)
        self.mirror.feed(new)

    async def _follow(self) -> None:
        asked_at = 0.0
        while True:
            self._pump()
            if self.mirror.stale and time.monotonic() - asked_at > 1.0:
                asked_at = time.monotonic()
                self.resyncs += 1
                with contextlib.suppress(Exception):
                    await self.client.send({"type": "state:sub", "actor": self.actor, "actorId": self.actor_id})
            await asyncio.sleep(0.05)

    async def converge(self, fresh: dict[str, Any], timeout: float = 30.0) -> None:
        """Wait until the copy equals ``fresh`` (a snapshot frame): state, version and epoch."""
        deadline = time.monotonic() + timeout
        want = (fresh["state"], fresh["version"], fresh.get("epoch"))
        while True:
            self._pump()
            m = self.mirror
            if (m.state, m.version, m.epoch) == want:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.describe()} is stale: {m.version, m.epoch} != {want[1:]}")
            await asyncio.sleep(0.05)

    async def wait(self, predicate: Any, timeout: float = 20.0) -> None:
        """Wait until ``predicate(self.mirror)`` holds."""
        deadline = time.monotonic() + timeout
        while True:
            self._pump()
            if predicate(self.mirror):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.describe()} never got there")
            await asyncio.sleep(0.05)

    def describe(self) -> str:
        """Who this watcher is and what it last received (for failure messages)."""
        m = self.mirror
        frames = [f for f in self.client.frames if f.get("actorId") == self.actor_id][-8:]
        last = [(f["type"], f.get("version"), f.get("epoch"), f.get("code")) for f in frames]
        return (
            f"watcher {self.client.client_id} of {self.actor}/{self.actor_id} (version {m.version}, "
            f"epoch {m.epoch}, {m.gaps} gaps, {self.resyncs} resyncs; last frames {last})"
        )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class TcpProxy:
    """A loopback port that forwards to ``target_port`` while up and refuses connections while down.

    Put it between a server and its database to take the database away and
    bring it back (``down()`` also cuts the connections already open), without
    touching the database itself.
    """

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self.target_port = target_port
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    def up(self) -> TcpProxy:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def down(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            for conn in self._open:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            self._open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed by down()
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/postgres"


@contextlib.contextmanager
def private_postgres_database(url: str = POSTGRES_URL) -> Any:
    """A fresh, empty PostgreSQL database (its URL), dropped afterwards; ``need``s PostgreSQL."""
    problem = postgres_problem(url)
    need("PostgreSQL", problem is None, f"{url}: {problem}")
    import psycopg

    name = f"zk_live_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
