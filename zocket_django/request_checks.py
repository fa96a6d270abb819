"""What a client's request frame names, checked before anything is queued, and how refusals are logged.

The consumer's own checks: the target instance, the method and its input.
A request that fails one is answered and changes nothing. Such refusals
are not logged (any client can send them as fast as it likes); refusals by
access rules are.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ValidationError

from .actor import ActorSpec, MethodSpec
from .conf import ZocketSettings
from .errors import ZocketError
from .protocol import Code
from .registry import registry
from .schema import first_problem, validation_details

log = logging.getLogger("zocket_django.consumer")

#: Longest string (``type``, ``id``, ``actor``, ``actorId``) echoed in the ``ref`` of an ``error`` frame.
MAX_REF_LENGTH = 128


class Unlogged(ZocketError):
    """A refusal any client can cause as often as it likes (a malformed request, a limit of its own): not logged.

    Raised by zocket's own checks only, so that what is logged depends on who
    refused, not on the code: an access rule's ``ZocketError`` is logged
    whatever its code (``overloaded``, ``bad_request`` included).
    """


def target(message: dict[str, Any], limits: ZocketSettings, valid_id: Callable[[str], object]) -> tuple[ActorSpec, str]:
    """The actor and id a request names; ``ZocketError`` when they are not served or not allowed."""
    actor, actor_id = message.get("actor"), message.get("actorId")
    if not isinstance(actor, str) or not isinstance(actor_id, str):
        raise Unlogged("actor and actorId must be strings", code=Code.BAD_REQUEST)
    spec = registry.get(actor)
    if spec is None:
        raise Unlogged(f"unknown actor {actor[:64]!r}", code=Code.UNKNOWN_ACTOR)
    if not actor_id or len(actor_id) > limits.MAX_ACTOR_ID_LENGTH:
        raise Unlogged(f"actorId must be 1 to {limits.MAX_ACTOR_ID_LENGTH} characters", code=Code.BAD_REQUEST)
    if not valid_id(actor_id):
        raise Unlogged("actorId holds characters that are not allowed", code=Code.BAD_REQUEST)
    return spec, actor_id


def method_of(spec: ActorSpec, name: Any) -> MethodSpec:
    if not isinstance(name, str):
        raise Unlogged("method must be a string", code=Code.BAD_REQUEST)
    method = spec.methods.get(name)
    if method is None:
        raise Unlogged(f"{spec.name} has no method {name[:64]!r}", code=Code.UNKNOWN_METHOD)
    return method


def arguments(method: MethodSpec, given: Any) -> BaseModel:
    """The validated input; ``invalid_input`` naming the first problem (``details`` has them all)."""
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise Unlogged(
            f"Invalid input for {method.name}: expected a JSON object of its parameters",
            code=Code.INVALID_INPUT,
            details=[{"loc": [], "msg": "Input should be an object", "type": "dict_type"}],
        )
    try:
        return method.input_model.__pydantic_validator__.validate_python(given)  # model_validate, minus a wrapper
    except ValidationError as exc:
        details = validation_details(exc)
        message = f"Invalid input for {method.name}: {first_problem(details)}"
        raise Unlogged(message, code=Code.INVALID_INPUT, details=details) from None


def error_ref(message: dict[str, Any]) -> dict[str, Any]:
    """What an ``error`` frame echoes of the request it answers: only short, printable strings and safe ints."""
    return {
        k: v
        for k in ("type", "id", "actor", "actorId")
        if (isinstance(v := message.get(k), str) and _echoable(v, MAX_REF_LENGTH))
        or (isinstance(v, int) and not isinstance(v, bool) and abs(v) < 2**53)
    }


def log_refusal(exc: ZocketError, message: dict[str, Any], client_id: str, user_id: str | None) -> None:
    if isinstance(exc, Unlogged):
        return
    log.info(
        "zocket: %s refused (%s): %s",
        message.get("type"),
        exc.code,
        exc.message,
        extra=_log_context(message, client_id, user_id, code=str(exc.code)),
    )


def log_unavailable(message: dict[str, Any], client_id: str, user_id: str | None) -> None:
    log.warning(
        "zocket: %s refused: the channel layer or Redis is unreachable",
        message.get("type"),
        exc_info=True,
        extra=_log_context(message, client_id, user_id, code=Code.UNAVAILABLE),
    )


def log_failure(message: dict[str, Any], client_id: str, user_id: str | None) -> None:
    log.exception(
        "zocket: an access check or middleware raised; %s refused",
        message.get("type"),
        extra=_log_context(message, client_id, user_id, code=Code.HANDLER_ERROR),
    )


def _log_context(message: dict[str, Any], client_id: str, user_id: str | None, **more: Any) -> dict[str, Any]:
    context = {
        "actor": message.get("actor"),
        "actor_id": message.get("actorId"),
        "method": message.get("method"),
        "type": message.get("type"),
        "client": client_id,
        "user": user_id,
    }
    return {"zocket": {k: v for k, v in context.items() if isinstance(v, str)} | more}


def _echoable(text: str, limit: int) -> bool:
    """Short and printable (so valid Unicode): safe to send back to the client."""
    return 0 < len(text) <= limit and text.isprintable()
