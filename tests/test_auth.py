"""Identity (session, token), access rules and origins, through the real ASGI stack."""

import logging
import time
from io import StringIO
from unittest import mock

import pytest
from django.contrib.auth.models import Permission, User
from django.core import signing
from django.core.management import CommandError, call_command

from tests.testapp.actors import Counted
from zocket_django import Actor, ZocketError, hot_actors, issue_token, method
from zocket_django.auth import _signer
from zocket_django.routing import zocket_websocket
from zocket_django.testing import ZocketCommunicator, isolate_actors

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
async def staff():
    return await User.objects.acreate(username="sam", is_staff=True)


async def whoami(client, actor="lab", actor_id="me"):
    return await client.call(actor, actor_id, "whoami")


# -- identity ----------------------------------------------------------------------


async def test_anonymous_has_no_user_id_and_no_claims(connect):
    client = await connect()
    me = await whoami(client)
    assert (me["user_id"], me["claims"]) == (None, {})


async def test_session_cookie_gives_the_user_and_claims(connect, alice):
    group = await alice.groups.model.objects.acreate(name="editors")
    await alice.groups.aadd(group)
    client = await connect(user=alice)
    me = await whoami(client)
    assert me["user_id"] == str(alice.pk)
    assert me["claims"] == {"username": "alice", "is_staff": False, "is_superuser": False, "groups": ["editors"]}


async def test_a_stale_session_cookie_is_anonymous(connect, alice):
    client = await connect(headers=[(b"cookie", b"sessionid=not-a-session")])
    assert (await whoami(client))["user_id"] is None


async def test_token_in_the_subprotocol_is_accepted_with_the_zocket_subprotocol(alice):
    client = ZocketCommunicator(user=alice, auth="token")
    connected, subprotocol = await client.connect()
    assert connected and subprotocol == "zocket"
    assert (await whoami(client))["user_id"] == str(alice.pk)
    await client.disconnect()


async def test_a_token_offered_alone_is_the_accepted_subprotocol(alice):
    token = issue_token(alice)
    client = ZocketCommunicator(subprotocols=[f"zocket.token.{token}"])
    connected, subprotocol = await client.connect()
    assert connected and subprotocol == f"zocket.token.{token}"
    await client.disconnect()


async def test_token_in_the_authorization_header_or_the_query_string(connect, alice):
    token = issue_token(alice)
    by_header = await connect(headers=[(b"authorization", f"Bearer {token}".encode())])
    by_query = await connect(path=f"/ws/?token={token}")
    assert (await whoami(by_header))["user_id"] == (await whoami(by_query))["user_id"] == str(alice.pk)


async def test_tokens_only_use_characters_a_subprotocol_allows(alice):
    token = issue_token(alice)
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")


async def test_a_token_wins_over_the_session(connect, alice, staff):
    client = await connect(user=staff, headers=[(b"authorization", f"Bearer {issue_token(alice)}".encode())])
    assert (await whoami(client))["user_id"] == str(alice.pk)


async def refused(**kwargs):
    client = ZocketCommunicator(**kwargs)
    connected, code = await client.connect()
    assert not connected
    return code, client.refusal


@pytest.mark.parametrize("tamper", ["signature", "payload", "garbage", "salt"])
async def test_a_forged_token_is_refused_with_4401(alice, staff, tamper):
    token = issue_token(alice)
    if tamper == "signature":
        token = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    elif tamper == "payload":  # claim to be someone else, keep alice's signature
        other = signing.TimestampSigner(salt="x", sep=".").sign_object({"u": str(staff.pk)}, compress=False)
        token = other.split(".")[0] + token[token.index(".") :]
    elif tamper == "garbage":
        token = "not.a.token"
    else:
        token = signing.TimestampSigner(salt="another-salt", sep=".").sign_object(
            {"u": str(alice.pk), "e": int(time.time()) + 60, "h": ""}, compress=False
        )
    code, frame = await refused(token=token)
    assert code == 4401
    assert frame == {"type": "error", "code": "unauthenticated", "error": "invalid token"}


async def test_an_expired_token_is_refused(alice, settings):
    short = issue_token(alice, max_age=1)
    with mock.patch("zocket_django.auth.time.time", return_value=time.time() + 5):
        code, frame = await refused(token=short)
    assert (code, frame["error"]) == (4401, "token expired")
    # Past TOKEN_MAX_AGE the signature itself has expired, whatever the payload says.
    b62 = signing.b62_encode(int(time.time()) - 10 * 24 * 3600)
    with mock.patch.object(signing.TimestampSigner, "timestamp", return_value=b62):
        token = _signer().sign_object({"u": str(alice.pk), "e": int(time.time()) + 60, "h": "x"}, compress=False)
    assert b62 in token
    code, frame = await refused(token=token)
    assert (code, frame["error"]) == (4401, "token expired")


