"""Every setup mistake is caught by ``manage.py check``, and the routing helper refuses to start on it.

One test per rule: the mistake, the check id and its hint, and, for errors,
``zocket_urlpatterns()`` raising before any socket is served.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings
from pydantic import BaseModel

from zocket_django import Actor, Context, method
from zocket_django.checks import worker_count
from zocket_django.registry import registry
from zocket_django.routing import ZocketOriginValidator, zocket_urlpatterns
from zocket_django.testing import isolate_actors


class Empty(BaseModel):
    n: int = 0


def zocket_messages() -> list[checks.CheckMessage]:
    return checks.run_checks(tags=["zocket"])


def only(check_id: str) -> checks.CheckMessage:
    """The one message with ``check_id``; its hint is never empty."""
    found = [m for m in zocket_messages() if m.id == check_id]
    assert len(found) == 1, [str(m) for m in zocket_messages()]
    assert found[0].hint, f"{check_id} says what is wrong but not what to change"
    return found[0]


def refuses_to_start(check_id: str) -> str:
    with pytest.raises(ImproperlyConfigured) as refused:
        zocket_urlpatterns("ws/")
    assert check_id in str(refused.value)
    return str(refused.value)


def test_a_healthy_project_has_no_zocket_message():
    assert zocket_messages() == []


# -- ZOCKET ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ({"ALLOWED_ORIGINS": "app.example.com"}, "ZOCKET['ALLOWED_ORIGINS'] must be a list of strings, not str"),
        ({"IDLE_TIMEOUT": "60"}, "ZOCKET['IDLE_TIMEOUT'] must be a number, not str '60'"),
        ({"MESSAGE_RATE": [100]}, "ZOCKET['MESSAGE_RATE'] must be a number or None, not list [100]"),
        ({"MAX_FRAME_BYTES": 1.5}, "ZOCKET['MAX_FRAME_BYTES'] must be an integer, not float 1.5"),
        ({"ALLOW_MISSING_ORIGIN": "no"}, "ZOCKET['ALLOW_MISSING_ORIGIN'] must be True or False, not str 'no'"),
        ({"AUTHENTICATOR": 3}, "ZOCKET['AUTHENTICATOR'] must be a string or None, not int 3"),
        ({"CALL_TIMEOUT": -1}, "ZOCKET['CALL_TIMEOUT'] must be a positive number, not -1"),
        ({"IDLE_TIMOUT": 5}, "Unknown ZOCKET setting 'IDLE_TIMOUT'"),
        (["IDLE_TIMEOUT", 5], "ZOCKET must be a dict, not list"),
    ],
)
def test_a_wrong_zocket_value_names_the_key_the_value_and_the_type(value: Any, words: str):
    with override_settings(ZOCKET=value):
        message = only("zocket.E011")
        assert words in message.msg
        refuses_to_start("zocket.E011")


def test_an_unknown_key_suggests_the_close_one():
    with override_settings(ZOCKET={"IDLE_TIMOUT": 5}):
        assert "Did you mean 'IDLE_TIMEOUT'?" in only("zocket.E011").hint


def test_every_wrong_key_is_reported_not_only_the_first():
    with override_settings(ZOCKET={"IDLE_TIMEOUT": "1", "LEASE_TTL": "2"}):
        assert len([m for m in zocket_messages() if m.id == "zocket.E011"]) == 2


def test_allowed_origins_as_a_string_never_opens_the_origin_check():
    """``"*.example.com"`` as a string used to become ('*', '.', ...): any origin was accepted."""
    with override_settings(ZOCKET={"ALLOWED_ORIGINS": "*.example.com"}):
        refuses_to_start("zocket.E011")
        with pytest.raises(ImproperlyConfigured, match="ALLOWED_ORIGINS"):
            ZocketOriginValidator(None)


@pytest.mark.parametrize("key", ["AUTHENTICATOR", "CLAIMS"])
def test_a_dotted_path_that_does_not_import_is_caught(key: str):
    with override_settings(ZOCKET={key: "myproject.missing.function"}):
        message = only("zocket.E015")
        assert f"ZOCKET[{key!r}] = 'myproject.missing.function' cannot be imported" in message.msg
        refuses_to_start("zocket.E015")


def test_a_dotted_path_to_something_not_callable_is_caught():
    with override_settings(ZOCKET={"CLAIMS": "zocket_django.checks.IN_MEMORY_LAYER"}):
        assert "is not callable" in only("zocket.E015").msg


# -- the channel layer -------------------------------------------------------------------------------


@pytest.mark.parametrize("layers", [{}, {"other": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}])
def test_no_default_channel_layer(layers: dict[str, Any]):
    with override_settings(CHANNEL_LAYERS=layers):
        assert "InMemoryChannelLayer" in only("zocket.E010").hint
        refuses_to_start("zocket.E010")


def test_a_channel_layer_backend_that_does_not_import():
    with override_settings(CHANNEL_LAYERS={"default": {"BACKEND": "channels_redis.nope.Layer"}}):
        message = only("zocket.E010")
        assert "'channels_redis.nope.Layer' cannot be imported" in message.msg
        assert "zocket-django[redis]" in message.hint


def test_the_in_memory_layer_under_several_workers(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("WEB_CONCURRENCY", "4")
    message = only("zocket.E017")
    assert "WEB_CONCURRENCY asks for 4 worker processes" in message.msg
    refuses_to_start("zocket.E017")
    redis = {"default": {"BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer", "CONFIG": {}}}
    with override_settings(CHANNEL_LAYERS=redis):
        assert [m for m in zocket_messages() if m.id == "zocket.E017"] == []


def test_worker_count_reads_what_servers_read():
    assert worker_count({}, ["daphne", "mysite.asgi:application"]) == (1, "WEB_CONCURRENCY")
    assert worker_count({"WEB_CONCURRENCY": "3"}, []) == (3, "WEB_CONCURRENCY")
    assert worker_count({"GUNICORN_CMD_ARGS": "--bind :80 -w 5"}, []) == (5, "GUNICORN_CMD_ARGS")
    argv = ["/venv/bin/uvicorn", "mysite.asgi:application", "--workers=2"]
    assert worker_count({}, argv) == (2, "the server's --workers")
    assert worker_count({"WEB_CONCURRENCY": "many"}, []) == (1, "WEB_CONCURRENCY")


# -- identity and routing --------------------------------------------------------------------------------


def installed_apps_without(app: str) -> list[str]:
    from django.conf import settings

    return [a for a in settings.INSTALLED_APPS if a != app]


def test_identity_needs_sessions():
    with override_settings(INSTALLED_APPS=installed_apps_without("django.contrib.sessions")):
        message = only("zocket.E016")
        assert "'django.contrib.sessions' is not in INSTALLED_APPS" in message.msg
        refuses_to_start("zocket.E016")


def test_routing_refuses_when_zocket_django_is_not_installed():
    without = override_settings(INSTALLED_APPS=installed_apps_without("zocket_django"))
    with without, pytest.raises(ImproperlyConfigured, match='"zocket_django" is not in INSTALLED_APPS'):
        zocket_urlpatterns("ws/")


def test_runserver_needs_asgi_application_and_daphne_first():
    with override_settings(ASGI_APPLICATION=None):
        assert only("zocket.W001").level == checks.WARNING
        zocket_urlpatterns("ws/")  # a warning does not stop the server
    others = [a for a in installed_apps_without("daphne") if a != "django.contrib.staticfiles"]
    late = ["django.contrib.staticfiles", "daphne", *others]
    with override_settings(INSTALLED_APPS=late):
        assert 'Put "daphne" first' in only("zocket.W002").hint


def test_a_silenced_error_does_not_stop_the_server(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("WEB_CONCURRENCY", "2")
    with override_settings(SILENCED_SYSTEM_CHECKS=["zocket.E017"]):
        zocket_urlpatterns("ws/")


# -- declarations -----------------------------------------------------------------------------------


@isolate_actors()
def test_a_method_without_ctx_is_caught_not_fed_the_context():
    class NoCtx(Actor):
        name = "no_ctx_test"
        State = Empty

        @method
        async def add(self, amount: int) -> int:
            return amount

    message = only("zocket.E014")
    assert message.obj is NoCtx
    assert message.msg == "method 'add': it has no context parameter"
    assert "async def add(self, ctx, ...)" in message.hint
    assert "add" not in NoCtx.spec.methods
    refuses_to_start("zocket.E014")


@isolate_actors()
def test_a_hook_that_does_not_take_ctx_is_caught():
    class BadHook(Actor):
        name = "bad_hook_test"
        State = Empty

        async def on_connect(self):
            pass

    assert only("zocket.E014").msg == "hook on_connect must take (self, ctx)"
    assert "on_connect" not in BadHook.spec.hooks


@isolate_actors()
def test_a_class_without_name_is_caught_unless_it_is_a_base():
    class Forgotten(Actor):
        State = Empty

    message = only("zocket.E013")
    assert message.obj is Forgotten
    refuses_to_start("zocket.E013")

    class Base(Actor):
        abstract = True

    class SharedCode(Actor):  # a base in practice: something served derives from it
        pass

    class Served(SharedCode):
        name = "served_test"
        State = Empty

    assert [m.obj for m in zocket_messages() if m.id == "zocket.E013"] == [Forgotten]


@isolate_actors()
def test_several_mistakes_in_one_class_are_each_reported_once_without_repeating_its_name():
    class Sloppy(Actor):
        name = "sloppy_test"
        State = Empty
        events = {"ping": None}

        @method
        async def add(self, ctx, amount) -> int:
            return 0

    messages = [m for m in zocket_messages() if m.obj is Sloppy]
    assert sorted((m.id, m.msg) for m in messages) == [
        ("zocket.E003", "method 'add': parameter 'amount' has no type hint"),
        ("zocket.E004", "event 'ping' has no payload schema"),
    ]
    assert all(m.hint for m in messages)
    assert "Sloppy" in str(messages[0])  # the obj names the class, once


@isolate_actors()
async def test_ctx_is_found_by_name_or_by_annotation_never_by_position(connect):
    class Anywhere(Actor):
        name = "ctx_anywhere_test"
        State = Empty

        @method
        async def by_annotation(self, context: Context, amount: int) -> str:
            return f"{context.method}:{amount}"

        @method
        async def last(self, amount: int, ctx: Context) -> str:
            return f"{ctx.method}:{amount}"

        @method
        def keyword_only(self, amount: int, *, ctx) -> str:
            return f"{ctx.method}:{amount}"

    assert zocket_messages() == []
    client = await connect()
    assert await client.call("ctx_anywhere_test", "a", "by_annotation", amount=1) == "by_annotation:1"
    assert await client.call("ctx_anywhere_test", "a", "last", amount=2) == "last:2"
    assert await client.call("ctx_anywhere_test", "a", "keyword_only", amount=3) == "keyword_only:3"
    refused = await client.call_raw("ctx_anywhere_test", "a", "last", amount=2, ctx="x")
    assert refused["code"] == "invalid_input"


def test_isolate_actors_forgets_what_was_declared_inside():
    with isolate_actors():

        class Inside(Actor):
            name = "inside_test"
            State = Empty

        assert registry.get("inside_test") is Inside.spec
        assert registry.get("counter") is not None  # the project's actors stay served inside
    assert registry.get("inside_test") is None


def test_unregister_stops_serving_an_actor():
    with isolate_actors():

        class Gone(Actor):
            name = "gone_test"
            State = Empty

        registry.unregister(Gone)
        assert registry.get("gone_test") is None
        with pytest.raises(KeyError, match="gone_test"):
            registry.unregister("gone_test")
