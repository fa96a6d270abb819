"""Cross-worker cost: a call forwarded to the owning worker against a local one.

Starts two daphne workers on one Redis (the list layer and the pub/sub layer
in turn), makes worker A own ``lab/x`` (not persisted), then times sequential
calls from a socket on A (local) and on B (forwarded to A), and the failover
time when A is killed. Prints a Markdown table; writes bench/out/cross_worker.json.

    python -m bench.cross_worker [--calls 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import websockets

from tests.live import LiveClient, RpcError, Worker, cluster_env, migrate


async def timed_calls(url: str, actor_id: str, n: int) -> list[float]:
    """Sequential calls of a non-persisted method over a plain socket (no client library in the way)."""
    async with websockets.connect(url) as ws:
        await ws.recv()  # welcome
        samples = []
        for i in range(n):
            frame = json.dumps({"type": "rpc", "id": str(i), "actor": "lab", "actorId": actor_id, "method": "noop"})
            start = time.perf_counter()
            await ws.send(frame)
            while json.loads(await ws.recv()).get("id") != str(i):
                pass
            samples.append(time.perf_counter() - start)
    return samples


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": 1000 * ordered[len(ordered) // 2],
        "p99_ms": 1000 * ordered[int(len(ordered) * 0.99)],
        "calls_per_s": len(samples) / sum(samples),
    }


async def measure(layer: str, calls: int, rounds: int) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="zocket-bench-"))
    env = {**cluster_env(tmp, "redis://127.0.0.1:6379/0", LEASE_TTL=2.0), "CHANNEL_LAYER": layer}
    migrate(env)
    a, b = Worker(env, tmp, "a").start(), Worker(env, tmp, "b").start()
    try:
        on_a = await LiveClient.connect(a.url)
        await on_a.call("lab", "x", "noop")  # A owns lab/x (and keeps it hot: this socket stays)
        on_b = await LiveClient.connect(b.url)
        await timed_calls(b.url, "x", 200)  # warm up both paths
        await timed_calls(a.url, "x", 200)
        local, forwarded = [], []
        for _ in range(rounds):
            local.append(summary(await timed_calls(a.url, "x", calls)))
            forwarded.append(summary(await timed_calls(b.url, "x", calls)))
        killed = time.monotonic()
        a.kill(signal.SIGKILL)
        while True:
            try:
                await on_b.call("lab", "x", "noop", timeout=30)
                break
            except RpcError:
                await asyncio.sleep(0.02)
        failover = time.monotonic() - killed
    finally:
        a.stop()
        b.stop()

    def median(rows: list[dict], key: str) -> float:
        return statistics.median(r[key] for r in rows)

    def spread(rows: list[dict], key: str) -> float:
        values = [r[key] for r in rows]
        return max(values) - min(values)

    return {
        "layer": layer,
        "local": {k: median(local, k) for k in local[0]},
        "forwarded": {k: median(forwarded, k) for k in forwarded[0]},
        "spread_p50_ms": {"local": spread(local, "p50_ms"), "forwarded": spread(forwarded, "p50_ms")},
        "failover_s_with_ttl_2s": failover,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results = [asyncio.run(measure(layer, args.calls, args.rounds)) for layer in ("core", "pubsub")]
    out = Path(__file__).resolve().parent / "out"
    out.mkdir(exist_ok=True)
    (out / "cross_worker.json").write_text(json.dumps(results, indent=2))
    print(
        "| layer | local p50 ms | forwarded p50 ms | ratio | local calls/s | forwarded calls/s | failover s (TTL 2 s) |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in results:
        lo, fw = r["local"], r["forwarded"]
        print(
            f"| {r['layer']} | {lo['p50_ms']:.2f} | {fw['p50_ms']:.2f} | {fw['p50_ms'] / lo['p50_ms']:.2f} "
            f"| {lo['calls_per_s']:.0f} | {fw['calls_per_s']:.0f} | {r['failover_s_with_ttl_2s']:.2f} |"
        )


if __name__ == "__main__":
    main()
