"""The frames on their way to one socket, never more than ``MAX_OUTPUT_BYTES`` of them.

Every frame for a socket (answers, patches, events, the consumer's own errors)
goes through its :class:`Output`. ``push`` never waits and never raises, so a
publish loop over many sockets is never held up, nor broken, by one of them:
a socket that is closing simply gets nothing more, and a socket whose peer
does not read is cut off once the bytes waiting for it pass the limit, instead
of growing the process without bound.

Under daphne the frame is written to the transport at once and the bytes
waiting are Twisted's write buffer (see ``transport.py``); under any other
server the frames wait in a queue of our own that one task hands to ASGI
``send``, and the bytes waiting are that queue's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from .transport import DaphneSocket, past_sessions

log = logging.getLogger("zocket_django")

Send = Callable[[dict[str, Any]], Awaitable[None]]


class Output:
    """One socket's outgoing frames, bounded in bytes.

    ``overflow(pending)`` is called once, when the bytes waiting pass ``limit``;
    from then on the output is closed and takes nothing more.
    """

    def __init__(self, send: Send, socket: DaphneSocket | None, limit: int, overflow: Callable[[int], None]) -> None:
        self._send = send
        self._send_frame = past_sessions(send)
        self.socket = socket
        self.limit = limit
        self._overflow = overflow
        self.closed = False
        self._queue: deque[dict[str, Any]] = deque()
        self._queued = 0  # characters of the text frames in _queue
        self._wake: asyncio.Event | None = None
        self._writer: asyncio.Task[None] | None = None

    def pending(self) -> int:
        """Bytes handed over but not yet taken by the network (characters, when queued here)."""
        return self.socket.buffered() if self.socket is not None else self._queued

    def push(self, text: str) -> None:
        """Send one text frame, without waiting; dropped once the socket closes."""
        if self.closed:
            return
        socket = self.socket
        if socket is not None:
            try:
                socket.write(text)  # dropped there if the socket is closing
            except Exception:  # autobahn or the transport refused it: never raise to the publisher
                return
        else:
            self._queue.append({"type": "websocket.send", "text": text})
            self._queued += len(text)
            self._start_writer()
        pending = self.pending()
        if pending > self.limit:
            self.closed = True
            self._queue.clear()
            self._queued = 0
            self._overflow(pending)

    async def send(self, message: dict[str, Any]) -> None:
        """An ASGI message of the consumer's own (accept, close), after the frames already pushed."""
        if self.socket is not None or (not self._queue and self._writer is None):
            await self._send(message)
            return
        self._queue.append(message)
        self._start_writer()

    def _start_writer(self) -> None:
        if self._writer is None:
            self._wake = asyncio.Event()
            self._writer = asyncio.get_running_loop().create_task(self._write())
        assert self._wake is not None
        self._wake.set()

    async def _write(self) -> None:
        """Hand queued messages to ASGI ``send`` in order (servers other than daphne may make it wait)."""
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                message = self._queue.popleft()
                if message["type"] == "websocket.send":
                    self._queued -= len(message["text"])
                try:
                    frame = message["type"] == "websocket.send"
                    await (self._send_frame if frame else self._send)(message)
                except asyncio.CancelledError:
                    raise
                except Exception:  # the server refuses sends on a closed socket
                    log.debug("zocket: send failed; dropping the rest", exc_info=True)
                    self.closed = True
                    self._queue.clear()
                    self._queued = 0

    async def stop(self) -> None:
        """The consumer is done: nothing more is sent, the writer (if any) ends."""
        self.closed = True
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
