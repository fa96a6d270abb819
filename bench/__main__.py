"""``python -m bench [--quick] [--only SECTION ...] [--profile rpc|rpc-redis|fanout|patch]``.

Starts the daphne servers it needs, drives them from separate client
processes, stops everything it started, and writes bench/RESULTS.md,
bench/results.json and bench/latency.png (``--quick`` writes to
bench/out/quick/ instead, leaving the committed results alone). With
``--only``, the sections not run are carried over from the results already
there, and RESULTS.md says which run each of those comes from.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .harness import OUT, ROOT, log, raise_fd_limit

SECTIONS = ("rpc", "fanout", "patch", "persist", "keys", "cluster", "memory")

FULL = {
    "rpc": {"reps": 5, "duration": 2.0, "warmup": 0.5},
    "fanout": {"sizes": (100, 1000), "changes": 10, "reps": 3},
    "patch": {"sizes": (10, 1000, 100000), "reps": 5, "budget": 0.3},
    "persist": {"sizes": [1000, 100000], "calls": 20},
    "keys": {"windows": [0, 1000, 10000], "calls": 50},
    "cluster": {"reps": 3, "duration": 2.0, "warmup": 0.5},
    "memory": {"reps": 2, "n_idle": 1000, "n_hot": 1000},
}
QUICK = {
    "rpc": {"reps": 1, "duration": 0.5, "warmup": 0.2},
    "fanout": {"sizes": (100,), "changes": 3, "reps": 1},
    "patch": {"sizes": (10, 1000), "reps": 1, "budget": 0.05},
    "persist": {"sizes": [1000], "calls": 6},
    "keys": {"windows": [0, 1000], "calls": 5},
    "cluster": {"reps": 1, "duration": 0.5, "warmup": 0.2},
    "memory": {"reps": 1, "n_idle": 200, "n_hot": 200},
}


def ensure_requirements() -> None:
    """Install bench/requirements.txt into this interpreter when something is missing."""
    missing = [m for m in ("matplotlib", "websockets", "socketio", "uvicorn") if importlib.util.find_spec(m) is None]
    if missing or not (Path(sys.executable).parent / "py-spy").exists():
        log(f"installing bench/requirements.txt ({', '.join(missing) or 'py-spy'} missing)")
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "-r", str(ROOT / "requirements.txt"),
             "-r", str(ROOT / "bench" / "requirements.txt")],
            check=True,
        )


def redis_reachable(url: str) -> bool:
    from urllib.parse import urlparse

    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 6379), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def meta(args: argparse.Namespace) -> dict[str, Any]:
    cpu_model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    mem_kib = int(next(x for x in meminfo if x.startswith("MemTotal")).split()[1])
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    found = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    ours = found.group(1) if found else "unknown"
    versions = {"zocket-django": f"{ours} (git {commit})", "python": platform.python_version()}
    for dist in ("Django", "channels", "daphne", "Twisted", "channels-redis", "redis", "pydantic", "jsonpatch",
                 "websockets", "python-socketio", "uvicorn"):
        versions[dist] = version(dist)
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python -m bench" + (" --quick" if args.quick else "") +
                   (f" --only {' '.join(args.only)}" if args.only else ""),
        "quick": args.quick,
        "machine": {"cpus": os.cpu_count(), "cpu_model": cpu_model, "memory_gib": mem_kib / 2**20,
                    "kernel": platform.release()},
        "versions": versions,
        "load_before": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smoke run (< 1 minute): few, short repetitions")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, help="run only these sections")
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
                        help="Redis for the channels-redis rows (default: $REDIS_URL or 127.0.0.1:6379)")
    parser.add_argument("--no-redis", action="store_true", help="skip the channels-redis rows")
    parser.add_argument("--postgres", default=os.environ.get("ZOCKET_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
                        help="PostgreSQL server for the persist section (a database of its own is created and dropped)")
    parser.add_argument("--pg-database", default="zocket_bench", help="the persist section's PostgreSQL database")
    parser.add_argument("--out", type=Path, help="where to write RESULTS.md, results.json and latency.png")
    parser.add_argument("--profile", choices=("rpc", "rpc-redis", "fanout", "patch"),
                        help="instead of the benchmarks, record a py-spy profile of one scenario into bench/out/")
    parser.add_argument("--render", action="store_true",
                        help="only rewrite RESULTS.md and latency.png from results.json and bench/out/samples.json")
    parser.add_argument("--no-install", action="store_true", help="do not pip install bench/requirements.txt")
    args = parser.parse_args()

    # A TERM stops the run like Ctrl-C: the servers and clients it started are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))
    raise_fd_limit()
    OUT.mkdir(parents=True, exist_ok=True)
    if not args.no_install:
        ensure_requirements()
    if args.render:
        from . import report

        out_dir = args.out or (OUT / "quick" if args.quick else ROOT / "bench")
        report.write(report.restore(out_dir), out_dir)
        log(f"rewrote {out_dir / 'RESULTS.md'}")
        return
    if args.profile:
        from . import profile

        profile.run(args.profile)
        return

    plan = QUICK if args.quick else FULL
    sections = args.only or list(SECTIONS)
    redis_url = None if args.no_redis else args.redis_url
    if redis_url and not redis_reachable(redis_url):
        log(f"Redis at {redis_url} does not answer: channels-redis rows are skipped")
        redis_url = None
    out_dir = args.out or (OUT / "quick" if args.quick else ROOT / "bench")
    results: dict[str, Any] = {"meta": meta(args)}
    started = time.monotonic()

    def section(name: str, fn: Any) -> None:
        if name not in sections:
            return
        log(f"--- {name}")
        # What an earlier section wrote (persist: megabytes per call) is written back to disk
        # now, not while this one measures: the keys rows once grew fivefold from that alone.
        os.sync()
        t0 = time.monotonic()
        try:
            results[name] = fn()
        except Exception:  # a section that breaks is reported, the others still run
            results[name] = {"error": traceback.format_exc()}
            log(f"{name} did not complete:\n{results[name]['error']}")
        log(f"--- {name} took {time.monotonic() - t0:.0f} s")

    from . import cluster, fanout, keyrows, memory, patchcost, persistence, rpc

    section("rpc", lambda: rpc.run(**plan["rpc"], redis_url=redis_url))
    layers = {"memory": None, **({"redis": redis_url} if redis_url else {})}
    section("fanout", lambda: fanout.run(layers, **plan["fanout"]))
    section("patch", lambda: patchcost.run_subprocess(**plan["patch"]))
    section("persist", lambda: persistence.run(postgres=args.postgres, database=args.pg_database, **plan["persist"]))
    section("keys", lambda: keyrows.run(postgres=args.postgres, database=args.pg_database, **plan["keys"]))
    section("cluster", lambda: cluster.run(redis_url, **plan["cluster"]) if redis_url else
            {"measured": False, "reason": "not measured: no Redis"})
    section("memory", lambda: memory.run(**plan["memory"], layers=layers))

    results["meta"]["elapsed_s"] = time.monotonic() - started
    results["meta"]["load_after"] = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    from . import report

    if args.only:
        report.carry_over(results, out_dir)
    report.write(results, out_dir)
    log(f"wrote {out_dir / 'RESULTS.md'}, results.json and latency.png in {results['meta']['elapsed_s']:.0f} s")


if __name__ == "__main__":
    main()
