"""The process's mailbox: one channel-layer channel, received from and sent to in order.

Everything other workers send this process arrives on one channel; the
receive loop hands each message to the node. Everything this process sends
other workers (one message per worker, not per socket) leaves through one
ordered outbox task, so that a step never waits on Redis and order is kept (a
patch before the answer that follows it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from channels.exceptions import ChannelFull
from channels.layers import BaseChannelLayer

log = logging.getLogger(__name__)

#: How long a message for another node waits for an unreachable Redis before it is dropped.
SEND_RETRY_SECONDS = 5.0
#: How long it waits for a full channel (a stuck node must not hold up the others).
FULL_RETRY_SECONDS = 0.5
#: Messages for other nodes that may wait in the outbox; beyond, senders wait.
OUTBOX_SIZE = 10000


class Mailbox:
    """The receive loop and the outbox of one node channel."""

    def __init__(self, layer: BaseChannelLayer, channel: str, handle: Callable[[Any], Awaitable[None]]) -> None:
        self.layer = layer
        self.channel = channel
        self.handle = handle
        self._outbox: asyncio.Queue[tuple[str | None, str | None, dict[str, Any]]] = asyncio.Queue(OUTBOX_SIZE)

    def tasks(self) -> list[Coroutine[Any, Any, None]]:
        """The receive loop and the outbox sender, for the node to run."""
        return [self._receive_loop(), self._send_outbox()]

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        """Queue a message for another node's channel."""
        await self._outbox.put((channel, None, message))

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        """Queue a message for every node in ``group``."""
        await self._outbox.put((None, group, message))

    async def flush(self) -> None:
        """Wait (bounded) until the layer took what is queued."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._outbox.join(), SEND_RETRY_SECONDS)

    async def _receive_loop(self) -> None:
        failures = 0
        while True:
            try:
                message = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                # Redis restarting, a network blip: keep listening, with backoff.
                failures += 1
                log.warning("zocket: channel layer receive failed (%d); retrying", failures, exc_info=True)
                await asyncio.sleep(min(0.05 * 2**failures, 2.0))
                continue
            failures = 0
            try:
                await self.handle(message)
            except Exception:
                log.exception("zocket: could not handle %s", message.get("type") if isinstance(message, dict) else "?")

    async def _send_outbox(self) -> None:
        """Hand messages for other nodes to the layer in order, off the actors' queues.

        A full channel is retried briefly, an unreachable Redis for longer; then
        the message is dropped and logged (the requester's deadline answers
        ``unavailable``).
        """
        while True:
            channel, group, message = await self._outbox.get()
            delay, started = 0.001, time.monotonic()
            while True:
                try:
                    if group is not None:
                        await self.layer.group_send(group, message)
                    else:
                        await self.layer.send(channel, message)
                    break
                except asyncio.CancelledError:
                    raise
                except ChannelFull:
                    problem, patience = "stayed full", FULL_RETRY_SECONDS
                except Exception as exc:  # Redis restarting, network
                    problem, patience = f"is unreachable ({exc.__class__.__name__})", SEND_RETRY_SECONDS
                if time.monotonic() - started >= patience:
                    log.error("zocket: %s %s; a %s was dropped", channel or group, problem, message.get("type"))
                    break
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.2)
            self._outbox.task_done()
