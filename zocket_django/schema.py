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


@dataclass(slots=True)
class Payload:
    """Validates and serializes one JSON value of a declared type."""

    annotation: Any
    adapter: TypeAdapter[Any] = field(init=False)

    def __post_init__(self) -> None:
        self.adapter = TypeAdapter(self.annotation)

    def dump(self, value: Any) -> Any:
        """JSON-ready form of ``value``, validated against the declared type."""
        return self.adapter.dump_python(self.adapter.validate_python(value), mode="json")

    def json_schema(self) -> dict[str, Any]:
        return self.adapter.json_schema()


def payload(annotation: Any, what: str) -> Payload:
    """A ``Payload`` for ``annotation``, or ``SchemaProblem`` if it is not JSON."""
    try:
        p = Payload(annotation)
        p.json_schema()
    except Exception as exc:  # pydantic raises several kinds here
        raise SchemaProblem(f"{what} cannot be expressed as JSON: {exc}") from exc
    return p


def input_model(fn: Callable[..., Any], model_name: str) -> type[BaseModel]:
    """The model of ``fn``'s parameters after ``self`` and ``ctx``."""
    try:
        hints = get_type_hints(fn, include_extras=True)
    except Exception as exc:
        raise SchemaProblem(f"type hints of {fn.__qualname__} cannot be resolved: {exc}") from exc
    params = list(inspect.signature(fn).parameters.values())
    if len(params) < 2:
        raise SchemaProblem(f"{fn.__qualname__} must take (self, ctx, ...)")
    fields: dict[str, Any] = {}
    for p in params[2:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.POSITIONAL_ONLY):
            raise SchemaProblem(f"{fn.__qualname__}: parameter {p.name!r} must be a named parameter")
        if p.name not in hints:
            raise SchemaProblem(f"{fn.__qualname__}: parameter {p.name!r} needs a type hint")
        default = ... if p.default is p.empty else p.default
        fields[p.name] = (hints[p.name], default)
    try:
        model = create_model(model_name, __config__=_INPUT_CONFIG, **fields)
        model.model_json_schema()
    except Exception as exc:
        raise SchemaProblem(f"parameters of {fn.__qualname__} cannot be expressed as JSON: {exc}") from exc
    return model


def result_payload(fn: Callable[..., Any]) -> Payload | None:
    """The return annotation as a ``Payload``; ``None`` when it is not annotated."""
    try:
        hints = get_type_hints(fn, include_extras=True)
    except Exception as exc:
        raise SchemaProblem(f"type hints of {fn.__qualname__} cannot be resolved: {exc}") from exc
    if "return" not in hints:
        return None
    return payload(hints["return"], f"the result of {fn.__qualname__}")


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