async def test_changing_the_password_revokes_tokens(alice):
    token = issue_token(alice)
    alice.set_password("new secret")
    await alice.asave()
    code, frame = await refused(token=token)
    assert (code, frame["error"]) == (4401, "token revoked")


async def test_an_inactive_user_token_is_refused(alice):
    token = issue_token(alice)
    alice.is_active = False
    await alice.asave()
    assert (await refused(token=token))[0] == 4401


async def test_issue_token_bounds_its_lifetime(alice, settings):
    settings.ZOCKET = {"TOKEN_MAX_AGE": 60}
    with pytest.raises(ValueError):
        issue_token(alice, max_age=61)
    with pytest.raises(ValueError):
        issue_token(alice, max_age=0)


async def test_the_management_command_prints_a_working_token(alice, connect):
    out, err = StringIO(), StringIO()
    await sync(call_command)("zocket_token", "alice", "--max-age", "600", stdout=out, stderr=err)
    token = out.getvalue().strip()
    assert "600 seconds" in err.getvalue()
    client = await connect(token=token)
    assert (await whoami(client))["user_id"] == str(alice.pk)
    with pytest.raises(CommandError):
        await sync(call_command)("zocket_token", "nobody", stdout=out, stderr=err)


def sync(fn):
    from channels.db import database_sync_to_async

    return database_sync_to_async(fn)


async def test_without_an_authenticator_tokens_are_ignored(connect, alice, settings):
    settings.ZOCKET = {"AUTHENTICATOR": None}
    client = await connect(token=issue_token(alice))
    assert (await whoami(client))["user_id"] is None


async def test_a_custom_authenticator_from_settings(connect, alice, settings):
    settings.ZOCKET = {"AUTHENTICATOR": "tests.test_auth.header_authenticator"}
    client = await connect(headers=[(b"x-user", b"alice")])
    assert (await whoami(client))["claims"]["username"] == "alice"
    assert (await refused(headers=[(b"x-user", b"nobody")]))[0] == 4401
    assert (await whoami(await connect()))["user_id"] is None


def header_authenticator(scope):
    """A sync authenticator (runs in a thread): trusts an X-User header. For tests only!"""
    from zocket_django import AuthenticationFailed

    name = dict(scope["headers"]).get(b"x-user")
    if name is None:
        return None
    try:
        return User.objects.get(username=name.decode())
    except User.DoesNotExist:
        raise AuthenticationFailed("no such user") from None


async def test_claims_come_from_the_configured_function(connect, alice, settings):
    settings.ZOCKET = {"CLAIMS": "tests.test_auth.tiny_claims"}
    client = await connect(user=alice)
    assert (await whoami(client))["claims"] == {"name": "ALICE"}


def tiny_claims(user):
    return {"name": user.username.upper()}


async def test_for_user_is_one_line(alice):
    client = await ZocketCommunicator.for_user(alice)
    assert (await whoami(client))["user_id"] == str(alice.pk)
    await client.disconnect()


# -- access rules ---------------------------------------------------------------------


async def test_login_required_refuses_anonymous_without_activating_anything(connect, alice):
    client = await connect()
    frame = await client.call_raw("vault", "v", "peek")
    assert (frame["code"], frame["error"]) == ("unauthenticated", "login required")
    assert hot_actors.get("vault", "v") is None  # not even activated
    member = await connect(user=alice)
    assert await member.call("vault", "v", "peek") == 0


async def test_permissions_forbid_until_granted(connect, alice):
    client = await connect(user=alice)
    frame = await client.call_raw("vault", "v", "open")
    assert frame["code"] == "forbidden"
    assert frame["details"] == {"permissions": ["auth.view_user"]}
    assert hot_actors.get("vault", "v") is None
    await alice.user_permissions.aadd(await Permission.objects.aget(codename="view_user"))
    # A new connection sees the new permission (open ones after their next check: tests/test_identity.py).
    again = await connect(user=alice)
    assert await again.call("vault", "v", "open") == 1


async def test_anonymous_asking_for_a_permission_is_unauthenticated(connect):
    client = await connect()
    assert (await client.call_raw("vault", "v", "open"))["code"] == "unauthenticated"


async def test_superusers_have_every_permission(connect):
    root = await User.objects.acreate(username="root", is_superuser=True)
    client = await connect(user=root)
    with mock.patch("zocket_django.access._has_perms") as has_perms:
        assert await client.call("vault", "v", "open") == 1
    has_perms.assert_not_called()


