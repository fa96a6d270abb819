"""2. Fan-out: one state change delivered to N state subscribers, zocket against raw ``group_send``.

The subscribers live in several client processes and timestamp every patch
they receive; a driver socket (in this process) makes one change at a time
and waits until every subscriber process has seen it (or a timeout) before
the next, so each change is measured alone. The figure per change is the time
from sending the call until the *last* subscriber received the patch.
"""

from __future__ import annotations

import asyncio
import json
import queue
import time
from typing import Any

from . import load
from .harness import PeerServer, Server, cpu_seconds, log, percentile, ratio, summary
from .load import Clients

#: system → route; "socketio" is the peer (``bench/peer``: a room, and an emit to it per change).
ROUTES = {"zocket": "ws", "raw": "raw", "raw-tuned": "raw-tuned", "socketio": ""}
CHANGE_TIMEOUT = 10.0


def processes_for(n: int) -> int:
    return 2 if n <= 100 else 4


async def drive(server: Server, system: str, actor_id: str, changes: int, procs: int, acks: Any) -> list[dict]:
    """Make ``changes`` changes one at a time; returns ``{"version", "t0"}`` per change."""
    ws = await load.open_socket(server.url(ROUTES[system]), system == "zocket")
    sent: list[dict[str, Any]] = []
    seen: dict[int, set[int]] = {}
    loop = asyncio.get_running_loop()
    try:
        for k in range(changes):
            cpu0 = cpu_seconds(server.pid)
            t0 = time.monotonic_ns()
            frame = await load.call(ws, f"d{k}", actor_id)
            version = frame["result"]
            change = {"version": version, "t0": t0}
            sent.append(change)
            deadline = time.monotonic() + CHANGE_TIMEOUT
            while len(seen.get(version, ())) < procs and time.monotonic() < deadline:
                try:
                    proc, v = await loop.run_in_executor(None, acks.get, True, 0.2)
                except queue.Empty:
                    continue
                seen.setdefault(v, set()).add(proc)
            change["server_cpu_s"] = cpu_seconds(server.pid) - cpu0
            await asyncio.sleep(0.01)  # let the last writes drain before the next change
    finally:
        await load.close_many([ws])
    return sent


def one_block(server: Server, system: str, n: int, changes: int, reps: int, tag: str) -> list[dict[str, Any]]:
    """Connect ``n`` subscribers once, then run ``reps`` blocks of ``changes`` changes (2 warm-up changes each)."""
    procs = processes_for(n)
    actor_id = f"fan-{tag}-{system}-{n}"
    ctx = load.mp.get_context("spawn")
    acks, stop = ctx.Queue(), ctx.Event()
    share = [n // procs + (1 if i < n % procs else 0) for i in range(procs)]
    specs = [
        {"url": server.url(ROUTES[system]), "zocket": system == "zocket", "n": share[i], "actor_id": actor_id,
         "acks": acks, "stop": stop, "proc": i}
        for i in range(procs)
    ]
    clients = Clients("subscriber", specs).start(timeout=180)
    clients.go()
    warm = 2
    sent = asyncio.run(drive(server, system, actor_id, reps * (changes + warm), procs, acks))
    stop.set()
    results = clients.results(timeout=120)
    receipts: dict[int, list[int]] = {}
    for r in results:
        for v, times in r["receipts"].items():
            receipts.setdefault(int(v), []).extend(times)
    gaps = sum(r["gaps"] for r in results)
    blocks = []
    for b in range(reps):
        block = sent[b * (changes + warm) + warm : (b + 1) * (changes + warm)]
        all_ms, each_ms, lost = [], [], 0
        for change in block:
            got = receipts.get(change["version"], [])
            lost += n - len(got)
            if got:
                all_ms.append((max(got) - change["t0"]) / 1e6)
                each_ms.extend((t - change["t0"]) / 1e6 for t in got)
        blocks.append({
            "all_p50_ms": percentile(all_ms, 50),
            "all_p99_ms": percentile(all_ms, 99),
            "each_p50_ms": percentile(each_ms, 50),
            "each_p99_ms": percentile(each_ms, 99),
            "deliveries_per_s": (n * len(block) - lost) / (sum(all_ms) / 1e3) if all_ms else None,
            "lost": lost,
            "changes": len(block),
            # Server CPU time per change (from the call until every subscriber had it):
            # robust to other processes competing for the cores, unlike the times above.
            "server_cpu_ms_per_change": 1e3 * sum(c["server_cpu_s"] for c in block) / len(block),
            "version_gaps": gaps,
            "all_ms": all_ms,
        })
    return blocks


def run(layers: dict[str, str | None], sizes: tuple[int, ...], changes: int, reps: int) -> dict[str, Any]:
    """``layers``: label → REDIS_URL (``None`` for the in-memory layer)."""
    out: dict[str, Any] = {"changes_per_rep": changes, "reps": reps, "layers": {}}
    for layer, redis_url in layers.items():
        per_layer: dict[str, Any] = {}
        for n in sizes:
            figures: dict[str, Any] = {}
            for system in ROUTES:
                # A fresh server per measurement: idle channels of an earlier one
                # would slow the in-memory layer's receive for the next.
                kind = PeerServer if system == "socketio" else Server
                with kind(redis_url=redis_url, label=f"fanout-{layer}") as server:
                    blocks = one_block(server, system, n, changes, reps, layer)
                for i, blk in enumerate(blocks):
                    log(f"fan-out {layer:<6} {n:>4} subs {system:<6} rep {i + 1}/{reps}: all received "
                        f"p50 {blk['all_p50_ms']:.1f} ms p99 {blk['all_p99_ms']:.1f} ms, lost {blk['lost']}, "
                        f"server cpu {blk['server_cpu_ms_per_change']:.1f} ms/change")
                figures[system] = {
                    key: summary([b[key] for b in blocks])
                    for key in ("all_p50_ms", "all_p99_ms", "each_p50_ms", "each_p99_ms", "deliveries_per_s",
                                "server_cpu_ms_per_change")
                }
                figures[system]["lost"] = sum(b["lost"] for b in blocks)
                figures[system]["deliveries"] = n * sum(b["changes"] for b in blocks)
                figures[system]["version_gaps"] = blocks[0]["version_gaps"]
                figures[system]["sample_all_ms"] = [x for b in blocks for x in b["all_ms"]]
            figures["ratios"] = {
                base: {
                    key: ratio(figures["zocket"][key], figures[base][key])
                    for key in ("all_p50_ms", "all_p99_ms", "server_cpu_ms_per_change")
                }
                for base in ROUTES
                if base != "zocket"
            }
            per_layer[str(n)] = figures
        out["layers"][layer] = per_layer
    return out


def _dump(x: Any) -> str:
    return json.dumps(x, default=str)
