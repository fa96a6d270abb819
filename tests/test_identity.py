"""Identity kept true: sessions, tokens and permissions checked again while a socket is open.

Signals of this process (logout, a saved user, permission changes) check at
once: those tests set ``IDENTITY_CHECK_INTERVAL`` high, so only the signal can
be what closed the socket. Changes made behind Django's back (a session row
deleted, a token that expires, a bulk delete of permission rows) are noticed
at the interval: those tests make it small.
"""

import asyncio
import json
import time

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.contrib.sessions.models import Session
from django.db import OperationalError
from django.test import Client

from zocket_django import auth, hot_actors, issue_token
from zocket_django.testing import ZocketCommunicator

SIGNALS_ONLY = {"IDENTITY_CHECK_INTERVAL": 600.0}
QUICK = {"IDENTITY_CHECK_INTERVAL": 0.1}


@pytest.fixture
async def view_user():
    return await Permission.objects.aget(codename="view_user")


def logged_in(user) -> tuple[Client, list[tuple[bytes, bytes]]]:
    """A Django test client logged in as ``user`` (its own session) and the WebSocket headers of that session."""
    client = Client()
    client.force_login(user)
    cookie = client.cookies["sessionid"].value
    return client, [(b"cookie", f"sessionid={cookie}".encode())]


async def session_socket(connect, user):
    http, headers = await asyncio.to_thread(logged_in, user)
    return http, await connect(headers=headers)


async def closed(client: ZocketCommunicator, timeout: float = 10.0) -> tuple[int, dict | None]:
    """Read until the server closes the socket: its close code and the last ``error`` frame before it."""
    error = None
    deadline = time.monotonic() + timeout
    while True:
        output = await client.receive_output(max(0.01, deadline - time.monotonic()))
        if output["type"] == "websocket.close":
            return output.get("code"), error
        frame = json.loads(output["text"])
        if frame["type"] == "error":
            error = frame


async def still_open(client: ZocketCommunicator) -> None:
    await client.ping()
    assert await client.call("lab", "me", "noop") == 0


# -- revoked identities: 4401 ------------------------------------------------------------------


async def test_a_password_change_closes_every_socket_of_that_user(connect, settings, alice):
    settings.ZOCKET = SIGNALS_ONLY
    _, by_session = await session_socket(connect, alice)
    by_token = await connect(token=issue_token(alice))
    other = await connect(user=await User.objects.acreate(username="bob"))
    alice.set_password("new password")
    await alice.asave()
    assert await closed(by_session) == (4401, {"type": "error", "code": "unauthenticated", "error": "session ended"})
    assert await closed(by_token) == (4401, {"type": "error", "code": "unauthenticated", "error": "token revoked"})
    await still_open(other)


async def test_a_deactivated_user_is_closed_at_once(connect, settings, alice):
    settings.ZOCKET = SIGNALS_ONLY
    by_token = await connect(token=issue_token(alice))
    alice.is_active = False
    await alice.asave(update_fields=["is_active"])
    assert await closed(by_token) == (4401, {"type": "error", "code": "unauthenticated", "error": "invalid token"})


async def test_logout_closes_the_sockets_of_that_session_only(connect, settings, alice):
    settings.ZOCKET = SIGNALS_ONLY
    first_browser, first = await session_socket(connect, alice)
    _, second = await session_socket(connect, alice)
    by_token = await connect(token=issue_token(alice))
    await first.call("vault", "v", "peek")  # present on an instance: it leaves it
    await asyncio.to_thread(first_browser.logout)  # django.contrib.auth.logout: user_logged_out
    assert await closed(first) == (4401, {"type": "error", "code": "unauthenticated", "error": "logged out"})
    assert await second.call("vault", "v", "peek") == 0
    assert await by_token.call("vault", "v", "peek") == 0


async def test_frames_after_revocation_are_not_served(connect, settings, alice):
    settings.ZOCKET = SIGNALS_ONLY
    browser, client = await session_socket(connect, alice)
    await client.subscribe_state("vault", "v")
    await asyncio.to_thread(browser.logout)
    await client.send_json_to({"type": "rpc", "id": "late", "actor": "vault", "actorId": "v", "method": "open"})
    code, _ = await closed(client)
    assert code == 4401
    assert await client.receive_nothing(0.2)
    assert hot_actors.get("vault", "v").state.opened == 0
    [vault] = hot_actors.list()
    assert vault["clients"] == 0  # it left the instance at once


async def test_a_session_ended_elsewhere_is_noticed_within_the_interval(connect, settings, alice):
    settings.ZOCKET = QUICK
    browser, client = await session_socket(connect, alice)
    await Session.objects.filter(session_key=browser.session.session_key).adelete()  # no signal: another process
    assert await closed(client) == (4401, {"type": "error", "code": "unauthenticated", "error": "session ended"})


