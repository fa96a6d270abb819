"""What a handler is given and what it sends: ``Context`` (who called, ``emit``) and ``Emission``;
and how a handler's context parameter is found (by its name ``ctx`` or its ``Context`` annotation).

A ``Context`` is made per step by the instance (``instance.Instance.context``);
its emissions leave only when the step succeeds.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Set
from typing import TYPE_CHECKING, Any

from . import schema
from .access import ExtraAttributes

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser


class Emission:
    """An event on its way out: broadcast unless narrowed with ``to``/``except_``.

    Events leave only when the step that emitted them succeeds.
    """

    __slots__ = ("event", "excluded", "only", "payload")

    def __init__(self, event: str, payload: Any) -> None:
        self.event = event
        self.payload = payload
        self.only: frozenset[str] | None = None
        self.excluded: frozenset[str] | None = None

    def broadcast(self) -> Emission:
        """To every event subscriber of the instance (the default)."""
        self.only = self.excluded = None
        return self

    def to(self, client_ids: str | Iterable[str]) -> Emission:
        """Only to these clients, among the event subscribers."""
        self.only, self.excluded = _ids(client_ids), None
        return self

    def except_(self, client_ids: str | Iterable[str]) -> Emission:
        """To every event subscriber but these clients."""
        self.only, self.excluded = None, _ids(client_ids)
        return self


def _ids(client_ids: str | Iterable[str]) -> frozenset[str]:
    return frozenset([client_ids]) if isinstance(client_ids, str) else frozenset(client_ids)


class Context(ExtraAttributes):
    """Who is asking, and the way to emit events, for one queued step.

    ``client_id`` is ``None`` for ``on_activate``/``on_deactivate``.
    ``user_id`` is the user's primary key as a string, ``None`` when anonymous.
    Values added by access middleware are in ``extra`` and readable as
    attributes (``ctx.role``).
    """

    __slots__ = (
        "actor",
        "actor_id",
        "claims",
        "client_id",
        "clients",
        "emissions",
        "extra",
        "method",
        "user",
        "user_id",
    )

    def __init__(
        self,
        *,
        actor: str,
        actor_id: str,
        client_id: str | None = None,
        clients: Set[str] = frozenset(),
        user_id: str | None = None,
        claims: dict[str, Any] | None = None,
        user: AbstractBaseUser | AnonymousUser | None = None,
        method: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.actor = actor
        self.actor_id = actor_id
        self.client_id = client_id
        self.clients = clients
        self.user_id = user_id
        self.claims = claims if claims is not None else {}
        self.user = user
        self.method = method
        self.extra = extra if extra is not None else {}
        self.emissions: list[Emission] = []

    def emit(self, event: str, payload: Any = None) -> Emission:
        """Queue ``event``; it is sent after the step succeeds, broadcast by default."""
        emission = Emission(event, payload)
        self.emissions.append(emission)
        return emission


# -- a handler's context parameter -----------------------------------------------------


def context_parameter(fn: Callable[..., Any]) -> str:
    """The name of ``fn``'s context parameter: the one named ``ctx`` or annotated ``Context``.

    Never guessed by position: a method written without one would otherwise
    receive the context as its first input field.
    """
    params = list(inspect.signature(fn).parameters.values())[1:]  # after self
    annotated = [p.name for p in params if is_context_annotation(p.annotation, fn)]
    named = [p.name for p in params if p.name == "ctx"]
    found = list(dict.fromkeys(named + annotated))
    example = f"`async def {fn.__name__}(self, ctx, ...)`"
    if not found:
        raise schema.SchemaProblem(
            "it has no context parameter",
            f"Add one after self, named ctx or annotated Context: {example}.",
        )
    if len(found) > 1:
        raise schema.SchemaProblem(
            f"it has several context parameters ({', '.join(found)})",
            f"Keep one, named ctx or annotated Context: {example}.",
        )
    param = next(p for p in params if p.name == found[0])
    if param.kind not in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY):
        raise schema.SchemaProblem(f"its context parameter {param.name!r} must be a named parameter", example)
    return param.name


def is_context_annotation(annotation: Any, fn: Callable[..., Any]) -> bool:
    if annotation is Context:
        return True
    if isinstance(annotation, str):  # ``from __future__ import annotations``: not evaluated
        return annotation.rsplit(".", 1)[-1] == "Context" and fn.__globals__.get(annotation.rsplit(".", 1)[-1]) in (
            Context,
            None,
        )
    return False


def with_context_as(fn: Callable[..., Any], ctx_name: str) -> Callable[..., Any]:
    """``fn`` callable as ``fn(actor, ctx, **input)``, wherever its context parameter stands."""
    params = list(inspect.signature(fn).parameters.values())
    if len(params) > 1 and params[1].name == ctx_name and params[1].kind == params[1].POSITIONAL_OR_KEYWORD:
        return fn  # the usual (self, ctx, ...): no wrapper

    @functools.wraps(fn)
    def call(actor: Any, ctx: Context, /, **input: Any) -> Any:
        return fn(actor, **{ctx_name: ctx}, **input)

    return call


def takes_self_and_context(fn: Callable[..., Any]) -> bool:
    try:
        inspect.signature(fn).bind(None, None)
    except (TypeError, ValueError):
        return False
    return True
