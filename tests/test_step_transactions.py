"""Time limits that tell the truth: a sync handler's database work lives and dies with its step.

``tests.testapp.actors.Shelf`` is shaped like the demo's board: plain ``def``
handlers that write a ``Todo`` row and change the state. Whatever the outcome
of a call, the rows in the database and the items in the state agree.
"""

import asyncio

import pytest
from django.db import OperationalError

from demo_project.board.models import Todo
from tests.testapp.actors import GATES
from zocket_django import hot_actors, snapshot_rows


async def rows(board: str) -> list[tuple[int, str, bool]]:
    return [t async for t in Todo.objects.filter(board=board).order_by("pk").values_list("pk", "text", "done")]


def state_rows(actor: str, actor_id: str) -> list[tuple[int, str, bool]]:
    return [(r.id, r.text, r.done) for r in hot_actors.get(actor, actor_id).state.rows]


@pytest.fixture(autouse=True)
def _gates():
    yield
    for gate in GATES.values():
        gate.set()  # never leave a worker thread waiting
    GATES.clear()


async def test_a_sync_handler_past_its_deadline_keeps_no_row(connect, settings):
    settings.ZOCKET = {"CALL_TIMEOUT": 0.2}
    watcher = await connect()
    await watcher.subscribe_state("shelf", "late")
    client = await connect()
    assert isinstance(await client.call("shelf", "late", "add", text="kept"), int)
    assert len(await rows("late")) == 1
    # The handler writes its row, then blocks: its caller is answered at the
    # deadline, while the thread still holds the (uncommitted) row.
    frame = await client.call_raw("shelf", "late", "add", text="late", hold=True)
    assert (frame["code"], frame["error"]) == ("timeout", "add ran longer than CALL_TIMEOUT; its step was undone")
    later = asyncio.ensure_future(client.call("shelf", "late", "add", text="after"))  # queued behind the thread
    await asyncio.sleep(0.05)
    assert not later.done()
    GATES["late"].set()
    await later
    # The late row was rolled back with its step: the database and the state agree.
    in_db = await rows("late")
    assert [text for _, text, _ in in_db] == ["kept", "after"]
    assert state_rows("shelf", "late") == in_db
    # Subscribers saw exactly the two steps that counted.
    patches = [await watcher.next_patch("shelf", "late") for _ in range(2)]
    assert [p["version"] for p in patches] == [1, 2]
    await watcher.nothing_more()


async def test_a_refusing_sync_handler_keeps_no_row(connect):
    client = await connect()
    frame = await client.call_raw("shelf", "no", "add_then_refuse", text="never")
    assert (frame["code"], frame["error"]) == ("refused", "changed my mind")
    assert await rows("no") == []
    assert state_rows("shelf", "no") == []


async def test_sync_handlers_that_read_then_write_on_several_instances_at_once(connect):
    """On SQLite such transactions take turns (else: "database is locked"); elsewhere they overlap."""
    clients = [await connect() for _ in range(4)]

    async def fill(n, client):
        return [await client.call("shelf", f"many{n}", "count_then_add", text=str(i)) for i in range(8)]

    assert await asyncio.gather(*(fill(n, c) for n, c in enumerate(clients))) == [list(range(1, 9))] * 4
    for n in range(4):
        assert state_rows("shelf", f"many{n}") == await rows(f"many{n}")


async def test_time_spent_queued_is_not_charged_to_the_handler(connect, settings):
    settings.ZOCKET = {"CALL_TIMEOUT": 1.0, "QUEUE_TIMEOUT": 30.0}
    client = await connect()
    # Six calls of 0.2 s each: the last waits about 1 s in the queue, then runs in 0.2 s.
    results = await asyncio.gather(*(client.call_raw("lab", "q", "slow", seconds=0.2) for _ in range(6)))
    assert [frame.get("result") for frame in results] == ["done"] * 6


