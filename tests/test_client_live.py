"""The Python client against the real demo server: daphne in a subprocess.

Runs ``daphne demo_project.asgi:application`` on a free port (in-memory channel
layer, a copy of a migrated SQLite file: the demo's actors are durable) and
drives the demo's ``counter`` and ``chat`` actors through
:mod:`zocket_django.client`. Marked ``slow``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.live import DEMO_SETTINGS, Worker, copy_of, require_redis, single_env
from zocket_django.client import (
    ConnectionStatus,
    ZocketClient,
    ZocketRefused,
    ZocketRpcError,
    ZocketRpcTimeout,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.asyncio,
    # daphne is a requirement: under CI a missing one must fail, not skip.
    pytest.mark.skipif(
        importlib.util.find_spec("daphne") is None and os.environ.get("CI") != "true",
        reason="daphne is not installed",
    ),
]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, migrated_sqlite: Path) -> Iterator[Worker]:
    tmp = tmp_path_factory.mktemp("daphne")
    server = Worker(single_env(copy_of(migrated_sqlite, tmp)), tmp, "daphne", settings=DEMO_SETTINGS).start()
    yield server
    server.stop()


def make_client(url: str, **options: Any) -> ZocketClient:
    defaults: dict[str, Any] = {
        "rpc_timeout": 5.0,
        "connect_timeout": 10.0,
        "backoff_min": 0.05,
        "backoff_max": 0.5,
        "heartbeat_interval": 1.0,
        "heartbeat_timeout": 5.0,
    }
    return ZocketClient(url, **{**defaults, **options})


@pytest_asyncio.fixture
async def client(demo: Worker) -> AsyncIterator[ZocketClient]:
    async with make_client(demo.url) as c:
        yield c


def fresh_id() -> str:
    """A new actor id per test, so tests sharing one server never interfere."""
    return f"t-{uuid.uuid4().hex[:12]}"


async def test_counter_calls_and_live_state(client: ZocketClient) -> None:
    assert client.client_id
    counter = client.actor("counter", fresh_id())
    versions: list[int | None] = []
    counts: list[int] = []

    def seen(state: dict[str, Any]) -> None:
        versions.append(counter.state.version)
        counts.append(state["count"])

    counter.state.subscribe(seen)
    assert await counter.state.wait_for(timeout=5) == {"count": 0}
    assert await counter.add(amount=5) == 5
    assert await counter.call("add", {"amount": 2}) == 7
    assert await counter.increment() == 8
    await counter.state.wait_for(lambda s: s["count"] == 8, timeout=5)
    assert counts == [0, 5, 7, 8]
    assert versions == [0, 1, 2, 3]  # gap-free: every patch applied as last + 1
    assert await counter.reset() is None
    await counter.state.wait_for(lambda s: s["count"] == 0, timeout=5)
    assert counter.state.version == 4


async def test_server_errors_have_codes_and_details(client: ZocketClient) -> None:
    counter = client.actor("counter", fresh_id())
    with pytest.raises(ZocketRpcError) as info:
        await counter.add(amount="many")
    assert info.value.code == "invalid_input"
    assert info.value.details and info.value.details[0]["loc"] == ["amount"]
    with pytest.raises(ZocketRpcError) as info:
        await counter.fly()
    assert info.value.code == "unknown_method"
    with pytest.raises(ZocketRpcError) as info:
        await client.actor("nope", "1").increment()
    assert info.value.code == "unknown_actor"
    assert await counter.increment() == 1  # the connection survived all of it


async def test_refused_subscription_reaches_on_error(client: ZocketClient) -> None:
    errors: list[ZocketRpcError] = []
    client.on_error(errors.append)
    unsubscribe = client.actor("nope", "1").state.subscribe()
    async with asyncio.timeout(5):
        while not errors:
            await asyncio.sleep(0.01)
    assert errors[0].code == "unknown_actor"
    assert errors[0].ref == {"type": "state:sub", "actor": "nope", "actorId": "1"}
    unsubscribe()


async def test_a_forged_token_is_refused_once_and_for_all(demo: Worker) -> None:
    c = make_client(demo.url, headers={"Authorization": "Bearer not.a.token"})
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(ZocketRefused) as info:
        await c.connect()
    assert loop.time() - started < 5  # at once, not after connect_timeout (10 s here)
    assert (info.value.code, info.value.close_code) == ("unauthenticated", 4401)
    assert c.close_reason == "the server refused the connection (close code 4401): invalid token"
    assert c.status is ConnectionStatus.DISCONNECTED
    with pytest.raises(ZocketRefused):
        await c.actor("counter", fresh_id()).increment()


async def test_events_between_two_clients(demo: Worker) -> None:
    room = fresh_id()
    async with make_client(demo.url) as alice, make_client(demo.url) as bob:
        bob_chat = bob.actor("chat", room)
        resets: list[Any] = []
        bob_counter = bob.actor("counter", room)
        bob_counter.on("reset", resets.append)
        async with bob_chat.events("newMessage") as messages:
            await bob_counter.increment()  # answered after event:sub was processed
            await bob_chat.state.wait_for(timeout=5)  # and the chat is subscribed too
            sent = await alice.actor("chat", room).send(text="hello bob")
            assert sent == {"user": alice.client_id, "text": "hello bob"}
            async with asyncio.timeout(5):
                assert await anext(messages) == sent
        await alice.actor("counter", room).reset()
        async with asyncio.timeout(5):
            while not resets:
                await asyncio.sleep(0.01)
        assert resets == [{"by": alice.client_id}]
        state = await bob_chat.state.wait_for(lambda s: len(s["messages"]) == 1, timeout=5)
        assert set(state["online"]) == {alice.client_id, bob.client_id}


async def test_concurrent_calls_keep_state_consistent(demo: Worker) -> None:
    actor_id = fresh_id()
    # 200 write-through saves queue behind each other: a loaded machine needs more than 5 s for the last.
    async with make_client(demo.url, rpc_timeout=60) as writer, make_client(demo.url) as watcher:
        live = watcher.actor("counter", actor_id).state
        versions: list[int | None] = []
        live.subscribe(lambda _state: versions.append(live.version))
        await live.wait_for(timeout=5)
        counter = writer.actor("counter", actor_id)
        results = await asyncio.gather(*(counter.add(amount=1) for _ in range(200)))
        assert sorted(results) == list(range(1, 201))  # one at a time, none lost
        await live.wait_for(lambda s: s["count"] == 200, timeout=60)
        # Every change reached the listener in order: one version at a time, or several at once
        # when the owner's queue held more steps (a coalesced patch), never back.
        assert versions[0] == 0 and versions[-1] == 200
        assert versions == sorted(set(versions))


async def test_heartbeat_against_real_server(demo: Worker) -> None:
    async with make_client(demo.url, heartbeat_interval=0.05, heartbeat_timeout=2.0) as c:
        first_id = c.client_id
        await asyncio.sleep(0.5)
        assert c.status is ConnectionStatus.CONNECTED
        assert c.client_id == first_id


async def test_reconnects_after_server_crash_and_resyncs(tmp_path: Path, migrated_sqlite: Path) -> None:
    env = single_env(copy_of(migrated_sqlite, tmp_path))
    server = Worker(env, tmp_path, "daphne", settings=DEMO_SETTINGS).start()
    statuses: list[str] = []
    try:
        async with make_client(server.url) as c:
            c.on_status(statuses.append)
            counter = c.actor("counter", "main")
            chat = c.actor("chat", "lobby")
            messages: list[Any] = []
            chat.on("newMessage", messages.append)
            counter.state.subscribe()
            await counter.add(amount=41)
            await counter.state.wait_for(lambda s: s["count"] == 41, timeout=5)
            first_id = c.client_id

            server.kill()
            async with asyncio.timeout(5):
                while c.status is not ConnectionStatus.RECONNECTING:
                    await asyncio.sleep(0.01)
            assert counter.state.get() is None  # no stale state while down
            with pytest.raises(ZocketRpcTimeout):  # calls wait for a socket, within their timeout
                await counter.call("increment", timeout=0.3)
            await asyncio.to_thread(server.start)

            # The counter is write-through: the new process restores it as it was acknowledged.
            assert await counter.state.wait_for(timeout=10) == {"count": 41}
            assert counter.state.version == 1
            assert c.client_id != first_id
            assert await counter.increment() == 42
            await counter.state.wait_for(lambda s: s["count"] == 42, timeout=5)
            assert counter.state.version == 2
            sent = await chat.send(text="back")  # the event subscription was restored
            async with asyncio.timeout(5):
                while not messages:
                    await asyncio.sleep(0.01)
            assert messages == [sent]
        assert statuses == ["reconnecting", "connected", "disconnected"]
    finally:
        server.stop()


LOGIN = """
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.sessions.backends.db import SessionStore

