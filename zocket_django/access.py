"""Access rules on actors and methods, enforced at the consumer before anything is queued.

An actor declares who may use it with class attributes, a method with
``@method(...)`` arguments, and reading (``state:sub``/``event:sub``) with
``read``::

    class Room(Actor):
        login_required = True                 # every call and subscription
        permissions = ["rooms.use_room"]      # Django permissions, all required
        middleware = [load_membership]        # enrich the request or refuse it
        check = is_member                     # a custom check, sync or async
        read = Rule(check=is_member)          # more for state and events

        @method(permissions=["rooms.moderate"], check=is_owner)
        async def kick(self, ctx, who: str) -> None: ...

Rules add up: a method's rule is checked on top of the actor's, ``read`` on
top of the actor's for subscriptions. They are compiled into one ``Guard`` per
method (and one for reading) when the class is created; a method with no rule
at all has no guard and costs nothing per call.

Checks run in this order, cheapest first: login, permissions (``has_perm``,
cached per connection), then (after the input is validated) the middleware
chain, then the custom checks. Any of them refusing answers ``unauthenticated``
or ``forbidden`` and nothing is queued, so the instance is not even activated.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .db import to_thread
from .errors import Forbidden, Unauthenticated

#: ``check(ctx) -> bool``: a custom rule, ``async def`` or plain ``def``.
Check = Callable[["Request"], "bool | Awaitable[bool]"]
#: ``middleware(ctx) -> dict | None``: values to add to ``ctx``, or raise to refuse.
Middleware = Callable[["Request"], "Mapping[str, Any] | Awaitable[Mapping[str, Any] | None] | None"]


@dataclass(frozen=True, slots=True, init=False)
class Rule:
    """Who may do something: login, Django permissions, a custom check.

    ``permissions`` imply ``login_required``. ``check`` receives the
    ``Request`` and returns truthy to allow; it may also raise ``Forbidden`` /
    ``Unauthenticated`` (or any ``ZocketError``) to refuse with its own message.
    """

    login_required: bool
    permissions: tuple[str, ...]
    check: Check | None

    def __init__(
        self, *, login_required: bool = False, permissions: str | Iterable[str] = (), check: Check | None = None
    ) -> None:
        perms = (permissions,) if isinstance(permissions, str) else tuple(permissions)
        object.__setattr__(self, "login_required", bool(login_required) or bool(perms))
        object.__setattr__(self, "permissions", perms)
        object.__setattr__(self, "check", check)

    def problems(self, where: str) -> list[str]:
        found = []
        for perm in self.permissions:
            if not isinstance(perm, str) or perm.count(".") < 1:
                found.append(f"{where}: permission {perm!r} must be a string 'app_label.codename'")
        if self.check is not None and not callable(self.check):
            found.append(f"{where}: check must be a callable taking the request, not {self.check!r}")
        return found


class ExtraAttributes:
    """Values middleware added (``self.extra``), readable as attributes (``ctx.role``)."""

    __slots__ = ()
    extra: dict[str, Any]

    def __getattr__(self, name: str) -> Any:
        if name != "extra" and not name.startswith("__"):
            try:
                return self.extra[name]
            except KeyError:
                pass
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")


class Request(ExtraAttributes):
    """What a check or middleware sees: who asks for what, at the connection's edge.

    ``kind`` is ``"rpc"``, ``"state:sub"`` or ``"event:sub"``; ``method`` and
    ``input`` (the validated arguments, by name) are ``None`` for
    subscriptions. ``user`` is the Django user object (``AnonymousUser`` when
    nobody is logged in), ``scope`` the ASGI scope. Values added by middleware
    are in ``extra`` and readable as attributes (``ctx.role``); they reach the
    handler's ``Context`` the same way and must be JSON-serializable.
    """

    __slots__ = (
        "actor",
        "actor_id",
        "claims",
        "client_id",
        "extra",
        "input",
        "kind",
        "method",
        "scope",
        "user",
        "user_id",
    )

    def __init__(
        self,
        *,
        kind: str,
        actor: str,
        actor_id: str,
        method: str | None,
        input: dict[str, Any] | None,
        client_id: str,
        user: Any,
        user_id: str | None,
        claims: dict[str, Any],
        scope: Mapping[str, Any],
    ) -> None:
        self.kind = kind
        self.actor = actor
        self.actor_id = actor_id
        self.method = method
        self.input = input
        self.client_id = client_id
        self.user = user
        self.user_id = user_id
        self.claims = claims
        self.scope = scope
        self.extra: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"<Request {self.kind} {self.actor}/{self.actor_id} {self.method or ''} user={self.user_id}>"


#: Names middleware may not set: they would shadow the request's or context's own fields.
RESERVED = frozenset(Request.__slots__) | {"clients", "emit", "emissions"}


@dataclass(frozen=True, slots=True)
class Guard:
    """Every rule that applies to one method (or to reading one actor), compiled."""

    login_required: bool
    permissions: tuple[str, ...]
    middleware: tuple[tuple[Callable[..., Any], bool], ...]
    checks: tuple[tuple[Callable[..., Any], bool], ...]


def _runner(fn: Callable[..., Any]) -> tuple[Callable[..., Any], bool]:
    call = type(fn).__call__ if not inspect.isroutine(fn) else None  # a callable object
    is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(call)
    return fn, is_async


def compile_guard(rules: Iterable[Rule | None], middleware: Iterable[Callable[..., Any]] = ()) -> Guard | None:
    """One guard from rules that add up, or ``None`` when nothing is required."""
    login = False
    perms: list[str] = []
    checks: list[tuple[Callable[..., Any], bool]] = []
    for rule in rules:
        if rule is None:
            continue
        login = login or rule.login_required
        perms.extend(p for p in rule.permissions if p not in perms)
        if callable(rule.check):  # anything else is reported by the system checks
            checks.append(_runner(rule.check))
    chain = tuple(_runner(fn) for fn in middleware)
    if not (login or perms or checks or chain):
        return None
    return Guard(login, tuple(perms), chain, tuple(checks))


def as_rule(value: Any) -> Rule | None:
    """``read = Rule(...)``, or a bare callable as shorthand for ``Rule(check=...)``."""
    if value is None or isinstance(value, Rule):
        return value
    if callable(value):
        return Rule(check=value)
    raise TypeError(f"expected a Rule or a check function, not {value!r}")


# -- enforcement (called by the consumer) ------------------------------------------


async def gate(guard: Guard, user: Any, perm_cache: dict[str, bool]) -> None:
    """Login and permissions: refuse with ``unauthenticated`` / ``forbidden``.

    ``has_perm`` answers are kept in ``perm_cache`` (one per connection), so a
    permission costs one thread hop per connection, not one per call.
    """
    if not guard.login_required:
        return
    if user is None or not getattr(user, "is_authenticated", False):
        raise Unauthenticated("login required")
    perms = guard.permissions
    if not perms:
        return
    missing = [p for p in perms if p not in perm_cache]
    if missing:
        if getattr(user, "is_active", False) and getattr(user, "is_superuser", False):
            perm_cache.update(dict.fromkeys(missing, True))  # what has_perm answers, without the hop
        else:
            perm_cache.update(await to_thread(_has_perms)(user, missing))
    denied = [p for p in perms if not perm_cache[p]]
    if denied:
        raise Forbidden("permission denied", details={"permissions": denied})


def _has_perms(user: Any, perms: list[str]) -> dict[str, bool]:
    return {p: bool(user.has_perm(p)) for p in perms}


async def admit(guard: Guard, request: Request) -> dict[str, Any]:
    """Middleware chain then custom checks; returns the values middleware added (JSON-safe)."""
    for fn, is_async in guard.middleware:
        added = await (fn(request) if is_async else to_thread(fn)(request))
        if added is None:
            continue
        if not isinstance(added, Mapping):
            raise TypeError(f"middleware {_name(fn)} must return a mapping or None, not {type(added).__name__}")
        for key, value in added.items():
            if not isinstance(key, str) or key in RESERVED or key.startswith("_"):
                raise TypeError(f"middleware {_name(fn)} may not set {key!r} on the context")
            request.extra[key] = value
    for fn, is_async in guard.checks:
        allowed = await (fn(request) if is_async else to_thread(fn)(request))
        if not allowed:
            raise Forbidden("not allowed")
    if not request.extra:
        return request.extra
    # The owner of the instance may live in another process: what reaches the
    # handler is what survives JSON, here as well as there.
    try:
        return json.loads(json.dumps(request.extra, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"values added by middleware must be JSON-serializable: {exc}") from None


def _name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)
