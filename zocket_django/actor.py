"""What a user writes: ``Actor`` subclasses with a state model, methods and events.

Declaring a concrete subclass (one with ``name`` and ``State``) registers it, as
defining a model registers it with Django. Problems in a declaration are
collected, not raised, so that ``manage.py check`` can report all of them; the
routing helper refuses to start while any remain.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, overload

from pydantic import BaseModel

from . import schema
from .access import Check, Guard, Rule, as_rule, compile_guard
from .context import context_parameter, takes_self_and_context, with_context_as
from .problems import Problem

if TYPE_CHECKING:
    pass

F = TypeVar("F", bound=Callable[..., Any])

HOOKS = ("on_activate", "on_deactivate", "on_connect", "on_disconnect")


class Persist(StrEnum):
    """How an actor's state survives deactivation and restarts (``Actor.persist``)."""

    NONE = "none"
    ON_DEACTIVATE = "on_deactivate"
    WRITE_THROUGH = "write_through"


@dataclass(frozen=True, slots=True)
class MethodOptions:
    """What ``@method(...)`` was given; stored on the function until the class is built."""

    name: str | None = None
    rule: Rule | None = None


@overload
def method(fn: F, /) -> F: ...
@overload
def method(
    *,
    name: str | None = None,
    login_required: bool = False,
    permissions: str | Iterable[str] = (),
    check: Check | None = None,
) -> Callable[[F], F]: ...
def method(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    login_required: bool = False,
    permissions: str | Iterable[str] = (),
    check: Check | None = None,
) -> Any:
    """Mark an actor function as callable over the wire.

    Its parameters after ``ctx`` are its input (validated before it runs), its
    return annotation types its result. ``async def`` runs on the event loop;
    a plain ``def`` runs in a worker thread (so it may use the ORM). Either way
    an instance runs one call at a time.

    ``login_required``, ``permissions`` and ``check`` restrict who may call it,
    on top of the actor's own rules (see ``zocket_django.access``).
    """
    rule = Rule(login_required=login_required, permissions=permissions, check=check)
    has_rule = rule.login_required or rule.permissions or rule.check is not None
    options = MethodOptions(name=name, rule=rule if has_rule else None)

    def mark(f: F) -> F:
        f.__zocket_method__ = options  # type: ignore[attr-defined]
        return f

    return mark(fn) if fn is not None else mark


@dataclass(slots=True)
class MethodSpec:
    """One wire method, with its validators built once at class creation."""

    name: str
    fn: Callable[..., Any]
    is_async: bool
    input_model: type[BaseModel]
    result: schema.Payload | None
    takes_input: bool
    #: Everything checked at the consumer before a call is queued; ``None``: nothing.
    guard: Guard | None = None

    def serialize_result(self, value: Any) -> Any:
        if self.result is None:
            return schema.dump_untyped(value)
        return self.result.dump(value)


@dataclass(slots=True)
class ActorSpec:
    """Everything the runtime needs to know about an actor class."""

    name: str
    cls: type[Actor]
    state_model: type[BaseModel]
    methods: dict[str, MethodSpec] = field(default_factory=dict)
    events: dict[str, schema.Payload] = field(default_factory=dict)
    hooks: dict[str, tuple[Callable[..., Any], bool]] = field(default_factory=dict)
    persist: Persist = Persist.NONE
    checkpoint_every: float | None = None
    schema_version: int = 1
    #: Largest encoded state; ``None``: ``ZOCKET["MAX_STATE_BYTES"]``.
    max_state_bytes: int | None = None
    problems: list[Problem] = field(default_factory=list)
    #: What ``state:sub`` / ``event:sub`` must pass; ``None``: anyone may read.
    read_guard: Guard | None = None

    def initial_state(self) -> BaseModel:
        return self.state_model()


