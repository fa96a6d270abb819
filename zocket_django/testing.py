"""Helpers for testing actors through the real ASGI stack.

``ZocketCommunicator`` is Channels' ``WebsocketCommunicator`` that speaks the
protocol: it reads the ``welcome``, keeps frames it was not asked for in order,
and turns calls and subscriptions into one line each::

    async with ZocketCommunicator() as client:
        state, version = await client.subscribe_state("counter", "main")
        assert await client.call("counter", "main", "add", amount=5) == 5
        patch = await client.next_patch("counter", "main")

Connect as a Django user, through a session (as a browser) or a token::

    async with ZocketCommunicator(user=alice) as client: ...
    async with ZocketCommunicator(user=alice, auth="token") as client: ...
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import itertools
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from channels.testing import WebsocketCommunicator

from .auth import SUBPROTOCOL, TOKEN_SUBPROTOCOL_PREFIX, issue_token
from .db import to_thread
from .node import current_node, forget_node
from .registry import registry

F = TypeVar("F", bound=Callable[..., Any])


class ZocketCallError(Exception):
    """An ``rpc:result`` with an error, or an ``error`` frame refusing a subscription.

    ``code``, ``message`` and ``details`` as the server sent them.
    """

    def __init__(self, frame: dict[str, Any]) -> None:
        super().__init__(f"{frame.get('code')}: {frame.get('error')}")
        self.frame = frame
        self.code = frame.get("code")
        self.message = frame.get("error")
        self.details = frame.get("details")


def default_application() -> Any:
    """The project's ``ASGI_APPLICATION``."""
    from channels.routing import get_default_application

    return get_default_application()


