"""Django's sync code (the ORM, user checks) off the event loop, as Django runs a view.

Every thread hop of zocket_django goes through ``to_thread``: handlers, access
checks, authenticators, saves. Connections that broke or outlived
``CONN_MAX_AGE`` are dropped before and after the call, inside the worker's own
context (where Django keeps its connections under asgiref's ``sync_to_async``).

Snapshot loads and saves get threads of their own (``database_threads``):
on Django's one thread-sensitive thread they would queue in front of every
socket's authentication (Channels loads sessions there), and a burst of
activations would stall new handshakes for minutes.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.db import close_old_connections

T = TypeVar("T")


def close_connections_around(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call ``fn`` between two ``close_old_connections()``, as Django's request cycle does."""
    close_old_connections()
    try:
        return fn(*args, **kwargs)
    finally:
        close_old_connections()


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
