"""Frames on the wire (docs/protocol.md): encoding ours, checking the server's."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any, Final

import jsonpointer

from .errors import ZocketRpcError

# Path segments a JavaScript client must never walk through (prototype
# pollution). Harmless in Python, but refusing them keeps both clients
# agreeing on which patches are valid.
_UNSAFE_SEGMENTS: Final = frozenset({"__proto__", "constructor", "prototype"})


class InvalidFrame(Exception):
    """Internal: a frame that does not match the protocol (logged, ignored)."""


def json_default(obj: Any) -> Any:
    """Let callers pass pydantic models and dataclasses as RPC input."""
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def dumps(frame: Mapping[str, Any]) -> str:
    return json.dumps(frame, separators=(",", ":"), default=json_default)


def required_str(msg: Mapping[str, Any], key: str) -> str:
    value = msg.get(key)
    if not isinstance(value, str):
        raise InvalidFrame(f"field {key!r} must be a string")
    return value


def optional_version(msg: Mapping[str, Any], field: str = "version") -> int | None:
    """An integer field (``version``, ``epoch``) that a server may leave out."""
    value = msg.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidFrame(f"field {field!r} must be an integer")
    return value


def frame_error(msg: Mapping[str, Any], message: str, **kwargs: Any) -> ZocketRpcError:
    """The error a server frame reports, with its ``code`` (``error`` if absent) and ``details``."""
    code = msg.get("code")
    return ZocketRpcError(code if isinstance(code, str) else "error", message, msg.get("details"), **kwargs)


def checked_patch(ops: Any) -> list[dict[str, Any]]:
    """Validate the shape of an RFC 6902 list and refuse prototype-polluting paths."""
    if not isinstance(ops, list):
        raise InvalidFrame("field 'patches' must be a list")
    for op in ops:
        if not isinstance(op, dict):
            raise InvalidFrame("each patch operation must be an object")
        for key in ("path", "from"):
            if key not in op:
                continue
            pointer = op[key]
            if not isinstance(pointer, str):
                raise InvalidFrame(f"patch {key!r} must be a string")
            try:
                parts = jsonpointer.JsonPointer(pointer).parts
            except jsonpointer.JsonPointerException as exc:
                raise InvalidFrame(f"bad JSON pointer {pointer!r}: {exc}") from None
            if _UNSAFE_SEGMENTS.intersection(parts):
                raise InvalidFrame(f"refusing unsafe patch path {pointer!r}")
    return ops
