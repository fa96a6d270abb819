"""4. Cross-worker cost: a call forwarded to the owning worker against a local one.

Two daphne workers on one Redis; instances are activated through worker A,
then called through A (local) and through B (forwarded to A).
``bench/cross_worker.py`` compares the two Redis layers and measures failover.
"""

from __future__ import annotations

import os
from typing import Any

from .harness import Server, log, ratio, summary
from .rpc import one_run


def run(redis_url: str, reps: int, duration: float, warmup: float) -> dict[str, Any]:
    prefix = f"zbench-cluster-{os.getpid()}"
    runs: dict[str, list[dict[str, Any]]] = {"local": [], "forwarded": []}
    with Server(redis_url=redis_url, redis_prefix=prefix, label="cluster-a") as a, \
            Server(redis_url=redis_url, redis_prefix=prefix, label="cluster-b") as b:
        for rep in range(reps):
            # Same id prefix: the instances the first run activates on A are
            # then called through B (its warm-up calls are forwarded too).
            local = one_run(a, "ws", 1, duration, warmup, rep)
            forwarded = one_run(b, "ws", 1, duration, warmup, rep)
            runs["local"].append(local)
            runs["forwarded"].append(forwarded)
            log(f"cross-worker rep {rep + 1}/{reps}: local p50 {local['p50_ms']:.3f} ms, "
                f"forwarded p50 {forwarded['p50_ms']:.3f} ms")
    out: dict[str, Any] = {"measured": True}
    for kind, rs in runs.items():
        out[kind] = {key: summary([r[key] for r in rs]) for key in ("calls_per_s", "p50_ms", "p99_ms")}
    out["ratios"] = {k: ratio(out["forwarded"][k], out["local"][k]) for k in ("calls_per_s", "p50_ms", "p99_ms")}
    return out
