"""4. Cross-worker cost: a call forwarded to the owning worker against a local one.

PLACEHOLDER while clustering is built on another branch. The measurement is
written (two daphne workers on one Redis; instances are activated through
worker A, then called through A — local — and through B — forwarded) but it
only runs when ``zocket_django/cluster.py`` exists. ``BENCH_FORCE_CLUSTER=1``
runs it anyway (both calls are then local: a check of the plumbing only).
"""

from __future__ import annotations

import os
from typing import Any

from .harness import ROOT, Server, log, ratio, summary
from .rpc import one_run

NOT_MEASURED = "not measured: clustering not on this branch (zocket_django/cluster.py is absent)"


def available() -> bool:
    return (ROOT / "zocket_django" / "cluster.py").exists() or os.environ.get("BENCH_FORCE_CLUSTER") == "1"


def run(redis_url: str, reps: int, duration: float, warmup: float) -> dict[str, Any]:
    if not available():
        return {"measured": False, "reason": NOT_MEASURED}
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
    out: dict[str, Any] = {"measured": True, "forced": not (ROOT / "zocket_django" / "cluster.py").exists()}
    for kind, rs in runs.items():
        out[kind] = {key: summary([r[key] for r in rs]) for key in ("calls_per_s", "p50_ms", "p99_ms")}
    out["ratios"] = {k: ratio(out["forwarded"][k], out["local"][k]) for k in ("calls_per_s", "p50_ms", "p99_ms")}
    return out
