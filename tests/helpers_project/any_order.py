"""Copied into a temporary project by tests/test_testing.py as test_any_order.py and run in
several orders with the zocket pytest plugin: tests written the way the README says pass in any
order and in any mix of django_db, django_db(transaction=True) and no mark."""

import pytest
from django.contrib.auth.models import User

from zocket_django.testing import ZocketCallError, ZocketCommunicator


@pytest.mark.django_db
async def test_db_user_and_durable():
    user = await User.objects.acreate(username="u1")
    async with ZocketCommunicator(user=user) as client:
        assert await client.subscribe_state("counter", "main") == ({"count": 0}, 0)
        assert await client.call("counter", "main", "add", amount=5) == 5


async def test_no_db_after():
    async with ZocketCommunicator() as client:
        state, _version = await client.subscribe_state("lab", "x")
        assert state["items"] == []


@pytest.mark.django_db(transaction=True)
async def test_transactional_fresh():
    async with ZocketCommunicator() as client:
        assert await client.subscribe_state("counter", "main") == ({"count": 0}, 0)
        assert await client.call("counter", "main", "add", amount=2) == 2


@pytest.mark.django_db
async def test_plain_db_fresh():
    async with ZocketCommunicator() as client:
        assert await client.subscribe_state("counter", "main") == ({"count": 0}, 0)
        await client.call("counter", "main", "add", amount=3)


@pytest.mark.django_db
async def test_failed_activation_raises_at_once():
    from zocket_django.models import Snapshot

    await Snapshot.objects.acreate(
        actor="strict", actor_id="s", state={"count": "not a number"}, version=3, schema_version=1
    )
    async with ZocketCommunicator(timeout=30) as client:
        with pytest.raises(ZocketCallError) as err:
            await client.subscribe_state("strict", "s")
        assert err.value.code == "unavailable"


def test_sync_no_db():
    """No database mark, between tests that use it: what is checked is the plugin's setup and
    teardown around it (they must not touch the database, nor fail because a socket closed)."""


@pytest.mark.django_db
async def test_the_same_user_again():
    """Async ORM writes run in a worker thread: without the plugin's transaction they would outlive the test."""
    user = await User.objects.acreate(username="u1")
    async with ZocketCommunicator(user=user) as client:
        assert (await client.call("counter", "main", "add", amount=1)) == 1


@pytest.mark.django_db
def test_sync_test_sees_a_clean_database():
    from zocket_django.models import Snapshot

    assert not User.objects.exists()
    assert not Snapshot.objects.exists()
