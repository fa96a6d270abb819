"""A closed socket's leaves (groups to leave, owners to tell) are retried within one deadline for them all.

While Redis is away the node retries them in the background; a socket with N
subscriptions used to get a deadline per leave (N deadlines in a row, N errors
logged). Now the whole part has one: it ends after one deadline, with one error.
"""

from __future__ import annotations

import asyncio
import logging
import time

from zocket_django import node as node_module
from zocket_django.node import current_node

DEADLINE = 0.3


async def test_leaves_that_keep_failing_are_given_up_after_one_deadline_with_one_error(connect, monkeypatch, caplog):
    client = await connect()
    for actor_id in ("a", "b", "c"):
        await client.subscribe_state("counter", actor_id)
    node = current_node()
    tried: list[str] = []

    async def redis_away(*args):
        tried.append(repr(args))
        raise ConnectionError("Redis is away")

    monkeypatch.setattr(node_module, "DETACH_RETRY_SECONDS", DEADLINE)
    monkeypatch.setattr(node.fanout, "leave_group", redis_away)
    monkeypatch.setattr(node.router, "request_leave", redis_away)
    with caplog.at_level(logging.ERROR, logger="zocket_django.node"):
        started = time.monotonic()
        await client.disconnect()
        parting = list(node._background)
        assert len(parting) == 1
        await asyncio.wait_for(parting[0], timeout=10 * DEADLINE + 5)
        elapsed = time.monotonic() - started
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert "6 leave(s)" in errors[0].getMessage()  # three groups left, three owners told
    assert elapsed >= DEADLINE  # retried until the deadline, not given up at once
    assert len(set(tried)) == 6 and len(tried) >= 12  # every leave tried, and tried again
