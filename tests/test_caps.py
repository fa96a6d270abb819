"""Caps a production deployment expects: what one connection, one user and one worker may hold.

Each refusal answers the request it refuses with ``overloaded`` and names the
setting; what was refused changes nothing (no instance activated).
"""

import asyncio

import pytest

from zocket_django import hot_actors
from zocket_django.node import current_node
from zocket_django.testing import ZocketCommunicator

pytestmark = pytest.mark.django_db(transaction=True)


async def until(condition, timeout: float = 5.0) -> None:
    """Wait (bounded) for ``condition()`` to hold."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def test_instances_per_connection(connect, settings):
    settings.ZOCKET = {"MAX_INSTANCES_PER_CONNECTION": 2}
    client = await connect()
    await client.call("lab", "a", "noop")
    await client.subscribe_state("lab", "b")
    await client.call("lab", "a", "noop")  # the same instances again: not counted twice
    result = await client.call_raw("lab", "c", "noop")
    assert result["code"] == "overloaded" and "MAX_INSTANCES_PER_CONNECTION" in result["error"]
    await client.send_json_to({"type": "event:sub", "actor": "lab", "actorId": "d"})
    error = await client.expect("error")
    assert error["code"] == "overloaded" and error["ref"] == {"type": "event:sub", "actor": "lab", "actorId": "d"}
    assert hot_actors.get("lab", "c") is None and hot_actors.get("lab", "d") is None
    other = await connect()
    assert await other.call("lab", "c", "noop") == 0  # another connection has its own count


async def test_instances_per_user_over_all_their_connections(connect, settings, alice):
    settings.ZOCKET = {"MAX_INSTANCES_PER_USER": 2}
    first = await connect(user=alice)
    second = await connect(user=alice)
    await first.call("lab", "a", "noop")
    await second.call("lab", "a", "noop")  # used by both: one instance
    await second.call("lab", "b", "noop")
    result = await first.call_raw("lab", "c", "noop")
    assert result["code"] == "overloaded" and "MAX_INSTANCES_PER_USER" in result["error"]
    assert await (await connect()).call("lab", "c", "noop") == 0  # anonymous: not this user's count
    await second.disconnect()  # gives back b (a is still used by the first)
    await until(lambda: len(current_node().quotas.instances[str(alice.pk)]) == 1)
    assert await first.call("lab", "c", "noop") == 0


async def test_connections_per_user(connect, settings, alice):
    settings.ZOCKET = {"MAX_CONNECTIONS_PER_USER": 2}
    first = await connect(user=alice)
    await connect(user=alice)
    refused = ZocketCommunicator(user=alice)
    assert await refused.connect() == (False, 4429)
    assert refused.refusal["code"] == "overloaded" and "MAX_CONNECTIONS_PER_USER" in refused.refusal["error"]
    await connect()  # anonymous sockets are not this user's
    await first.disconnect()
    await until(lambda: current_node().quotas.connections[str(alice.pk)] == 1)
    await connect(user=alice)


async def test_calls_per_second_per_user(connect, settings, alice):
    settings.ZOCKET = {"USER_CALL_RATE": 2, "USER_CALL_BURST": 3}
    first = await connect(user=alice)
    second = await connect(user=alice)
    for client in (first, second, first):
        assert await client.call("lab", "r", "noop") == 0
    result = await second.call_raw("lab", "r", "noop")
    assert result["code"] == "overloaded" and "USER_CALL_RATE" in result["error"]
    anonymous = await connect()
    assert await anonymous.call("lab", "r", "noop") == 0
    await asyncio.sleep(0.6)  # one call's worth back
    assert await second.call("lab", "r", "noop") == 0


async def test_hot_instances_per_worker_evict_the_longest_idle_first(connect, settings):
    settings.ZOCKET = {"MAX_HOT_INSTANCES": 2}
    holder = await connect()
    await holder.call("lab", "x", "noop")
    await holder.call("lab", "y", "noop")
    client = await connect()
    # Both hot instances have a connection: nothing can go, the new one is refused.
    result = await client.call_raw("lab", "z", "noop")
    assert result["code"] == "overloaded" and "MAX_HOT_INSTANCES" in result["error"]
    await client.send_json_to({"type": "state:sub", "actor": "lab", "actorId": "z"})
    error = await client.expect("error")
    assert error["code"] == "overloaded" and error["ref"] == {"type": "state:sub", "actor": "lab", "actorId": "z"}
    assert hot_actors.get("lab", "z") is None
    await holder.disconnect()
    runtime = current_node().runtime
    await until(lambda: list(runtime.idle) == [("lab", "x"), ("lab", "y")])
    assert await client.call("lab", "z", "noop") == 0  # x, idle the longest, made room
    await until(lambda: set(runtime.instances) == {("lab", "y"), ("lab", "z")})
    assert await client.call("lab", "w", "noop") == 0
    assert set(runtime.instances) == {("lab", "z"), ("lab", "w")}
