import contextlib
import logging
from pathlib import Path

import pytest

from tests.live import IN_CI, postgres_problem, postgres_url
from zocket_django.testing import ZocketCommunicator, reset_actors

_POSTGRES_PROBLEM: str | None = None


def pytest_configure(config):
    global _POSTGRES_PROBLEM
    url = postgres_url()
    if url is not None:
        _POSTGRES_PROBLEM = postgres_problem(url)
        if _POSTGRES_PROBLEM is not None and IN_CI:
            pytest.exit(f"DATABASE_URL names PostgreSQL, which is not available: {_POSTGRES_PROBLEM}", returncode=1)


def pytest_collection_modifyitems(config, items):
    url = postgres_url()
    for item in items:
        if url is not None and _POSTGRES_PROBLEM is not None:
            # Every test uses the database (the demo's actors persist), so none can run.
            item.add_marker(pytest.mark.skip(reason=f"PostgreSQL is not available: {_POSTGRES_PROBLEM}"))
        elif url is None and item.get_closest_marker("postgres"):
            item.add_marker(
                pytest.mark.skip(reason="needs DATABASE_URL=postgres://... (scripts/test runs these under CI=true)")
            )


@pytest.fixture(scope="session", autouse=True)
def _close_worker_connections(django_db_setup, django_db_blocker):
    """Django's async ORM (``acreate``...) leaves a connection open in its worker thread:
    close it before the test database is dropped (PostgreSQL waits 5 s for it otherwise)."""
    yield
    from asgiref.sync import SyncToAsync
    from django.db import connections

    with django_db_blocker.unblock():
        SyncToAsync.single_thread_executor.submit(connections.close_all).result(timeout=10)


@pytest.fixture(autouse=True)
def _database(transactional_db):
    """Every test may touch the database: durable actors (the demo's counter and chat) save through the ORM.

    Transactional, because saves happen in worker threads on their own
    connections; the tables are emptied after each test. Tests that never
    touch the database (no durable actor) pay nothing but the flush.
    """


@pytest.fixture(autouse=True)
async def fresh_actors(_database):
    """Every test starts with no hot actor and a fresh node (deactivated before the tables are emptied)."""
    yield
    await reset_actors()


@pytest.fixture
async def connect():
    """``client = await connect()``: a connected ZocketCommunicator, closed after the test."""
    opened: list[ZocketCommunicator] = []

    async def open_one(**kwargs) -> ZocketCommunicator:
        client = ZocketCommunicator(**kwargs)
        connected, detail = await client.connect()
        assert connected, detail
        opened.append(client)
        return client

    yield open_one
    for client in opened:
        with contextlib.suppress(Exception):  # closed by the test already, or refused
            await client.disconnect()


@pytest.fixture
async def alice():
    """A user with a password (the session auth hash changes with it: a password change revokes)."""
    from django.contrib.auth.models import User

    user = User(username="alice")
    user.set_password("old password")
    await user.asave()
    return user


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory) -> Path:
    """A migrated SQLite file for live servers, made once: give each server a copy (``tests.live.copy_of``)."""
    from tests.live import migrate, single_env

    template = tmp_path_factory.mktemp("migrated") / "template.sqlite3"
    migrate(single_env(template))
    return template



class _RecorderMismatches(logging.Handler):
    """Collects what VERIFY_PATCHES (on in tests/settings.py) found wrong with a recorded step."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.found: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg.startswith(("zocket: recorded patches", "zocket: recorded changes")):
            self.found.append(record.getMessage())


@pytest.fixture(autouse=True)
def _recorded_patches_are_right():
    """Every step of every test is recorded and checked: a mismatch fails the test that made it."""
    handler = _RecorderMismatches()
    logger = logging.getLogger("zocket_django")
    logger.addHandler(handler)
    yield
    logger.removeHandler(handler)
    assert not handler.found, handler.found