class ZocketCommunicator(WebsocketCommunicator):
    """A protocol-aware test client over Channels' ``WebsocketCommunicator``.

    ``user`` connects as that Django user: with ``auth="session"`` (the
    default) through a fresh logged-in session's cookie, as a browser does;
    with ``auth="token"`` through a token from ``issue_token``, sent as the
    ``zocket.token.<token>`` subprotocol. ``token`` sends a given token
    instead; ``origin`` sets the ``Origin`` header.
    """

    _ids = itertools.count(1)

    def __init__(
        self,
        application: Any = None,
        path: str = "/ws/",
        headers: list[tuple[bytes, bytes]] | None = None,
        subprotocols: list[str] | None = None,
        timeout: float = 5.0,
        *,
        user: Any = None,
        auth: str = "session",
        token: str | None = None,
        origin: str | None = None,
    ) -> None:
        if auth not in ("session", "token"):
            raise ValueError(f"auth must be 'session' or 'token', not {auth!r}")
        headers = list(headers or [])
        subprotocols = list(subprotocols or [])
        if origin is not None:
            headers.append((b"origin", origin.encode("latin1")))
        if user is not None and auth == "token":
            token = issue_token(user)
        if token is not None:
            subprotocols += [SUBPROTOCOL, TOKEN_SUBPROTOCOL_PREFIX + token]
        super().__init__(application or default_application(), path, headers, subprotocols)
        self.timeout = timeout
        self.client_id: str | None = None
        self.inbox: deque[dict[str, Any]] = deque()
        self._reading = asyncio.Lock()
        #: The ``error`` frame of a connection refused after the handshake (bad token).
        self.refusal: dict[str, Any] | None = None
        self._session_user = user if auth == "session" else None

    @classmethod
    async def for_user(cls, user: Any, **kwargs: Any) -> ZocketCommunicator:
        """A connected client logged in as ``user`` (``disconnect()`` it when done)."""
        client = cls(user=user, **kwargs)
        return await client.__aenter__()

    async def connect(self, timeout: float | None = None) -> tuple[bool, Any]:
        """Open the socket and read the ``welcome`` (sets ``client_id``).

        Returns ``(True, subprotocol)``, or ``(False, close code)`` when the
        socket was refused: 403 before the handshake (origin), or 4401 after it
        (credentials; the ``error`` frame is kept in ``refusal``).
        """
        if self._session_user is not None:
            cookie = await to_thread(session_cookie)(self._session_user)
            self.scope["headers"] = [*self.scope["headers"], (b"cookie", cookie.encode("latin1"))]
            self._session_user = None
        connected, detail = await super().connect(timeout or self.timeout)
        if connected:
            first = await self.receive_json_from(timeout or self.timeout)
            if first["type"] == "error":
                self.refusal = first
                closed = await self.receive_output(timeout or self.timeout)
                assert closed["type"] == "websocket.close", closed
                return False, closed.get("code")
            assert first["type"] == "welcome", first
            self.client_id = first["clientId"]
        return connected, detail

    async def __aenter__(self) -> ZocketCommunicator:
        connected, detail = await self.connect()
        if not connected:
            raise ConnectionError(f"the socket was refused: {detail}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.disconnect()

    # -- frames ---------------------------------------------------------------

    async def expect(self, type: str, timeout: float | None = None, **fields: Any) -> dict[str, Any]:
        """The next frame of ``type`` whose fields match; frames skipped stay queued.

        Safe to await from several tasks at once (concurrent calls on one socket).
        """
        return await self._expect_any([(type, fields)], timeout)

    async def _expect_any(
        self, wanted: list[tuple[str, dict[str, Any]]], timeout: float | None = None
    ) -> dict[str, Any]:
        """The next frame that matches one of ``wanted`` (type and fields)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (timeout or self.timeout)
        while True:
            async with self._reading:
                frame = self._take(wanted)
                if frame is not None:
                    return frame
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise TimeoutError(f"no frame matching {wanted} (queued: {list(self.inbox)})")
                self.inbox.append(await self.receive_json_from(remaining))

    def _take(self, wanted: list[tuple[str, dict[str, Any]]]) -> dict[str, Any] | None:
        for i, frame in enumerate(self.inbox):
            if any(_matches(frame, type, fields) for type, fields in wanted):
                del self.inbox[i]
                return frame
        return None

    async def nothing_more(self, wait: float = 0.1) -> list[dict[str, Any]]:
        """Frames that arrive within ``wait`` seconds (for asserting that none do)."""
        frames = list(self.inbox)
        self.inbox.clear()
        # receive_nothing, unlike a timed-out receive, leaves the application running.
        while not await self.receive_nothing(wait):
            frames.append(await self.receive_json_from())
        return frames

    # -- calls --------------------------------------------------------------------

    async def call_raw(
        self, actor: str, actor_id: str, method: str, input: Any = None, **kwargs: Any
    ) -> dict[str, Any]:
        """Send an ``rpc`` and return its ``rpc:result`` frame, error or not."""
        rpc_id = f"t{next(self._ids)}"
        frame: dict[str, Any] = {"type": "rpc", "id": rpc_id, "actor": actor, "actorId": actor_id, "method": method}
        if input is not None or kwargs:
            frame["input"] = {**(input or {}), **kwargs}
        await self.send_json_to(frame)
        return await self.expect("rpc:result", id=rpc_id)

    async def call(self, actor: str, actor_id: str, method: str, input: Any = None, **kwargs: Any) -> Any:
        """Call a method and return its result; raises ``ZocketCallError``."""
        frame = await self.call_raw(actor, actor_id, method, input, **kwargs)
        if "error" in frame:
            raise ZocketCallError(frame)
        return frame.get("result")

    # -- subscriptions ---------------------------------------------------------------

    async def subscribe_state(self, actor: str, actor_id: str) -> tuple[Any, int]:
        """``state:sub`` and wait for the snapshot: ``(state, version)``.

        It asks with ``"resync": true``, so a socket that subscribes already
        gets a snapshot too (a plain repeat is answered only if the state
        moved: docs/protocol.md). A refused subscription (an unknown actor, an
        access rule, an activation that failed) raises ``ZocketCallError`` with
        the server's code and message.
        """
        target = {"actor": actor, "actorId": actor_id}
        await self.send_json_to({"type": "state:sub", **target, "resync": True})
        refusal = {"ref": {"type": "state:sub", **target}}
        frame = await self._expect_any([("state:snapshot", target), ("error", refusal)])
        if frame["type"] == "error":
            raise ZocketCallError(frame)
        return frame["state"], frame["version"]

    async def next_patch(self, actor: str, actor_id: str) -> dict[str, Any]:
        return await self.expect("state:patch", actor=actor, actorId=actor_id)

    async def subscribe_events(self, actor: str, actor_id: str) -> None:
        """``event:sub``, confirmed by a ping round trip so that later events are not missed.

        A refusal that arrived by then (unknown actor, access rule) raises ``ZocketCallError``.
        """
        target = {"actor": actor, "actorId": actor_id}
        await self.send_json_to({"type": "event:sub", **target})
        await self.ping()
        refusal = self._take([("error", {"ref": {"type": "event:sub", **target}})])
        if refusal is not None:
            raise ZocketCallError(refusal)

    async def next_event(self, actor: str, actor_id: str, event: str | None = None) -> dict[str, Any]:
        fields: dict[str, Any] = {"actor": actor, "actorId": actor_id}
        if event is not None:
            fields["event"] = event
        return await self.expect("event", **fields)

    async def ping(self) -> None:
        ping_id = f"p{next(self._ids)}"
        await self.send_json_to({"type": "ping", "id": ping_id})
        await self.expect("pong", id=ping_id)


def session_cookie(user: Any) -> str:
    """A ``Cookie`` header value holding a new session in which ``user`` is logged in."""
    from django.conf import settings
    from django.test import Client

    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


def _matches(frame: dict[str, Any], type: str, fields: dict[str, Any]) -> bool:
    return frame.get("type") == type and all(frame.get(k) == v for k, v in fields.items())


async def reset_actors() -> None:
    """Deactivate every hot instance and stop this event loop's node.

    The pytest plugin and ``ZocketTestMixin`` call it after every test, so no
    state stays hot from one test into the next.
    """
    node = current_node()
    if node is not None:
        forget_node(node)
        await node.stop()


def clear_snapshots() -> None:
    """Delete every saved snapshot, and close the connection of Django's shared sync thread.

    zocket saves from worker threads, on connections of their own, so a test's
    rollback does not undo those saves; and a connection left open in the sync
    thread would make the next test without database access fail ("Database
    access not allowed"). Call it after the test's own database teardown, with
    database access allowed (the pytest plugin and ``ZocketTestMixin`` do).
    """
    from asgiref.sync import SyncToAsync
    from django.db import connections

    from .models import Snapshot

    Snapshot.objects.all().delete()
    SyncToAsync.single_thread_executor.submit(connections.close_all).result(timeout=30)


def with_fresh_actors(fn: F) -> F:
    """An async test function that ends with ``reset_actors()``, on its own event loop."""

    @functools.wraps(fn)
    async def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return await fn(*args, **kwargs)
        finally:
            await reset_actors()

    return run  # type: ignore[return-value]


class ZocketTestMixin:
    """For Django's ``TestCase`` and ``TransactionTestCase`` (``manage.py test``).

    Every async test method ends with ``reset_actors()`` on its own event loop,
    and after the test's database teardown every snapshot is deleted
    (``clear_snapshots``): each test starts with nothing hot and nothing saved.
    A ``TestCase`` runs as a ``TransactionTestCase``, as the pytest plugin
    makes async database tests transactional::

        class CounterTests(ZocketTestMixin, TestCase):
            async def test_add(self):
                async with ZocketCommunicator() as client:
                    assert await client.call("counter", "main", "add", amount=5) == 5
    """

    _testMethodName: str

    @classmethod
    def _databases_support_transactions(cls) -> bool:
        """``False``: a ``TestCase`` runs as a ``TransactionTestCase`` (its tables flushed after each test).

        zocket reads and writes on connections of its own (sessions at
        connect, snapshots, sync handlers' steps), committed. A test's open
        transaction would hide its data from them (PostgreSQL: a user created
        in the test has no session to zocket) or lock them out of every table
        it wrote (SQLite's shared-cache test database fails at once: "database
        table is locked"). The pytest plugin makes async tests transactional
        for the same reason. Django then calls ``setUpTestData`` before each test.
        """
        return False

    def _setup_and_call(self, result: Any, debug: bool = False) -> None:
        method = getattr(self, self._testMethodName)
        if inspect.iscoroutinefunction(method):
            setattr(self, self._testMethodName, with_fresh_actors(method))
        super()._setup_and_call(result, debug)  # type: ignore[misc]

    def _post_teardown(self) -> None:
        super()._post_teardown()  # type: ignore[misc]
        clear_snapshots()


class isolate_actors:
    """Actors declared inside are served only inside: a context manager, or a decorator of sync and async tests.

    The project's own actors stay served inside. As Django's
    ``isolate_apps``, it keeps test declarations out of the project's
    registry, so that ``manage.py check`` and other tests never see them::

        @isolate_actors()
        async def test_my_rule():
            class Probe(Actor):
                name = "probe"
                State = ProbeState
            ...
    """

    def __init__(self) -> None:
        self._stack: list[contextlib.AbstractContextManager[Any]] = []

    def __enter__(self) -> None:
        self._stack.append(registry.isolated())
        self._stack[-1].__enter__()

    def __exit__(self, *exc: Any) -> None:
        self._stack.pop().__exit__(*exc)

    def __call__(self, fn: F) -> F:
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                with self:
                    return await fn(*args, **kwargs)

            return run_async  # type: ignore[return-value]

        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            with self:
                return fn(*args, **kwargs)

        return run  # type: ignore[return-value]
