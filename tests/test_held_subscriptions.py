"""A subscription the socket holds survives a repeat of it that cannot reach the owner.

A client resyncs by sending ``state:sub`` again. When that repeat cannot be
carried to the owner (Redis is away: nobody can say who owns the instance), the
socket must keep the subscription it had, and the snapshot it asked for is
owed: the router asks again on the housekeeping's next tick. Undoing the
subscription instead left a client that believed it subscribed with nothing
arriving, so no gap and no resync, ever (watchers froze after Redis restarts).
"""

import contextlib
from collections.abc import Iterator
from typing import Any

from zocket_django.node import current_node


@contextlib.contextmanager
def owner_unreachable(router: Any, times: int | None = None) -> Iterator[list[Any]]:
    """Redis away for the router's subscription requests: every one, or only the first ``times``."""
    real = router.request_subscription
    failed: list[Any] = []

    async def request(*args: Any, **kwargs: Any) -> None:
        if times is None or len(failed) < times:
            failed.append(args)
            raise ConnectionError("Redis is away")
        await real(*args, **kwargs)

    router.request_subscription = request
    try:
        yield failed
    finally:
        router.request_subscription = real


async def test_a_repeat_that_cannot_reach_the_owner_keeps_the_subscription_and_is_answered_later(connect):
    client = await connect()
    await client.call("counter", "held", "increment")
    _, version = await client.subscribe_state("counter", "held")
    router = current_node().router
    with owner_unreachable(router, times=1) as failures:
        await client.send_json_to({"type": "state:sub", "actor": "counter", "actorId": "held"})
        await client.ping()
        assert failures
        assert not [f for f in await client.nothing_more() if f["type"] == "error"]  # the snapshot is owed, not refused
        assert await client.call("counter", "held", "increment") == 2
        patch = await client.next_patch("counter", "held")  # still subscribed
        assert patch["version"] == version + 1
        await router.expire()  # the housekeeping's next tick asks the owner again
        snapshot = await client.expect("state:snapshot", actorId="held")
        assert (snapshot["state"], snapshot["version"]) == ({"count": 2}, version + 1)


async def test_a_first_subscription_that_cannot_reach_the_owner_is_refused_and_undone(connect):
    client = await connect()
    router = current_node().router
    with owner_unreachable(router):
        await client.send_json_to({"type": "state:sub", "actor": "counter", "actorId": "new"})
        refused = await client.expect("error", ref={"type": "state:sub", "actor": "counter", "actorId": "new"})
        assert refused["code"] == "unavailable"
    await client.call("counter", "new", "increment")
    assert not [f for f in await client.nothing_more() if f["type"] == "state:patch"]  # nothing held


async def test_a_snapshot_owed_to_a_subscription_dropped_since_is_not_asked_for(connect):
    client = await connect()
    await client.subscribe_state("counter", "gone")
    router = current_node().router
    with owner_unreachable(router):
        await client.send_json_to({"type": "state:sub", "actor": "counter", "actorId": "gone"})
        await client.ping()
    await client.send_json_to({"type": "state:unsub", "actor": "counter", "actorId": "gone"})
    await client.ping()
    await router.expire()
    assert not router.pending
    assert not [f for f in await client.nothing_more() if f["type"] == "state:snapshot"]
