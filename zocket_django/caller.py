"""Who sent a request: the connection, its node channel, and who is logged in there.

A ``Caller`` travels with a request to the worker that owns the instance (see
``messages.Request``), so all of it but the Django user object is plain JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Caller:
    """Who sent a request, and which node channel gets the answer.

    Everything but ``user`` (the Django user object, known where the socket
    lives) is JSON-serializable, so that a caller can travel with a call to
    another process. ``extra`` holds what access middleware added for this
    request (JSON-safe by construction, see ``access.admit``).
    """

    client_id: str
    reply_to: str
    user_id: str | None = None
    claims: dict[str, Any] = field(default_factory=dict)
    user: Any = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: Whose keyed calls these are (``callkeys``): an identity that outlives the socket.
    key_scope: str = "anonymous"

    def to_wire(self) -> dict[str, Any]:
        """JSON form for a request forwarded to another worker (the user object stays here)."""
        return {
            "client_id": self.client_id,
            "reply_to": self.reply_to,
            "user_id": self.user_id,
            "claims": self.claims,
            "extra": self.extra,
            "key_scope": self.key_scope,
        }

    @classmethod
    def from_wire(cls, data: Any) -> Caller:
        """The caller a forwarded request carries; ``ValueError`` if ``data`` is not one."""
        if not isinstance(data, dict):
            raise ValueError("caller must be an object")
        client_id, reply_to, user_id = data.get("client_id"), data.get("reply_to"), data.get("user_id")
        claims, extra = data.get("claims") or {}, data.get("extra") or {}
        key_scope = data.get("key_scope", "anonymous")
        if not isinstance(client_id, str) or not isinstance(reply_to, str):
            raise ValueError("caller needs string client_id and reply_to")
        if user_id is not None and not isinstance(user_id, str):
            raise ValueError("caller's user_id must be a string")
        if not isinstance(claims, dict) or not isinstance(extra, dict):
            raise ValueError("caller's claims and extra must be objects")
        if not isinstance(key_scope, str):
            raise ValueError("caller's key_scope must be a string")
        return cls(client_id, reply_to, user_id, claims, _lazy_user(user_id), extra, key_scope)


def _lazy_user(user_id: str | None) -> Any:
    """The user of a forwarded call, loaded on first use (from sync code: it queries)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import AnonymousUser
    from django.utils.functional import SimpleLazyObject

    if user_id is None:
        return AnonymousUser()
    return SimpleLazyObject(lambda: get_user_model()._default_manager.get(pk=user_id))
