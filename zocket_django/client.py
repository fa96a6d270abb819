"""Asyncio client for the zocket wire protocol (docs/protocol.md in the repository).

It mirrors the semantics of Zocket's browser client so that a Python script,
a test or a worker behaves like a browser tab: RPCs with a timeout, lazy
reference-counted event and state subscriptions, live state kept in sync by
versioned JSON patches, heartbeat, and reconnection with every subscription
restored.

The module imports nothing from Django (nor from the server runtime), so it can
be used from any process, configured or not.

    async with ZocketClient("ws://127.0.0.1:8000/ws/") as client:
        counter = client.actor("counter", "main")
        await counter.add(amount=5)
        state = await counter.state.wait_for(lambda s: s["count"] >= 5)
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import inspect
import itertools
import json
import logging
import random
import secrets
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, Protocol, Self

import jsonpatch
import jsonpointer
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import (
    ConnectionClosed,
    InvalidStatus,
    InvalidURI,
    WebSocketException,
)
from websockets.frames import Close

__all__ = [
    "ActorHandle",
    "Backoff",
    "ConnectionStatus",
    "EventStream",
    "LiveState",
    "NamedActor",
    "ZocketClient",
    "ZocketConnectionError",
    "ZocketError",
    "ZocketRefused",
    "ZocketRpcDisconnected",
    "ZocketRpcError",
    "ZocketRpcTimeout",
    "ZocketTimeoutError",
]

logger = logging.getLogger("zocket_django.client")

Callback = Callable[[Any], object]
"""A listener: called with one argument; may be a coroutine function."""
Unsubscribe = Callable[[], None]


class _Unset(enum.Enum):
    UNSET = enum.auto()


_UNSET: Final = _Unset.UNSET

# Path segments a JavaScript client must never walk through (prototype
# pollution). Harmless in Python, but refusing them keeps both clients
# agreeing on which patches are valid.
_UNSAFE_SEGMENTS: Final = frozenset({"__proto__", "constructor", "prototype"})


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


class ZocketError(Exception):
    """Base class of everything this client raises."""


class ZocketConnectionError(ZocketError, ConnectionError):
    """The client could not connect, gave up reconnecting, or was closed."""


class ZocketTimeoutError(ZocketError, TimeoutError):
    """A client-side wait ran out of time."""


class ZocketRpcError(ZocketError):
    """The server refused a request (an ``rpc:result`` with ``error`` or an ``error`` frame).

    ``code`` is the protocol's error code (``invalid_input``, ``forbidden``...),
    ``details`` its structured extra (e.g. validation errors), ``ref`` the
    offending message reference of an ``error`` frame.
    """

    def __init__(
        self,
        code: str,
        message: str,
        details: Any = None,
        *,
        method: str | None = None,
        ref: Any = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details
        self.method = method
        self.ref = ref

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"


class ZocketRpcTimeout(ZocketRpcError, ZocketTimeoutError):
    """No answer within the call's timeout (code ``timeout``); the call may still run."""


class ZocketRpcDisconnected(ZocketRpcError, ZocketConnectionError):
    """The socket dropped or the client closed before the answer (code ``disconnected``).

    Calls are never replayed after a reconnect: the server may or may not have
    run it, and only the caller can decide whether repeating it is safe.
    """


class ZocketRefused(ZocketRpcError, ZocketConnectionError):
    """The server refused the connection for good: close code 4401 or 4403.

    4401 (code ``unauthenticated``) is the server's answer to credentials that
    are given but not valid: a forged, expired or revoked token. 4403 (code
    ``forbidden``) is for applications that refuse a connection they
    identified. Retrying with the same credentials cannot help, so the client
    does not reconnect: it closes (status ``disconnected``, ``close_reason``
    says why), and ``connect()``, pending calls and later calls raise this.
    ``close_code`` is the WebSocket close code.
    """

    def __init__(self, code: str, message: str, *, close_code: int, method: str | None = None) -> None:
        super().__init__(code, message, method=method)
        self.close_code = close_code

    def copy(self, method: str | None = None) -> ZocketRefused:
        """A fresh error to raise in one more place (an exception keeps the traceback of its raise)."""
        return ZocketRefused(self.code, self.message, close_code=self.close_code, method=method)


