"""Calls of one connection on their way to an instance: past a bound, its socket is not read.

A connection that sends calls faster than they are answered (a flood of calls
that each activate an instance, every one a database read) would otherwise
fill the instances' queues, the database threads' queue and the event loop
with its frames, and every other connection's frame would wait behind them.
Past ``MAX_CALLS_IN_FLIGHT`` unanswered calls the consumer stops reading the
socket until answers come back: the flooding socket waits for its own calls,
everyone else's frames go first, and nothing is refused.
"""

from __future__ import annotations

import asyncio
import contextlib

from .protocol import RPC_RESULT_PREFIX


class InFlight:
    """Unanswered calls of one connection, and the wait for room under ``limit``."""

    __slots__ = ("_room", "count", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0
        self._room: asyncio.Event | None = None

    def sent(self) -> None:
        """A call went on to its instance (its answer will come back through the socket's ``send``)."""
        self.count += 1

    def answered(self, frame: str) -> None:
        """A frame on its way to the socket: one call fewer in flight if it is an ``rpc:result``."""
        if self.count and frame.startswith(RPC_RESULT_PREFIX):
            self.count -= 1
            if self._room is not None and self.count < self.limit:
                self._room.set()

    @property
    def full(self) -> bool:
        return self.count >= self.limit

    async def room(self, patience: float) -> None:
        """Wait until fewer than ``limit`` calls are unanswered, ``patience`` seconds at most.

        Every call is answered within its deadline (``call_budget``); past it
        the count is assumed wrong and starts again from zero, so a lost
        answer never stops a socket for good.
        """
        if not self.full:
            return
        self._room = room = asyncio.Event()
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(room.wait(), patience)
            if self.full:
                self.count = 0
        finally:
            self._room = None
