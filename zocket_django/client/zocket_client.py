"""``ZocketClient``: the public face of one connection to a zocket server."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Self

from .base import Callback, ConnectionStatus, NamedActor, Unsubscribe
from .errors import ZocketConnectionError, ZocketRefused
from .handles import ActorHandle
from .supervisor import Supervisor


class ZocketClient(Supervisor):
    """A connection to a zocket server, shared by every actor handle.

    Use ``async with ZocketClient(url) as client`` or ``connect()``/``close()``.
    ``connect()`` keeps trying (with backoff) until ``connect_timeout``; once
    connected, a dropped socket is reopened in the background, pending calls
    fail with :class:`ZocketRpcDisconnected`, and every active subscription is
    sent again. A socket the server closes with 4401 or 4403 is not reopened:
    see :class:`ZocketRefused`.
    """

    # -- public ----------------------------------------------------------------

    @property
    def status(self) -> ConnectionStatus:
        return self._status

    @property
    def connected(self) -> bool:
        return self._conn is not None

    @property
    def closed(self) -> bool:
        """True after ``close()`` or after reconnection was given up."""
        return self._closed

    @property
    def close_reason(self) -> str | None:
        """Why the client closed (``client closed``, why it gave up, or the server's refusal)."""
        return self._close_reason

    @property
    def refusal(self) -> ZocketRefused | None:
        """The server's refusal (close code 4401 or 4403) that closed the client, if that is why."""
        return self._refusal

    @property
    def client_id(self) -> str | None:
        """The id from the current connection's ``welcome`` (None while disconnected)."""
        return self._conn.client_id if self._conn else None

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def connect(self) -> None:
        """Open the connection and wait for the server's ``welcome``.

        Retries with backoff until ``connect_timeout``; raises
        :class:`ZocketConnectionError` (and closes the client) if that fails,
        :class:`ZocketRefused` at once if the server refuses the credentials.
        """
        if self._closed:
            raise ZocketConnectionError(self._close_reason or "client is closed")
        if self._supervisor is None:
            self._supervisor = asyncio.create_task(self._run(), name=f"zocket-client {self.url}")
        try:
            async with asyncio.timeout(self.connect_timeout):
                await self._wait_connected()
        except TimeoutError:
            self._close_reason = f"could not connect to {self.url} within {self.connect_timeout}s"
            await self.close()
            raise ZocketConnectionError(self._close_reason) from None
        except ZocketConnectionError:
            await self.close()
            raise

    async def close(self) -> None:
        """Close the socket politely and stop; idempotent. Pending calls fail."""
        self._closed = True
        self._close_reason = self._close_reason or "client closed"
        conn = self._conn
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.ws.close()
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None and supervisor is not asyncio.current_task():
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await supervisor
        self._shutdown(self._close_reason)
        current = asyncio.current_task()
        for task in list(self._background):
            if task is not current:
                task.cancel()

    def actor(self, actor: str | type[NamedActor], actor_id: str) -> ActorHandle:
        """The handle of one actor instance (the same object for the same pair).

        ``actor`` is the wire name or a class with a ``name`` attribute, such as
        the server's ``Actor`` subclasses (the server runtime is not imported).
        """
        name = actor if isinstance(actor, str) else getattr(actor, "name", None)
        if not isinstance(name, str) or not name:
            raise TypeError("actor must be a name or a class with a non-empty 'name' attribute")
        if not isinstance(actor_id, str):
            raise TypeError("actor_id must be a string")
        key = (name, actor_id)
        handle = self._handles.get(key)
        if handle is None:
            actor_class = None if isinstance(actor, str) else actor
            handle = self._handles[key] = ActorHandle(self, name, actor_id, actor_class)
        return handle

    def on_status(self, callback: Callback) -> Unsubscribe:
        """Call ``callback(status)`` on every status change."""
        return self._add_listener(self._status_listeners, callback)

    def on_error(self, callback: Callback) -> Unsubscribe:
        """Call ``callback(ZocketRpcError)`` for every server ``error`` frame."""
        return self._add_listener(self._error_listeners, callback)
