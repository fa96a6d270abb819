"""What write-through persistence costs per call, on SQLite and on PostgreSQL (not a test).

    .venv/bin/python bench/persistence.py                # SQLite file, and PostgreSQL if it answers
    .venv/bin/python bench/persistence.py --calls 1000 --postgres postgres://postgres@127.0.0.1:5432/test
    .venv/bin/python bench/persistence.py --sizes 1000,100000 --calls 40   # whole writes vs the patch log

Each backend runs in a child process (settings are read once): the demo's ASGI
application in process, one ``ZocketCommunicator`` socket, the same one-line
method on three actors that differ only in ``persist``. *Sequential* is the
round trip of one call at a time (latency); *parallel* is 20 instances called
at once (throughput). PostgreSQL runs in a database of its own, created and
dropped here, with Django's default ``CONN_MAX_AGE=0`` (a new connection for
every save), with ``CONN_MAX_AGE=60`` (persistent per worker thread) and with
Django's psycopg pool (``OPTIONS={"pool": True}``, when psycopg_pool is
installed). SQLite runs with Django's defaults and with WAL journaling.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parent.parent
PARALLEL_INSTANCES = 20

#: One socket makes every call here: the demo's per-connection budgets (100 frames/s after a burst of
#: 200, and 200 calls/s per user) would be measured instead of the saves (10 ms per call).
UNTHROTTLED = {"MESSAGE_RATE": None, "BYTE_RATE": None, "USER_CALL_RATE": None}


def setup_child(db_settings: dict, **zocket: Any) -> None:
    """In a child process: the demo project on ``db_settings`` (an empty database), migrated, without the
    per-connection budgets (``UNTHROTTLED``), with ``zocket`` over its ``ZOCKET``."""
    sys.path.insert(0, str(ROOT))
    os.environ["DJANGO_SETTINGS_MODULE"] = "demo_project.settings"
    os.environ["DJANGO_DEBUG"] = "0"  # DEBUG records every query
    from django.conf import settings

    settings.DATABASES["default"].update(db_settings)
    settings.LOGGING = {"version": 1, "disable_existing_loggers": False}
    settings.ZOCKET = {**settings.ZOCKET, **UNTHROTTLED, **zocket}
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def child(calls: int, db_settings: dict) -> dict:
    """Runs in the child process: DATABASE_URL is set, the database exists and is empty."""
    setup_child(db_settings)

    from pydantic import BaseModel

    from zocket_django import Actor, Persist, method

    class S(BaseModel):
        count: int = 0

    class Plain(Actor):
        name = "bench_none"
        State = S

        @method
        async def increment(self, ctx) -> int:
            self.state.count += 1
            return self.state.count

    class OnDeactivate(Plain):
        name = "bench_on_deactivate"
        persist = Persist.ON_DEACTIVATE

    class WriteThrough(Plain):
        name = "bench_write_through"
        persist = Persist.WRITE_THROUGH

    from zocket_django.testing import ZocketCommunicator, reset_actors

    async def run() -> dict:
        from demo_project.asgi import application

        results: dict[str, dict] = {}
        async with ZocketCommunicator(application, timeout=60) as client:
            for actor in ("bench_none", "bench_on_deactivate", "bench_write_through"):
                for _ in range(20):  # warm up: activation, connections, caches
                    await client.call(actor, "warm", "increment")
                times = []
                for _ in range(calls):
                    started = time.perf_counter()
                    await client.call(actor, "seq", "increment")
                    times.append(time.perf_counter() - started)
                per_instance = max(1, calls // PARALLEL_INSTANCES)
                for i in range(PARALLEL_INSTANCES):  # activate them first
                    await client.call(actor, f"par{i}", "increment")
                started = time.perf_counter()
                await asyncio.gather(
                    *(
                        client.call(actor, f"par{i}", "increment")
                        for _ in range(per_instance)
                        for i in range(PARALLEL_INSTANCES)
                    )
                )
                elapsed = time.perf_counter() - started
                times.sort()
                results[actor] = {
                    "mean_ms": statistics.fmean(times) * 1000,
                    "p50_ms": times[len(times) // 2] * 1000,
                    "p99_ms": times[int(len(times) * 0.99) - 1] * 1000,
                    "parallel_calls_per_s": per_instance * PARALLEL_INSTANCES / elapsed,
                }
        await reset_actors()
        return results

    return asyncio.run(run())


def child_sizes(calls: int, db_settings: dict, sizes: list[int], logged: bool) -> dict:
    """Write-through steps on large states: one small change per call (an append, then a pop).

    ``logged``: the store's own choice (a patch log on PostgreSQL); otherwise
    every step writes the state whole, as before the log. The mean includes
    the log's folding steps, which run in the instance's queue.
    """
    setup_child(db_settings)
    from pydantic import BaseModel

    from zocket_django import Actor, Persist, method, persistence

    if not logged:
        persistence.LOG_MIN_BYTES = 1 << 62

    class Item(BaseModel):
        id: int
        text: str

    class S(BaseModel):
        items: list[Item] = []

    class Big(Actor):
        name = "bench_big"
        State = S
        persist = Persist.WRITE_THROUGH
        max_state_bytes = 64_000_000  # 100,000 items are ~3.3 MB: past the default limit on purpose

        @method
        async def fill(self, ctx, n: int) -> None:
            self.state.items = [Item(id=i, text=f"item {i}") for i in range(n)]

        @method
        async def append(self, ctx) -> None:
            self.state.items.append(Item(id=-1, text="new item"))

        @method
        async def pop(self, ctx) -> None:
            self.state.items.pop()

    from zocket_django.testing import ZocketCommunicator, reset_actors

    async def run() -> dict:
        from demo_project.asgi import application

        results: dict[str, float] = {}
        async with ZocketCommunicator(application, timeout=600) as client:
            for n in sizes:
                await client.call("bench_big", f"n{n}", "fill", n=n)
                for _ in range(4):
                    await client.call("bench_big", f"n{n}", "append")
                    await client.call("bench_big", f"n{n}", "pop")
                started = time.perf_counter()
                for i in range(calls):
                    await client.call("bench_big", f"n{n}", "pop" if i % 2 else "append")
                results[str(n)] = (time.perf_counter() - started) / calls * 1000
        await reset_actors()
        return results

    return asyncio.run(run())


def run_sizes(url: str, calls: int, sizes: list[int], logged: bool, db_settings: dict | None = None) -> dict:
    """``child_sizes`` in a child process: ms per write-through call, by state size."""
    return run_child(url, calls, db_settings, ["--sizes", ",".join(map(str, sizes))] + ([] if logged else ["--whole"]))


def sizes_table(calls: int, postgres: str | None, database: str, sizes: list[int]) -> dict:
    """Whole writes against the patch log, on a SQLite file (WAL) and on PostgreSQL (``CONN_MAX_AGE=60``)."""
    out: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        wal = {"OPTIONS": {"init_command": "PRAGMA journal_mode=WAL;"}}
        out["sqlite"] = {"whole": run_sizes(f"sqlite:///{tmp}/w.sqlite3", calls, sizes, False, wal),
                         "log": run_sizes(f"sqlite:///{tmp}/l.sqlite3", calls, sizes, True, wal)}
    if postgres:
        url = postgres_database(postgres, database, create=True)
        try:
            out["postgresql"] = {"whole": run_sizes(url, calls, sizes, False, {"CONN_MAX_AGE": 60})}
            postgres_database(postgres, database, create=True)
            out["postgresql"]["log"] = run_sizes(url, calls, sizes, True, {"CONN_MAX_AGE": 60})
        finally:
            postgres_database(postgres, database, create=False)
    return out


def run(sizes: list[int], calls: int, postgres: str | None, database: str) -> dict:
    """The ``persist`` section of ``python -m bench``: ms per write-through call, whole writes against the log."""
    from .harness import log

    try:
        postgres_database(postgres, database, create=False) if postgres else None
    except Exception as exc:
        log(f"PostgreSQL at {postgres} does not answer ({exc}): SQLite only")
        postgres = None
    table = sizes_table(calls, postgres, database, sizes)
    for db, variants in table.items():
        for n in map(str, sizes):
            log(f"persist {db:<10} {int(n):>6} items: whole {variants['whole'][n]:.2f} ms/call, "
                f"store's choice {variants['log'][n]:.2f} ms/call")
    return {"sizes": sizes, "calls": calls, "databases": table}


def run_child(url: str, calls: int, db_settings: dict | None = None, more: list[str] | None = None) -> dict:
    env = dict(os.environ, DATABASE_URL=url)
    args = [sys.executable, __file__, "--child", "--calls", str(calls), "--db-settings", json.dumps(db_settings or {})]
    args += more or []
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def postgres_database(url: str, name: str, create: bool) -> str:
    import psycopg

    parsed = urlparse(url)
    with psycopg.connect(
        host=parsed.hostname, port=parsed.port or 5432, user=parsed.username, dbname="postgres", autocommit=True
    ) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if create:
            conn.execute(f'CREATE DATABASE "{name}"')
    return urlunparse(parsed._replace(path=f"/{name}"))


def report(title: str, results: dict) -> None:
    base = results["bench_none"]
    print(f"\n{title}")
    print(f"  {'persist':<16}{'mean ms':>9}{'p50 ms':>9}{'p99 ms':>9}{'+ms/call':>10}{'parallel calls/s':>18}")
    for actor, label in (
        ("bench_none", "NONE"),
        ("bench_on_deactivate", "ON_DEACTIVATE"),
        ("bench_write_through", "WRITE_THROUGH"),
    ):
        r = results[actor]
        extra = r["mean_ms"] - base["mean_ms"]
        print(
            f"  {label:<16}{r['mean_ms']:>9.3f}{r['p50_ms']:>9.3f}{r['p99_ms']:>9.3f}"
            f"{extra:>+10.3f}{r['parallel_calls_per_s']:>18.0f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument(
        "--postgres", default=os.environ.get("ZOCKET_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test")
    )
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--database", default="zocket_bench", help="PostgreSQL database to create and drop")
    parser.add_argument("--sizes", help="write-through on large states instead: comma-separated item counts")
    parser.add_argument("--whole", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--db-settings", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        db_settings = json.loads(args.db_settings)
        if args.sizes:
            sizes = [int(n) for n in args.sizes.split(",")]
            print(json.dumps(child_sizes(args.calls, db_settings, sizes, logged=not args.whole)))
        else:
            print(json.dumps(child(args.calls, db_settings)))
        return
    if args.sizes:
        sizes = [int(n) for n in args.sizes.split(",")]
        table = sizes_table(args.calls, None if args.no_postgres else args.postgres, args.database, sizes)
        print(json.dumps(table, indent=2))
        return

    version = sys.version.split()[0]
    print(f"{args.calls} sequential calls per actor; {PARALLEL_INSTANCES} instances in parallel; python {version}")
    with tempfile.TemporaryDirectory() as tmp:
        report("SQLite file, Django's defaults (rollback journal)", run_child(f"sqlite:///{tmp}/a.sqlite3", args.calls))
        wal = {"OPTIONS": {"init_command": "PRAGMA journal_mode=WAL;"}}
        report("SQLite file, journal_mode=WAL", run_child(f"sqlite:///{tmp}/b.sqlite3", args.calls, wal))
    if args.no_postgres:
        return
    try:
        url = postgres_database(args.postgres, args.database, create=True)
    except Exception as exc:
        print(f"\nPostgreSQL skipped: {exc}")
        return
    variants = [("CONN_MAX_AGE=0 (Django's default)", {"CONN_MAX_AGE": 0}), ("CONN_MAX_AGE=60", {"CONN_MAX_AGE": 60})]
    try:
        import psycopg_pool  # noqa: F401

        variants.append(("OPTIONS pool=True (psycopg_pool)", {"CONN_MAX_AGE": 0, "OPTIONS": {"pool": True}}))
    except ImportError:
        print("\n(psycopg_pool is not installed: the pool variant is skipped)")
    try:
        for title, db_settings in variants:
            postgres_database(args.postgres, args.database, create=True)
            report(f"PostgreSQL, {title}", run_child(url, args.calls, db_settings))
    finally:
        postgres_database(args.postgres, args.database, create=False)


if __name__ == "__main__":
    main()
