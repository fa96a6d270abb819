import os

import pytest

from zocket_django.testing import ZocketCommunicator, reset_actors


@pytest.fixture(autouse=True)
async def fresh_actors():
    """Every test starts with no hot actor and a fresh node."""
    yield
    await reset_actors()


@pytest.fixture
def connect():
    """``client = await connect()``: a connected ZocketCommunicator, closed after the test."""
    opened: list[ZocketCommunicator] = []

    async def open_one(**kwargs) -> ZocketCommunicator:
        client = ZocketCommunicator(**kwargs)
        connected, detail = await client.connect()
        assert connected, detail
        opened.append(client)
        return client

    yield open_one


@pytest.fixture(scope="session")
def in_ci() -> bool:
    return os.environ.get("CI") == "true"
