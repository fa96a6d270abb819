"""The attacks of issue 13 as small, bounded clients, shared by ``bench.hostile`` and tests/test_hostile_load.py.

Each attack talks to a real server at ``url`` with raw WebSockets (only
docs/protocol.md), stays within the per-connection rate limit unless it says
otherwise, is bounded in time and size, and returns what it saw as plain
numbers. ``Watch`` samples the server's resident memory while an attack runs,
and ``GoodClient`` is the well-behaved user whose service must go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection, connect

#: Frames per second an attacker sends: just under the default MESSAGE_RATE (100/s).
PACE = 90.0
#: Unanswered calls an attacker that fills a state keeps in flight (so that none is refused for load).
WINDOW = 8


def rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` in MiB (VmRSS of /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


async def open_socket(url: str, timeout: float = 10.0, **kwargs: Any) -> tuple[ClientConnection, str]:
    """A connected socket past its ``welcome``: ``(socket, client id)``."""
    ws = await connect(url, open_timeout=timeout, max_size=None, **kwargs)
    try:
        welcome = json.loads(await asyncio.wait_for(ws.recv(), timeout))
    except BaseException:
        await ws.close()
        raise
    if welcome.get("type") != "welcome":
        await ws.close()
        raise ConnectionError(f"refused: {welcome}")
    return ws, welcome["clientId"]


def rpc(rpc_id: str, actor: str, actor_id: str, method: str, **input: Any) -> str:
    frame = {"type": "rpc", "id": rpc_id, "actor": actor, "actorId": actor_id, "method": method, "input": input}
    return json.dumps(frame)


class Watch:
    """Samples a process's RSS every ``every`` seconds until stopped; keeps the peak."""

    def __init__(self, pid: int, every: float = 0.2) -> None:
        self.pid, self.every = pid, every
        self.start_mib = self.peak_mib = rss_mib(pid)
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Watch:
        self._task = asyncio.get_running_loop().create_task(self._sample())
        return self

    async def __aexit__(self, *exc: Any) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self.peak_mib = max(self.peak_mib, rss_mib(self.pid))

    async def _sample(self) -> None:
        while True:
            self.peak_mib = max(self.peak_mib, rss_mib(self.pid))
            await asyncio.sleep(self.every)

    def now(self) -> float:
        return rss_mib(self.pid)


@dataclass
class GoodClient:
    """A well-behaved user: one call every ``every`` seconds on its own socket, and a new handshake as often.

    Records how many calls were answered (and how fast), how many were not
    answered within ``timeout``, and the same for fresh handshakes.
    """

    url: str
    every: float = 0.5
    timeout: float = 10.0
    #: What it calls: actor, id, method and input.
    call: tuple[str, str, str, dict[str, Any]] = ("counter", "good-client", "increment", {})
    answered: list[float] = field(default_factory=list)
    failed: Counter[str] = field(default_factory=Counter)
    handshakes: list[float] = field(default_factory=list)
    handshakes_failed: int = 0

    async def run(self, stop: asyncio.Event) -> None:
        try:
            ws, _ = await open_socket(self.url, self.timeout)
        except Exception:
            self.failed["connect"] += 1
            return
        try:
            await asyncio.gather(self._calls(ws, stop), self._handshakes(stop))
        finally:
            await ws.close()

    async def _calls(self, ws: ClientConnection, stop: asyncio.Event) -> None:
        for n in itertools.count():
            if stop.is_set():
                return
            actor, actor_id, method, input = self.call
            started = time.monotonic()
            try:
                await ws.send(rpc(f"g{n}", actor, actor_id, method, **input))
                async with asyncio.timeout(self.timeout):
                    while True:
                        frame = json.loads(await ws.recv())
                        if frame.get("type") == "rpc:result" and frame.get("id") == f"g{n}":
                            break
                if "error" in frame:
                    self.failed[str(frame.get("code"))] += 1
                else:
                    self.answered.append(time.monotonic() - started)
            except TimeoutError:
                self.failed["timeout"] += 1
            except websockets.ConnectionClosed:
                self.failed["closed"] += 1
                return
            await _sleep_unless(stop, self.every)

    async def _handshakes(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                ws, _ = await open_socket(self.url, self.timeout)
                self.handshakes.append(time.monotonic() - started)
                await ws.close()
            except Exception:
                self.handshakes_failed += 1
            await _sleep_unless(stop, self.every * 2)

    def figures(self) -> dict[str, Any]:
        times = sorted(self.answered)
        shakes = sorted(self.handshakes)
        return {
            "good_answered": len(times),
            "good_failed": dict(self.failed),
            "good_p50_s": _pct(times, 50),
            "good_p99_s": _pct(times, 99),
            "handshakes_ok": len(shakes),
            "handshakes_failed": self.handshakes_failed,
            "handshake_p99_s": _pct(shakes, 99),
        }


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return round(values[min(len(values) - 1, int(len(values) * q / 100))], 3)


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def _paced_calls(
    ws: ClientConnection, frames: list[str], deadline: float, pace: float = PACE, window: int | None = None
) -> Counter[str]:
    """Send ``frames`` at ``pace`` per second until ``deadline`` while reading every answer; answers by code.

    With ``window``, at most that many calls are unanswered at once (a client
    that waits for answers, as fast as the server serves it).
    """
    outcome: Counter[str] = Counter()
    room = asyncio.Semaphore(window or len(frames) or 1)
    sent = 0

    async def read() -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for text in ws:
                frame = json.loads(text)
                if frame.get("type") in ("rpc:result", "error"):
                    outcome[str(frame.get("code", "ok"))] += 1
                    room.release()

    reader = asyncio.get_running_loop().create_task(read())
    started = time.monotonic()
    try:
        for frame in frames:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or reader.done():
                break
            try:
                await asyncio.wait_for(room.acquire(), remaining)
            except TimeoutError:
                break
            await ws.send(frame)
            sent += 1
            ahead = started + sent / pace - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(_answers(outcome, sent)), max(0.0, deadline - time.monotonic()))
    except websockets.ConnectionClosed:
        outcome["closed"] += 1
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
    outcome["sent"] = sent
    return outcome


