"""The deadline of an instance's running step (``CALL_TIMEOUT``), with one timer per instance.

``asyncio.timeout`` would push a timer onto the loop's heap for every call and
cancel it (the heap is rebuilt as cancelled timers pile up). Steps of one
instance run one at a time, so one timer per instance stays armed across
steps: when it fires it cancels the step running past its deadline, or moves
itself to the running step's deadline, or lapses when no step runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any


class StepTimer:
    """Bounds the steps of one instance (``Instance.timer``), one step at a time."""

    __slots__ = ("_deadline", "_expired", "_timer", "task")

    def __init__(self) -> None:
        # The running step's deadline (loop time), watched by one timer at a time.
        self._deadline: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._expired = False
        #: The task draining the instance's queue (set by ``Instance.enqueue``): what a deadline
        #: cancels. Not ``current_task()``: a step started at once runs in its caller's task until
        #: it first waits (``eager``), and the timer only fires after that wait.
        self.task: asyncio.Task[Any] | None = None

    async def bounded(self, work: Awaitable[Any], limit: float) -> Any:
        """``await work``, cancelled after ``limit`` seconds (``TimeoutError``), like ``asyncio.timeout``."""
        loop = asyncio.get_running_loop()
        deadline = self._deadline = loop.time() + limit
        timer = self._timer
        if timer is None or timer.when() > deadline:
            if timer is not None:
                timer.cancel()
            self._timer = loop.call_at(deadline, self._watch)
        try:
            return await work
        except asyncio.CancelledError:
            if self._expired:
                raise TimeoutError from None
            raise
        finally:
            self._deadline = None
            if self._expired:  # cancelled by the timer: that was in the task running the step
                self._expired = False
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()

    def _watch(self) -> None:
        self._timer = None
        deadline, task = self._deadline, self.task
        if deadline is None or task is None or task.done():
            return  # no step runs: the next one arms a timer
        loop = asyncio.get_running_loop()
        if loop.time() >= deadline:
            self._expired = True
            task.cancel()
        else:
            self._timer = loop.call_at(deadline, self._watch)