#: Close codes after which reconnecting cannot help, and the error code each stands for.
FINAL_CLOSE_CODES: Final = {4401: "unauthenticated", 4403: "forbidden"}


def _refusal(close: Close | None, error: str | None) -> ZocketRefused | None:
    """The refusal a received close frame means (``error``: the ``error`` frame before it), if any."""
    if close is None or close.code not in FINAL_CLOSE_CODES:
        return None
    reason = error or close.reason or FINAL_CLOSE_CODES[close.code]
    return ZocketRefused(
        FINAL_CLOSE_CODES[close.code],
        f"the server refused the connection (close code {close.code}): {reason}",
        close_code=close.code,
    )


class _InvalidFrame(Exception):
    """Internal: a frame that does not match the protocol (logged, ignored)."""


# ---------------------------------------------------------------------------
# Status and backoff
# ---------------------------------------------------------------------------


class ConnectionStatus(enum.StrEnum):
    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"


@dataclasses.dataclass(frozen=True)
class Backoff:
    """Full-jitter exponential backoff, so restarted servers are not stampeded.

    ``max_attempts`` counts consecutive failed connection attempts before the
    client gives up (``None``: never).
    """

    min_delay: float = 0.25
    max_delay: float = 10.0
    max_attempts: int | None = None

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based)."""
        cap = min(self.max_delay, self.min_delay * 2 ** min(attempt, 62))
        return (rng or random).uniform(0.0, max(cap, 0.0))


class NamedActor(Protocol):
    """Anything with a wire ``name``, e.g. the server's ``Actor`` subclasses."""

    name: str


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def _json_default(obj: Any) -> Any:
    """Let callers pass pydantic models and dataclasses as RPC input."""
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def _dumps(frame: Mapping[str, Any]) -> str:
    return json.dumps(frame, separators=(",", ":"), default=_json_default)


def _req_str(msg: Mapping[str, Any], key: str) -> str:
    value = msg.get(key)
    if not isinstance(value, str):
        raise _InvalidFrame(f"field {key!r} must be a string")
    return value


def _opt_version(msg: Mapping[str, Any], field: str = "version") -> int | None:
    value = msg.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _InvalidFrame(f"field {field!r} must be an integer")
    return value


def _retry_delay(attempt: int) -> float:
    """Seconds before retry number ``attempt`` (0-based) of a call answered ``unavailable``."""
    return min(1.0, 0.05 * 2**attempt) * random.uniform(0.5, 1.0)


def _frame_error(msg: Mapping[str, Any], message: str, **kwargs: Any) -> ZocketRpcError:
    """The error a server frame reports, with its ``code`` (``error`` if absent) and ``details``."""
    code = msg.get("code")
    return ZocketRpcError(code if isinstance(code, str) else "error", message, msg.get("details"), **kwargs)


def _checked_patch(ops: Any) -> list[dict[str, Any]]:
    """Validate the shape of an RFC 6902 list and refuse prototype-polluting paths."""
    if not isinstance(ops, list):
        raise _InvalidFrame("field 'patches' must be a list")
    for op in ops:
        if not isinstance(op, dict):
            raise _InvalidFrame("each patch operation must be an object")
        for key in ("path", "from"):
            if key not in op:
                continue
            pointer = op[key]
            if not isinstance(pointer, str):
                raise _InvalidFrame(f"patch {key!r} must be a string")
            try:
                parts = jsonpointer.JsonPointer(pointer).parts
            except jsonpointer.JsonPointerException as exc:
                raise _InvalidFrame(f"bad JSON pointer {pointer!r}: {exc}") from None
            if _UNSAFE_SEGMENTS.intersection(parts):
                raise _InvalidFrame(f"refusing unsafe patch path {pointer!r}")
    return ops


# ---------------------------------------------------------------------------
# One socket
# ---------------------------------------------------------------------------


