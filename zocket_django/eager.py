"""Start a coroutine at once, and give it a task of its own only if it has to wait.

Python 3.12's eager tasks, for the one place that needs them on 3.11: an RPC
to an idle instance. Its step (the handler, the patch, the answer) usually
finishes without ever waiting, and a task per call cost a ``create_task``,
a turn of the event loop and the task's own bookkeeping, for nothing
(``bench --profile rpc``). ``start`` runs the coroutine in the caller's turn,
in a copy of the caller's context (as ``create_task`` would have used); if
the coroutine waits, what remains of it goes on in a task running in that
same context, so context variables set before the wait are still there.

Unlike 3.12's eager tasks, ``asyncio.current_task()`` is the caller's task
until the first wait: code that needs the task running the coroutine (a
deadline that cancels it) must take it from ``start``'s return value.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any


def start(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None] | None:
    """Run ``coro`` now until it finishes (``None``) or waits (the task that finishes it).

    An exception raised before the first wait propagates to the caller.
    """
    context = contextvars.copy_context()
    try:
        waiting_on = context.run(coro.send, None)
    except StopIteration:
        return None
    return asyncio.get_running_loop().create_task(_rest(coro, waiting_on), context=context)


async def _rest(coro: Coroutine[Any, Any, None], waiting_on: Any) -> None:
    await _Resume(coro, waiting_on)


class _Resume:
    """Awaitable that goes on with a coroutine already started: ``yield from`` after its first step."""

    __slots__ = ("coro", "waiting_on")

    def __init__(self, coro: Coroutine[Any, Any, None], waiting_on: Any) -> None:
        self.coro = coro
        self.waiting_on = waiting_on

    def __await__(self) -> Generator[Any, Any, None]:
        coro, waiting_on = self.coro, self.waiting_on
        self.waiting_on = None
        while True:
            try:
                # The task sees what the coroutine waits on (a future, or None to yield a turn).
                sent = yield waiting_on
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # cancellation, or the future's exception: into the coroutine
                try:
                    waiting_on = coro.throw(exc)
                except StopIteration:
                    return
            else:
                try:
                    waiting_on = coro.send(sent)
                except StopIteration:
                    return


async def before_first_wait(step: Awaitable[None], then: Callable[[], Awaitable[None]]) -> None:
    """Await ``step``; the first time it would wait for anything, await ``then()`` first.

    For a patch held behind a queued step (``coalesce``): the steps that run
    back to back without waiting share one frame, and one that waits (for the
    database, a thread, a timer) does not keep the answers before it waiting
    too. ``step`` goes on in the same task and context, as a plain ``await``.
    """
    if not isinstance(step, Coroutine):
        await then()
        await step
        return
    try:
        waiting_on = step.send(None)
    except StopIteration:
        return
    try:
        await then()
    except BaseException as exc:  # cancelled meanwhile (the step's deadline): the step is told, as it would be
        try:
            waiting_on = step.throw(exc)
        except StopIteration:
            return
    await _Resume(step, waiting_on)