async def test_a_permission_costs_one_lookup_per_connection(connect, alice):
    await alice.user_permissions.aadd(await Permission.objects.aget(codename="view_user"))
    client = await connect(user=alice)
    with mock.patch("zocket_django.access._has_perms", side_effect=lambda u, ps: dict.fromkeys(ps, True)) as lookup:
        for n in range(1, 4):
            assert await client.call("vault", "v", "open") == n
    assert lookup.call_count == 1


async def test_a_sync_custom_check(connect, alice, staff):
    assert (await (await connect(user=alice)).call_raw("vault", "v", "audit"))["code"] == "forbidden"
    assert await (await connect(user=staff)).call("vault", "v", "audit") == 10


async def test_an_async_custom_check_sees_the_validated_input(connect, alice):
    client = await connect(user=alice)
    assert (await client.call_raw("vault", "v", "deposit", amount=3))["code"] == "forbidden"
    assert await client.call("vault", "v", "deposit", amount=4) == 4
    # Login and permissions come before input validation; custom checks after it.
    assert (await client.call_raw("vault", "v", "deposit", amount="x"))["code"] == "invalid_input"
    assert (await (await connect()).call_raw("vault", "v", "deposit", amount="x"))["code"] == "unauthenticated"


async def test_middleware_enriches_the_context_in_order(connect, alice, staff):
    member = await connect(user=alice)
    me = await member.call("club", "c", "whoami")
    assert me == {"role": "member", "extra": {"role": "member", "seen": "member:rpc"}, "user": str(alice.pk)}
    assert (await member.call_raw("club", "c", "admin_only"))["code"] == "forbidden"
    admin = await connect(user=staff)
    assert await admin.call("club", "c", "admin_only") == "ok"
    # Hooks run for a request see what middleware added to it.
    assert hot_actors.get("club", "c").state.log == ["connect member", "connect admin"]


async def test_middleware_refuses(connect):
    mallory = await User.objects.acreate(username="mallory")
    client = await connect(user=mallory)
    frame = await client.call_raw("club", "c", "whoami")
    assert (frame["code"], frame["error"]) == ("forbidden", "mallory is banned")
    await client.send_json_to({"type": "state:sub", "actor": "club", "actorId": "c"})
    frame = await client.expect("error")
    assert (frame["code"], frame["ref"]) == ("forbidden", {"type": "state:sub", "actor": "club", "actorId": "c"})
    assert hot_actors.get("club", "c") is None


async def test_middleware_values_must_be_json_and_bugs_are_generic(connect, alice, settings, caplog):
    client = await connect(user=alice)
    for name in ("leaky", "broken"):
        frame = await client.call_raw("club", "c", name)
        assert (frame["code"], frame["error"]) == ("handler_error", "access check failed")
        assert "details" not in frame
    assert hot_actors.get("club", "c") is None
    settings.DEBUG = True
    frame = await client.call_raw("club", "c", "broken")
    assert frame["details"] == {"exception": "builtins.RuntimeError", "message": "middleware bug"}


async def test_private_state_and_events_are_refused_to_strangers(connect, alice, staff):
    stranger, anonymous, owner = await connect(user=staff), await connect(), await connect(user=alice)
    for kind in ("state:sub", "event:sub"):
        await stranger.send_json_to({"type": kind, "actor": "private_diary", "actorId": "alice"})
        assert (await stranger.expect("error"))["code"] == "forbidden"
        await anonymous.send_json_to({"type": kind, "actor": "private_diary", "actorId": "alice"})
        assert (await anonymous.expect("error"))["code"] == "unauthenticated"
    assert hot_actors.get("private_diary", "alice") is None
    assert await owner.subscribe_state("private_diary", "alice") == ({"opened": 0, "log": []}, 0)
    await owner.subscribe_events("private_diary", "alice")
    # Strangers may still call what has no rule; only the owner sees what it changed.
    assert await stranger.call("private_diary", "alice", "knock") == 1
    assert (await owner.next_patch("private_diary", "alice"))["version"] == 1
    assert (await owner.next_event("private_diary", "alice", "knocked"))["payload"] == stranger.client_id
    assert [f["type"] for f in await stranger.nothing_more()] == []
    assert [f["type"] for f in await anonymous.nothing_more()] == []