async def test_an_expired_token_is_noticed_within_the_interval(connect, settings, alice, monkeypatch):
    settings.ZOCKET = QUICK
    client = await connect(token=issue_token(alice, max_age=60))
    await still_open(client)
    # The token's minute passes at once (the auth module's clock only): a short-lived token
    # could expire before a slow machine finished the handshake, and the test would prove nothing.
    later = time.time() + 120
    monkeypatch.setattr(auth, "time", type("Later", (), {"time": staticmethod(lambda: later)}))
    assert await closed(client, timeout=15) == (
        4401,
        {"type": "error", "code": "unauthenticated", "error": "token expired"},
    )


async def test_a_check_that_cannot_be_made_keeps_the_socket(connect, settings, alice, monkeypatch, caplog):
    settings.ZOCKET = QUICK

    def database_down(session_key):
        raise OperationalError("connection refused")

    monkeypatch.setattr(auth, "session_user", database_down)
    _, client = await session_socket(connect, alice)
    await asyncio.sleep(0.5)  # several intervals
    await still_open(client)
    assert any("could not check the identity of 1 socket(s)" in r.getMessage() for r in caplog.records)


async def test_anonymous_sockets_have_nothing_to_revoke(connect, settings):
    settings.ZOCKET = QUICK
    client = await connect()
    await asyncio.sleep(0.3)
    await still_open(client)


# -- removed permissions: subscriptions end ---------------------------------------------------------


async def test_a_removed_permission_ends_the_subscriptions_it_guarded(connect, settings, alice, view_user):
    settings.ZOCKET = SIGNALS_ONLY
    await alice.user_permissions.aadd(view_user)
    _, client = await session_socket(connect, alice)
    await client.subscribe_state("archive", "a")
    await client.subscribe_events("archive", "a")
    await client.subscribe_state("vault", "v")  # login only: stays
    assert await client.call("archive", "a", "peek") == 0

    await alice.user_permissions.aremove(view_user)
    ended = {(await client.expect("error"))["ref"]["type"] for _ in range(2)}
    assert ended == {"state:sub", "event:sub"}
    frame = await client.call_raw("archive", "a", "peek")  # the connection's permission cache was cleared
    assert (frame["code"], frame["details"]) == ("forbidden", {"permissions": ["auth.view_user"]})

    # The socket stays open; the archive's changes no longer reach it, the vault's do.
    writer = await connect(user=await User.objects.acreate(username="bob"))
    assert await writer.call("archive", "a", "file", what="secret") == 1
    assert await writer.call("vault", "v", "deposit", amount=2) == 2
    assert (await client.next_patch("vault", "v"))["patches"]
    assert [f for f in await client.nothing_more() if f.get("actor") == "archive"] == []


async def test_the_error_frame_names_the_subscription_and_the_reason(connect, settings, alice, view_user):
    settings.ZOCKET = SIGNALS_ONLY
    await alice.user_permissions.aadd(view_user)
    _, client = await session_socket(connect, alice)
    await client.subscribe_state("archive", "a")
    await alice.user_permissions.aremove(view_user)
    assert await client.expect("error") == {
        "type": "error",
        "code": "forbidden",
        "error": "permission denied; subscription ended",
        "ref": {"type": "state:sub", "actor": "archive", "actorId": "a"},
    }


async def test_a_permission_removed_from_a_group_ends_its_members_subscriptions(connect, settings, alice, view_user):
    settings.ZOCKET = SIGNALS_ONLY
    readers = await Group.objects.acreate(name="readers")
    await readers.permissions.aadd(view_user)
    await alice.groups.aadd(readers)
    _, client = await session_socket(connect, alice)
    await client.subscribe_state("archive", "a")
    await readers.permissions.aremove(view_user)
    assert (await client.expect("error"))["ref"] == {"type": "state:sub", "actor": "archive", "actorId": "a"}


async def test_a_permission_removed_behind_djangos_back_is_noticed_within_the_interval(
    connect, settings, alice, view_user
):
    settings.ZOCKET = QUICK
    await alice.user_permissions.aadd(view_user)
    _, client = await session_socket(connect, alice)
    await client.subscribe_state("archive", "a")
    await User.user_permissions.through.objects.filter(user=alice).adelete()  # no m2m_changed
    assert (await client.expect("error"))["code"] == "forbidden"
    assert (await client.call_raw("archive", "a", "peek"))["code"] == "forbidden"


async def test_a_granted_permission_counts_at_once(connect, settings, alice, view_user):
    settings.ZOCKET = SIGNALS_ONLY
    _, client = await session_socket(connect, alice)
    assert (await client.call_raw("archive", "a", "peek"))["code"] == "forbidden"
    await alice.user_permissions.aadd(view_user)
    for _ in range(100):  # the check runs on the loop, soon after the signal
        if "result" in await client.call_raw("archive", "a", "peek"):
            break
        await asyncio.sleep(0.02)
    assert await client.call("archive", "a", "peek") == 0


