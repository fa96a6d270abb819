"""The client side: load generators that run in their own processes (spawned).

Every job connects first, says it is ready, waits for the go signal, runs
for a bounded time or count, and returns plain data through a queue. Clocks
are ``time.monotonic_ns()``, which is one clock for every process on Linux,
so a receipt in one process can be compared with a send in another.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing as mp
import queue
import time
import traceback
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from .harness import cpu_seconds, raise_fd_limit
from .peer.client import SioSocket

CONNECT_CONCURRENCY = 32
#: Subscriptions in flight per process. The raw baseline's ``group_add`` takes a
#: Redis connection each, and redis-py 8's pool raises past 100 (it does not wait).
SUBSCRIBE_CONCURRENCY = 16


async def open_socket(url: str, zocket: bool) -> Any:
    ws = await connect(url, compression=None, max_size=None, ping_interval=None, open_timeout=30, close_timeout=2)
    if "/socket.io/" in url:  # the peer: Socket.IO, translated to zocket's frames
        return await SioSocket.open(ws)
    if zocket:
        welcome = json.loads(await ws.recv())
        assert welcome["type"] == "welcome", welcome
    return ws


async def open_many(url: str, zocket: bool, n: int) -> list[ClientConnection]:
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def one() -> ClientConnection:
        async with gate:
            return await open_socket(url, zocket)

    return list(await asyncio.gather(*(one() for _ in range(n))))


async def close_many(sockets: list[ClientConnection]) -> None:
    async def one(ws: ClientConnection) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.close(), 3)

    await asyncio.gather(*(one(ws) for ws in sockets))


def rpc_frame(call_id: str, actor_id: str, method: str = "increment", actor: str = "bench_counter") -> str:
    return json.dumps({"type": "rpc", "id": call_id, "actor": actor, "actorId": actor_id, "method": method})


async def call(ws: ClientConnection, call_id: str, actor_id: str) -> dict[str, Any]:
    await ws.send(rpc_frame(call_id, actor_id))
    while True:
        frame = json.loads(await ws.recv())
        if frame.get("type") == "rpc:result" and frame.get("id") == call_id:
            return frame


async def wait_go(go: Any) -> None:
    await asyncio.get_running_loop().run_in_executor(None, go.wait)


# -- jobs ------------------------------------------------------------------------------


async def rpc_job(spec: dict[str, Any], ready: Any, go: Any) -> dict[str, Any]:
    """``conns`` sockets, each making sequential ``increment`` calls on its own actor id."""
    sockets = await open_many(spec["url"], spec["zocket"], spec["conns"])
    prefix = spec["id_prefix"]
    for i, ws in enumerate(sockets):  # activate the instances before the clock runs
        await call(ws, "w", f"{prefix}{i}")
    ready.put(True)
    await wait_go(go)
    start = time.monotonic_ns()
    measure_from = start + int(spec["warmup"] * 1e9)
    measure_to = measure_from + int(spec["duration"] * 1e9)
    latencies: list[int] = []
    cpu0 = time.process_time()
    server_cpu: list[float] = []

    async def sample_server() -> None:
        # The server's CPU time over exactly the measured window.
        for at in (measure_from, measure_to):
            await asyncio.sleep(max(0.0, (at - time.monotonic_ns()) / 1e9))
            server_cpu.append(cpu_seconds(spec["server_pid"]))

    sampler = asyncio.create_task(sample_server())

    async def loop(ws: ClientConnection, actor_id: str) -> int:
        n = 0
        while True:
            t0 = time.monotonic_ns()
            if t0 >= measure_to:
                return n
            await call(ws, str(n), actor_id)
            t1 = time.monotonic_ns()
            n += 1
            if t0 >= measure_from and t1 <= measure_to:
                latencies.append(t1 - t0)

    await asyncio.gather(*(loop(ws, f"{prefix}{i}") for i, ws in enumerate(sockets)))
    cpu = time.process_time() - cpu0
    await sampler
    await close_many(sockets)
    return {
        "latencies_ns": latencies,
        "window_s": spec["duration"],
        "client_cpu_s": cpu,
        "server_cpu_window_s": server_cpu[1] - server_cpu[0],
        "wall_s": (time.monotonic_ns() - start) / 1e9,
    }


async def subscriber_job(spec: dict[str, Any], ready: Any, go: Any) -> dict[str, Any]:
    """``n`` sockets subscribed to one instance's state; every patch receipt is timestamped.

    After each version reaches all of them, the process says so on ``acks``,
    so the driver can send the next change. Runs until ``stop`` is set.
    """
    acks, stop, proc = spec["acks"], spec["stop"], spec["proc"]
    sockets = await open_many(spec["url"], spec["zocket"], spec["n"])
    actor_id = spec["actor_id"]
    sub = json.dumps({"type": "state:sub", "actor": "bench_counter", "actorId": actor_id})
    receipts: dict[int, list[int]] = {}
    gaps = 0

    async def subscribe(ws: ClientConnection) -> None:
        await ws.send(sub)
        while True:
            frame = json.loads(await ws.recv())
            if frame["type"] == "state:snapshot":
                return

    gate = asyncio.Semaphore(SUBSCRIBE_CONCURRENCY)

    async def gated(ws: ClientConnection) -> None:
        async with gate:
            await subscribe(ws)

    await asyncio.gather(*(gated(ws) for ws in sockets))
    n = len(sockets)

    async def reader(ws: ClientConnection) -> None:
        nonlocal gaps
        last = None
        with contextlib.suppress(Exception):
            async for text in ws:
                now = time.monotonic_ns()
                frame = json.loads(text)
                if frame.get("type") != "state:patch":
                    continue
                version = frame["version"]
                base = frame.get("from", version - 1)  # a coalesced patch carries versions base+1..version
                if last is not None and base != last:
                    gaps += 1
                last = version
                for each in range(base + 1, version + 1):
                    got = receipts.setdefault(each, [])
                    got.append(now)
                    if len(got) == n:
                        acks.put((proc, each))

    readers = [asyncio.create_task(reader(ws)) for ws in sockets]
    ready.put(True)
    await asyncio.get_running_loop().run_in_executor(None, stop.wait)
    await close_many(sockets)
    for task in readers:
        task.cancel()
    return {"receipts": receipts, "n": n, "gaps": gaps}


async def idle_job(spec: dict[str, Any], ready: Any, go: Any) -> dict[str, Any]:
    """Hold ``n`` open sockets (zocket ones have been welcomed) until ``stop`` is set."""
    sockets = await open_many(spec["url"], spec["zocket"], spec["n"])
    ready.put(True)
    await asyncio.get_running_loop().run_in_executor(None, spec["stop"].wait)
    await close_many(sockets)
    return {"n": len(sockets)}


async def hot_job(spec: dict[str, Any], ready: Any, go: Any) -> dict[str, Any]:
    """Activate ``n`` instances (one call each over one socket), then hold the socket until ``stop``."""
    ws = await open_socket(spec["url"], True)
    pending = 64
    ids = [f"{spec['id_prefix']}{i}" for i in range(spec["n"])]
    for start in range(0, len(ids), pending):  # pipelined, a window at a time
        batch = ids[start : start + pending]
        for i, actor_id in enumerate(batch):
            await ws.send(rpc_frame(f"h{start + i}", actor_id))
        seen = 0
        while seen < len(batch):
            if json.loads(await ws.recv()).get("type") == "rpc:result":
                seen += 1
    ready.put(True)
    await asyncio.get_running_loop().run_in_executor(None, spec["stop"].wait)
    await close_many([ws])
    return {"n": len(ids)}


JOBS: dict[str, Callable[..., Any]] = {
    "rpc": rpc_job,
    "subscriber": subscriber_job,
    "idle": idle_job,
    "hot": hot_job,
}


def _child(job: str, spec: dict[str, Any], ready: Any, go: Any, results: Any, index: int) -> None:
    raise_fd_limit()
    try:
        result = asyncio.run(JOBS[job](spec, ready, go))
        results.put((index, result))
    except BaseException:
        ready.put(False)
        results.put((index, {"error": traceback.format_exc()}))


class Clients:
    """A set of client processes running one job each; ``ready()``, ``go()``, ``results()``."""

    def __init__(self, job: str, specs: list[dict[str, Any]]) -> None:
        self.ctx = mp.get_context("spawn")
        self.job, self.specs = job, specs
        self.ready_q = self.ctx.Queue()
        self.results_q = self.ctx.Queue()
        self.go_event = self.ctx.Event()
        self.procs: list[Any] = []

    def start(self, timeout: float = 120.0) -> Clients:
        for i, spec in enumerate(self.specs):
            p = self.ctx.Process(
                target=_child, args=(self.job, spec, self.ready_q, self.go_event, self.results_q, i), daemon=True
            )
            p.start()
            self.procs.append(p)
        deadline = time.monotonic() + timeout
        waiting = len(self.specs)
        while waiting:
            try:
                ok = self.ready_q.get(timeout=0.5)
            except queue.Empty:
                if time.monotonic() > deadline or any(p.exitcode not in (None, 0) for p in self.procs):
                    self.go_event.set()
                    self.join()
                    raise RuntimeError(f"{self.job} clients did not get ready") from None
                continue
            if not ok:
                self.go_event.set()
                self.results(timeout=10)  # raises with the client's traceback
            waiting -= 1
        return self

    def go(self) -> None:
        self.go_event.set()

    def results(self, timeout: float = 120.0) -> list[dict[str, Any]]:
        out: dict[int, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout
        while len(out) < len(self.specs):
            try:
                index, result = self.results_q.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                break
            out[index] = result
        self.join()
        failed = [r["error"] for r in out.values() if "error" in r]
        if failed:
            raise RuntimeError(f"{self.job} client failed:\n{failed[0]}")
        if len(out) < len(self.specs):
            raise RuntimeError(f"{len(self.specs) - len(out)} {self.job} client(s) did not report in time")
        return [out[i] for i in range(len(self.specs))]

    def join(self) -> None:
        for p in self.procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)