class _Connection:
    """One open socket and what dies with it: pending calls and unsent frames."""

    def __init__(self, ws: ClientConnection, client_id: str | None) -> None:
        self.ws = ws
        self.client_id = client_id
        self.pending: dict[str, tuple[asyncio.Future[Any], str]] = {}
        self.pongs: dict[str, asyncio.Future[None]] = {}
        self.outbox: asyncio.Queue[str] = asyncio.Queue()
        self.close_rcvd: Close | None = None  # the server's close frame, once received
        self.last_error: str | None = None  # the last ``error`` frame about the connection (no ``ref``)

    def send(self, frame: Mapping[str, Any]) -> None:
        """Queue a frame; a single writer task keeps frames in order."""
        self.outbox.put_nowait(_dumps(frame))

    def fail_pending(self, reason: str, refusal: ZocketRefused | None = None) -> None:
        for rid, (fut, method) in list(self.pending.items()):
            if fut.done():
                continue
            if refusal is not None:
                fut.set_exception(refusal.copy(method))
            else:
                fut.set_exception(ZocketRpcDisconnected("disconnected", reason, method=method, ref=rid))
        self.pending.clear()
        for fut in self.pongs.values():
            if not fut.done():
                fut.cancel()
        self.pongs.clear()


# ---------------------------------------------------------------------------
# Client
# ---------------------------------------------------------------------------


