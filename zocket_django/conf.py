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
    "MAX_STATE_BYTES",
    "MAX_MESSAGE_BYTES",
    "MAX_INSTANCES_PER_CONNECTION",
    "MAX_INSTANCES_PER_USER",
    "MAX_HOT_INSTANCES",
    "MAX_CONNECTIONS_PER_USER",
    "USER_CALL_BURST",
    "DB_THREADS",
)
_INTEGERS = (
    "MAX_STATE_BYTES",
    "MAX_MESSAGE_BYTES",
    "MAX_INSTANCES_PER_CONNECTION",
    "MAX_INSTANCES_PER_USER",
    "MAX_HOT_INSTANCES",
    "MAX_CONNECTIONS_PER_USER",
    "USER_CALL_BURST",
    "DB_THREADS",
)

#: Room a ``state:snapshot`` frame needs around the state: the type, the actor
#: name, an actor id of up to 128 characters (4 bytes each in UTF-8), the version.
SNAPSHOT_ENVELOPE_BYTES = 1024


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
    #: Largest encoded state (UTF-8 JSON bytes) of an actor that does not set
    #: ``max_state_bytes``. A step that would grow the state past it fails with
    #: ``too_large`` and changes nothing. Below ``MAX_MESSAGE_BYTES``, so that a
    #: snapshot always fits one frame.
    MAX_STATE_BYTES: int = 1_000_000
    #: Largest frame the server sends: daphne's ``--websocket-max-message-size``
    #: (1 MiB unless raised). A snapshot or patch that would not fit is not sent;
    #: its subscribers get an ``error`` frame (``too_large``) instead.
    MAX_MESSAGE_BYTES: int = 1024 * 1024
    #: Most actor instances one connection may use (call or subscribe to) while
    #: it is open; a new one beyond gets ``overloaded``.
    MAX_INSTANCES_PER_CONNECTION: int = 1000
    #: Most actor instances the connections of one logged-in user may use, on one worker.
    MAX_INSTANCES_PER_USER: int = 2000
    #: Most hot instances one worker keeps. At the cap, the least recently used
    #: instance without connections is deactivated early; when there is none, a
    #: request that would activate one more gets ``overloaded``.
    MAX_HOT_INSTANCES: int = 10_000
    #: Most open sockets of one logged-in user on one worker; more are closed with 4429.
    MAX_CONNECTIONS_PER_USER: int = 100
    #: Calls per second of one logged-in user on one worker, on average, over all
    #: their connections (token bucket); ``None`` or ``0`` turns it off.
    USER_CALL_RATE: float | None = 200.0
    #: How many calls one user may make at once above ``USER_CALL_RATE``.
    USER_CALL_BURST: int = 400
    #: Threads for snapshot loads and saves (each holds its own database
    #: connection); SQLite always uses one (one writer at a time).
    DB_THREADS: int = 4
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
        for name in _INTEGERS:
            if not isinstance(getattr(self, name), int):
                raise ImproperlyConfigured(f"ZOCKET[{name!r}] must be an integer, not {getattr(self, name)!r}")
        for name in ("MESSAGE_RATE", "USER_CALL_RATE"):
            rate = getattr(self, name)
            if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int | float) or rate < 0):
                raise ImproperlyConfigured(f"ZOCKET[{name!r}] must be a number >= 0 or None, not {rate!r}")
        if self.MAX_STATE_BYTES > self.MAX_MESSAGE_BYTES - SNAPSHOT_ENVELOPE_BYTES:
            raise ImproperlyConfigured(
                f"ZOCKET['MAX_STATE_BYTES'] ({self.MAX_STATE_BYTES}) must leave {SNAPSHOT_ENVELOPE_BYTES} bytes "
                f"of MAX_MESSAGE_BYTES ({self.MAX_MESSAGE_BYTES}) for the snapshot frame around the state"
            )
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
