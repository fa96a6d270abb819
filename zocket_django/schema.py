"""Turn a handler's signature into pydantic validators, as django-ninja does.

A method ``async def add(self, ctx, amount: int = 1) -> int`` takes its input as
the JSON object ``{"amount": 5}``: the parameters after ``ctx`` become the
fields of a generated model (``extra="forbid"``), and the return annotation
becomes a ``TypeAdapter`` that serializes the result.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, get_type_hints

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError, create_model
from pydantic_core import to_jsonable_python

# Non-finite floats ("Infinity" is lax-mode valid) could never be sent back as JSON.
_INPUT_CONFIG = ConfigDict(extra="forbid", arbitrary_types_allowed=False, allow_inf_nan=False)


class SchemaProblem(Exception):
    """A declaration that cannot be served as JSON; reported by system checks."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


@dataclass(slots=True)
class Payload:
    """Validates and serializes one JSON value of a declared type."""

    annotation: Any
    adapter: TypeAdapter[Any] = field(init=False)
    _scalar: Any = field(init=False)

    def __post_init__(self) -> None:
        self.adapter = TypeAdapter(self.annotation)
        # A plain JSON scalar type: a value of exactly that type is its own JSON form (no adapter round trip).
        self._scalar = self.annotation if self.annotation in (int, str, bool) else None

    def dump(self, value: Any) -> Any:
        """JSON-ready form of ``value``, validated against the declared type."""
        if type(value) is self._scalar:
            return value
        return self.adapter.dump_python(self.adapter.validate_python(value), mode="json")

    def json_schema(self) -> dict[str, Any]:
        return self.adapter.json_schema()


def short(exc: BaseException) -> str:
    """An exception's gist for a check message: validation errors by field, else its first line."""
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in exc.errors())
    text = str(exc).strip()
    return text.splitlines()[0].split(". Set `")[0] if text else type(exc).__name__


def payload(annotation: Any, what: str) -> Payload:
    """A ``Payload`` for ``annotation``, or ``SchemaProblem`` if it is not JSON."""
    try:
        p = Payload(annotation)
        p.json_schema()
    except Exception as exc:  # pydantic raises several kinds here
        raise SchemaProblem(
            f"{what} cannot be expressed as JSON: {short(exc)}",
            hint="Use JSON types, pydantic models, dataclasses or TypedDicts.",
        ) from exc
    return p


def type_hints(fn: Callable[..., Any]) -> dict[str, Any]:
    """``fn``'s resolved annotations, or ``SchemaProblem`` saying which name is missing."""
    try:
        return get_type_hints(fn, include_extras=True)
    except Exception as exc:
        raise SchemaProblem(
            f"its type hints cannot be resolved ({short(exc)})",
            hint="Import every name used in its annotations at module level, not under TYPE_CHECKING.",
        ) from exc


def input_model(fn: Callable[..., Any], model_name: str, ctx: str) -> type[BaseModel]:
    """The model of ``fn``'s parameters other than ``self`` and the context parameter ``ctx``."""
    hints = type_hints(fn)
    fields: dict[str, Any] = {}
    for p in list(inspect.signature(fn).parameters.values())[1:]:
        if p.name == ctx:
            continue
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.POSITIONAL_ONLY):
            raise SchemaProblem(
                f"parameter {p.name!r} is not a named parameter",
                hint="Input arrives as a JSON object: declare each field as a plain named parameter.",
            )
        if p.name not in hints:
            raise SchemaProblem(
                f"parameter {p.name!r} has no type hint",
                hint=f"Annotate it, e.g. `{p.name}: int`: the hint is what validates the input.",
            )
        default = ... if p.default is p.empty else p.default
        fields[p.name] = (hints[p.name], default)
    try:
        model = create_model(model_name, __config__=_INPUT_CONFIG, **fields)
        model.model_json_schema()
    except Exception as exc:
        raise SchemaProblem(
            f"its parameters cannot be expressed as JSON: {short(exc)}",
            hint="Use JSON types, pydantic models, dataclasses or TypedDicts for parameters.",
        ) from exc
    return model


def result_payload(fn: Callable[..., Any]) -> Payload | None:
    """The return annotation as a ``Payload``; ``None`` when it is not annotated."""
    hints = type_hints(fn)
    if "return" not in hints:
        return None
    return payload(hints["return"], "its result")


def dump_untyped(value: Any) -> Any:
    """Serialize a value whose type was not declared (pydantic's best effort)."""
    return to_jsonable_python(value)


def validation_details(exc: ValidationError) -> list[dict[str, Any]]:
    """Validation errors as JSON the client can show: location, message, type."""
    return [
        {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]}
        for e in exc.errors(include_url=False, include_input=False)
    ]


def _shortened(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def first_problem(details: list[dict[str, Any]]) -> str:
    """The field and message of the first validation error, and how many more there are.

    For an error's message: clients that keep only the message text (Zocket's own
    keeps nothing else) still say what was wrong, e.g. ``amount: Input should be a
    valid integer``. ``details`` keeps the whole structure.
    """
    if not details:
        return "invalid"
    first = details[0]
    where = _shortened(".".join(str(part) for part in first["loc"]), 80)  # field names may come from the client
    text = f"{where}: {_shortened(first['msg'], 200)}" if where else _shortened(first["msg"], 200)
    more = len(details) - 1
    return text + (f" (and {more} more problem{'s' if more > 1 else ''})" if more else "")
