"""What a write-through save costs as an instance keeps more keyed-call outcomes (not a test).

    .venv/bin/python -m bench --only keys
    .venv/bin/python bench/keyrows.py --windows 0,1000,10000 --calls 20   # one run, printed as JSON

A write-through actor with a one-field state takes ``--calls`` sequential
keyed calls (each a save) while its window holds N outcomes (the median of
six such blocks), through the
demo's ASGI application in process (one socket). *Before*: the previous
version's save, emulated here in the same run: the whole window dumped into
``Snapshot.calls`` in the state's ``UPDATE``. *After*: the store as shipped,
one ``CallOutcome`` row inserted per call in the same transaction. Each
variant runs in child processes of its own, each on a fresh database,
alternating before, after, before, after: a SQLite file in WAL mode,
PostgreSQL with ``CONN_MAX_AGE=60``.
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: Blocks of ``calls`` calls per window and process; the median block's mean is reported.
REPS = 3
#: Processes per variant, alternating before and after.
ROUNDS = 2
#: Calls before the measured ones, per window: activation, connections, caches.
WARM_UP = 20
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from bench.persistence import postgres_database, setup_child  # noqa: E402


def child(windows: list[int], calls: int, variant: str, db_settings: dict) -> dict[str, list[float]]:
    """Runs in the child process: DATABASE_URL is set and the database is empty."""
    room = max(windows) + calls * REPS + WARM_UP + 100  # no call refused: the window never fills
    setup_child(db_settings, CALL_KEYS_PER_INSTANCE=room, CALL_KEYS_PER_CALLER=room)
    from django.db import transaction
    from django.utils import timezone
    from pydantic import BaseModel

    from zocket_django import Actor, Persist, method, snapshot_rows
    from zocket_django.callkeys import CallWindow, fingerprint
    from zocket_django.models import CallOutcome, Snapshot

    class S(BaseModel):
        count: int = 0

    class Keyed(Actor):
        name = "bench_keyed"
        State = S
        persist = Persist.WRITE_THROUGH

        @method
        async def increment(self, ctx, n: int) -> int:
            self.state.count += 1
            return self.state.count

    def whole_window_save(actor, actor_id, state, version, schema_version, expected, logged=False, calls=(),
                          expire_before=None):
        """The previous version's save: the whole window in the snapshot row's ``UPDATE``."""
        with transaction.atomic():
            updated = Snapshot.objects.filter(actor=actor, actor_id=actor_id, version=expected).update(
                state=state, version=version, schema_version=schema_version, state_version=None,
                calls=list(calls), updated_at=timezone.now(),
            )
            if not updated:
                raise snapshot_rows.SnapshotConflict(f"{actor}/{actor_id} moved")

    # One variant per process and database: interleaved in one, the other's background work
    # (SQLite's WAL checkpoints, PostgreSQL's TOAST and WAL) was charged to whichever committed next.
    shipped_save, shipped_unsaved, shipped_saved = snapshot_rows.save_snapshot, CallWindow.unsaved, CallWindow.saved
    mode = {"before": variant == "before"}

    def save(*args: Any, **kwargs: Any) -> None:
        (whole_window_save if mode["before"] else shipped_save)(*args, **kwargs)

    def unsaved(window: CallWindow) -> list[list[Any]]:
        return window.dump() if mode["before"] else shipped_unsaved(window)  # before: every save got it all

    def saved(window: CallWindow, rows: Any) -> None:
        if not mode["before"]:  # the previous version had no such bookkeeping
            shipped_saved(window, rows)

    snapshot_rows.save_snapshot = save
    CallWindow.unsaved = unsaved  # type: ignore[method-assign]
    CallWindow.saved = saved  # type: ignore[method-assign]

    def prefill(actor_id: str, n: int, before: bool) -> None:
        """A saved instance whose window holds ``n`` young outcomes (as each version stores them)."""
        now = time.time()
        outcomes = [["anonymous", f"pre{i}", fingerprint("increment", {"n": i}), now, '{"result":0}']
                    for i in range(n)]
        Snapshot.objects.create(actor="bench_keyed", actor_id=actor_id, state={"count": 0}, version=1,
                                calls=outcomes if before else [])
        if not before:
            CallOutcome.objects.bulk_create(
                [CallOutcome(actor="bench_keyed", actor_id=actor_id, caller=c, key=k, fingerprint=fp, at=at,
                             outcome=o) for c, k, fp, at, o in outcomes], batch_size=1000)

    from asgiref.sync import sync_to_async

    from zocket_django.testing import ZocketCommunicator, reset_actors

    async def run() -> dict[str, list[float]]:
        from demo_project.asgi import application

        results: dict[str, list[float]] = {}
        serial = 0
        async with ZocketCommunicator(application, timeout=600) as client:

            async def keyed_calls(n: int, count: int) -> float:
                """ms per call of ``count`` keyed calls to the instance whose window holds ``n``."""
                nonlocal serial
                started = time.perf_counter()
                for _ in range(count):
                    serial += 1
                    frame = {"type": "rpc", "id": f"c{serial}", "actor": "bench_keyed", "actorId": f"w{n}",
                             "method": "increment", "input": {"n": -serial}, "key": f"k{serial}"}
                    await client.send_json_to(frame)
                    answer = await client.expect("rpc:result", id=frame["id"])
                    assert "result" in answer, answer
                return (time.perf_counter() - started) / count * 1000

            for n in windows:
                await sync_to_async(prefill)(f"w{n}", n, variant == "before")
                await keyed_calls(n, WARM_UP)  # activation, connections, caches
                results[str(n)] = [await keyed_calls(n, calls) for _ in range(REPS)]
        await reset_actors()
        return results

    return asyncio.run(run())


def run_child(url: str, windows: list[int], calls: int, variant: str, db_settings: dict) -> dict[str, list[float]]:
    env = dict(os.environ, DATABASE_URL=url)
    args = [sys.executable, __file__, "--child", "--windows", ",".join(map(str, windows)), "--calls", str(calls),
            "--variant", variant, "--db-settings", json.dumps(db_settings)]
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=900, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(windows: list[int], calls: int, postgres: str | None, database: str) -> dict[str, Any]:
    """The ``keys`` section of ``python -m bench``: ms per keyed write-through call, by window, before/after."""
    from bench.harness import log

    def alternate(database: Callable[[int], str], db_settings: dict) -> dict[str, dict[str, float]]:
        """Before, after, before, after (a fresh database each): the median of every variant's blocks."""
        blocks: dict[str, dict[str, list[float]]] = {"before": {}, "after": {}}
        for turn in range(ROUNDS * 2):
            variant = ("before", "after")[turn % 2]
            for n, means in run_child(database(turn), windows, calls, variant, db_settings).items():
                blocks[variant].setdefault(n, []).extend(means)
        return {v: {n: statistics.median(m) for n, m in by_n.items()} for v, by_n in blocks.items()}

    table: dict[str, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        wal = {"OPTIONS": {"init_command": "PRAGMA journal_mode=WAL;"}}
        table["sqlite"] = alternate(lambda turn: f"sqlite:///{tmp}/keys{turn}.sqlite3", wal)
    if postgres:
        try:
            postgres_database(postgres, database, create=False)
        except Exception as exc:
            log(f"PostgreSQL at {postgres} does not answer ({exc}): SQLite only")
            postgres = None
    if postgres:
        try:
            table["postgresql"] = alternate(lambda _: postgres_database(postgres, database, create=True),
                                            {"CONN_MAX_AGE": 60})
        finally:
            postgres_database(postgres, database, create=False)
    for db, variants in table.items():
        for n in map(str, windows):
            log(f"keys {db:<10} {int(n):>6} kept outcomes: before {variants['before'][n]:.2f} ms/call, "
                f"after {variants['after'][n]:.2f} ms/call")
    return {"windows": windows, "calls": calls, "databases": table}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--windows", default="0,1000,10000")
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--postgres", default=os.environ.get("ZOCKET_POSTGRES_URL",
                                                             "postgres://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--database", default="zocket_bench_keys")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--variant", choices=("before", "after"), help=argparse.SUPPRESS)
    parser.add_argument("--db-settings", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    windows = [int(n) for n in args.windows.split(",")]
    if args.child:
        print(json.dumps(child(windows, args.calls, args.variant, json.loads(args.db_settings))))
        return
    print(json.dumps(run(windows, args.calls, None if args.no_postgres else args.postgres, args.database), indent=2))


if __name__ == "__main__":
    main()
