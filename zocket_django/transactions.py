"""A step's database transaction: a sync handler's ORM work commits with its step, or not at all.

A plain ``def`` handler (or hook) runs in a worker thread inside
``transaction.atomic`` on every configured database, and that transaction
stays open until the step has its verdict on the event loop: result encoded,
state diffed and checked and, for a write-through actor, the snapshot saved
(in the same transaction, on the same connection). Only then is it committed,
and only after the commit succeeded is anything published or answered.

When the handler raises, when the step fails after it returned, or when the
run deadline (``CALL_TIMEOUT``) passes first, the transaction is rolled back.
So a caller is never told ``timeout`` or ``handler_error`` about a write that
stays, nor given a result for one that is undone. A handler that outlives
its deadline keeps running (a thread cannot be interrupted): its caller is
answered at the deadline, its transaction rolls back when it returns, and the
instance's next step waits for that.

Async handlers are not covered: Django's async ORM methods commit on their
own. Database work that must follow the step belongs in a sync handler.

On SQLite the transaction is one of zocket's database hops (``db.to_thread``)
and takes the database's turn from its first statement to its commit
(``db.sqlite_turn``): a step that queries excludes every other zocket hop of
the process meanwhile (SQLite has one writer); steps that never query still
run side by side.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
from collections.abc import Awaitable, Callable
from contextvars import ContextVar, Token
from typing import Any

from django.db import connections, transaction

from .db import to_thread

#: The transaction of the step running in this task (``None`` outside steps).
_CURRENT: ContextVar[StepTransaction | None] = ContextVar("zocket_step_transaction", default=None)

#: Instructions to the worker thread once the handler returned.
_COMMIT, _ROLLBACK = "commit", "rollback"


class _RollBack(Exception):
    """Leaves the atomic blocks without committing."""


class StepTransaction:
    """The database transaction of one step; empty until a sync handler starts in it."""

    __slots__ = ("_after_commit", "_instructions", "_loop", "_thread", "_value")

    def __init__(self) -> None:
        self._thread: asyncio.Future[None] | None = None
        self._value: asyncio.Future[Any] | None = None
        # Made when a sync handler starts (most steps never have one).
        self._instructions: queue.SimpleQueue[Any] | None = None
        self._after_commit: list[Callable[[], None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def held(self) -> bool:
        """A sync handler's transaction is open (or closing) in a worker thread."""
        return self._thread is not None

    @property
    def running(self) -> bool:
        """The sync handler has not returned yet (its step gave up waiting: a deadline)."""
        return self._value is not None and not self._value.done()

    # -- the loop's side --------------------------------------------------------------

    def start(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Awaitable[Any]:
        """Run ``fn`` in a worker thread inside the transaction; await its return value.

        Cancelling the wait (a deadline) does not stop the thread: ``roll_back``
        makes it undo its work when ``fn`` returns.
        """
        if self._thread is not None:
            raise RuntimeError("a step runs one sync handler")
        loop = self._loop = asyncio.get_running_loop()
        self._instructions = queue.SimpleQueue()
        value = self._value = loop.create_future()
        value.add_done_callback(_retrieve)  # a timed-out step never looks at it
        self._thread = asyncio.ensure_future(_in_worker_thread(self, value, fn, args, kwargs))
        return asyncio.shield(value)

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn`` in the open transaction (the handler returned, nothing is committed yet)."""
        assert self._loop is not None and self._instructions is not None, "run() needs a sync handler's transaction"
        done: asyncio.Future[Any] = self._loop.create_future()
        self._instructions.put((fn, args, done))
        return await done

    def on_commit(self, fn: Callable[[], None]) -> None:
        """Call ``fn`` on the loop once committed; at once when no sync handler holds a transaction."""
        if self._thread is None:
            fn()
        else:
            self._after_commit.append(fn)

    async def commit(self) -> None:
        """Commit what the handler (and ``run``) did; raises when the database refused."""
        if self._thread is None or self._instructions is None:
            return
        self._instructions.put(_COMMIT)
        await self._thread
        for fn in self._after_commit:
            fn()

    def roll_back(self) -> asyncio.Future[None] | None:
        """Undo the handler's work (when it returns, if it still ``running``); the thread's end, if any."""
        if self._thread is None or self._instructions is None:
            return None
        self._instructions.put(_ROLLBACK)
        return self._thread

    # -- the worker thread's side ----------------------------------------------------

    def _body(self, value: asyncio.Future[Any], fn: Callable[..., Any], args: Any, kwargs: Any) -> None:
        handed = False

        def hand(future: asyncio.Future[Any], result: Any = None, error: BaseException | None = None) -> None:
            assert self._loop is not None
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                self._loop.call_soon_threadsafe(_settle, future, result, error)

        try:
            with contextlib.ExitStack() as atomics:
                for alias in connections:
                    atomics.enter_context(transaction.atomic(using=alias))
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:
                    handed = True
                    hand(value, error=exc)
                    raise _RollBack from None
                handed = True
                hand(value, result)
                assert self._instructions is not None
                while (instruction := self._instructions.get()) != _COMMIT:
                    if instruction == _ROLLBACK:
                        raise _RollBack
                    work, work_args, done = instruction
                    try:
                        hand(done, work(*work_args))
                    except Exception as exc:
                        hand(done, error=exc)
        except _RollBack:
            return
        except BaseException as exc:
            if handed:
                raise  # the commit (or the rollback) failed: ``commit`` raises it
            hand(value, error=exc)  # the transaction could not even begin (database down)


def _hold(txn: StepTransaction, value: asyncio.Future[Any], fn: Callable[..., Any], args: Any, kwargs: Any) -> None:
    txn._body(value, fn, args, kwargs)


#: The thread pool, not Django's one sync thread: instances run their sync handlers in parallel.
_in_worker_thread = to_thread(_hold, thread_sensitive=False)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


# -- the current step --------------------------------------------------------------------


def begin() -> tuple[StepTransaction, Token[StepTransaction | None]]:
    """A transaction for the step about to run in this task; pass the token to ``end``."""
    txn = StepTransaction()
    return txn, _CURRENT.set(txn)


def end(token: Token[StepTransaction | None]) -> None:
    _CURRENT.reset(token)


def current() -> StepTransaction | None:
    """The running step's transaction, ``None`` outside a step."""
    return _CURRENT.get()


def held() -> StepTransaction | None:
    """The running step's transaction if a sync handler holds it open, else ``None``."""
    txn = _CURRENT.get()
    return txn if txn is not None and txn.held else None


def on_commit(fn: Callable[[], None]) -> None:
    """Call ``fn`` once the running step's database work is committed (at once if none is held)."""
    txn = held()
    if txn is None:
        fn()
    else:
        txn.on_commit(fn)
