"""``eager.start``: a coroutine runs at once, and in a task of its own only from its first wait."""

from __future__ import annotations

import asyncio
import contextvars

import pytest

from zocket_django import eager

var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")


async def test_a_coroutine_that_never_waits_runs_to_its_end_without_a_task():
    done = []

    async def work() -> None:
        done.append(asyncio.current_task())

    assert eager.start(work()) is None
    assert done == [asyncio.current_task()]  # ran in the caller's turn


async def test_a_coroutine_that_waits_goes_on_in_a_task_with_its_context():
    gate = asyncio.get_running_loop().create_future()
    seen = []

    async def work() -> None:
        var.set("before the wait")
        seen.append(await gate)
        seen.append(var.get())
        var.reset(var.set("after"))  # a token made in this context resets in it

    task = eager.start(work())
    assert task is not None and not task.done()
    assert var.get() == "unset"  # the caller's context is untouched
    gate.set_result("value")
    await task
    assert seen == ["value", "before the wait"]


async def test_errors_reach_the_caller_before_the_first_wait_and_the_task_after_it():
    async def fails_at_once() -> None:
        raise ValueError("at once")

    with pytest.raises(ValueError, match="at once"):
        eager.start(fails_at_once())

    async def fails_later() -> None:
        await asyncio.sleep(0)
        raise ValueError("later")

    task = eager.start(fails_later())
    assert task is not None
    with pytest.raises(ValueError, match="later"):
        await task


async def test_cancelling_the_task_cancels_what_the_coroutine_waits_for():
    stages = []

    async def work() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            stages.append("cancelled")
            raise

    task = eager.start(work())
    assert task is not None
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert stages == ["cancelled"]


async def test_a_coroutine_can_wait_many_times_and_return_exceptions_into_it():
    async def work() -> None:
        for _ in range(3):
            await asyncio.sleep(0)
        future = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(future.set_exception, KeyError("k"))
        try:
            await future
        except KeyError:
            var.set("caught")
        assert var.get() == "caught"

    task = eager.start(work())
    assert task is not None
    await task