async def test_refusals_are_logged_with_context(connect, alice, caplog):
    client = await connect(user=alice)
    with caplog.at_level(logging.INFO, logger="zocket_django"):
        await client.call_raw("vault", "v7", "audit")
    record = next(r for r in caplog.records if "refused" in r.getMessage())
    assert record.zocket == {
        "actor": "vault",
        "actor_id": "v7",
        "method": "audit",
        "type": "rpc",
        "client": client.client_id,
        "user": str(alice.pk),
        "code": "forbidden",
    }


@isolate_actors()
async def test_an_access_rule_refusal_is_logged_whatever_its_code(connect, caplog, settings):
    """Logged or not depends on who refused: zocket's own checks of a malformed request are quiet, rules are not."""

    async def busy(ctx) -> bool:
        raise ZocketError("the desk is busy", code="overloaded")

    async def picky(ctx) -> bool:
        raise ZocketError("not like that", code="bad_request")

    class Desk(Actor):
        name = "rule_coded_desk"
        State = Counted

        @method(check=busy)
        async def ring(self, ctx) -> None: ...

        @method(check=picky)
        async def knock(self, ctx) -> None: ...

        @method
        async def wait(self, ctx, seconds: int) -> None: ...

    settings.ZOCKET = {"MAX_SUBSCRIPTIONS": 1}
    client = await connect()
    await client.subscribe_events("rule_coded_desk", "d")
    with caplog.at_level(logging.INFO, logger="zocket_django"):
        assert (await client.call_raw("rule_coded_desk", "d", "ring"))["code"] == "overloaded"
        assert (await client.call_raw("rule_coded_desk", "d", "knock"))["code"] == "bad_request"
        logged = [r.zocket["code"] for r in caplog.records if "refused" in r.getMessage()]
        assert logged == ["overloaded", "bad_request"]
        caplog.clear()
        # The same codes (and the others) from zocket's own checks: answered, not logged.
        assert (await client.call_raw("rule_coded_desk", "d", "wait", seconds="x"))["code"] == "invalid_input"
        assert (await client.call_raw("rule_coded_desk", "d", "nap"))["code"] == "unknown_method"
        assert (await client.call_raw("no_such_actor", "d", "ring"))["code"] == "unknown_actor"
        assert (await client.call_raw("rule_coded_desk", "", "wait", seconds=1))["code"] == "bad_request"
        await client.send_json_to({"type": "state:sub", "actor": "rule_coded_desk", "actorId": "e"})
        assert (await client.expect("error"))["code"] == "overloaded"  # MAX_SUBSCRIPTIONS
        assert [r.getMessage() for r in caplog.records if "refused" in r.getMessage()] == []


async def test_a_failing_token_is_logged(alice, caplog):
    with caplog.at_level(logging.WARNING, logger="zocket_django"):
        await refused(token="nope")
    record = next(r for r in caplog.records if "connection refused" in r.getMessage())
    assert record.zocket["code"] == "unauthenticated"


async def test_handler_errors_show_the_exception_only_in_debug(connect, settings):
    client = await connect()
    frame = await client.call_raw("lab", "x", "fail_after_change")
    assert frame["error"] == "fail_after_change failed" and "details" not in frame
    settings.DEBUG = True
    frame = await client.call_raw("lab", "x", "fail_after_change")
    assert frame["details"] == {"exception": "builtins.RuntimeError", "message": "secret internals"}
    assert hot_actors.get("lab", "x").state.value == 0


# -- origins ------------------------------------------------------------------------------


async def test_a_foreign_origin_is_refused_before_the_handshake():
    code, _ = await refused(origin="https://evil.example")
    assert code == 1000  # closed before accept: the HTTP handshake fails (403)


async def test_an_allowed_origin_is_accepted(connect):
    await connect(origin="http://localhost:8000")
    await connect(origin="http://127.0.0.1")


async def test_zocket_allowed_origins_and_missing_origin(settings):
    settings.ZOCKET = {"ALLOWED_ORIGINS": ["https://app.example.com"], "ALLOW_MISSING_ORIGIN": False}
    app = zocket_websocket("ws/")
    client = ZocketCommunicator(app, origin="https://app.example.com")
    assert (await client.connect())[0]
    await client.disconnect()
    assert (await refused(application=app, origin="https://other.example.com"))[0] == 1000
    assert (await refused(application=app))[0] == 1000


def test_middleware_values_travel_with_a_call_forwarded_to_another_worker():
    import json

    from zocket_django.caller import Caller

    caller = Caller("client", "channel", "7", {"username": "ada"}, object(), {"role": "admin", "seen": [1, 2]})
    forwarded = Caller.from_wire(json.loads(json.dumps(caller.to_wire())))
    assert (forwarded.extra, forwarded.claims, forwarded.user_id) == (caller.extra, caller.claims, "7")
