"""The consumer's limits on one connection: what it is sent, and how it is cut off.

``ZocketConsumer`` inherits this: every frame leaves through the bounded
``output.Output`` (Channels' ``send`` and ``base_send`` included, so accept and
close stay in order after the frames pushed before them), and a peer that
breaks a limit is closed here, with a code that says which: 4008 when it lets
more than ``MAX_OUTPUT_BYTES`` wait unread, 4009 for a frame over
``MAX_FRAME_BYTES``. A peer sending over its budget is not closed, only slowed
down (the consumer pauses reading); this warns about it, once per interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .caller import Caller
    from .conf import ZocketSettings
    from .inflight import InFlight
    from .output import Output
    from .transport import DaphneSocket

log = logging.getLogger("zocket_django.consumer")

#: Close code of a connection that sent a frame over ``MAX_FRAME_BYTES``
#: (1009 would say so in the standard range, but servers let applications send only 1000 and 3000-4999).
CLOSE_TOO_LARGE = 4009
#: Close code of a connection that let more than ``MAX_OUTPUT_BYTES`` wait unread.
CLOSE_TOO_SLOW = 4008
#: Seconds between two warnings about one connection sending over its budget.
THROTTLE_WARNING_INTERVAL = 10.0


class ConsumerOutput:
    """Output and limit enforcement of ``consumer.ZocketConsumer`` (a mixin: it runs on the consumer)."""

    if TYPE_CHECKING:  # the consumer's, and Channels'
        client_id: str
        caller: Caller
        socket: DaphneSocket | None
        output: Output
        inflight: InFlight
        limits: ZocketSettings
        close: Callable[..., Awaitable[None]]

        def _detach(self) -> None: ...

    _waits = 0  # frames slowed down since the last warning
    _warned_at = -THROTTLE_WARNING_INTERVAL

    def push(self, frame: str) -> None:
        """Send one encoded frame without waiting (see ``output.Output``)."""
        self.output.push(frame)

    async def send(self, text_data: str | None = None, bytes_data: bytes | None = None, close: bool = False) -> None:
        # Channels' API, routed through the bounded output (never waits, never raises).
        # Answers of the node come this way: one call fewer in flight.
        if text_data is not None:
            self.inflight.answered(text_data)
            self.output.push(text_data)
        if close:
            await self.close()

    async def base_send(self, message: dict[str, Any]) -> None:
        # accept and close (Channels' accept() and close() end up here), in order after pushed frames.
        await self.output.send(message)

    def _overflowed(self, pending: int) -> None:
        """The peer does not read: cut it off and free what it holds."""
        log.warning(
            "zocket: %s has %d bytes waiting to be sent (over MAX_OUTPUT_BYTES); closing with %d",
            self.client_id,
            pending,
            CLOSE_TOO_SLOW,
            extra={"zocket": {"client": self.client_id, "user": self.caller.user_id, "pending": pending}},
        )
        self._detach()
        if self.socket is not None:
            # The close frame waits behind the unread bytes; autobahn drops the
            # connection (and the buffer) when the peer does not answer it in time.
            with contextlib.suppress(Exception):
                self.socket.protocol.sendClose(code=CLOSE_TOO_SLOW, reason="too slow: not reading")
        else:
            self._closing = asyncio.ensure_future(self.output.send({"type": "websocket.close", "code": CLOSE_TOO_SLOW}))

    async def _too_large(self, limit: int) -> None:
        caller = getattr(self, "caller", None)
        log.warning(
            "zocket: frame over %d bytes from %s; closing with %d",
            limit,
            getattr(self, "client_id", "?"),
            CLOSE_TOO_LARGE,
            extra={"zocket": {"client": getattr(self, "client_id", None), "user": caller and caller.user_id}},
        )
        self._detach()
        await self.close(code=CLOSE_TOO_LARGE, reason=f"frame over {limit} bytes")

    async def _wait_for_answers(self) -> None:
        """``MAX_CALLS_IN_FLIGHT`` calls unanswered: stop reading the socket until one is (``inflight``)."""
        if self.socket is not None:
            self.socket.pause_reading()
        try:
            await self.inflight.room(self.limits.call_budget)
        finally:
            if self.socket is not None:
                self.socket.resume_reading()

    def _throttled(self, wait: float) -> None:
        """A frame over the budget waits; one warning per connection per interval, not one per frame."""
        self._waits += 1
        now = time.monotonic()
        if now - self._warned_at >= THROTTLE_WARNING_INTERVAL:
            log.warning(
                "zocket: %s sends faster than its budget; %d frame(s) slowed down (reading paused)",
                self.client_id,
                self._waits,
                extra={"zocket": {"client": self.client_id, "user": self.caller.user_id, "slowed": self._waits}},
            )
            self._warned_at, self._waits = now, 0