async def _answers(outcome: Counter[str], expected: int) -> None:
    while sum(v for k, v in outcome.items() if k != "sent") < expected:
        await asyncio.sleep(0.05)


async def _attack_with_good_client(url: str, pid: int, attack: Any, good: GoodClient | None = None) -> dict[str, Any]:
    """Run ``attack()`` while a good client is served and RSS is watched; the figures of all three."""
    good = good or GoodClient(url)
    stop = asyncio.Event()
    async with Watch(pid) as watch:
        good_task = asyncio.get_running_loop().create_task(good.run(stop))
        await asyncio.sleep(1.0)  # a baseline of answers first
        started = time.monotonic()
        try:
            figures = await attack()
        finally:
            stop.set()
            await good_task
    return {
        **figures,
        "seconds": round(time.monotonic() - started, 1),
        "rss_start_mib": round(watch.start_mib),
        "rss_peak_mib": round(watch.peak_mib),
        **good.figures(),
    }


# -- item 5: activations -----------------------------------------------------------------


async def activations(
    url: str, pid: int, *, sockets: int = 50, ids: int = 2000, duration: float = 30.0, actor: str = "chat"
) -> dict[str, Any]:
    """``sockets`` sockets each call ``ids`` distinct instances of ``actor`` (within the rate limit).

    Every call activates a new instance; the chat is durable, so each
    activation reads the database.
    """

    async def attack() -> dict[str, Any]:
        deadline = time.monotonic() + duration
        opened = await asyncio.gather(*(open_socket(url, 30) for _ in range(sockets)), return_exceptions=True)
        live = [o for o in opened if not isinstance(o, BaseException)]

        async def one(n: int, ws: ClientConnection) -> Counter[str]:
            frames = [rpc(f"a{i}", actor, f"flood-{n}-{i}", "send", text="x") for i in range(ids)]
            try:
                return await _paced_calls(ws, frames, deadline)
            finally:
                await ws.close()

        results = await asyncio.gather(*(one(n, ws) for n, (ws, _) in enumerate(live)))
        total: Counter[str] = sum(results, Counter())
        return {"sockets": len(live), "calls_sent": total.pop("sent", 0), "answers": dict(total)}

    figures = await _attack_with_good_client(url, pid, attack)
    return figures


# -- item 3: state that outgrows a frame ----------------------------------------------------


async def chat_flood(
    url: str, pid: int, *, room: str = "flooded", messages: int = 2200, sockets: int = 2, text: int = 500
) -> dict[str, Any]:
    """Say ``messages`` messages of ``text`` characters in one room, then try to subscribe to it."""
    return await _grow(url, pid, ("chat", room, "send"), messages, sockets, text, "messages_sent", per_second=10)


