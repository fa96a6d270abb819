"""Django's sync code (the ORM, user checks) off the event loop, as Django runs a view.

Every thread hop of zocket_django goes through ``to_thread``: handlers, access
checks, authenticators, saves. Connections that broke or outlived
``CONN_MAX_AGE`` are dropped before and after the call, inside the worker's own
context (where Django keeps its connections under asgiref's ``sync_to_async``).

On SQLite every hop takes the database's turn (``sqlite_turn``) from its
first statement to its end.

Snapshot loads and saves get threads of their own (``database_threads``):
on Django's one thread-sensitive thread they would queue in front of every
socket's authentication (Channels loads sessions there), and a burst of
activations would stall new handshakes for minutes.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.db import close_old_connections, connections

T = TypeVar("T")


def close_connections_around(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call ``fn`` between two ``close_old_connections()``, as Django's request cycle does, in its SQLite turn."""
    close_old_connections()
    try:
        with sqlite_turn():
            return fn(*args, **kwargs)
    finally:
        close_old_connections()


#: Per SQLite database alias: held by the one hop of this process that is using it.
_sqlite_turns: dict[str, threading.RLock] = {}


@contextlib.contextmanager
def sqlite_turn() -> Iterator[None]:
    """Within: this thread's first statement on a SQLite database waits for that database's turn, kept to the end.

    zocket's hops run on connections of their own, in several threads (a
    step's transaction, snapshot loads and saves, session and token reads),
    and SQLite cannot have them overlap. A transaction that has read fails at
    once ("database is locked") when it wants to write while another holds the
    write lock; on a shared-cache database (the in-memory test database) any
    statement on a table another connection locked in an open transaction
    fails at once ("database table is locked"): no busy timeout applies. So on
    SQLite zocket's hops take turns, each from its first statement to its
    end (a sync step's transaction until its commit). Hops that never query
    run side by side; the lock is re-entrant, for a hop nested in one on the
    same thread. Other databases (PostgreSQL) wait for row locks themselves:
    nothing is wrapped.
    """
    turns: list[_Turn] = []
    with contextlib.ExitStack() as wrappers:
        for alias in connections:
            connection = connections[alias]
            if connection.vendor == "sqlite":
                turns.append(_Turn(_sqlite_turns.setdefault(alias, threading.RLock())))
                wrappers.enter_context(connection.execute_wrapper(turns[-1]))
        try:
            yield
        finally:
            for turn in turns:
                turn.end()


class _Turn:
    """An execute wrapper: waits for the database's turn before the hop's first statement."""

    __slots__ = ("held", "lock")

    def __init__(self, lock: threading.RLock) -> None:
        self.lock = lock
        self.held = False

    def __call__(self, execute: Callable[..., Any], sql: Any, params: Any, many: bool, context: Any) -> Any:
        # A deferred BEGIN (Django's ``atomic`` on SQLite) locks nothing: a step that never queries needs no turn.
        if not self.held and sql != "BEGIN":
            self.lock.acquire()
            self.held = True
        return execute(sql, params, many, context)

    def end(self) -> None:
        if self.held:
            self.held = False
            self.lock.release()


def to_thread(
    fn: Callable[..., T], *, thread_sensitive: bool = True, executor: ThreadPoolExecutor | None = None
) -> Callable[..., Awaitable[T]]:
    """``fn`` as a coroutine function that runs it in a worker thread.

    ``thread_sensitive`` (the default) shares Django's one sync thread;
    ``False`` uses the thread pool, so calls run in parallel; ``executor``
    runs them in those threads.
    """
    if executor is not None:
        thread_sensitive = False
    return sync_to_async(
        functools.partial(close_connections_around, fn), thread_sensitive=thread_sensitive, executor=executor
    )


@functools.lru_cache(maxsize=8)
def database_threads(name: str, count: int) -> ThreadPoolExecutor:
    """``count`` threads named ``name`` kept for zocket's own database work, each with its own connection."""
    return ThreadPoolExecutor(max_workers=count, thread_name_prefix=name)
