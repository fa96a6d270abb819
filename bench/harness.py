"""Servers, processes and numbers: the plumbing every benchmark shares."""

from __future__ import annotations

import contextlib
import math
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def raise_fd_limit() -> None:
    """Thousands of sockets per process need more than the usual 1,024 descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One daphne subprocess serving ``bench.project.asgi`` on a free loopback port."""

    def __init__(self, *, redis_url: str | None = None, redis_prefix: str | None = None, label: str = "") -> None:
        self.redis_url = redis_url
        self.redis_prefix = redis_prefix
        self.label = label or ("redis" if redis_url else "memory")
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = OUT / f"daphne-{self.label}.log"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def url(self, route: str) -> str:
        return f"ws://127.0.0.1:{self.port}/{route.strip('/')}/"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "daphne", "-v", "0", "-b", "127.0.0.1", "-p", str(self.port),
                "bench.project.asgi:application"]

    def start(self, timeout: float = 30.0) -> Server:
        OUT.mkdir(parents=True, exist_ok=True)
        raise_fd_limit()
        env = dict(os.environ, DJANGO_SETTINGS_MODULE="bench.project.settings", PYTHONPATH=str(ROOT))
        env.pop("REDIS_URL", None)
        if self.redis_url:
            env["REDIS_URL"] = self.redis_url
            env["BENCH_REDIS_PREFIX"] = self.redis_prefix or f"zbench{os.getpid()}"
        self.port = free_port()
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.command(), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.command()[2]} exited with {self.proc.returncode}; see {self.log_path}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.command()[2]} did not listen within {timeout:.0f} s; see {self.log_path}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def rss_kib(self) -> int:
        return rss_kib(self.pid)

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def rss_kib(pid: int) -> int:
    """Resident memory of ``pid`` in KiB, from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` (all its threads), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


# -- numbers ------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (``q`` in 0..100) of ``values``; NaN when empty."""
    if not values:
        return math.nan
    data = sorted(values)
    pos = (len(data) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def summary(reps: list[float]) -> dict[str, Any]:
    """The median of the repetitions and their spread (min, max, and max-min relative to the median)."""
    clean = [r for r in reps if r is not None and not math.isnan(r)]
    if not clean:
        return {"median": None, "min": None, "max": None, "spread_pct": None, "reps": reps}
    med = statistics.median(clean)
    spread = (max(clean) - min(clean)) / med * 100 if med else 0.0
    return {"median": med, "min": min(clean), "max": max(clean), "spread_pct": spread, "reps": clean}


def ratio(a: dict[str, Any], b: dict[str, Any]) -> float | None:
    if not a.get("median") or not b.get("median"):
        return None
    return a["median"] / b["median"]


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class PeerServer(Server):
    """python-socketio's AsyncServer (``bench/peer/app.py``) under uvicorn, on asyncio's default loop."""

    def __init__(self, *, redis_url: str | None = None, redis_prefix: str | None = None, label: str = "") -> None:
        super().__init__(redis_url=redis_url, redis_prefix=redis_prefix, label=f"socketio-{label or 'memory'}")

    def url(self, route: str = "") -> str:
        return f"ws://127.0.0.1:{self.port}/socket.io/?EIO=4&transport=websocket"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "uvicorn", "bench.peer.app:app", "--host", "127.0.0.1", "--port",
                str(self.port), "--loop", "asyncio", "--ws", "auto", "--log-level", "warning",
                "--no-access-log"]