async def board_rows(
    url: str, pid: int, *, board: str = "huge", rows: int = 6000, sockets: int = 4, text: int = 200
) -> dict[str, Any]:
    """Add ``rows`` items of ``text`` characters to one board, then try to subscribe to it."""
    return await _grow(url, pid, ("board", board, "add"), rows, sockets, text, "rows_sent", per_second=5)


async def _grow(
    url: str,
    pid: int,
    target: tuple[str, str, str],
    calls: int,
    sockets: int,
    text: int,
    counted: str,
    per_second: float,
) -> dict[str, Any]:
    """``calls`` calls of ``target`` (actor, id, method), each with a ``text`` of that many characters,
    spread over ``sockets`` sockets that wait for answers; then what a new subscriber gets.

    ``per_second`` is the slowest each socket is expected to be served (it sets the deadline).
    """
    actor, actor_id, method = target

    async def attack() -> dict[str, Any]:
        per = calls // sockets
        deadline = time.monotonic() + per / per_second + 30
        opened = [await open_socket(url, 30) for _ in range(sockets)]

        async def one(n: int, ws: ClientConnection) -> Counter[str]:
            frames = [rpc(f"g{i}", actor, actor_id, method, text=f"{n}-{i}-".ljust(text, "x")) for i in range(per)]
            try:
                return await _paced_calls(ws, frames, deadline, window=WINDOW)
            finally:
                await ws.close()

        results = await asyncio.gather(*(one(n, ws) for n, (ws, _) in enumerate(opened)))
        total: Counter[str] = sum(results, Counter())
        probe = await subscribe_probe(url, actor, actor_id)
        return {counted: total.pop("sent", 0), "answers": dict(total), **probe}

    return await _attack_with_good_client(url, pid, attack)


async def subscribe_probe(url: str, actor: str, actor_id: str, timeout: float = 10.0) -> dict[str, Any]:
    """What a new subscriber gets: ``snapshot`` (and its size), an ``error`` (and its code), or ``nothing``."""
    ws, _ = await open_socket(url, timeout)
    try:
        await ws.send(json.dumps({"type": "state:sub", "actor": actor, "actorId": actor_id}))
        async with asyncio.timeout(timeout):
            while True:
                text = await ws.recv()
                frame = json.loads(text)
                if frame.get("type") == "state:snapshot" and frame.get("actorId") == actor_id:
                    return {"subscriber_got": "snapshot", "snapshot_bytes": len(text.encode())}
                if frame.get("type") == "error":
                    return {"subscriber_got": f"error {frame.get('code')}", "snapshot_bytes": None}
    except TimeoutError:
        return {"subscriber_got": "nothing", "snapshot_bytes": None}
    except websockets.ConnectionClosed as exc:
        return {"subscriber_got": f"closed {exc.rcvd.code if exc.rcvd else '?'}", "snapshot_bytes": None}
    finally:
        await ws.close()


# -- item 6: a crowded room --------------------------------------------------------------------


async def crowd(url: str, pid: int, *, sockets: int = 2000, room: str = "crowd", hold: float = 10.0) -> dict[str, Any]:
    """``sockets`` sockets join one chat room at once (state subscription), stay ``hold`` seconds, leave."""

    async def attack() -> dict[str, Any]:
        started = time.monotonic()

        async def member() -> ClientConnection:
            ws, _ = await open_socket(url, 60)
            await ws.send(json.dumps({"type": "state:sub", "actor": "chat", "actorId": room}))
            return ws

        joined = await asyncio.gather(*(member() for _ in range(sockets)), return_exceptions=True)
        live = [ws for ws in joined if not isinstance(ws, BaseException)]
        reasons = Counter(_why(ws) for ws in joined if isinstance(ws, BaseException))
        connected_in = time.monotonic() - started
        drains = [asyncio.get_running_loop().create_task(_drain(ws)) for ws in live]
        await asyncio.sleep(hold)
        rss_held = rss_mib(pid)
        for task in drains:
            task.cancel()
        await asyncio.gather(*(ws.close() for ws in live), return_exceptions=True)
        return {
            "sockets_joined": len(live),
            "sockets_refused": sockets - len(live),
            "refusals": dict(reasons),
            "join_seconds": round(connected_in, 1),
            "rss_held_mib": round(rss_held),
        }

    good = GoodClient(url, call=("chat", room, "send", {"text": "still here?"}))
    return await _attack_with_good_client(url, pid, attack, good)


