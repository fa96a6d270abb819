"""zocket's database hops never collide with each other on SQLite.

They run on connections of their own, in several threads; on SQLite a hop that
meets another's open transaction fails at once (the suite's test database is
the shared-cache memory database: "database table is locked"). So on SQLite
they take turns; on PostgreSQL they overlap, as before.
"""

import asyncio
import threading
import time

from django.db import connection, transaction

from zocket_django.db import close_connections_around, to_thread
from zocket_django.models import Snapshot
from zocket_django.snapshot_rows import in_db_thread, load_snapshot

BOUND = 30.0  # seconds; only ever reached when something is broken


async def test_a_snapshot_load_waits_for_another_hops_open_transaction():
    wrote, reading = threading.Event(), threading.Event()

    def write_and_hold():
        with transaction.atomic():
            Snapshot.objects.create(actor="turns", actor_id="a", state={"n": 1}, version=1)
            wrote.set()
            assert reading.wait(BOUND)
            time.sleep(0.3)  # the reader's statement now meets this open transaction (before the fix: fails)

    def announce_then_load():
        reading.set()
        return load_snapshot("turns", "a")

    writer = asyncio.ensure_future(to_thread(write_and_hold, thread_sensitive=False)())
    assert await asyncio.wait_for(asyncio.to_thread(wrote.wait, BOUND), BOUND)
    row = await asyncio.wait_for(in_db_thread(announce_then_load), BOUND)
    await writer
    if connection.vendor == "sqlite":
        assert row is not None and row[:2] == ({"n": 1}, 1)  # it ran after the commit
    else:
        assert row is None  # PostgreSQL: no wait, the uncommitted row is not seen


async def test_a_hop_nested_on_the_same_thread_is_not_blocked_by_its_own_turn():
    def outer():
        Snapshot.objects.count()  # takes the turn
        return close_connections_around(Snapshot.objects.count)  # as a thread-sensitive hop run from within one

    assert await asyncio.wait_for(to_thread(outer, thread_sensitive=False)(), BOUND) == 0
