"""The wire format of docs/protocol.md: error codes, frame builders and JSON encoding.

Frames are encoded here, once, so that a patch going to many sockets is turned
into text a single time.
"""

from __future__ import annotations

import json
import math
import re
from enum import StrEnum
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any


class Code(StrEnum):
    """Error codes, the ``code`` extension field of ``error`` and ``rpc:result``."""

    BAD_REQUEST = "bad_request"
    UNKNOWN_TYPE = "unknown_type"
    UNKNOWN_ACTOR = "unknown_actor"
    UNKNOWN_METHOD = "unknown_method"
    INVALID_INPUT = "invalid_input"
    UNAUTHENTICATED = "unauthenticated"
    FORBIDDEN = "forbidden"
    HANDLER_ERROR = "handler_error"
    OVERLOADED = "overloaded"
    UNAVAILABLE = "unavailable"
    TIMEOUT = "timeout"
    TOO_LARGE = "too_large"


_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
# ``JSONEncoder.encode`` builds a new C encoder on every call (a third of a small frame's cost);
# this one is built once. Without circular-reference markers: frames are dumps, never cyclic.
_c_encoder = (
    None
    if c_make_encoder is None
    else c_make_encoder(None, _encoder.default, encode_basestring, None, ":", ",", False, False, False)
)


def encode(message: Any) -> str:
    """Compact JSON text for one frame (or one value of it); ``ValueError`` for ``inf`` and ``nan``."""
    if type(message) is str:
        return encode_basestring(message)
    if _c_encoder is None:
        return _encoder.encode(message)
    return "".join(_c_encoder(message, 0))


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:32]} is too large for a double")
    return value


_decoder = json.JSONDecoder(parse_constant=_no_constants, parse_float=_finite)


def decode(text: str) -> Any:
    """Parse one frame; raises ``ValueError`` on anything that is not strict JSON.

    Strict: no ``NaN``/``Infinity``, no number that overflows a double (``1e400``),
    no integer of more than 4,300 digits (Python's own limit).
    """
    return _decoder.decode(text)


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def has_lone_surrogate(text: str, message: Any) -> bool:
    """Whether ``message``, decoded from ``text``, holds a string no UTF-8 text can carry.

    JSON escapes (``"\\ud800"``) can make lone surrogates; echoed back, they
    would break the socket's encoding. Cheap unless ``text`` has such escapes.
    """
    if _SURROGATE_ESCAPE.search(text) is None:
        return False
    try:
        encode(message).encode("utf-8")
    except (UnicodeEncodeError, RecursionError, ValueError):
        return True
    return False


def utf8_length(text: str) -> int:
    """Bytes of ``text`` in UTF-8, what a frame costs on the wire; cheap for ASCII text."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def welcome(client_id: str) -> str:
    return encode({"type": "welcome", "clientId": client_id})


def outcome(result: Any) -> str:
    """The encoded body of a successful ``rpc:result`` (``{"result": ...}``), kept for keyed calls."""
    return encode({"result": result})


def error_outcome(code: Code | str, message: str, details: Any = None) -> str:
    """The encoded body of a failed ``rpc:result`` (``{"error": ..., "code": ...}``)."""
    body: dict[str, Any] = {"error": message, "code": code}
    if details is not None:
        body["details"] = details
    return encode(body)


#: How every ``rpc:result`` frame starts: answers are counted without parsing them (``inflight``).
RPC_RESULT_PREFIX = '{"type":"rpc:result"'


def rpc_reply(rpc_id: str, body: str) -> str:
    """An ``rpc:result`` from an encoded body: a remembered outcome answers a retry without re-encoding."""
    return f'{RPC_RESULT_PREFIX},"id":{encode(rpc_id)},{body[1:]}'


def rpc_error(rpc_id: str, code: Code | str, message: str, details: Any = None) -> str:
    return rpc_reply(rpc_id, error_outcome(code, message, details))


def error(code: Code | str, message: str, ref: dict[str, Any] | None = None) -> str:
    frame: dict[str, Any] = {"type": "error", "code": code, "error": message}
    if ref:
        frame["ref"] = ref
    return encode(frame)


def state_snapshot(actor: str, actor_id: str, state: Any, version: int, epoch: int) -> str:
    """``epoch`` names the instance's incarnation: versions count within one epoch only."""
    return encode(
        {
            "type": "state:snapshot",
            "actor": actor,
            "actorId": actor_id,
            "state": state,
            "version": version,
            "epoch": epoch,
        }
    )


def state_snapshot_of(actor: str, actor_id: str, state_text: str, version: int, epoch: int) -> str:
    """``state_snapshot`` of a state already encoded as JSON text (not encoded twice)."""
    head = encode({"type": "state:snapshot", "actor": actor, "actorId": actor_id})
    return f'{head[:-1]},"state":{state_text},"version":{int(version)},"epoch":{int(epoch)}}}'


def state_patch(actor: str, actor_id: str, patches: list[dict[str, Any]], version: int, epoch: int) -> str:
    return state_patch_of(state_patch_head(actor, actor_id), patches, version, epoch)


def state_patch_head(actor: str, actor_id: str) -> str:
    """What every ``state:patch`` of one instance starts with (an instance encodes it once)."""
    return encode({"type": "state:patch", "actor": actor, "actorId": actor_id})[:-1] + ',"patches":'


def state_patch_of(head: str, patches: list[dict[str, Any]], version: int, epoch: int) -> str:
    """``state_patch`` after ``state_patch_head``: only the patches are encoded."""
    return f'{head}{encode(patches)},"version":{int(version)},"epoch":{int(epoch)}}}'


def state_patch_ops(head: str, ops: str, version: int, epoch: int, base: int | None = None) -> str:
    """``state_patch_of`` of operations already encoded as a JSON array.

    ``base``, on a coalesced patch only (``coalesce``), is the version its
    operations apply to (``"from"``); without it, that is ``version - 1``.
    """
    tail = "" if base is None else f',"from":{int(base)}'
    return f'{head}{ops},"version":{int(version)},"epoch":{int(epoch)}{tail}}}'


def event(actor: str, actor_id: str, name: str, payload: Any) -> str:
    return encode({"type": "event", "actor": actor, "actorId": actor_id, "event": name, "payload": payload})


def pong(ping_id: Any) -> str:
    return encode({"type": "pong", "id": ping_id} if ping_id is not None else {"type": "pong"})