user = get_user_model().objects.create_user("alice", password="not-used")
session = SessionStore()
session[SESSION_KEY] = str(user.pk)
session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
session[HASH_SESSION_KEY] = user.get_session_auth_hash()
session.create()
print(session.session_key)
"""


@pytest.fixture
def demo_with_login(tmp_path: Path, migrated_sqlite: Path) -> Iterator[tuple[Worker, str]]:
    """A demo on a migrated SQLite file, and the session key of a logged-in user."""
    server = Worker(single_env(copy_of(migrated_sqlite, tmp_path)), tmp_path, "daphne", settings=DEMO_SETTINGS)
    session_key = server.manage("shell", "-c", LOGIN).strip().splitlines()[-1]
    server.start()
    yield server, session_key
    server.stop()


async def test_session_cookie_identifies_the_user(demo_with_login: tuple[Worker, str]) -> None:
    server, session_key = demo_with_login
    room = fresh_id()
    async with make_client(server.url, headers={"Cookie": f"sessionid={session_key}"}) as alice:
        sent = await alice.actor("chat", room).send(text="signed")
    assert sent == {"user": "alice", "text": "signed"}
    async with make_client(server.url) as anonymous:
        sent = await anonymous.actor("chat", room).send(text="anon")
        assert sent["user"] == anonymous.client_id


@pytest.fixture
def redis_workers(tmp_path: Path, migrated_sqlite: Path) -> Iterator[tuple[Worker, Worker]]:
    """Two demo workers sharing the Redis at 127.0.0.1:6379 (a private key prefix) and one SQLite file."""
    env = {
        **single_env(copy_of(migrated_sqlite, tmp_path)),
        "REDIS_URL": require_redis(),
        "CHANNEL_LAYER_PREFIX": f"pyclient-{uuid.uuid4().hex[:8]}",
    }
    workers = (Worker(env, tmp_path, "w1", settings=DEMO_SETTINGS), Worker(env, tmp_path, "w2", settings=DEMO_SETTINGS))
    try:
        for worker in workers:
            worker.start()
        yield workers
    finally:
        for worker in workers:
            worker.stop()


async def test_two_workers_one_state_and_failover(redis_workers: tuple[Worker, Worker]) -> None:
    w1, w2 = redis_workers
    actor_id = fresh_id()
    async with make_client(w1.url) as alice, make_client(w2.url, max_attempts=1) as bob:
        theirs = bob.actor("counter", actor_id)
        assert await theirs.increment() == 1  # the instance is now hot on bob's worker
        mine = alice.actor("counter", actor_id)
        versions: list[int | None] = []
        mine.state.subscribe(lambda _state: versions.append(mine.state.version))
        await mine.state.wait_for(timeout=10)
        results = await asyncio.gather(*(theirs.add(amount=1) for _ in range(49)))
        assert sorted(results) == list(range(2, 51))  # one instance, one call at a time
        await mine.state.wait_for(lambda s: s["count"] == 50, timeout=10)
        # Patches crossed workers in order (several versions in one when coalesced), never back.
        assert versions[0] == 1 and versions[-1] == 50 and versions == sorted(set(versions))

        w2.kill()
        # The owner is gone: once its lease expires the instance comes back on
        # alice's worker, restored from the shared database (51 after this call;
        # 1 if it came back fresh).
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while True:
            try:
                final = await mine.add(amount=1)
                break
            except ZocketRpcError as err:
                assert err.code in ("unavailable", "timeout"), err
                assert loop.time() < deadline, "no failover within 30 s"
                await asyncio.sleep(0.2)
        assert final in (1, 51)
        assert await mine.state.wait_for(lambda s: s["count"] == final, timeout=10) == {"count": final}
        assert mine.state.get() == {"count": final}  # no stale state after failover
        async with asyncio.timeout(10):
            while not bob.closed:
                await asyncio.sleep(0.05)