def _why(exc: BaseException) -> str:
    """A refused handshake in a word: the HTTP status it got, or the exception's class."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return f"HTTP {status}" if status is not None else type(exc).__name__


async def _drain(ws: ClientConnection) -> None:
    with contextlib.suppress(websockets.ConnectionClosed, asyncio.CancelledError):
        async for _ in ws:
            pass


# -- item 1: a subscriber that never reads -----------------------------------------------------


async def snapshot_flood(
    url: str,
    pid: int,
    *,
    actor: tuple[str, str] = ("ballast", "big"),
    rate: float = 100.0,
    duration: float = 15.0,
    resync: bool = False,
) -> dict[str, Any]:
    """One socket sends ``state:sub`` for one large instance ``rate`` times a second and never reads.

    Plain repeats cost one snapshot while the state does not move; with ``resync``
    every one asks for a fresh snapshot (the output bound is what stops it).
    """

    async def attack() -> dict[str, Any]:
        ws, _ = await open_socket(url, 30, max_queue=1)
        sub = {"type": "state:sub", "actor": actor[0], "actorId": actor[1]}
        frame = json.dumps({**sub, "resync": True} if resync else sub)
        sent, closed = 0, None
        deadline = time.monotonic() + duration
        try:
            while time.monotonic() < deadline:
                await asyncio.wait_for(ws.send(frame), max(0.01, deadline - time.monotonic()))
                sent += 1
                await asyncio.sleep(1 / rate)
        except TimeoutError:
            pass
        except websockets.ConnectionClosed as exc:
            closed = exc.rcvd.code if exc.rcvd else None
        rss_attacking = rss_mib(pid)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.close(), 5)
        if closed is None and ws.close_code not in (None, 1000):
            closed = ws.close_code
        return {"subs_sent": sent, "attacker_closed_with": closed, "rss_attacking_mib": round(rss_attacking)}

    return await _attack_with_good_client(url, pid, attack)


# -- item 2: sockets that end abnormally ----------------------------------------------------------


async def oversized_frames(
    url: str, pid: int, *, sockets: int = 200, ids: int = 50, room: str = "ghosts", frame_bytes: int = 300_000
) -> dict[str, Any]:
    """Each socket joins a chat room and calls ``ids`` instances, then sends one frame over ``MAX_FRAME_BYTES``."""

    async def attack() -> dict[str, Any]:
        codes: Counter[str] = Counter()

        async def one(n: int) -> None:
            ws, _ = await open_socket(url, 60)
            try:
                await ws.send(json.dumps({"type": "state:sub", "actor": "chat", "actorId": room}))
                frames = [rpc(f"o{i}", "chat", f"ghost-{n}-{i}", "send", text="boo") for i in range(ids)]
                await _paced_calls(ws, frames, time.monotonic() + 60, window=WINDOW)
                await ws.send("x" * frame_bytes)
                await asyncio.wait_for(ws.wait_closed(), 30)
                codes[str(ws.close_code)] += 1
            except Exception as exc:
                codes[type(exc).__name__] += 1
            finally:
                await ws.close()

        await asyncio.gather(*(one(n) for n in range(sockets)))
        return {"sockets": sockets, "closed_with": dict(codes)}

    return await _attack_with_good_client(url, pid, attack)


# -- item 4: subscribers closing while changes are published ---------------------------------------


async def subscribe_churn(
    url: str, pid: int, *, sockets: int = 1000, room: str = "churn", sends: int = 200, parallel: int = 50
) -> dict[str, Any]:
    """``sockets`` sockets subscribe to a room and close at once, ``parallel`` at a time, while messages are sent."""

    async def attack() -> dict[str, Any]:
        ws, _ = await open_socket(url, 30)
        stop = asyncio.Event()

        async def churn() -> int:
            done = 0
            gate = asyncio.Semaphore(parallel)

            async def one() -> None:
                nonlocal done
                async with gate:
                    with contextlib.suppress(Exception):
                        sub, _ = await open_socket(url, 30)
                        await sub.send(json.dumps({"type": "state:sub", "actor": "chat", "actorId": room}))
                        await asyncio.sleep(0.01)
                        sub.transport.abort()  # gone without a closing handshake
                        done += 1

            await asyncio.gather(*(one() for _ in range(sockets)))
            stop.set()
            return done

        churner = asyncio.get_running_loop().create_task(churn())
        frames = [rpc(f"c{i}", "chat", room, "send", text=f"message {i}") for i in range(sends)]
        outcome = await _paced_calls(ws, frames, time.monotonic() + 120, pace=20, window=WINDOW)
        churned = await churner
        await ws.close()
        return {"sends": outcome.pop("sent", 0), "answers": dict(outcome), "subscribers_churned": churned}

    return await _attack_with_good_client(url, pid, attack)
