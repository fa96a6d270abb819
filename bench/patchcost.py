"""3. Patch cost as state grows: steps on a list of 10, 1,000 and 100,000 items.

Measured in-process, on the real ``Instance.run`` (the runtime step: handler,
recorded patches applied to the dump, frame encoding, or the undo of a failed
step), with a stub node that only keeps what would have been sent: an append,
an edit of the middle item, removing the first item, and a failing step that
appended. Then the parts of the step before the recorder (``model_dump`` and
``patches.diff`` of the whole state; re-validating it to roll back). Run as ``python -m bench.patchcost SIZE...``
(it prints JSON); ``python -m bench`` runs it in a subprocess.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import statistics
import sys
import time
from typing import Any


def _setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.project.settings")
    os.environ.pop("REDIS_URL", None)
    import django

    django.setup()


class StubCluster:
    """A single process: it owns every instance (``cluster.SingleProcess``'s answers)."""

    def holds(self, group: str) -> bool:
        return True

    def epoch(self, group: str) -> int:
        return 1


class StubNode:
    """The runtime's links (``instance.Links``), keeping what was sent."""

    channel = "bench"

    def __init__(self) -> None:
        self.sent: list[Any] = []
        self.cluster = StubCluster()

    async def publish(self, group: str, message: Any) -> None:
        self.sent.append(message)

    def listened(self, group: str) -> bool:
        return True  # as if subscribed: the step measured publishes its patch

    async def send(self, channel: str, message: Any) -> None:
        self.sent.append(message)

    async def released(self, group: str) -> None:
        pass


class StubRuntime:
    def __init__(self) -> None:
        self.node = StubNode()


def timed(fn: Any, budget: float, min_runs: int = 1, max_runs: int = 5000) -> float:
    """Median seconds of ``fn()`` over as many runs as fit in ``budget``."""
    times: list[float] = []
    end = time.perf_counter() + budget
    while len(times) < min_runs or (time.perf_counter() < end and len(times) < max_runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


class Fail(Exception):
    """The handler error of the rollback measurement."""


async def measure(n: int, reps: int, budget: float) -> dict[str, Any]:
    import jsonpatch

    from zocket_django import patches, protocol
    from zocket_django.instance import Instance

    from .project.actors import BenchList, Item, ListState

    spec = BenchList.spec
    method = spec.methods["append"]
    runtime = StubRuntime()
    inst = Instance(runtime, spec, "p", "g")  # type: ignore[arg-type]
    inst.reset_state(ListState(items=[Item(id=i, text=f"item {i}") for i in range(n)]))
    middle = n // 2

    async def run(change: Any, serialize: Any = None) -> float:
        ctx = inst.context(None, "append")

        async def invoke() -> Any:
            value = change(ctx)
            return await value if inspect.isawaitable(value) else value

        t0 = time.perf_counter()
        with contextlib.suppress(Fail):
            await inst.run(ctx, invoke, serialize)
        return time.perf_counter() - t0

    async def untimed(change: Any) -> None:
        await run(lambda ctx: _none(change()))

    async def append() -> float:  # the real handler; then back to n items
        took = await run(lambda ctx: method.fn(inst.actor, ctx, text="new item"), method.serialize_result)
        await untimed(lambda: inst.actor.state.items.pop())
        return took

    edits = 0

    async def edit_middle() -> float:
        nonlocal edits
        edits += 1
        return await run(lambda ctx: _none(setattr(inst.actor.state.items[middle], "text", f"changed {edits}")))

    async def remove_first() -> float:
        took = await run(lambda ctx: _none(inst.actor.state.items.pop(0)))
        await untimed(lambda: inst.actor.state.items.insert(0, Item(id=0, text="item 0")))
        return took

    async def rollback() -> float:  # a handler that appends, then fails: the step is undone
        def failing(ctx: Any) -> Any:
            inst.actor.state.items.append(Item(id=-1, text="never"))
            raise Fail

        return await run(failing)

    steps = {"append": append, "edit_middle": edit_middle, "remove_first": remove_first, "rollback": rollback}
    measured: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(reps):
        for name, step in steps.items():
            times: list[float] = []
            end = time.perf_counter() + budget
            while not times or (time.perf_counter() < end and len(times) < 2000):
                times.append(await step())
            measured[name].append(statistics.median(times) * 1e3)
    assert len(inst.actor.state.items) == n and inst.dump == inst.actor.state.model_dump(mode="json")
    await run(lambda ctx: method.fn(inst.actor, ctx, text="new item"), method.serialize_result)
    patch_frame = runtime.node.sent[-1].frame

    # What a step cost before the recorder, on the state as it is now: dump it whole and diff.
    state = inst.actor.state
    old = inst.dump
    new = state.model_dump(mode="json")
    new["items"].append({"id": -1, "text": "new item"})
    dump_ms = timed(lambda: state.model_dump(mode="json"), budget) * 1e3
    diff_ms = timed(lambda: patches.diff(old, new), budget) * 1e3
    # The baseline: jsonpatch's make_patch, which zocket_django used before it had its own diff.
    baseline_ms = timed(lambda: jsonpatch.make_patch(old, new), budget, max_runs=20) * 1e3
    validate_ms = timed(lambda: spec.state_model.model_validate(old), budget) * 1e3  # the old rollback path

    # What removing the first item costs CPython itself (it moves every pointer), without zocket.
    plain = list(range(n))
    pop_first_ms = timed(lambda: plain.append(plain.pop(0)), budget) * 1e3  # append: O(1), keeps the length

    snapshot_frame = protocol.state_snapshot(spec.name, inst.actor_id, inst.dump, inst.version, inst.epoch)
    return {
        "items": n,
        "step_ms": measured["append"],
        "edit_middle_ms": measured["edit_middle"],
        "remove_first_ms": measured["remove_first"],
        "rollback_ms": measured["rollback"],
        "recorded": inst.recorder.recorded,
        "plain_pop_first_ms": pop_first_ms,
        "model_dump_ms": dump_ms,
        "diff_ms": diff_ms,
        "rollback_validate_ms": validate_ms,
        "jsonpatch_diff_ms": baseline_ms,
        "patch_bytes": len(patch_frame.encode()),
        "full_state_bytes": len(snapshot_frame.encode()),
        "steps_run": inst.version,
    }


def _none(_: Any) -> None:
    return None


def edits(n: int) -> list[dict[str, Any]]:
    """Other edits than append on a list of n items: zocket's diff against jsonpatch (time and patch size)."""
    import jsonpatch

    from zocket_django import patches

    old = {"items": [{"id": i, "text": f"item {i}"} for i in range(n)]}
    shapes = {
        "append": [*old["items"], {"id": -1, "text": "new"}],
        "insert at front": [{"id": -1, "text": "new"}, *old["items"]],
        "edit one in the middle": [dict(d, text="changed") if d["id"] == n // 2 else d for d in old["items"]],
        "remove the first": old["items"][1:],
    }
    rows = []
    for shape, items in shapes.items():
        new = {"items": [dict(d) for d in items]}
        row: dict[str, Any] = {"items": n, "edit": shape}
        for name, fn in (("jsonpatch", lambda a, b: jsonpatch.make_patch(a, b).patch), ("zocket", patches.diff)):
            t0 = time.perf_counter()
            ops = fn(old, new)
            row[f"{name}_ms"] = (time.perf_counter() - t0) * 1e3
            row[f"{name}_ops"] = len(ops)
            row[f"{name}_bytes"] = len(json.dumps(ops, separators=(",", ":")))
        rows.append(row)
    return rows


def main(argv: list[str]) -> None:
    _setup()
    reps = int(os.environ.get("BENCH_REPS", "5"))
    budget = float(os.environ.get("BENCH_BUDGET", "0.3"))
    sizes = [int(a) for a in argv] or [10, 1000, 100000]
    out = {"sizes": [asyncio.run(measure(n, reps, budget)) for n in sizes], "edits": edits(max(sizes))}
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1:])


def run_subprocess(sizes: tuple[int, ...], reps: int, budget: float) -> dict[str, Any]:
    """Run the measurement in a fresh interpreter (its own Django setup, no servers)."""
    import subprocess

    from .harness import ROOT, log

    env = dict(os.environ, BENCH_REPS=str(reps), BENCH_BUDGET=str(budget), PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-m", "bench.patchcost", *map(str, sizes)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    measured = json.loads(done.stdout)
    rows = measured["sizes"]
    for row in rows:
        from .harness import summary

        row["step_ms"] = summary(row["step_ms"])
        for key in ("edit_middle_ms", "remove_first_ms", "rollback_ms"):
            row[key] = summary(row[key])
        log(
            f"patch {row['items']:>6} items: append {row['step_ms']['median']:.3f} ms, edit "
            f"{row['edit_middle_ms']['median']:.3f} ms, remove first {row['remove_first_ms']['median']:.3f} ms, "
            f"rollback {row['rollback_ms']['median']:.3f} ms, full diff {row['diff_ms']:.3f} ms, "
            f"jsonpatch diff {row['jsonpatch_diff_ms']:.3f} ms, patch {row['patch_bytes']} B vs "
            f"state {row['full_state_bytes']:,} B"
        )
    import jsonpatch

    return {"sizes": rows, "edits": measured["edits"], "reps": reps, "jsonpatch": jsonpatch.__version__}
