"""1. RPC round trip: zocket's ``increment`` against two raw Channels consumers on the same daphne."""

from __future__ import annotations

from typing import Any

from .harness import PeerServer, Server, log, percentile, ratio, summary
from .load import Clients

#: route → label, in the order each repetition runs them (interleaved, so drift hits all alike).
SYSTEMS = {"ws": "zocket", "raw": "raw", "raw-tuned": "raw-tuned"}
#: The peer (python-socketio under uvicorn, ``bench/peer``), measured beside them.
PEER = "socketio"


def one_run(server: Server, route: str, conns: int, duration: float, warmup: float, rep: int) -> dict[str, Any]:
    spec = {
        "url": server.url(route),
        "zocket": route == "ws",
        "conns": conns,
        "duration": duration,
        "warmup": warmup,
        "id_prefix": f"r{rep}c{conns}-",
        "server_pid": server.pid,
    }
    clients = Clients("rpc", [spec]).start()
    clients.go()
    (result,) = clients.results(timeout=duration + warmup + 60)
    lat = [x / 1e6 for x in result["latencies_ns"]]
    return {
        "calls_per_s": len(lat) / duration,
        # CPU time the server spent per call: far less sensitive than throughput
        # to other processes competing for the 2 cores.
        "server_cpu_us_per_call": 1e6 * result["server_cpu_window_s"] / max(1, len(lat)),
        "p50_ms": percentile(lat, 50),
        "p99_ms": percentile(lat, 99),
        "server_cpu_pct": 100 * result["server_cpu_window_s"] / duration,
        "client_cpu_pct": 100 * result["client_cpu_s"] / result["wall_s"],
        "latencies_ms": lat,
    }


def run(
    reps: int, duration: float, warmup: float, conn_counts: tuple[int, ...] = (1, 50), redis_url: str | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {"reps": reps, "duration_s": duration}
    with Server(label="rpc") as server, PeerServer(label="rpc") as peer:
        out["conns"] = measure(server, conn_counts, reps, duration, warmup, "memory", peer)
    if redis_url:
        # With channels-redis every zocket answer travels through Redis (the
        # node's channel), even for a local instance; the raw consumers answer
        # directly. One connection shows that hop. The peer runs with its Redis
        # manager (an acknowledgement does not go through it).
        with Server(redis_url=redis_url, label="rpc-redis") as server, \
                PeerServer(redis_url=redis_url, label="rpc-redis") as peer:
            out["redis"] = {"conns": measure(server, (1,), reps, duration, warmup, "redis", peer)}
    return out


def measure(
    server: Server, conn_counts: tuple[int, ...], reps: int, duration: float, warmup: float, layer: str,
    peer: Server | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    targets = [(server, route, label) for route, label in SYSTEMS.items()]
    if peer is not None:
        targets.append((peer, "", PEER))
    for conns in conn_counts:
        runs: dict[str, list[dict[str, Any]]] = {label: [] for _, _, label in targets}
        for rep in range(reps):
            for target, route, label in targets:
                r = one_run(target, route, conns, duration, warmup, rep)
                runs[label].append(r)
                log(f"rpc {layer} {conns:>2} conn {label:<9} rep {rep + 1}/{reps}: {r['calls_per_s']:7.0f} calls/s "
                    f"p50 {r['p50_ms']:.3f} ms p99 {r['p99_ms']:.3f} ms "
                    f"(server {r['server_cpu_us_per_call']:.0f} us cpu/call, {r['server_cpu_pct']:.0f}% busy, "
                    f"client {r['client_cpu_pct']:.0f}%)")
        figures: dict[str, Any] = {}
        for label, rs in runs.items():
            figures[label] = {
                key: summary([r[key] for r in rs])
                for key in ("calls_per_s", "p50_ms", "p99_ms", "server_cpu_us_per_call", "server_cpu_pct",
                            "client_cpu_pct")
            }
            # The rep with the median throughput stands for the distribution plot.
            mid = sorted(rs, key=lambda r: r["calls_per_s"])[len(rs) // 2]
            figures[label]["sample_latencies_ms"] = _thin(mid["latencies_ms"], 5000)
        figures["ratios"] = {
            base: {
                "calls_per_s": ratio(figures["zocket"]["calls_per_s"], figures[base]["calls_per_s"]),
                "p50_ms": ratio(figures["zocket"]["p50_ms"], figures[base]["p50_ms"]),
                "p99_ms": ratio(figures["zocket"]["p99_ms"], figures[base]["p99_ms"]),
                "server_cpu_us_per_call": ratio(
                    figures["zocket"]["server_cpu_us_per_call"], figures[base]["server_cpu_us_per_call"]
                ),
                # per repetition, zocket against the baseline it ran beside
                "calls_per_s_paired": summary(
                    [z["calls_per_s"] / b["calls_per_s"] for z, b in zip(runs["zocket"], runs[base], strict=True)]
                ),
            }
            for base in runs
            if base != "zocket"
        }
        out[str(conns)] = figures
    return out


def _thin(values: list[float], keep: int) -> list[float]:
    if len(values) <= keep:
        return values
    data = sorted(values)
    step = len(data) / keep
    return [data[int(i * step)] for i in range(keep)]

