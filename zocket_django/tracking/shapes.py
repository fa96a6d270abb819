"""What the recorder knows of a state model: the JSON shape of every field.

A shape says how a value at one place of the state becomes JSON, and whether
it is a *node* the recorder follows (a model, a list, a dict) or a leaf it only
converts (``str``, ``int``, an ``Enum``, a ``datetime``, a tuple of those...).
Leaves are immutable, so a leaf can only change by assignment, which the
recorder sees. Values are converted with a ``TypeAdapter`` of the declared
type, so that they come out exactly as ``model_dump(mode="json")`` writes them
(a subclass instance dumped as its declared model, an ``Annotated`` element
serializer applied).

``model_shape`` refuses (``Untrackable``) a model whose dump does not mirror
its attributes: custom or computed serializers, excluded fields, extra fields,
``validate_assignment`` (validators may rewrite other fields), and fields of a
type whose contents could change unseen (sets, ``Any``, unions of models,
tuples of models). Such an actor is diffed whole after every step, as before.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import pathlib
import types
import uuid
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, RootModel, TypeAdapter
from pydantic.fields import FieldInfo
from pydantic.functional_serializers import PlainSerializer, WrapSerializer

_LEAF_TYPES = (
    str, int, float, bool, bytes, type(None), datetime.datetime, datetime.date, datetime.time,
    datetime.timedelta, uuid.UUID, decimal.Decimal, pathlib.Path,
)  # fmt: skip
#: Configuration that changes how a model dumps its fields (the adapters would not know it).
_DUMP_CONFIG = ("ser_json_timedelta", "ser_json_bytes", "ser_json_inf_nan", "ser_json_temporal", "serialize_by_alias")


class Untrackable(Exception):
    """The recorder cannot follow this type; the message says why."""


class Shape:
    """How values at one place of the state turn into JSON."""

    __slots__ = ("adapter",)
    node = False

    def __init__(self, annotation: Any) -> None:
        self.adapter: TypeAdapter[Any] = TypeAdapter(annotation)

    def to_json(self, value: Any) -> Any:
        return self.adapter.dump_python(value, mode="json")


class Leaf(Shape):
    """An immutable value: it only changes by being replaced."""

    __slots__ = ()


class ModelShape(Shape):
    """A pydantic model: its fields' shapes, and which of them hold nodes."""

    __slots__ = ("cls", "fields", "nodes")
    node = True

    def __init__(self, cls: type[BaseModel]) -> None:
        super().__init__(cls)
        self.cls = cls
        self.fields: dict[str, Shape] = {}
        self.nodes: tuple[tuple[str, Shape], ...] = ()


class ListShape(Shape):
    __slots__ = ("item",)
    node = True

    def __init__(self, annotation: Any, item: Shape) -> None:
        super().__init__(annotation)
        self.item = item


class DictShape(Shape):
    """A dict with string keys."""

    __slots__ = ("item",)
    node = True

    def __init__(self, annotation: Any, item: Shape) -> None:
        super().__init__(annotation)
        self.item = item


class OptionalShape(Shape):
    """``X | None`` where X is a node."""

    __slots__ = ("inner",)
    node = True

    def __init__(self, annotation: Any, inner: Shape) -> None:
        super().__init__(annotation)
        self.inner = inner


_models: dict[type[BaseModel], ModelShape | Untrackable] = {}


def model_shape(cls: type[BaseModel]) -> ModelShape:
    """The shape of a model class (cached); raises ``Untrackable`` with the reason."""
    known = _models.get(cls)
    if isinstance(known, Untrackable):
        raise known
    if known is not None:
        return known
    shape = _models[cls] = ModelShape(cls)  # before the fields: models may refer to themselves
    try:
        _check_model(cls)
        for name, info in cls.model_fields.items():
            shape.fields[name] = _field_shape(cls, name, info)
    except Untrackable as exc:
        _models[cls] = exc
        raise
    shape.nodes = tuple((n, s) for n, s in shape.fields.items() if s.node)
    return shape


def _check_model(cls: type[BaseModel]) -> None:
    name = cls.__qualname__
    if issubclass(cls, RootModel):
        raise Untrackable(f"{name} is a RootModel")
    config = cls.model_config
    if config.get("extra") == "allow":
        raise Untrackable(f"{name} allows extra fields")
    if config.get("validate_assignment"):
        raise Untrackable(f"{name} validates assignments")
    if any(config.get(key) for key in _DUMP_CONFIG):
        raise Untrackable(f"{name} configures how it dumps")
    decorators = cls.__pydantic_decorators__
    if decorators.field_serializers or decorators.model_serializers or decorators.computed_fields:
        raise Untrackable(f"{name} has custom serializers or computed fields")
    if cls.__setattr__ is not BaseModel.__setattr__ and not getattr(cls.__setattr__, "__zocket_hook__", False):
        raise Untrackable(f"{name} defines __setattr__")


def _field_shape(cls: type[BaseModel], name: str, info: FieldInfo) -> Shape:
    if info.exclude:
        raise Untrackable(f"{cls.__qualname__}.{name} is excluded from dumps")
    annotation = info.annotation
    if info.metadata:
        annotation = Annotated[(annotation, *info.metadata)]  # type: ignore[assignment]
    try:
        return shape_of(annotation)
    except Untrackable as exc:
        raise Untrackable(f"{cls.__qualname__}.{name}: {exc}") from None


def shape_of(annotation: Any) -> Shape:
    """The shape of values of type ``annotation``; raises ``Untrackable``."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        inner = shape_of(args[0])
        if not inner.node:
            return Leaf(annotation)  # the adapter applies the metadata (serializers included)
        if any(isinstance(m, PlainSerializer | WrapSerializer) for m in args[1:]):
            raise Untrackable("a serializer on a model, list or dict")
        return inner
    if _is_leaf(annotation):
        return Leaf(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel) and origin is None:
        return model_shape(annotation)
    if origin is list and len(args) == 1:
        return ListShape(annotation, shape_of(args[0]))
    if origin is dict and len(args) == 2:
        if args[0] is not str:
            raise Untrackable(f"dict keys of type {args[0]!r} (only str)")
        return DictShape(annotation, shape_of(args[1]))
    if origin in (Union, types.UnionType):
        others = [a for a in args if a is not type(None)]
        if len(others) == 1 and len(args) == 2:
            return OptionalShape(annotation, shape_of(others[0]))
        raise Untrackable(f"the union {annotation!r}")
    raise Untrackable(f"values of type {annotation!r}")


def _is_leaf(annotation: Any) -> bool:
    if annotation in _LEAF_TYPES:
        return True
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return True
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        return True
    if origin is Annotated:
        return _is_leaf(args[0])
    if origin in (tuple, frozenset):
        return all(a is Ellipsis or _is_leaf(a) for a in args)
    if origin in (Union, types.UnionType):
        return all(_is_leaf(a) for a in args)
    return False
