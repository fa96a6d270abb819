"""pytest integration, registered through the ``pytest11`` entry point: users write no conftest.

With zocket-django installed, every test of the project gets, as Django's own
test cases give every test a clean database:

- an async test marked ``django_db`` runs as ``django_db(transaction=True)``:
  pytest-asyncio runs it on the main thread, where pytest-django's
  transaction lives, while the async ORM, the server's auth and zocket's saves
  run in worker threads on connections of their own; their writes would
  neither be seen by the test's transaction nor rolled back with it (a user
  created in one test would still exist in the next). Django's own test
  runner has no such split: see ``ZocketTestMixin``;
- after the test, on the test's own event loop, ``reset_actors()``: nothing
  stays hot (durable actors are saved while the database is still reachable);
- after the test's database teardown, when the test had database access,
  ``clear_snapshots()``: no snapshot is left for the next test, whatever the
  test's mark (``django_db``, ``django_db(transaction=True)``) or order.

A test without database access never touches the database through zocket
(the consumer skips Channels' per-frame and disconnect connection hops), so it
never fails with "Database access not allowed" because a socket closed.

It needs pytest-django and pytest-asyncio (``asyncio_mode = "auto"``, or
``@pytest.mark.asyncio`` on each test); without them it does nothing.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncIterator, Generator
from typing import Any

import pytest

#: The arguments of pytest-django's ``django_db`` mark, in order.
DJANGO_DB_ARGS = ("transaction", "reset_sequences", "databases", "serialized_rollback", "available_apps")
#: pytest-django fixtures that give a test database access.
DB_FIXTURES = frozenset(
    {"db", "transactional_db", "django_db_reset_sequences", "django_db_serialized_rollback", "live_server"}
)


def uses_database(item: pytest.Item) -> bool:
    """Whether the test may use the database (a ``django_db`` mark or one of pytest-django's fixtures)."""
    fixtures = getattr(item, "fixturenames", ())
    return item.get_closest_marker("django_db") is not None or not DB_FIXTURES.isdisjoint(fixtures)


def _django_ready() -> bool:
    try:
        from django.apps import apps
    except ImportError:
        return False
    return apps.ready and apps.is_installed("zocket_django")


try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - the plugin then only clears snapshots
    pytest_asyncio = None  # type: ignore[assignment]
else:

    @pytest_asyncio.fixture(autouse=True)
    async def _zocket_fresh_actors(request: pytest.FixtureRequest) -> AsyncIterator[None]:
        """Stop this test's node after it: nothing hot in the next test."""
        blocker = request.getfixturevalue("django_db_blocker") if uses_database(request.node) else None
        yield
        if not _django_ready():
            return
        from .testing import reset_actors

        with blocker.unblock() if blocker is not None else contextlib.nullcontext():
            await reset_actors()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Async tests marked ``django_db`` become transactional (see the module's docstring)."""
    for item in items:
        marker = item.get_closest_marker("django_db")
        if marker is None or not inspect.iscoroutinefunction(getattr(item, "obj", None)):
            continue
        options = {**dict(zip(DJANGO_DB_ARGS, marker.args, strict=False)), **marker.kwargs}
        if not options.get("transaction"):
            item.add_marker(pytest.mark.django_db(**{**options, "transaction": True}), append=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, Any, Any]:
    """After every fixture's teardown (the database's too), delete what zocket saved."""
    result = yield
    if uses_database(item) and _django_ready():
        from pytest_django.plugin import blocking_manager_key

        from .testing import clear_snapshots

        blocker = item.config.stash.get(blocking_manager_key, None)
        if blocker is not None:
            with blocker.unblock():
                clear_snapshots()
    return result