async def test_a_call_queued_past_QUEUE_TIMEOUT_never_runs(connect, settings):
    settings.ZOCKET = {"CALL_TIMEOUT": 30.0, "QUEUE_TIMEOUT": 0.2}
    client = await connect()
    first = asyncio.ensure_future(client.call("shelf", "q", "add", text="first", hold=True))
    await asyncio.sleep(0.05)
    second = asyncio.ensure_future(client.call_raw("shelf", "q", "add", text="second"))
    await asyncio.sleep(0.4)  # the second call waits in the queue longer than QUEUE_TIMEOUT
    GATES["q"].set()
    await first
    frame = await second
    assert frame["code"] == "timeout"
    assert frame["error"] == "add waited in the queue longer than QUEUE_TIMEOUT; it did not run"
    in_db = await rows("q")
    assert [text for _, text, _ in in_db] == ["first"]
    assert state_rows("shelf", "q") == in_db


async def test_write_through_saves_the_snapshot_in_the_handlers_transaction(connect, monkeypatch):
    client = await connect()
    assert isinstance(await client.call("durable_shelf", "d", "add", text="one"), int)

    def refused(*args):
        raise OperationalError("disk full")

    monkeypatch.setattr(snapshot_rows, "save_snapshot", refused)
    frame = await client.call_raw("durable_shelf", "d", "add", text="two")
    assert (frame["code"], frame["error"]) == ("unavailable", "the change could not be saved; nothing changed")
    # The snapshot could not be saved, so the handler's row was not kept either.
    assert [text for _, text, _ in await rows("d")] == ["one"]
    monkeypatch.undo()
    assert isinstance(await client.call("durable_shelf", "d", "add", text="three"), int)
    in_db = await rows("d")
    assert [text for _, text, _ in in_db] == ["one", "three"]
    assert state_rows("durable_shelf", "d") == in_db
    await hot_actors.adeactivate_all()
    # Reactivated from its snapshot (version 2) and then its rows: both say the same.
    assert await client.call("durable_shelf", "d", "toggle", id=in_db[1][0]) is True


# -- through a real daphne -------------------------------------------------------------------


@pytest.mark.slow
async def test_through_daphne_the_rows_and_the_state_agree_after_timeouts(tmp_path, migrated_sqlite):
    """The issue's case: timed-out board calls used to leave rows (69 of them) that the state did not have."""
    import json
    import sqlite3

    from tests.live import LiveClient, RpcError, Worker, copy_of, fresh_snapshot, single_env

    database = copy_of(migrated_sqlite, tmp_path)
    zocket = {"CALL_TIMEOUT": 0.5, "QUEUE_TIMEOUT": 30.0, "MESSAGE_RATE": None}
    worker = Worker({**single_env(database), "ZOCKET_JSON": json.dumps(zocket)}, tmp_path, "daphne").start()
    clients: list[LiveClient] = []
    try:
        watcher = await LiveClient.connect(worker.url)
        clients.append(watcher)
        await watcher.subscribe_state("shelf", "s")
        for _ in range(3):
            clients.append(await LiveClient.connect(worker.url))

        async def add(client: LiveClient, text: str, linger: float) -> tuple[str, str]:
            try:
                await client.call("shelf", "s", "add", text=text, linger=linger, timeout=60)
            except RpcError as exc:
                return text, str(exc.code)
            return text, "ok"

        outcomes = await asyncio.gather(
            *(add(c, f"{n}-{i}", 1.5 if i == 1 else 0.0) for n, c in enumerate(clients[1:]) for i in range(4))
        )
        assert {outcome for _, outcome in outcomes} <= {"ok", "timeout"}
        assert sum(outcome == "timeout" for _, outcome in outcomes) >= 3  # every 1.5 s call at least
        await clients[1].call("shelf", "s", "add", text="last", timeout=60)  # after every earlier step
        acknowledged = {text for text, outcome in outcomes if outcome == "ok"} | {"last"}

        with sqlite3.connect(database) as db:
            in_db = {text for (text,) in db.execute("SELECT text FROM board_todo WHERE board = 's'")}
        assert in_db == acknowledged
        snapshot = await fresh_snapshot(worker.url, "shelf", "s")
        assert {row["text"] for row in snapshot["state"]["rows"]} == in_db
        mirrored = await watcher.wait_state("s", lambda state: len(state["rows"]) == len(in_db))
        assert {row["text"] for row in mirrored["rows"]} == in_db
        assert watcher.mirror("s").gaps == 0
    finally:
        for client in clients:
            await client.close()
        worker.stop()
