"""The live copy of one actor's state, kept current by snapshots and versioned patches."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import jsonpatch
import jsonpointer

from .base import UNSET, Callback, ClientLink, Unset, Unsubscribe, logger
from .connection import Connection
from .errors import ZocketConnectionError, ZocketError, ZocketTimeoutError


class LiveState:
    """The local copy of one actor's state, kept in sync while anyone listens.

    ``get()`` returns ``None`` whenever the copy is not known to be current:
    before the first snapshot, while resyncing after a version gap, while
    disconnected, and when nobody is subscribed. The returned object is
    replaced (never mutated) on each change; treat it as read-only.
    """

    def __init__(self, client: ClientLink, name: str, actor_id: str) -> None:
        self._client = client
        self._name = name
        self._id = actor_id
        self._data: Any = None
        self._version: int | None = None
        self._epoch: int | None = None  # the incarnation of the copy (None: a server without epochs)
        self._stale_answers = 0
        self._has_data = False
        self._awaiting_snapshot = False
        self._listeners: dict[int, Callback | None] = {}
        self._waiters: set[asyncio.Future[Any]] = set()

    def get(self) -> Any | None:
        return self._data if self._has_data else None

    @property
    def version(self) -> int | None:
        return self._version if self._has_data else None

    @property
    def subscribed(self) -> bool:
        return bool(self._listeners)

    def subscribe(self, callback: Callback | None = None) -> Unsubscribe:
        """Keep the state live and call ``callback(state)`` on every change.

        A known state is delivered at once. The first subscriber sends
        ``state:sub``, the last one removed sends ``state:unsub``. Without a
        callback the subscription just keeps ``get()`` current.
        """
        token = next(self._client._tokens)
        self._listeners[token] = callback
        if len(self._listeners) == 1:
            self._awaiting_snapshot = True
            self._client._send(self._frame("state:sub"))
        elif callback is not None and self._has_data:
            self._client._invoke(callback, self._data, "state")

        def unsubscribe() -> None:
            if self._listeners.pop(token, UNSET) is UNSET:
                return  # already removed, or dropped by the client's shutdown
            if not self._listeners:
                self._forget()
                self._awaiting_snapshot = False
                self._client._send(self._frame("state:unsub"))

        return unsubscribe

    async def wait_for(
        self,
        predicate: Callable[[Any], bool] | None = None,
        timeout: float | Unset | None = UNSET,
    ) -> Any:
        """Wait until the live state satisfies ``predicate`` (any state if None); return it.

        Holds a subscription while waiting. Raises :class:`ZocketTimeoutError`
        after ``timeout`` (default: the client's ``rpc_timeout``), and
        :class:`ZocketRpcError` if the server refuses the subscription.
        """
        client = self._client
        if client.closed:
            raise ZocketConnectionError(client._close_reason or "client is closed")
        if timeout is UNSET:
            timeout = client.rpc_timeout
        check = predicate or (lambda _state: True)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def on_state(state: Any) -> None:
            if fut.done():
                return
            try:
                if check(state):
                    fut.set_result(state)
            except Exception as exc:  # handed to the waiter
                fut.set_exception(exc)

        self._waiters.add(fut)
        unsubscribe = self.subscribe(on_state)  # checks a known state at once
        deadline = asyncio.timeout(timeout)
        try:
            async with deadline:
                return await fut
        except TimeoutError:
            if not deadline.expired():
                raise
            raise ZocketTimeoutError(f"state of {self._name}:{self._id} did not match within {timeout}s") from None
        finally:
            self._waiters.discard(fut)
            unsubscribe()

    # -- internals -------------------------------------------------------------

    def _frame(self, kind: str) -> dict[str, str]:
        return {"type": kind, "actor": self._name, "actorId": self._id}

    def _resync_frame(self) -> dict[str, Any]:
        """``state:sub`` of a held subscription whose copy is stale: ``resync`` asks for a snapshot
        even when the server sees nothing new (a plain repeat is answered only if the state moved)."""
        return {**self._frame("state:sub"), "resync": True}

    def _forget(self) -> None:
        """Drop the copy; its version and epoch stay as the mark no older snapshot may go below."""
        self._data = None
        self._has_data = False

    def _older_than_shown(self, version: int | None, epoch: int | None) -> bool:
        """A snapshot of an earlier incarnation, or of an earlier version of this one (never shown)."""
        if epoch is None or self._epoch is None:
            return False
        if epoch != self._epoch:
            return epoch < self._epoch
        return version is not None and self._version is not None and version < self._version

    def _on_snapshot(self, state: Any, version: int | None, epoch: int | None = None) -> None:
        if not self._listeners:
            return  # late answer to a subscription we dropped: would go stale
        if self._older_than_shown(version, epoch):
            # A straggler: not shown; while waiting for a resync ask again, unless the owner keeps
            # sending it (a server clock gone backwards): then it is the state there is.
            if not self._awaiting_snapshot:
                return
            self._stale_answers += 1
            if self._stale_answers <= 3:
                self._client._send(self._resync_frame())
                return
        self._data, self._version, self._epoch, self._has_data = state, version, epoch, True
        self._awaiting_snapshot = False
        self._stale_answers = 0
        self._notify()

    def _on_patch(
        self, ops: list[dict[str, Any]], version: int | None, epoch: int | None = None, base: int | None = None
    ) -> None:
        """Apply a patch to the copy: it must apply to the copy's version (``base``, or ``version - 1``).

        ``base`` (the ``from`` of a coalesced patch) says the ops of several
        versions come at once: they apply to ``base`` and produce ``version``.
        """
        if not self._listeners or not self._has_data:
            return  # not subscribed, or a snapshot is on its way
        if epoch is not None and self._epoch is not None and epoch != self._epoch:
            if epoch > self._epoch:  # a newer incarnation: our copy is of the one before
                self._resync(f"epoch {epoch} after {self._epoch}")
            return  # an older one: a straggler of an incarnation that is gone
        if base is not None and version is not None:  # coalesced: the ops of versions base+1..version
            if base != self._version or base >= version:
                self._resync(f"versions {base}..{version} after {self._version}")
                return
        else:
            expected = None if self._version is None else self._version + 1
            if version != expected and not (self._version is None and version is not None):
                self._resync(f"version {version} after {self._version}")
                return
        try:
            new = jsonpatch.apply_patch(self._data, ops, in_place=False)
        except (
            jsonpatch.JsonPatchException,
            jsonpointer.JsonPointerException,
            TypeError,
            ValueError,
            KeyError,
            IndexError,
            AttributeError,
        ) as exc:
            self._resync(f"patch does not apply: {exc}")
            return
        self._data, self._version = new, version
        self._notify()

    def _resync(self, why: str) -> None:
        """Drop the copy and ask for a fresh snapshot (once per gap)."""
        if not self._listeners:
            return
        logger.info("resyncing %s:%s (%s)", self._name, self._id, why)
        self._forget()
        if not self._awaiting_snapshot:
            self._awaiting_snapshot = True
            self._client._send(self._resync_frame())

    def _notify(self) -> None:
        for callback in list(self._listeners.values()):
            if callback is not None:
                self._client._invoke(callback, self._data, "state")

    def _restore(self, conn: Connection) -> None:
        if self._listeners:
            self._forget()
            self._awaiting_snapshot = True
            conn.send(self._frame("state:sub"))

    def _disconnected(self) -> None:
        self._forget()
        self._awaiting_snapshot = False

    def _on_error(self, err: ZocketError) -> None:
        """The subscription failed (or the client closed): fail the waiters now."""
        self._awaiting_snapshot = False
        for fut in list(self._waiters):
            if not fut.done():
                fut.set_exception(err)

    def _shutdown(self, reason: str) -> None:
        self._forget()
        self._listeners.clear()
        self._on_error(ZocketConnectionError(reason))
