"""``python -m bench --profile rpc|rpc-redis|fanout|patch``: where the server's time goes, sampled by py-spy.

Writes bench/out/profile-<scenario>.txt (collapsed stacks, py-spy's ``raw``
format, for flamegraph.pl or speedscope) and profile-<scenario>-summary.txt
(the functions with the most samples, on their own and with what they call).
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

from . import fanout, load
from .harness import OUT, ROOT, Server, log
from .load import Clients

SECONDS = 10


def py_spy() -> str:
    candidate = Path(sys.executable).parent / "py-spy"
    return str(candidate) if candidate.exists() else "py-spy"


def record(target: list[str], name: str, seconds: int | None = None) -> Path:
    raw = OUT / f"profile-{name}.txt"
    cmd = [py_spy(), "record", "--rate", "250", "--format", "raw", "--output", str(raw), "--nonblocking"]
    if seconds is not None:
        cmd += ["--duration", str(seconds)]
    subprocess.run(cmd + target, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return raw


def _function(frame: str) -> str:
    """``name (path:line)`` → ``name (path)``: time per function, not per line."""
    return re.sub(r":\d+\)$", ")", frame)


def summarize(raw: Path, top: int = 30) -> str:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = [_function(f) for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if frames:
            own[frames[-1]] += n
        for f in set(frames):
            inclusive[f] += n
    lines = [f"{total} samples", "", "own time (the frame itself):"]
    lines += [f"  {100 * n / total:5.1f}%  {f}" for f, n in own.most_common(top)]
    lines += ["", "inclusive time (the frame and what it calls):"]
    lines += [f"  {100 * n / total:5.1f}%  {f}" for f, n in inclusive.most_common(top * 2)]
    return "\n".join(lines) + "\n"


def _during(server: Server, name: str, seconds: int) -> Path:
    result: dict[str, Path] = {}
    t = threading.Thread(target=lambda: result.setdefault("raw", record(["--pid", str(server.pid)], name, seconds)))
    t.start()
    t.join()
    return result["raw"]


def profile_rpc(redis_url: str | None = None, conns: int = 50) -> Path:
    name = "rpc-redis" if redis_url else "rpc"
    with Server(label="profile", redis_url=redis_url) as server:
        spec = {"url": server.url("ws"), "zocket": True, "conns": conns, "duration": SECONDS + 2, "warmup": 0.5,
                "id_prefix": "p-", "server_pid": server.pid}
        clients = Clients("rpc", [spec]).start()
        clients.go()
        raw = _during(server, name, SECONDS)
        clients.results(timeout=60)
    return raw


def profile_rpc_redis() -> Path:
    return profile_rpc(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"), conns=1)


def profile_fanout() -> Path:
    ctx = load.mp.get_context("spawn")
    with Server(label="profile") as server:
        acks, stop = ctx.Queue(), ctx.Event()
        n, procs = 1000, 4
        specs = [{"url": server.url("ws"), "zocket": True, "n": n // procs, "actor_id": "pf", "acks": acks,
                  "stop": stop, "proc": i} for i in range(procs)]
        clients = Clients("subscriber", specs).start(timeout=180)
        clients.go()
        box: dict[str, Path] = {}
        spy = threading.Thread(target=lambda: box.setdefault("raw", record(["--pid", str(server.pid)], "fanout",
                                                                             SECONDS)))
        spy.start()
        asyncio.run(fanout.drive(server, "zocket", "pf", 60, procs, acks))
        spy.join()
        stop.set()
        clients.results(timeout=120)
    return box["raw"]


def profile_patch() -> Path:
    env = dict(os.environ, BENCH_REPS="2", BENCH_BUDGET="1", PYTHONPATH=str(ROOT))
    os.environ.update(env)
    return record(["--", sys.executable, "-m", "bench.patchcost", "100000"], "patch")


def run(scenario: str) -> None:
    log(f"profiling {scenario} with py-spy")
    raw = {"rpc": profile_rpc, "rpc-redis": profile_rpc_redis, "fanout": profile_fanout,
           "patch": profile_patch}[scenario]()
    text = summarize(raw)
    out = OUT / f"profile-{scenario}-summary.txt"
    out.write_text(text)
    log(f"wrote {raw} and {out}")
    print(text)