class Actor:
    """Base class of every actor.

    Subclasses set ``name`` (the wire name), ``State`` (a pydantic model whose
    defaults are the initial state) and ``events`` (event name → payload type),
    decorate methods with ``@method``, and may define the hooks
    ``on_activate(ctx)``, ``on_deactivate(ctx)``, ``on_connect(ctx)`` and
    ``on_disconnect(ctx)`` (sync or async). One instance exists per actor id
    while it is hot; ``self.state`` is its live state. A base class that
    shares code and is not served itself has no ``name`` and sets
    ``abstract = True``.

    Durable actors set ``persist`` (``Persist.ON_DEACTIVATE`` or
    ``Persist.WRITE_THROUGH``), optionally ``checkpoint_every`` (seconds, with
    ``ON_DEACTIVATE``) and ``schema_version``, and may define the classmethod
    ``upgrade_state(cls, data, schema_version) -> dict`` for saved states that
    no longer fit ``State`` (see ``zocket_django.persistence``).
    ``max_state_bytes`` caps the state's size as UTF-8 JSON (default
    ``ZOCKET["MAX_STATE_BYTES"]``): a step that would grow it past that fails
    with ``too_large`` and changes nothing.
    Access rules, checked at the consumer for every call and subscription:
    ``login_required``, ``permissions`` (Django permission names, all
    required), ``check`` (a function of the request, sync or async),
    ``middleware`` (functions that add values to the context or refuse), and
    ``read``, a ``Rule`` that subscriptions must pass on top of those.
    """

    name: ClassVar[str]
    #: ``True`` on a base class that is never served itself (it has no ``name``).
    abstract: ClassVar[bool] = False
    State: ClassVar[type[BaseModel]]
    events: ClassVar[dict[str, Any]] = {}
    persist: ClassVar[Persist] = Persist.NONE
    checkpoint_every: ClassVar[float | None] = None
    schema_version: ClassVar[int] = 1
    max_state_bytes: ClassVar[int | None] = None
    spec: ClassVar[ActorSpec]

    login_required: ClassVar[bool] = False
    permissions: ClassVar[Iterable[str]] = ()
    check: ClassVar[Check | None] = None
    middleware: ClassVar[Iterable[Callable[..., Any]]] = ()
    read: ClassVar[Rule | Check | None] = None

    def __init__(self, actor_id: str, state: BaseModel) -> None:
        self.id = actor_id
        self.state = state

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:  # without one, a base class: it shares code, it is not served
            cls.spec = _build_spec(cls)
        if _listeners:
            for listener in _listeners:
                listener(cls)
        else:
            _backlog.append(cls)


_backlog: list[type[Actor]] = []
_listeners: list[Callable[[type[Actor]], None]] = []


def on_declare(listener: Callable[[type[Actor]], None]) -> None:
    """Call ``listener`` with every ``Actor`` subclass declared, those declared before it first.

    The registry listens (so that this module need not import it). A class
    without a ``name`` of its own is a base class, and has no ``spec`` of its own.
    """
    _listeners.append(listener)
    for cls in _backlog:
        listener(cls)
    _backlog.clear()


def _build_spec(cls: type[Actor]) -> ActorSpec:
    problems: list[Problem] = []

    def problem(code: str, message: str, hint: str = "") -> None:
        problems.append(Problem(code, message, hint, cls))

    name = cls.__dict__.get("name")
    if not isinstance(name, str) or not name:
        problem("zocket.E006", f"name must be a non-empty string, not {name!r}", 'Set e.g. name = "chat".')
        name = str(name)
    state_model = getattr(cls, "State", None)
    if not (isinstance(state_model, type) and issubclass(state_model, BaseModel)):
        problem(
            "zocket.E005",
            f"State must be a pydantic BaseModel subclass, not {state_model!r}",
            "Declare `class MyState(BaseModel): ...` and set State = MyState.",
        )
        state_model = BaseModel
    else:
        try:
            state_model()
        except Exception as exc:
            problem(
                "zocket.E002",
                f"State ({state_model.__qualname__}) cannot be built from its defaults: {schema.short(exc)}",
                "Give every field of the state model a default: a new instance starts from State().",
            )
    spec = ActorSpec(name=name, cls=cls, state_model=state_model, problems=problems)
    _persistence_options(cls, spec)
    _size_option(cls, spec)
    actor_rule, read_rule, chain = _access(cls, problems)
    spec.read_guard = compile_guard([actor_rule, read_rule], chain)

    for attr, fn in inspect.getmembers(cls, inspect.isfunction):
        options: MethodOptions | None = getattr(fn, "__zocket_method__", None)
        if options is None:
            continue
        if attr in ACCESS_ATTRIBUTES:
            problem(
                "zocket.E008",
                f"method {attr!r} has the name of an access rule attribute",
                f"Name the function differently and keep the wire name: @method(name={attr!r}).",
            )
            continue
        if options.rule is not None:
            problems.extend(
                Problem("zocket.E008", p, _RULE_HINT, cls) for p in options.rule.problems(f"method {attr!r}")
            )
        wire_name = options.name or attr
        try:
            ctx_name = context_parameter(fn)
        except schema.SchemaProblem as exc:
            problem("zocket.E014", f"method {attr!r}: {exc.message}", exc.hint)
            continue
        try:
            model = schema.input_model(fn, f"{cls.__name__}_{wire_name}_input", ctx_name)
            result = schema.result_payload(fn)
        except schema.SchemaProblem as exc:
            problem("zocket.E003", f"method {attr!r}: {exc.message}", exc.hint)
            continue
        spec.methods[wire_name] = MethodSpec(
            name=wire_name,
            fn=with_context_as(fn, ctx_name),
            is_async=inspect.iscoroutinefunction(fn),
            input_model=model,
            result=result,
            takes_input=bool(model.model_fields),
            guard=compile_guard([actor_rule, options.rule], chain),
        )

    events = cls.events
    if not isinstance(events, dict):
        problem("zocket.E004", f"events must be a dict of event name to payload type, not {events!r}")
        events = {}
    for event_name, annotation in events.items():
        if annotation is None:
            problem(
                "zocket.E004",
                f"event {event_name!r} has no payload schema",
                f"Give it a type: events = {{{event_name!r}: MyPayload}} (a pydantic model, dict, str...).",
            )
            continue
        try:
            spec.events[event_name] = schema.payload(annotation, f"the payload of event {event_name!r}")
        except schema.SchemaProblem as exc:
            problem("zocket.E004", exc.message, exc.hint)

    for hook in HOOKS:
        hook_fn = getattr(cls, hook, None)
        if hook_fn is None:
            continue
        if not takes_self_and_context(hook_fn):
            problem(
                "zocket.E014",
                f"hook {hook} must take (self, ctx)",
                f"Declare it as `async def {hook}(self, ctx): ...` (or a plain def).",
            )
            continue
        spec.hooks[hook] = (hook_fn, inspect.iscoroutinefunction(hook_fn))
    return spec