class ZocketClient:
    """A connection to a zocket server, shared by every actor handle.

    Use ``async with ZocketClient(url) as client`` or ``connect()``/``close()``.
    ``connect()`` keeps trying (with backoff) until ``connect_timeout``; once
    connected, a dropped socket is reopened in the background, pending calls
    fail with :class:`ZocketRpcDisconnected`, and every active subscription is
    sent again. A socket the server closes with 4401 or 4403 is not reopened:
    see :class:`ZocketRefused`.
    """

    def __init__(
        self,
        url: str,
        *,
        rpc_timeout: float | None = 10.0,
        connect_timeout: float | None = 10.0,
        reconnect: bool = True,
        backoff_min: float = 0.25,
        backoff_max: float = 10.0,
        max_attempts: int | None = None,
        heartbeat_interval: float | None = 15.0,
        heartbeat_timeout: float = 10.0,
        headers: Mapping[str, str] | None = None,
        origin: str | None = None,
        connect_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        self.url = url
        self.rpc_timeout = rpc_timeout
        self.connect_timeout = connect_timeout
        self.reconnect = reconnect
        self.backoff = Backoff(backoff_min, backoff_max, max_attempts)
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_timeout = heartbeat_timeout
        self._connect_kwargs: dict[str, Any] = {
            # Our JSON ping/pong proves the server's consumer is alive, which
            # the protocol-level keepalive cannot; don't run both by default.
            "ping_interval": None if heartbeat_interval else 20,
            "close_timeout": 2.0,
            "open_timeout": None,  # connect_timeout bounds the whole attempt
            # Snapshots of big states must fit (websockets' default is 1 MiB).
            "max_size": 16 * 2**20,
            "additional_headers": dict(headers) if headers else None,
            "origin": origin,
            **(connect_kwargs or {}),
        }
        self._status = ConnectionStatus.DISCONNECTED
        self._conn: _Connection | None = None
        self._handles: dict[tuple[str, str], ActorHandle] = {}
        self._status_listeners: dict[int, Callback] = {}
        self._error_listeners: dict[int, Callback] = {}
        self._tokens = itertools.count(1)
        self._ids = itertools.count(1)
        self._supervisor: asyncio.Task[None] | None = None
        self._changed: asyncio.Future[None] | None = None
        self._background: set[asyncio.Future[Any]] = set()
        self._closed = False
        self._close_reason: str | None = None
        self._refusal: ZocketRefused | None = None
        self._ever_connected = False

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

    # -- connection loop -------------------------------------------------------

    async def _run(self) -> None:
        """Supervise the connection; a bug here must end the client, not hang it."""
        try:
            await self._connection_loop()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("zocket client for %s crashed", self.url)
            self._shutdown("internal client error (see log)")

    async def _connection_loop(self) -> None:
        """Connect, serve, and reconnect with backoff until closed or given up.

        A connection that dies within ``_STABLE_AFTER`` seconds counts as a
        failed attempt, so a server that accepts and drops at once is retried
        with growing delays (and given up on) like one that refuses.
        """
        attempt = 0
        loop = asyncio.get_running_loop()
        while not self._closed:
            self._set_status(ConnectionStatus.RECONNECTING if self._ever_connected else ConnectionStatus.CONNECTING)
            try:
                conn = await self._open()
            except ZocketRefused as refusal:
                # The error frame came before any welcome: tell the error listeners here.
                for callback in list(self._error_listeners.values()):
                    self._invoke(callback, refusal.copy(), "error")
                self._refuse(refusal)
                return
            except (OSError, WebSocketException, ValueError) as exc:
                attempt += 1
                fatal = self._is_fatal(exc)
                logger.log(
                    logging.ERROR if fatal else logging.INFO,
                    "zocket connect attempt %d to %s failed: %s",
                    attempt,
                    self.url,
                    exc,
                )
                if fatal or self._out_of_attempts(attempt):
                    self._shutdown(f"could not connect to {self.url} after {attempt} attempt(s): {exc}")
                    return
                await asyncio.sleep(self.backoff.delay(attempt - 1))
                continue
            opened_at = loop.time()
            refusal = await self._serve(conn)
            if self._closed:
                return
            if refusal is not None:
                self._refuse(refusal)
                return
            attempt = 0 if loop.time() - opened_at >= self._STABLE_AFTER else attempt + 1
            if self._out_of_attempts(attempt):
                self._shutdown(
                    "connection lost" if not self.reconnect else f"connection dropped {attempt} time(s) in a row"
                )
                return
            self._set_status(ConnectionStatus.RECONNECTING)
            await asyncio.sleep(self.backoff.delay(attempt))

    _STABLE_AFTER: Final = 5.0

    def _out_of_attempts(self, attempt: int) -> bool:
        limit = self.backoff.max_attempts
        return not self.reconnect or (limit is not None and attempt >= limit)

    def _refuse(self, refusal: ZocketRefused) -> None:
        """The server refused the connection for good (4401, 4403): close, and say why."""
        logger.error("zocket connection to %s refused, not reconnecting: %s", self.url, refusal.message)
        self._refusal = refusal
        self._shutdown(refusal.message)

    @staticmethod
    def _is_fatal(exc: Exception) -> bool:
        """A bad URL or a 4xx refusal of the handshake (auth, origin) will not heal by retrying.

        A refusal after the handshake (close code 4401 or 4403) is :class:`ZocketRefused`.
        """
        if isinstance(exc, InvalidURI | ValueError):
            return True
        if isinstance(exc, InvalidStatus):
            code = exc.response.status_code
            return 400 <= code < 500 and code not in (408, 429)
        return False

    async def _open(self) -> _Connection:
        """Open a socket and read up to the ``welcome`` frame."""
        async with asyncio.timeout(self.connect_timeout):
            ws = await ws_connect(self.url, **self._connect_kwargs)
            try:
                client_id = await self._await_welcome(ws)
            except BaseException:
                ws.transport.abort()
                raise
        return _Connection(ws, client_id)

    @staticmethod
    async def _await_welcome(ws: ClientConnection) -> str:
        """The ``clientId`` of the ``welcome``; raises :class:`ZocketRefused` on a refusal instead."""
        error: str | None = None  # a refused connection gets an error frame, then the close
        while True:
            try:
                raw = await ws.recv()
            except ConnectionClosed as exc:
                refusal = _refusal(exc.rcvd, error)
                if refusal is not None:
                    raise refusal from None
                raise
            try:
                msg = json.loads(raw)
            except (TypeError, ValueError, RecursionError):
                msg = None
            if isinstance(msg, dict) and msg.get("type") == "welcome":
                client_id = msg.get("clientId")
                if isinstance(client_id, str):
                    return client_id
            if isinstance(msg, dict) and msg.get("type") == "error":
                error = str(msg.get("error", "server error"))
                logger.debug("error frame before the welcome: %.200r", raw)
                continue
            logger.warning("ignoring frame received before a valid welcome: %.200r", raw)

    async def _serve(self, conn: _Connection) -> ZocketRefused | None:
        """Run one connection until it dies; then fail what cannot survive it.

        Returns the refusal when the server closed it with 4401 or 4403.
        """
        self._conn = conn
        self._ever_connected = True
        for handle in list(self._handles.values()):
            handle._restore(conn)
        self._set_status(ConnectionStatus.CONNECTED)
        tasks = [
            asyncio.create_task(self._reader(conn)),
            asyncio.create_task(self._writer(conn)),
        ]
        if self.heartbeat_interval:
            tasks.append(asyncio.create_task(self._heartbeat(conn, self.heartbeat_interval)))
        reason = "connection lost"
        refusal = None
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task.cancelled():
                    continue
                if (exc := task.exception()) is not None:
                    # A bug must cost this socket, not the client: reconnect.
                    logger.error("zocket connection task failed", exc_info=exc)
                    reason = f"internal error: {exc!r}"
                else:
                    reason = task.result()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._conn = None
            if conn.ws.close_code is None:
                conn.ws.transport.abort()
            if self._closed:
                reason = self._close_reason or "client closed"
            else:
                refusal = _refusal(conn.close_rcvd, conn.last_error)
            conn.fail_pending(reason, refusal)
            for handle in list(self._handles.values()):
                handle._disconnected()
            self._notify()
        logger.info("zocket connection to %s ended: %s", self.url, reason)
        return refusal

    async def _reader(self, conn: _Connection) -> str:
        try:
            async for raw in conn.ws:
                self._dispatch(conn, raw)
        except ConnectionClosed as exc:
            conn.close_rcvd = exc.rcvd
            return f"connection lost: {exc}"
        return f"connection closed by server (code {conn.ws.close_code})"

    @staticmethod
    async def _writer(conn: _Connection) -> str:
        try:
            while True:
                await conn.ws.send(await conn.outbox.get())
        except ConnectionClosed as exc:
            conn.close_rcvd = exc.rcvd
            return f"connection lost: {exc}"

    async def _heartbeat(self, conn: _Connection, interval: float) -> str:
        """Ping every ``interval``; a missing pong means the server is gone."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval)
            ping_id = f"hb{next(self._ids)}"
            fut: asyncio.Future[None] = loop.create_future()
            conn.pongs[ping_id] = fut
            conn.send({"type": "ping", "id": ping_id})
            try:
                await asyncio.wait_for(fut, self.heartbeat_timeout)
            except TimeoutError:
                logger.warning(
                    "no pong from %s within %ss; dropping the connection",
                    self.url,
                    self.heartbeat_timeout,
                )
                return "heartbeat timed out"
            finally:
                conn.pongs.pop(ping_id, None)

    # -- incoming frames -------------------------------------------------------

    def _dispatch(self, conn: _Connection, raw: str | bytes) -> None:
        """Route one frame; never raise into the read loop."""
        if not isinstance(raw, str):
            logger.warning("ignoring binary frame (%d bytes)", len(raw))
            return
        try:
            msg = json.loads(raw)
        except (ValueError, RecursionError):
            logger.warning("ignoring frame that is not JSON: %.200r", raw)
            return
        if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
            logger.warning("ignoring frame without a string 'type': %.200r", raw)
            return
        kind = msg["type"]
        handler = self._HANDLERS.get(kind)
        if handler is None:
            logger.warning("ignoring frame of unknown type %r", kind)
            return
        try:
            handler(self, conn, msg)
        except _InvalidFrame as exc:
            logger.warning("ignoring invalid %r frame: %s", kind, exc)
        except Exception:
            logger.exception("error while handling a %r frame", kind)

    def _on_welcome(self, conn: _Connection, msg: dict[str, Any]) -> None:
        conn.client_id = _req_str(msg, "clientId")

    def _on_rpc_result(self, conn: _Connection, msg: dict[str, Any]) -> None:
        rid = _req_str(msg, "id")
        entry = conn.pending.pop(rid, None)
        if entry is None:
            logger.debug("rpc:result for unknown or expired call %r", rid)
            return
        fut, method = entry
        if fut.done():
            return
        error = msg.get("error")
        if error is not None:
            fut.set_exception(_frame_error(msg, str(error), method=method, ref=rid))
        else:
            fut.set_result(msg.get("result"))

    def _on_event(self, conn: _Connection, msg: dict[str, Any]) -> None:
        handle = self._route(msg)
        name = _req_str(msg, "event")
        if handle is not None:
            handle._deliver(name, msg.get("payload"))

    def _on_snapshot(self, conn: _Connection, msg: dict[str, Any]) -> None:
        handle = self._route(msg)
        if "state" not in msg:
            raise _InvalidFrame("missing field 'state'")
        version, epoch = _opt_version(msg), _opt_version(msg, "epoch")
        if handle is not None:
            handle.state._on_snapshot(msg["state"], version, epoch)

    def _on_patch(self, conn: _Connection, msg: dict[str, Any]) -> None:
        handle = self._route(msg)
        if handle is None:
            return
        try:
            version, epoch = _opt_version(msg), _opt_version(msg, "epoch")
            ops = _checked_patch(msg.get("patches"))
        except _InvalidFrame as exc:
            # We cannot tell what changed: the copy is no longer trustworthy.
            handle.state._resync(f"invalid patch: {exc}")
            return
        handle.state._on_patch(ops, version, epoch)

    def _on_pong(self, conn: _Connection, msg: dict[str, Any]) -> None:
        ping_id = msg.get("id")
        if ping_id is None:
            futs = list(conn.pongs.values())
        else:
            futs = [conn.pongs[ping_id]] if isinstance(ping_id, str) and ping_id in conn.pongs else []
        for fut in futs:
            if not fut.done():
                fut.set_result(None)

    def _on_error(self, conn: _Connection, msg: dict[str, Any]) -> None:
        message = str(msg.get("error", "server error"))
        ref = msg.get("ref")
        if ref is None:  # about the connection itself, such as the reason of a refusal
            conn.last_error = message
        err = _frame_error(msg, message, ref=ref)
        logger.warning("server error frame: %s (ref=%r)", err, ref)
        if isinstance(ref, dict):
            rid = ref.get("id")
            if isinstance(rid, str) and rid in conn.pending:
                fut, method = conn.pending.pop(rid)
                err.method = method
                if not fut.done():
                    fut.set_exception(err)
            actor, actor_id = (
                ref.get("actor", msg.get("actor")),
                ref.get("actorId", msg.get("actorId")),
            )
            if ref.get("type") == "state:sub" and isinstance(actor, str) and isinstance(actor_id, str):
                handle = self._handles.get((actor, actor_id))
                if handle is not None:
                    handle.state._on_error(err)
        for callback in list(self._error_listeners.values()):
            self._invoke(callback, err, "error")

    _HANDLERS: Final[dict[str, Callable[[ZocketClient, _Connection, dict[str, Any]], None]]] = {
        "welcome": _on_welcome,
        "rpc:result": _on_rpc_result,
        "event": _on_event,
        "state:snapshot": _on_snapshot,
        "state:patch": _on_patch,
        "pong": _on_pong,
        "error": _on_error,
    }

    def _route(self, msg: Mapping[str, Any]) -> ActorHandle | None:
        return self._handles.get((_req_str(msg, "actor"), _req_str(msg, "actorId")))

    # -- internals shared with handles -----------------------------------------

    async def _call(
        self,
        actor: str,
        actor_id: str,
        method: str,
        input: Any,
        timeout: float | _Unset | None,
    ) -> Any:
        if timeout is _UNSET:
            timeout = self.rpc_timeout
        rid = f"r{next(self._ids)}"
        frame: dict[str, Any] = {
            "type": "rpc",
            "id": rid,
            "actor": actor,
            "actorId": actor_id,
            "method": method,
            # One key for every attempt: the server runs it at most once (docs/protocol.md, "Keyed calls").
            "key": secrets.token_urlsafe(16),
        }
        if input is not _UNSET:
            frame["input"] = input
        raw = _dumps(frame)  # in the caller: input that is not JSON fails here
        loop = asyncio.get_running_loop()
        deadline = asyncio.timeout(timeout)
        last: ZocketRpcError | None = None  # why the last attempt did not settle the call
        try:
            async with deadline:
                for attempt in itertools.count():
                    conn = await self._wait_connected()
                    fut: asyncio.Future[Any] = loop.create_future()
                    conn.pending[rid] = (fut, method)
                    try:
                        conn.outbox.put_nowait(raw)
                        return await fut
                    except ZocketRpcDisconnected as exc:  # the socket dropped: again on the next one
                        last = exc
                    except ZocketRpcError as exc:
                        if exc.code != "unavailable" or isinstance(exc, ZocketRefused):
                            raise
                        last = exc  # nothing ran, or its owner is moving: again after a pause
                        await asyncio.sleep(_retry_delay(attempt))
                    finally:
                        conn.pending.pop(rid, None)
        except TimeoutError:
            if deadline.expired():
                why = f" (last attempt: {last.code}: {last.message})" if last is not None else ""
                raise ZocketRpcTimeout(
                    "timeout",
                    f"{actor}.{method} got no answer within {timeout}s{why}",
                    method=method,
                ) from None
            raise
        except ZocketRefused as exc:
            exc.method = method
            raise
        except ZocketRpcError:
            raise
        except ZocketConnectionError as exc:
            raise ZocketRpcDisconnected("disconnected", str(exc), method=method) from None

    async def _wait_connected(self) -> _Connection:
        while True:
            if self._refusal is not None:
                raise self._refusal.copy()
            if self._closed:
                raise ZocketConnectionError(self._close_reason or "client is closed")
            if self._conn is not None:
                return self._conn
            if self._supervisor is None:
                raise ZocketConnectionError("not connected: call connect() first")
            if self._changed is None:
                self._changed = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._changed)

    def _notify(self) -> None:
        """Wake everything waiting for the connection to appear or the client to close."""
        changed, self._changed = self._changed, None
        if changed is not None and not changed.done():
            changed.set_result(None)

    def _send(self, frame: Mapping[str, Any]) -> None:
        """Send now if connected; otherwise the subscription is restored on connect."""
        if self._conn is not None:
            self._conn.send(frame)

    def _set_status(self, status: ConnectionStatus) -> None:
        self._notify()
        if status == self._status:
            return
        self._status = status
        for callback in list(self._status_listeners.values()):
            self._invoke(callback, status, "status")

    def _shutdown(self, reason: str) -> None:
        """Final state after close() or giving up: nothing pending, nothing left hanging."""
        self._closed = True
        self._close_reason = self._close_reason or reason
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.fail_pending(self._close_reason)
        for handle in list(self._handles.values()):
            handle._shutdown(self._close_reason)
        self._set_status(ConnectionStatus.DISCONNECTED)

    def _add_listener(self, listeners: dict[int, Callback], callback: Callback) -> Unsubscribe:
        token = next(self._tokens)
        listeners[token] = callback

        def unsubscribe() -> None:
            listeners.pop(token, None)

        return unsubscribe

    def _invoke(self, callback: Callback, arg: Any, what: str) -> None:
        """Run a user callback; exceptions are logged, coroutines run as tasks."""
        try:
            result = callback(arg)
        except Exception:
            logger.exception("%s callback %r raised", what, callback)
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            self._background.add(task)
            task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Future[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("async callback raised", exc_info=task.exception())


# ---------------------------------------------------------------------------
# Actor handle
# ---------------------------------------------------------------------------


class ActorHandle:
    """One actor instance: calls, events and live state.

    ``await handle.call("add", amount=5)`` or ``await handle.add(amount=5)``.
    Method names that clash with this class's attributes (``call``, ``on``,
    ``events``, ``state``, ``name``, ``id``...) need ``call()``.
    """

    def __init__(
        self,
        client: ZocketClient,
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
        self.state = LiveState(self)

    @property
    def name(self) -> str:
        return self._name

    @property
    def id(self) -> str:
        return self._id

    @property
    def client(self) -> ZocketClient:
        return self._client

    def __repr__(self) -> str:
        return f"<ActorHandle {self._name}:{self._id}>"

    async def call(
        self,
        method: str,
        input: Any = _UNSET,
        /,
        *,
        timeout: float | _Unset | None = _UNSET,
        **kwargs: Any,
    ) -> Any:
        """Call ``method`` and return its result; raises :class:`ZocketRpcError`.

        Input is either one positional value or keyword arguments (sent as an
        object). ``timeout`` is reserved: pass a dict to send a field of that
        name. Without input the frame carries no ``input`` at all.
        """
        if kwargs:
            if input is not _UNSET:
                raise TypeError("pass the input either positionally or as keywords, not both")
            input = kwargs
        return await self._client._call(self._name, self._id, method, input, timeout)

    def __getattr__(self, method: str) -> Callable[..., Awaitable[Any]]:
        if method.startswith("_"):
            raise AttributeError(method)

        async def call_method(input: Any = _UNSET, /, **kwargs: Any) -> Any:
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
            if current is None or current.pop(token, _UNSET) is _UNSET:
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
        payloads are waiting the oldest are dropped (and logged).
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

    def _restore(self, conn: _Connection) -> None:
        if self._listeners:
            conn.send(self._frame("event:sub"))
        self.state._restore(conn)

    def _disconnected(self) -> None:
        self.state._disconnected()

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

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Any:
        while not self._items:
            if self._ended:
                self._stop()
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


# ---------------------------------------------------------------------------
# Live state
# ---------------------------------------------------------------------------


class LiveState:
    """The local copy of one actor's state, kept in sync while anyone listens.

    ``get()`` returns ``None`` whenever the copy is not known to be current:
    before the first snapshot, while resyncing after a version gap, while
    disconnected, and when nobody is subscribed. The returned object is
    replaced (never mutated) on each change; treat it as read-only.
    """

    def __init__(self, handle: ActorHandle) -> None:
        self._handle = handle
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
        token = next(self._handle._client._tokens)
        self._listeners[token] = callback
        if len(self._listeners) == 1:
            self._awaiting_snapshot = True
            self._handle._client._send(self._handle._frame("state:sub"))
        elif callback is not None and self._has_data:
            self._handle._client._invoke(callback, self._data, "state")

        def unsubscribe() -> None:
            if self._listeners.pop(token, _UNSET) is _UNSET:
                return  # already removed, or dropped by the client's shutdown
            if not self._listeners:
                self._forget()
                self._awaiting_snapshot = False
                self._handle._client._send(self._handle._frame("state:unsub"))

        return unsubscribe

    async def wait_for(
        self,
        predicate: Callable[[Any], bool] | None = None,
        timeout: float | _Unset | None = _UNSET,
    ) -> Any:
        """Wait until the live state satisfies ``predicate`` (any state if None); return it.

        Holds a subscription while waiting. Raises :class:`ZocketTimeoutError`
        after ``timeout`` (default: the client's ``rpc_timeout``), and
        :class:`ZocketRpcError` if the server refuses the subscription.
        """
        client = self._handle._client
        if client.closed:
            raise ZocketConnectionError(client._close_reason or "client is closed")
        if timeout is _UNSET:
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
            raise ZocketTimeoutError(
                f"state of {self._handle._name}:{self._handle._id} did not match within {timeout}s"
            ) from None
        finally:
            self._waiters.discard(fut)
            unsubscribe()

    # -- internals -------------------------------------------------------------

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
                self._handle._client._send(self._handle._frame("state:sub"))
                return
        self._data, self._version, self._epoch, self._has_data = state, version, epoch, True
        self._awaiting_snapshot = False
        self._stale_answers = 0
        self._notify()

    def _on_patch(self, ops: list[dict[str, Any]], version: int | None, epoch: int | None = None) -> None:
        if not self._listeners or not self._has_data:
            return  # not subscribed, or a snapshot is on its way
        if epoch is not None and self._epoch is not None and epoch != self._epoch:
            if epoch > self._epoch:  # a newer incarnation: our copy is of the one before
                self._resync(f"epoch {epoch} after {self._epoch}")
            return  # an older one: a straggler of an incarnation that is gone
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
        logger.info("resyncing %s:%s (%s)", self._handle._name, self._handle._id, why)
        self._forget()
        if not self._awaiting_snapshot:
            self._awaiting_snapshot = True
            self._handle._client._send(self._handle._frame("state:sub"))

    def _notify(self) -> None:
        for callback in list(self._listeners.values()):
            if callback is not None:
                self._handle._client._invoke(callback, self._data, "state")

    def _restore(self, conn: _Connection) -> None:
        if self._listeners:
            self._forget()
            self._awaiting_snapshot = True
            conn.send(self._handle._frame("state:sub"))

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
