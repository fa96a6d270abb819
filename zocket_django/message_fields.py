"""Reading a message from another worker without trusting it (``messages``' parsers use this).

The field readers raise ``ValueError`` naming the field that is missing or of
the wrong type; ``messages.parse`` turns that into ``Unreadable``, which keeps
what could still be read of the message (``Remains``: its ticket, where its
asker listens, ...), so that the request it belonged to can be failed rather
than left waiting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class Unreadable(ValueError):
    """A message this worker cannot read: another version, an unknown type, or malformed.

    It keeps what could be read of the message (``remains``), so that the
    request it belonged to can still be failed rather than left waiting.
    """

    def __init__(self, raw: Any, reason: str) -> None:
        raw = raw if isinstance(raw, dict) else {}
        kind = raw.get("type")
        self.type = kind if isinstance(kind, str) else "?"
        self.reason = reason
        self.remains = Remains.of(raw)
        super().__init__(f"{self.type}: {reason}")


@dataclass(slots=True)
class Remains:
    """What can be read, field by field and without trusting anything, of an unreadable message."""

    ticket: int | None = None
    #: Where the asker listens: a request's caller's node, an operator request's node.
    reply_to: str | None = None
    client: str | None = None
    rpc_id: str | None = None
    #: The kinds a subscription request wanted answered.
    kinds: tuple[str, ...] = ()
    actor: str | None = None
    actor_id: str | None = None

    @classmethod
    def of(cls, raw: dict[str, Any]) -> Remains:
        def text(data: Any, key: str) -> str | None:
            value = data.get(key) if isinstance(data, dict) else None
            return value if isinstance(value, str) else None

        ticket = raw.get("ticket")
        caller = raw.get("caller")
        kinds = raw.get("kinds") if raw.get("answer") is True else None
        return cls(
            ticket=ticket if isinstance(ticket, int) and not isinstance(ticket, bool) else None,
            reply_to=text(caller, "reply_to") or text(raw, "reply_to"),
            client=text(caller, "client_id"),
            rpc_id=text(raw, "rpc_id"),
            kinds=tuple(k for k in kinds if isinstance(k, str)) if isinstance(kinds, list) else (),
            actor=text(raw, "actor"),
            actor_id=text(raw, "actor_id"),
        )


# -- reading fields -------------------------------------------------------------------


def text(raw: dict[str, Any], key: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str):
        raise ValueError(f"{key} must be a string, not {type(value).__name__}")
    return value


def maybe_text(raw: dict[str, Any], key: str) -> str | None:
    return None if raw.get(key) is None else text(raw, key)


def maybe_int(raw: dict[str, Any], key: str) -> int | None:
    value = raw.get(key)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise ValueError(f"{key} must be an integer, not {type(value).__name__}")
    return value


def texts(raw: dict[str, Any], key: str) -> list[str]:
    value = raw.get(key)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{key} must be a list of strings")
    return value


def mapping(raw: dict[str, Any], key: str) -> dict[str, Any]:
    value = raw.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{key} must be an object, not {type(value).__name__}")
    return value