_RULE_HINT = "See the access rules in the README: permissions are 'app_label.codename' strings, checks callables."


def _persistence_options(cls: type[Actor], spec: ActorSpec) -> None:
    """``persist``, ``checkpoint_every``, ``schema_version`` and ``upgrade_state``, checked."""

    def problem(message: str, hint: str) -> None:
        spec.problems.append(Problem("zocket.E007", message, hint, cls))

    try:
        spec.persist = Persist(cls.persist)
    except ValueError:
        choices = ", ".join(f"Persist.{p.name}" for p in Persist)
        problem(f"persist must be one of {choices}, not {cls.persist!r}", "from zocket_django import Persist")
    if spec.persist != Persist.NONE and len(spec.name) > 100:
        problem("name must be at most 100 characters to be saved", "Choose a shorter name.")
    every = cls.checkpoint_every
    if every is not None:
        if isinstance(every, bool) or not isinstance(every, int | float) or every <= 0:
            problem(f"checkpoint_every must be a positive number of seconds, not {every!r}", "E.g. 30.0, or None.")
        elif spec.persist != Persist.ON_DEACTIVATE:
            problem("checkpoint_every needs persist = Persist.ON_DEACTIVATE", "Set both, or drop checkpoint_every.")
        else:
            spec.checkpoint_every = float(every)
    version = cls.schema_version
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        problem(f"schema_version must be an integer >= 1, not {version!r}", "Start at 1; raise it when State changes.")
    else:
        spec.schema_version = version
    upgrade = cls.__dict__.get("upgrade_state")
    if upgrade is not None and not isinstance(upgrade, classmethod | staticmethod):
        problem(
            "upgrade_state must be a classmethod",
            "@classmethod\n    def upgrade_state(cls, data, schema_version): return data",
        )


def _size_option(cls: type[Actor], spec: ActorSpec) -> None:
    """``max_state_bytes``: ``None`` or a positive integer."""
    limit = cls.max_state_bytes
    if limit is None:
        return
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        hint = "A number of bytes, e.g. 200_000, or None for ZOCKET['MAX_STATE_BYTES']."
        spec.problems.append(
            Problem("zocket.E018", f"max_state_bytes must be a positive integer, not {limit!r}", hint, cls)
        )
    else:
        spec.max_state_bytes = limit


ACCESS_ATTRIBUTES = ("login_required", "permissions", "check", "middleware", "read")


def _access(cls: type[Actor], problems: list[Problem]) -> tuple[Rule | None, Rule | None, tuple[Any, ...]]:
    """The actor's rule, its read rule and its middleware chain, with problems collected."""
    found: list[str] = []
    actor_rule = read_rule = None
    check = getattr(cls, "check", None)
    if getattr(check, "__zocket_method__", None) is not None:
        check = None  # reported with the methods
    try:
        actor_rule = Rule(
            login_required=getattr(cls, "login_required", False),
            permissions=getattr(cls, "permissions", ()),
            check=check,
        )
        found += actor_rule.problems("actor rule")
    except TypeError as exc:
        found.append(f"bad access rule: {exc}")
    read = getattr(cls, "read", None)
    if getattr(read, "__zocket_method__", None) is None:
        try:
            read_rule = as_rule(read)
            if read_rule is not None:
                found += read_rule.problems("read rule")
        except TypeError as exc:
            found.append(f"read rule: {exc}")
    chain = getattr(cls, "middleware", ()) or ()
    if callable(chain) or isinstance(chain, str) or not all(callable(fn) for fn in chain):
        found.append(f"middleware must be a list of functions, not {chain!r}")
        chain = ()
    problems.extend(Problem("zocket.E008", p, _RULE_HINT, cls) for p in found)
    return actor_rule, read_rule, tuple(chain)
