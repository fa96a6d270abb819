"""5. Memory: daphne's resident memory per idle connection and per hot actor instance.

A fresh server each time; RSS (VmRSS from /proc/<pid>/status) after one warm
connection, after ``n`` idle sockets, and (zocket) after ``n`` hot instances.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from . import load
from .harness import Server, log, summary
from .load import Clients

SETTLE_S = 1.0


async def _warm(url: str, zocket: bool) -> None:
    ws = await load.open_socket(url, zocket)
    await load.call(ws, "warm", "warm")
    await load.close_many([ws])


def _settled_rss(server: Server) -> int:
    time.sleep(SETTLE_S)
    return server.rss_kib()


def one(system: str, n_idle: int, n_hot: int, rep: int, redis_url: str | None) -> dict[str, Any]:
    route = "ws" if system == "zocket" else "raw"
    zocket = system == "zocket"
    with Server(label="memory", redis_url=redis_url) as server:
        asyncio.run(_warm(server.url(route), zocket))
        base = _settled_rss(server)
        ctx = load.mp.get_context("spawn")
        stop = ctx.Event()
        procs = 2
        idle = Clients("idle", [
            {"url": server.url(route), "zocket": zocket, "n": n_idle // procs, "stop": stop} for _ in range(procs)
        ]).start(timeout=120)
        idle.go()
        with_idle = _settled_rss(server)
        out = {"base_kib": base, "idle_kib": with_idle, "per_idle_conn_kib": (with_idle - base) / n_idle}
        if zocket and n_hot:
            hot = Clients("hot", [{"url": server.url(route), "n": n_hot, "id_prefix": f"m{rep}-", "stop": stop}])
            hot.start(timeout=120)
            hot.go()
            with_hot = _settled_rss(server)
            out.update(hot_kib=with_hot, per_hot_instance_kib=(with_hot - with_idle) / n_hot)
            stop.set()
            hot.results()
        stop.set()
        idle.results()
    return out


def run(reps: int, n_idle: int, n_hot: int, layers: dict[str, str | None]) -> dict[str, Any]:
    """``layers``: label → REDIS_URL (``None`` for the in-memory layer)."""
    out: dict[str, Any] = {"n_idle": n_idle, "n_hot": n_hot, "reps": reps, "layers": {}}
    for layer, redis_url in layers.items():
        runs: dict[str, list[dict[str, Any]]] = {"zocket": [], "raw": []}
        for rep in range(reps):
            for system in runs:
                r = one(system, n_idle, n_hot, rep, redis_url)
                runs[system].append(r)
                hot = r.get("per_hot_instance_kib")
                extra = f", +{hot:.1f} KiB per hot instance" if hot is not None else ""
                log(f"memory {layer:<6} {system:<6} rep {rep + 1}/{reps}: base {r['base_kib'] / 1024:.1f} MiB, "
                    f"+{r['per_idle_conn_kib']:.1f} KiB per idle connection{extra}")
        out["layers"][layer] = {system: {key: summary([r[key] for r in rs]) for key in rs[0]}
                                for system, rs in runs.items()}
    return out