# -- through a real daphne: logout and password change on the server's own pages ------------------


class Browser:
    """Django's login, logout and admin password pages over HTTP, with a cookie jar of its own."""

    def __init__(self, base: str) -> None:
        from http.cookiejar import CookieJar
        from urllib.request import HTTPCookieProcessor, build_opener

        self.base = base
        self.jar = CookieJar()
        self.opener = build_opener(HTTPCookieProcessor(self.jar))

    def cookie(self, name: str) -> str:
        return next(c.value for c in self.jar if c.name == name)

    def submit(self, path: str, page: str | None = None, **fields: str) -> int:
        """GET the form's ``page`` (for the CSRF cookie), then POST to ``path``; the final status."""
        from urllib.parse import urlencode

        self.opener.open(self.base + (page or path), timeout=30).read()
        data = urlencode({"csrfmiddlewaretoken": self.cookie("csrftoken"), **fields}).encode()
        with self.opener.open(self.base + path, data=data, timeout=30) as response:
            return response.status

    def session_headers(self) -> dict[str, str]:
        return {"Cookie": f"sessionid={self.cookie('sessionid')}"}


async def closed_live(client, timeout: float = 30.0) -> tuple[int | None, str | None]:
    """The close code of a live socket the server closes, and the text of its last ``error`` frame."""
    error = await client.wait_for(lambda f: f.get("type") == "error", timeout)
    await asyncio.wait_for(client._reader, timeout)
    return client.ws.close_code, error["error"]


@pytest.mark.slow
async def test_through_daphne_logout_and_password_change_close_the_sockets_they_revoke(tmp_path, migrated_sqlite):
    import json as jsonlib

    from tests.live import LiveClient, Worker, copy_of, single_env
    from zocket_django.client import ZocketClient

    env = {**single_env(copy_of(migrated_sqlite, tmp_path)), "ZOCKET_JSON": jsonlib.dumps(SIGNALS_ONLY)}
    worker = Worker(env, tmp_path, "daphne")
    worker.manage("demo_users")  # alice (staff) and bob, password "demo"
    token = worker.manage("zocket_token", "alice").strip()
    worker.start()
    base = f"http://127.0.0.1:{worker.port}"
    sockets: list[LiveClient] = []
    bundled = None
    try:
        first, second = Browser(base), Browser(base)
        for browser in (first, second):
            assert await asyncio.to_thread(browser.submit, "/accounts/login/", username="alice", password="demo") == 200
        by_first = await LiveClient.connect(worker.url, additional_headers=first.session_headers())
        by_second = await LiveClient.connect(worker.url, additional_headers=second.session_headers())
        by_token = await LiveClient.connect(worker.url, additional_headers={"Authorization": f"Bearer {token}"})
        sockets += [by_first, by_second, by_token]
        bundled = ZocketClient(worker.url, headers={"Authorization": f"Bearer {token}"}, connect_timeout=30)
        await bundled.connect()
        assert await bundled.actor("lab", "me").noop() == 0
        for client in sockets:
            assert (await client.call("lab", "me", "whoami"))["claims"]["username"] == "alice"

        # Logging out in the first browser closes that session's socket, and only that one.
        assert await asyncio.to_thread(first.submit, "/accounts/logout/", page="/accounts/login/") == 200
        assert await closed_live(by_first) == (4401, "logged out")
        assert await by_second.call("lab", "me", "noop") == 0
        assert await by_token.call("lab", "me", "noop") == 0

        # A password change (the admin's form, in the second browser) revokes the token and the old session.
        changed = await asyncio.to_thread(
            second.submit,
            "/admin/password_change/",
            old_password="demo",
            new_password1="a new passphrase",
            new_password2="a new passphrase",
        )
        assert changed == 200
        assert await closed_live(by_token) == (4401, "token revoked")
        for _ in range(300):  # the bundled client takes the 4401 as final
            if bundled.closed:
                break
            await asyncio.sleep(0.1)
        assert bundled.refusal is not None
        assert (bundled.refusal.close_code, bundled.refusal.code) == (4401, "unauthenticated")
        assert bundled.refusal.message == "the server refused the connection (close code 4401): token revoked"
        assert await closed_live(by_second) == (4401, "session ended")
        # The browser that changed it holds a new session: its next socket is alice again.
        fresh = await LiveClient.connect(worker.url, additional_headers=second.session_headers())
        sockets.append(fresh)
        assert (await fresh.call("lab", "me", "whoami"))["claims"]["username"] == "alice"
    finally:
        for client in sockets:
            await client.close()
        if bundled is not None:
            await bundled.close()
        worker.stop()
