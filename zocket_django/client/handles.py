"""Handles of one actor instance: calls, events and event streams."""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Self

from .base import UNSET, Callback, ClientLink, NamedActor, Unset, Unsubscribe, logger
from .connection import Connection
from .errors import ZocketError
from .live_state import LiveState


class ActorHandle:
    """One actor instance: calls, events and live state.

    ``await handle.call("add", amount=5)`` or ``await handle.add(amount=5)``.
    Method names that clash with this class's attributes (``call``, ``on``,
    ``events``, ``state``, ``name``, ``id``...) need ``call()``.
    """

    def __init__(
        self,
        client: ClientLink,
        name: str,
        actor_id: str,
        actor_class: type[NamedActor] | None = None,
    ) -> None:
        self._client = client
        self._name = name
        self._id = actor_id
        self.actor_class = actor_class
        self._listeners: dict[str, dict[int, Callback]] = {}  # no empty inner dicts
        self._streams: weakref.WeakSet[EventStream] = weakref.WeakSet()
        self.state = LiveState(client, name, actor_id)

    @property
    def name(self) -> str:
        return self._name

    @property
    def id(self) -> str:
        return self._id

    @property
    def client(self) -> ClientLink:
        return self._client

    def __repr__(self) -> str:
        return f"<ActorHandle {self._name}:{self._id}>"

    async def call(
        self,
        method: str,
        input: Any = UNSET,
        /,
        *,
        timeout: float | Unset | None = UNSET,
        **kwargs: Any,
    ) -> Any:
        """Call ``method`` and return its result; raises :class:`ZocketRpcError`.

        Input is either one positional value or keyword arguments (sent as an
        object). ``timeout`` is reserved: pass a dict to send a field of that
        name. Without input the frame carries no ``input`` at all.
        """
        if kwargs:
            if input is not UNSET:
                raise TypeError("pass the input either positionally or as keywords, not both")
            input = kwargs
        return await self._client._call(self._name, self._id, method, input, timeout)

    def __getattr__(self, method: str) -> Callable[..., Awaitable[Any]]:
        if method.startswith("_"):
            raise AttributeError(method)

        async def call_method(input: Any = UNSET, /, **kwargs: Any) -> Any:
            return await self.call(method, input, **kwargs)

        call_method.__name__ = call_method.__qualname__ = method
        return call_method

    def on(self, event: str, callback: Callback) -> Unsubscribe:
        """Call ``callback(payload)`` for each ``event``; returns the unsubscribe function.

        The first listener of the handle sends ``event:sub``, the last one
        removed sends ``event:unsub``.
        """
        first = not self._listeners
        token = next(self._client._tokens)
        self._listeners.setdefault(event, {})[token] = callback
        if first:
            self._client._send(self._frame("event:sub"))

        def unsubscribe() -> None:
            current = self._listeners.get(event)
            if current is None or current.pop(token, UNSET) is UNSET:
                return  # already removed, or dropped by the client's shutdown
            if not current:
                del self._listeners[event]
                if not self._listeners:
                    self._client._send(self._frame("event:unsub"))

        return unsubscribe

    def events(self, event: str, *, max_queue: int = 1000) -> EventStream:
        """An async iterator of ``event`` payloads, subscribed from this call on.

        Leaving the loop (or ``aclose()``, or ``async with``) unsubscribes; the
        iteration ends when the client closes. Events are not replayed: those
        emitted while the socket was down are lost. When more than ``max_queue``
        payloads are waiting the oldest are dropped (and logged). When the
        server refuses the subscription (``forbidden``, ``unavailable``,
        ``overloaded``...) or ends it, the iteration raises that
        :class:`ZocketError` once the payloads received before it are read.
        """
        stream = EventStream(self, event, max_queue)
        self._streams.add(stream)
        return stream

    # -- internals -------------------------------------------------------------

    def _frame(self, kind: str) -> dict[str, str]:
        return {"type": kind, "actor": self._name, "actorId": self._id}

    def _deliver(self, event: str, payload: Any) -> None:
        for callback in list(self._listeners.get(event, {}).values()):
            self._client._invoke(callback, payload, f"event {self._name}.{event}")

    def _restore(self, conn: Connection) -> None:
        if self._listeners:
            conn.send(self._frame("event:sub"))
        self.state._restore(conn)

    def _disconnected(self) -> None:
        self.state._disconnected()

    def _on_events_error(self, err: ZocketError) -> None:
        """The server refused (or ended) this instance's ``event:sub``: every event stream raises it."""
        for stream in list(self._streams):
            stream._fail(err)

    def _shutdown(self, reason: str) -> None:
        for stream in list(self._streams):
            stream._end()
        self._listeners.clear()
        self.state._shutdown(reason)


class EventStream:
    """Async iterator over one event's payloads (see :meth:`ActorHandle.events`)."""

    def __init__(self, handle: ActorHandle, event: str, max_queue: int) -> None:
        self.event = event
        self._items: deque[Any] = deque()
        self._max = max(1, max_queue)
        self._wakeup = asyncio.Event()
        self._ended = False
        self._error: ZocketError | None = None  # the server refused the subscription: raised, then ended
        self._dropped = 0
        # The listener holds the stream weakly so that dropping the stream
        # (e.g. `break` out of `async for`) lets __del__ unsubscribe.
        stream_ref = weakref.ref(self)

        def push(payload: Any) -> None:
            stream = stream_ref()
            if stream is not None:
                stream._push(payload)

        self._unsubscribe: Unsubscribe | None = handle.on(event, push)

    def _push(self, payload: Any) -> None:
        if len(self._items) >= self._max:
            self._items.popleft()
            self._dropped += 1
            if self._dropped == 1 or self._dropped % 1000 == 0:
                logger.warning(
                    "event stream %r is full; dropped %d payload(s)",
                    self.event,
                    self._dropped,
                )
        self._items.append(payload)
        self._wakeup.set()

    def _end(self) -> None:
        self._ended = True
        self._wakeup.set()

    def _fail(self, err: ZocketError) -> None:
        if not self._ended:
            self._error = err
            self._end()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Any:
        while not self._items:
            if self._ended:
                self._stop()
                error, self._error = self._error, None
                if error is not None:
                    raise error
                raise StopAsyncIteration
            self._wakeup.clear()
            await self._wakeup.wait()
        return self._items.popleft()

    async def aclose(self) -> None:
        """Unsubscribe and end the iteration."""
        self._end()
        self._items.clear()
        self._stop()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _stop(self) -> None:
        unsubscribe, self._unsubscribe = self._unsubscribe, None
        if unsubscribe is not None:
            unsubscribe()

    def __del__(self) -> None:
        # `break` out of `async for` drops the last reference: unsubscribe then.
        with contextlib.suppress(Exception):
            self._stop()
