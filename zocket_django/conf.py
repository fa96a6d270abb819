"""The ``ZOCKET`` settings dict, with defaults, read once and refreshed on change.

Every limit a deployment may want to tune lives here so that it is documented in
one place (README, "Configuration") and cheap to read on the hot path.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import lru_cache
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed


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


def _reset(*, setting: str, **_: Any) -> None:
    if setting == "ZOCKET":
        zocket_settings.cache_clear()


setting_changed.connect(_reset)
