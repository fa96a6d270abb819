"""Activation fails loudly: a raising ``on_activate`` is a failed activation, never a half-built state.

``tests.testapp.actors.Shelf`` loads its rows in ``on_activate`` (as the demo's
board does) and raises there, as with the database down, while its id is in
``OUTAGES``. At the end, the demo's board through a real daphne, with
PostgreSQL really unreachable (a proxy in front of it, taken down and up).
"""

import asyncio
import logging

import pytest

from demo_project.board.models import Todo
from tests.live import (
    LiveClient,
    RpcError,
    TcpProxy,
    Worker,
    cluster_env,
    migrate,
    private_postgres_database,
    require_redis,
)
from tests.testapp.actors import OUTAGES
from zocket_django import hot_actors


@pytest.fixture(autouse=True)
def _outages():
    yield
    OUTAGES.clear()


def a_board_behind_a_proxy(direct_url: str, board: str, by: str) -> tuple[int, TcpProxy, str]:
    """The empty PostgreSQL database at ``direct_url``, migrated, with one row of ``board`` (by ``by``),
    and a proxy to it that is down (nothing listens on its port yet): the row's id, the proxy and
    the database's URL through it."""
    import psycopg

    migrate({"DATABASE_URL": direct_url, "REDIS_URL": ""})
    with psycopg.connect(direct_url, autocommit=True) as db:
        pk = db.execute(
            "INSERT INTO board_todo (board, text, done, by) VALUES (%s, 'existing', false, %s) RETURNING id",
            (board, by),
        ).fetchone()[0]
    proxy = TcpProxy(5432)
    return pk, proxy, direct_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")


async def test_a_raising_on_activate_fails_the_activation_and_the_next_request_retries(connect, caplog):
    todo = await Todo.objects.acreate(board="down", text="existing", by="test")
    OUTAGES.add("down")
    watcher = await connect()
    client = await connect()
    with caplog.at_level(logging.ERROR, logger="zocket_django"):
        await watcher.send_json_to({"type": "state:sub", "actor": "shelf", "actorId": "down"})
        calls = await asyncio.gather(*(client.call_raw("shelf", "down", "toggle", id=todo.pk) for _ in range(3)))
        error = await watcher.expect("error")
    # Every request queued behind the failed activation is answered; none ran.
    for frame in calls:
        assert (frame["code"], frame["error"]) == ("unavailable", "shelf/down is unavailable: its on_activate failed")
    assert (error["code"], error["ref"]) == ("unavailable", {"type": "state:sub", "actor": "shelf", "actorId": "down"})
    assert any("shelf.on_activate raised" in r.getMessage() for r in caplog.records)
    assert hot_actors.count() == 0  # nothing half-built stays hot
    assert (await Todo.objects.aget(pk=todo.pk)).done is False

    # The database is back: the next request activates it, from the rows.
    OUTAGES.discard("down")
    assert await client.call("shelf", "down", "toggle", id=todo.pk) is True
    assert (await Todo.objects.aget(pk=todo.pk)).done is True
    state, _ = await watcher.subscribe_state("shelf", "down")
    assert state == {"rows": [{"id": todo.pk, "text": "existing", "done": True}]}


async def test_an_async_on_activate_that_raises_fails_the_same_way(connect, monkeypatch):
    from tests.testapp.actors import Lab

    async def broken(self, ctx):
        raise RuntimeError("cache unreachable")

    monkeypatch.setitem(Lab.spec.hooks, "on_activate", (broken, True))
    client = await connect()
    frame = await client.call_raw("lab", "a", "noop")
    assert (frame["code"], frame["error"]) == ("unavailable", "lab/a is unavailable: its on_activate failed")
    assert hot_actors.count() == 0
    monkeypatch.undo()
    assert await client.call("lab", "a", "noop") == 0
    assert hot_actors.get("lab", "a").state.log == ["activated"]


# -- through a real daphne, with PostgreSQL really unreachable -------------------------------


@pytest.mark.slow
async def test_the_board_with_postgresql_unreachable_fails_activation_then_recovers(tmp_path):
    """The issue's case: with the database down the board used to activate empty, and once the
    database was back its state disagreed with the rows (``toggle`` of a row: ``not_found``)."""
    import psycopg

    with private_postgres_database() as direct_url:
        pk, proxy, through_proxy = a_board_behind_a_proxy(direct_url, "b", by="alice")
        worker = Worker({"DATABASE_URL": through_proxy, "REDIS_URL": ""}, tmp_path, "daphne").start()
        client = None
        try:
            client = await LiveClient.connect(worker.url)
            await client.send({"type": "state:sub", "actor": "board", "actorId": "b"})
            error = await client.wait_for(lambda f: f.get("type") == "error", timeout=30)
            assert (error["code"], error["ref"]["type"]) == ("unavailable", "state:sub")
            with pytest.raises(RpcError) as refused:
                await client.call("board", "b", "toggle", id=pk, timeout=30)
            assert refused.value.code == "unavailable"
            assert "board/b is unavailable: its on_activate failed" in str(refused.value)

            proxy.up()  # the database is back: the next request activates the board from its rows
            assert await client.call("board", "b", "toggle", id=pk, timeout=30) is True
            snapshot = await client.subscribe_state("board", "b")
            assert snapshot["state"] == {"items": [{"id": pk, "text": "existing", "done": True, "by": "alice"}]}
            with psycopg.connect(direct_url) as db:
                assert db.execute("SELECT done FROM board_todo WHERE id = %s", (pk,)).fetchone() == (True,)
            assert "board.on_activate raised" in worker.log()
        finally:
            if client is not None:
                await client.close()
            worker.stop()
            proxy.down()


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.parametrize("layer", ["core", "pubsub"])
async def test_across_workers_a_failed_activation_is_answered_and_the_next_request_retries(tmp_path, layer):
    """Two workers on Redis: a call forwarded to the worker whose activation fails is answered
    ``unavailable`` too, and once the database is back either worker's request activates the board."""
    with private_postgres_database() as direct_url:
        pk, proxy, through_proxy = a_board_behind_a_proxy(direct_url, "c", by="bob")
        env = {**cluster_env(tmp_path, require_redis()), "CHANNEL_LAYER": layer, "DATABASE_URL": through_proxy}
        workers = [Worker(env, tmp_path, name).start() for name in ("first", "second")]
        clients: list[LiveClient] = []
        try:
            clients = [await LiveClient.connect(w.url) for w in workers]
            on_first, on_second = clients
            for client in (on_first, on_second):  # the first activates (and fails); the second is forwarded
                with pytest.raises(RpcError) as refused:
                    await client.call("board", "c", "toggle", id=pk, timeout=30)
                assert (refused.value.code, str(refused.value)) == (
                    "unavailable",
                    "unavailable: board/c is unavailable: its on_activate failed",
                )
            await on_second.send({"type": "state:sub", "actor": "board", "actorId": "c"})
            error = await on_second.wait_for(lambda f: f.get("type") == "error", timeout=30)
            assert (error["code"], error["ref"]["type"]) == ("unavailable", "state:sub")

            proxy.up()
            assert await on_second.call("board", "c", "toggle", id=pk, timeout=30) is True
            assert await on_first.call("board", "c", "toggle", id=pk, timeout=30) is False
            rows = [{"id": pk, "text": "existing", "done": False, "by": "bob"}]
            for client in clients:
                assert (await client.subscribe_state("board", "c"))["state"] == {"items": rows}
            assert any("board.on_activate raised" in w.log() for w in workers)
        finally:
            for client in clients:
                await client.close()
            for worker in workers:
                worker.stop()
            proxy.down()
