"""A regression check, not a benchmark: ``python -m bench.pool_probe [CONNECTIONS]``.

With channels-redis on redis-py 8, a pool raises ``MaxConnectionsError`` past
100 connections instead of waiting; zocket once had that many layer
operations in flight and lost answers (bench/PROFILE.md, finding 3). Here
CONNECTIONS sockets (300 by default) each call ``increment`` on their own
instance at the same moment; the script counts answers, errors and calls that
got no answer within 15 s, and what daphne logged (all should be answered).
Needs Redis at $REDIS_URL or 127.0.0.1:6379.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from . import load
from .harness import Server, raise_fd_limit


async def probe(server: Server, n: int) -> dict[str, int]:
    sockets = await load.open_many(server.url("ws"), True, n)
    counts = {"answered": 0, "error": 0, "no answer": 0}

    async def one(i: int, ws: load.ClientConnection) -> None:
        try:
            frame = await asyncio.wait_for(load.call(ws, "p", f"probe-{i}"), 15)
            counts["error" if "error" in frame else "answered"] += 1
        except TimeoutError:
            counts["no answer"] += 1

    await asyncio.gather(*(one(i, ws) for i, ws in enumerate(sockets)))
    await load.close_many(sockets)
    return counts


def main() -> None:
    raise_fd_limit()
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    server = Server(redis_url=url, redis_prefix=f"zbenchprobe{os.getpid()}", label="pool-probe")
    server.log_path.unlink(missing_ok=True)
    with server:
        counts = asyncio.run(probe(server, n))
    logged = server.log_path.read_text()
    counts["MaxConnectionsError logged"] = logged.count("MaxConnectionsError")
    counts["'rolled back' logged"] = logged.count("rolled back")
    print(json.dumps(counts, indent=1))


if __name__ == "__main__":
    main()
