"""Actors are found in actors.py; broken declarations fail loudly at startup."""

import subprocess
import sys
from pathlib import Path

from pydantic import BaseModel

from zocket_django import Actor, method
from zocket_django.registry import registry
from zocket_django.testing import isolate_actors

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str, settings: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"DJANGO_SETTINGS_MODULE": settings, "PATH": "/usr/bin:/bin"},
    )


def test_actors_modules_are_discovered():
    assert {"counter", "chat", "lab"} <= {spec.name for spec in registry.specs()}
    assert registry.problems() == []


def test_check_reports_each_broken_declaration_with_its_id():
    proc = run("manage.py", "check", settings="tests.broken_settings")
    assert proc.returncode == 1
    for code, words in [
        ("zocket.E001", "actors.SecondCounter'>: (zocket.E001) actor name 'counter' is already used by"),
        ("zocket.E002", "actors.NoDefaults'>: (zocket.E002) State (Needy) cannot be built from its defaults: required"),
        ("zocket.E003", "actors.BadParams'>: (zocket.E003) method 'connect': its parameters cannot be expressed"),
        ("zocket.E004", "actors.SilentEvent'>: (zocket.E004) event 'ping' has no payload schema"),
        ("zocket.E008", "actors.BadRules'>: (zocket.E008) actor rule: permission 'no_app_label' must be"),
        ("zocket.E008", "actors.BadRules'>: (zocket.E008) method 'read' has the name of an access rule"),
        ("zocket.E013", "actors.Nameless'>: (zocket.E013) this actor class has no name"),
        ("zocket.E014", "actors.NoContext'>: (zocket.E014) method 'add': it has no context parameter"),
    ]:
        assert any(code in line and words in line for line in proc.stderr.splitlines()), (code, proc.stderr)
    assert proc.stderr.count("HINT:") == proc.stderr.count("(zocket.E"), "every error says what to change"


def test_the_asgi_application_refuses_to_start_with_broken_actors():
    proc = run("-c", "import demo_project.asgi", settings="tests.broken_settings")
    assert proc.returncode != 0
    assert "ImproperlyConfigured" in proc.stderr and "zocket.E002" in proc.stderr


def test_a_healthy_project_passes_check():
    proc = run("manage.py", "check", settings="tests.settings")
    assert proc.returncode == 0, proc.stderr


@isolate_actors()
def test_method_signatures_become_input_models():
    class S(BaseModel):
        n: int = 0

    class Sig(Actor):
        name = "signature_test"
        State = S

        @method
        async def plain(self, ctx, a: int, b: str = "x") -> int:
            return a

        @method(name="renamed")
        def sync_one(self, ctx) -> None:
            pass

    plain = Sig.spec.methods["plain"]
    assert plain.is_async and plain.takes_input
    assert plain.input_model.model_validate({"a": 1}).b == "x"
    assert set(Sig.spec.methods) == {"plain", "renamed"}
    assert not Sig.spec.methods["renamed"].is_async


@isolate_actors()
def test_access_rules_add_up_into_one_guard_per_method():
    from zocket_django import Rule

    class S(BaseModel):
        n: int = 0

    def actor_check(ctx):
        return True

    async def method_check(ctx):
        return True

    def enrich(ctx):
        return {}

    class Guarded(Actor):
        name = "guard_test"
        State = S
        permissions = ["auth.view_user"]
        check = actor_check
        middleware = [enrich]
        read = Rule(permissions="auth.view_group")

        @method
        async def plain(self, ctx) -> None:
            pass

        @method(permissions=["auth.change_user", "auth.view_user"], check=method_check)
        async def strict(self, ctx) -> None:
            pass

    class Open(Actor):
        name = "open_test"
        State = S

        @method
        async def anything(self, ctx) -> None:
            pass

    plain, strict = Guarded.spec.methods["plain"].guard, Guarded.spec.methods["strict"].guard
    assert plain.login_required and plain.permissions == ("auth.view_user",)
    assert [fn for fn, _ in plain.checks] == [actor_check] and [fn for fn, _ in plain.middleware] == [enrich]
    assert strict.permissions == ("auth.view_user", "auth.change_user")
    assert [(fn, is_async) for fn, is_async in strict.checks] == [(actor_check, False), (method_check, True)]
    assert Guarded.spec.read_guard.permissions == ("auth.view_user", "auth.view_group")
    assert Guarded.spec.problems == []
    # No rule at all: no guard, nothing to pay per call.
    assert Open.spec.methods["anything"].guard is None and Open.spec.read_guard is None


@isolate_actors()
def test_bad_access_rules_are_problems():
    class S(BaseModel):
        n: int = 0

    class Bad(Actor):
        name = "bad_rules_test"
        State = S
        middleware = "not a list"
        read = 5

        @method(check="not callable")
        async def m(self, ctx) -> None:
            pass

    messages = [p.message for p in Bad.spec.problems if p.id == "zocket.E008"]
    assert len(messages) == 3, messages
