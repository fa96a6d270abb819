"""The ``ZOCKET`` settings dict, with defaults, read once and refreshed on change.

Every limit a deployment may want to tune lives here so that it is documented in
one place (README, "Configuration") and cheap to read on the hot path.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

_POSITIVE = (
    "IDLE_TIMEOUT",
    "CALL_TIMEOUT",
    "MAX_FRAME_BYTES",
    "MAX_ACTOR_ID_LENGTH",
    "MAX_SUBSCRIPTIONS",
    "MAX_QUEUED_CALLS",
    "TOKEN_MAX_AGE",
    "LEASE_TTL",
    "CALL_KEYS_PER_CALLER",
    "CALL_KEYS_PER_INSTANCE",
    "CALL_KEY_SECONDS",
)


@dataclass(frozen=True, slots=True)
class ZocketSettings:
    #: Seconds an instance with no connections and no subscribers stays hot.
    IDLE_TIMEOUT: float = 60.0
    #: Seconds a queued call may wait and run before it is answered ``timeout``.
    CALL_TIMEOUT: float = 30.0
    #: Largest text frame accepted; a larger one closes the socket with 1009.
    MAX_FRAME_BYTES: int = 256 * 1024
    #: Longest accepted actor id.
    MAX_ACTOR_ID_LENGTH: int = 128
    #: Origins accepted besides ``ALLOWED_HOSTS`` (same patterns, e.g. ``"app.example.com"``, ``"*"``).
    ALLOWED_ORIGINS: tuple[str, ...] = ()
    #: Accept sockets without an ``Origin`` header. Browsers always send one, so
    #: this lets scripts and apps in without opening cross-site hijacking.
    ALLOW_MISSING_ORIGIN: bool = True
    #: Seconds an ownership lease lives in Redis without renewal (failover time).
    LEASE_TTL: float = 5.0
    #: Redis for leases when it cannot be derived from ``CHANNEL_LAYERS`` (e.g. sentinels).
    REDIS_URL: str | None = None
    #: Regular expression an actor id must match in full; ``None`` accepts any
    #: printable text (``str.isprintable``: no control or format characters,
    #: no lone surrogates).
    ACTOR_ID_PATTERN: str | None = None
    #: Most ``(instance, state|event)`` subscriptions one connection may hold.
    MAX_SUBSCRIPTIONS: int = 1000
    #: Frames per second one connection may send, on average (token bucket);
    #: ``None`` or ``0`` turns rate limiting off.
    MESSAGE_RATE: float | None = 100.0
    #: How many frames one connection may send at once above ``MESSAGE_RATE``.
    MESSAGE_BURST: int = 200
    #: Most steps waiting in one instance's queue; more calls get ``overloaded``.
    MAX_QUEUED_CALLS: int = 1000
    #: Outcomes of keyed calls (``rpc`` frames with a ``key``) each instance keeps per caller identity ...
    CALL_KEYS_PER_CALLER: int = 100
    #: ... and in all (saved with the state of durable actors) ...
    CALL_KEYS_PER_INSTANCE: int = 1000
    #: ... and for how many seconds: a retry with the same key within these bounds does not run again.
    CALL_KEY_SECONDS: float = 300.0
    #: Dotted path of the authenticator: ``(scope) -> user | None``, sync or
    #: async; ``None`` leaves only the session (``AuthMiddlewareStack``).
    AUTHENTICATOR: str | None = "zocket_django.auth.token_authenticator"
    #: Dotted path of ``(user) -> dict`` giving ``ctx.claims`` (runs in a thread).
    CLAIMS: str = "zocket_django.auth.user_claims"
    #: Longest lifetime of a token from ``issue_token``, in seconds.
    TOKEN_MAX_AGE: int = 24 * 3600
    #: Salt of token signatures; changing it revokes every token issued.
    TOKEN_SALT: str = "zocket_django.token"

    def __post_init__(self) -> None:
        for name in _POSITIVE:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ImproperlyConfigured(f"ZOCKET[{name!r}] must be a positive number, not {value!r}")
        rate = self.MESSAGE_RATE
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int | float) or rate < 0):
            raise ImproperlyConfigured(f"ZOCKET['MESSAGE_RATE'] must be a number >= 0 or None, not {rate!r}")
        if not isinstance(self.MESSAGE_BURST, int) or self.MESSAGE_BURST < 1:
            raise ImproperlyConfigured(f"ZOCKET['MESSAGE_BURST'] must be an integer >= 1, not {self.MESSAGE_BURST!r}")
        if self.ACTOR_ID_PATTERN is not None:
            try:
                re.compile(self.ACTOR_ID_PATTERN)
            except (re.error, TypeError) as exc:
                raise ImproperlyConfigured(f"ZOCKET['ACTOR_ID_PATTERN'] is not a regular expression: {exc}") from None

    def actor_id_validator(self) -> Callable[[str], object]:
        """``f(actor_id)``, truthy when the id's characters are allowed."""
        return _id_validator(self.ACTOR_ID_PATTERN)


@lru_cache(maxsize=1)
def zocket_settings() -> ZocketSettings:
    """The effective settings: defaults overridden by ``settings.ZOCKET``."""
    from django.conf import settings

    given: dict[str, Any] = dict(getattr(settings, "ZOCKET", {}) or {})
    known = {f.name for f in fields(ZocketSettings)}
    unknown = sorted(set(given) - known)
    if unknown:
        raise ImproperlyConfigured(
            f"Unknown ZOCKET setting(s): {', '.join(unknown)}. Known: {', '.join(sorted(known))}."
        )
    if "ALLOWED_ORIGINS" in given:
        given["ALLOWED_ORIGINS"] = tuple(given["ALLOWED_ORIGINS"])
    return ZocketSettings(**given)


@lru_cache(maxsize=8)
def _id_validator(pattern: str | None) -> Callable[[str], object]:
    if pattern is None:
        return str.isprintable
    return re.compile(pattern).fullmatch


def _reset(*, setting: str, **_: Any) -> None:
    if setting == "ZOCKET":
        zocket_settings.cache_clear()


setting_changed.connect(_reset)
