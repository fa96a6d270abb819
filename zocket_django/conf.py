"""The ``ZOCKET`` settings dict, with defaults, read once and refreshed on change.

Every limit a deployment may want to tune lives here so that it is documented in
one place (README, "Configuration") and cheap to read on the hot path.
"""

from __future__ import annotations

import difflib
import re
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import Any, Union, get_args, get_origin, get_type_hints

from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

_POSITIVE = (
    "MAX_CALLS_IN_FLIGHT",
    "COALESCE_PATCHES",
    "COALESCE_BYTES",
    "IDLE_TIMEOUT",
    "QUEUE_TIMEOUT",
    "CALL_TIMEOUT",
    "MAX_FRAME_BYTES",
    "MAX_ACTOR_ID_LENGTH",
    "MAX_SUBSCRIPTIONS",
    "MAX_QUEUED_CALLS",
    "MAX_OUTPUT_BYTES",
    "BYTE_BURST",
    "TOKEN_MAX_AGE",
    "LEASE_TTL",
    "CALL_KEYS_PER_CALLER",
    "CALL_KEYS_PER_INSTANCE",
    "CALL_KEY_SECONDS",
    "MAX_STATE_BYTES",
    "MAX_MESSAGE_BYTES",
    "MAX_INSTANCES_PER_CONNECTION",
    "MAX_INSTANCES_PER_USER",
    "MAX_HOT_INSTANCES",
    "MAX_CONNECTIONS_PER_USER",
    "USER_CALL_BURST",
    "DB_THREADS",
    "IDENTITY_CHECK_INTERVAL",
)

#: Room a ``state:snapshot`` frame needs around the state: the type, the actor
#: name, an actor id of up to 128 characters (4 bytes each in UTF-8), the version.
SNAPSHOT_ENVELOPE_BYTES = 1024


@dataclass(frozen=True, slots=True)
class ZocketSettings:
    #: Seconds an instance with no connections and no subscribers stays hot.
    IDLE_TIMEOUT: float = 60.0
    #: Seconds a call may wait in its instance's queue; then it is answered
    #: ``timeout`` without ever running.
    QUEUE_TIMEOUT: float = 10.0
    #: Seconds a handler may run, counted from its start; then ``timeout`` and
    #: its step is undone (a sync handler's ORM work included, see ``transactions``).
    CALL_TIMEOUT: float = 30.0
    #: Largest frame accepted; a larger one closes the socket with 4009.
    MAX_FRAME_BYTES: int = 256 * 1024
    #: Most bytes waiting to be sent to one socket (its peer is not reading
    #: them); more close it with 4008 and free them.
    MAX_OUTPUT_BYTES: int = 4 * 1024 * 1024
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
    #: faster senders are slowed down (their socket is not read meanwhile),
    #: not refused. ``None`` or ``0`` turns it off.
    MESSAGE_RATE: float | None = 100.0
    #: How many frames one connection may send at once above ``MESSAGE_RATE``.
    MESSAGE_BURST: int = 200
    #: Bytes per second one connection may send, on average (like ``MESSAGE_RATE``).
    BYTE_RATE: float | None = 1024 * 1024
    #: How many bytes one connection may send at once above ``BYTE_RATE``.
    BYTE_BURST: int = 4 * 1024 * 1024
    #: Most versions one ``state:patch`` may carry. Steps of an instance that
    #: follow each other faster than they are sent (its queue is not empty)
    #: have their patches sent as one, with ``from`` (docs/protocol.md); 1
    #: sends one patch per version, for clients that do not read ``from``.
    COALESCE_PATCHES: int = 256
    #: Most characters of operations one coalesced ``state:patch`` may carry.
    COALESCE_BYTES: int = 64 * 1024
    #: Most calls one connection may have unanswered; past it its socket is not
    #: read until answers come back (its frames wait, others go first; nothing is refused).
    MAX_CALLS_IN_FLIGHT: int = 32
    #: Most calls waiting in one instance's queue; more get ``overloaded``
    #: (subscriptions and lifecycle steps wait too, uncounted: never refused).
    MAX_QUEUED_CALLS: int = 1000
    #: How long each instance keeps the outcome of a keyed call (an ``rpc`` frame with a ``key``): a
    #: retry with the same key within this time never runs again, at any call rate (``callkeys``).
    #: Longer than a client retries: the shipped clients' call timeout (10 s) plus ``QUEUE_TIMEOUT``.
    CALL_KEY_SECONDS: float = 60.0
    #: Most outcomes one instance keeps (saved with the state of durable actors, in every
    #: write-through commit); with that many younger than ``CALL_KEY_SECONDS``, new keyed calls
    #: are answered ``overloaded`` and do not run. 10,000 is ~166 keyed calls/s for a minute ...
    CALL_KEYS_PER_INSTANCE: int = 10000
    #: ... and per caller identity (lower it so that one caller cannot take every place; every
    #: anonymous caller without a session shares one identity).
    CALL_KEYS_PER_CALLER: int = 10000
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
    #: Check every recorded step's patches against a full dump of the state
    #: (costs what recording saves; for tests and debugging). A mismatch is
    #: logged at ERROR and that step is diffed whole.
    VERIFY_PATCHES: bool = False
    #: Seconds between two checks of an open socket's session or token (and of
    #: the permissions its subscriptions need); Django's signals check at once.
    IDENTITY_CHECK_INTERVAL: float = 30.0

    def __post_init__(self) -> None:
        for name in _POSITIVE:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ImproperlyConfigured(f"ZOCKET[{name!r}] must be a positive number, not {value!r}")
        for name in ("MESSAGE_RATE", "USER_CALL_RATE", "BYTE_RATE"):
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

    @property
    def call_budget(self) -> float:
        """The longest a call can wait for its answer at its owner: queued, then running."""
        return self.QUEUE_TIMEOUT + self.CALL_TIMEOUT

    def actor_id_validator(self) -> Callable[[str], object]:
        """``f(actor_id)``, truthy when the id's characters are allowed."""
        return _id_validator(self.ACTOR_ID_PATTERN)


@lru_cache(maxsize=1)
def zocket_settings() -> ZocketSettings:
    """The effective settings: defaults overridden by ``settings.ZOCKET``.

    ``ImproperlyConfigured`` names every key that is wrong (``manage.py check``
    reports the same as zocket.E011, one error per key).
    """
    from django.conf import settings

    given = getattr(settings, "ZOCKET", None)
    problems = setting_problems(given)
    if problems:
        raise ImproperlyConfigured(" ".join(message for message, _ in problems))
    return _build(given or {})


def setting_problems(given: object) -> list[tuple[str, str]]:
    """``(message, hint)`` for each thing wrong in a ``ZOCKET`` value; empty when it is usable."""
    if given is None:
        return []
    if not isinstance(given, Mapping):
        return [
            (
                f"ZOCKET must be a dict, not {type(given).__name__} {given!r}.",
                'Write ZOCKET = {"IDLE_TIMEOUT": 60.0, ...}; every key is optional.',
            )
        ]
    hints = _field_types()
    problems = []
    for key in given:
        if key not in hints:
            close = difflib.get_close_matches(str(key), hints, n=1)
            problems.append(
                (
                    f"Unknown ZOCKET setting {key!r}.",
                    f"Did you mean {close[0]!r}?" if close else f"Known settings: {', '.join(sorted(hints))}.",
                )
            )
        elif not _accepts(hints[key], given[key]):
            problems.append(
                (
                    f"ZOCKET[{key!r}] must be {_describe(hints[key])}, not {type(given[key]).__name__} {given[key]!r}.",
                    _HINTS.get(key, f"The README's configuration table gives {key}'s default and meaning."),
                )
            )
    if not problems:
        try:
            _build(given)
        except ImproperlyConfigured as exc:
            problems.append((str(exc), "The README's configuration table gives each setting's range."))
    return problems


_HINTS = {
    "ALLOWED_ORIGINS": 'A list of host patterns, e.g. ["app.example.com", "*.example.com"], even for one.',
    "AUTHENTICATOR": 'A dotted path, e.g. "myproject.auth.authenticate", or None for sessions only.',
    "CLAIMS": 'A dotted path, e.g. "myproject.auth.claims".',
}


def _build(given: Mapping[str, Any]) -> ZocketSettings:
    values = dict(given)
    for key, hint in _field_types().items():
        if key in values and get_origin(hint) is tuple:
            values[key] = tuple(values[key])  # a list is fine in settings
    return ZocketSettings(**values)


@lru_cache(maxsize=1)
def _field_types() -> dict[str, Any]:
    hints = get_type_hints(ZocketSettings)
    return {f.name: hints[f.name] for f in fields(ZocketSettings)}


def _accepts(hint: Any, value: object) -> bool:
    """Whether ``value`` fits the annotation ``hint`` of a setting (ints count as floats)."""
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        return any(_accepts(arg, value) for arg in get_args(hint))
    if origin is tuple:  # tuple[str, ...]: a list or tuple, never a lone string
        item = get_args(hint)[0]
        return isinstance(value, list | tuple) and all(_accepts(item, v) for v in value)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _describe(hint: Any) -> str:
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(arg) for arg in get_args(hint))
    if origin is tuple:
        return f"a list of {_describe(get_args(hint)[0]).removeprefix('a ')}s"
    names = {type(None): "None", bool: "True or False", float: "a number", int: "an integer", str: "a string"}
    return names.get(hint, f"a {getattr(hint, '__name__', hint)}")


@lru_cache(maxsize=8)
def _id_validator(pattern: str | None) -> Callable[[str], object]:
    if pattern is None:
        return str.isprintable
    return re.compile(pattern).fullmatch


def _reset(*, setting: str, **_: Any) -> None:
    if setting == "ZOCKET":
        zocket_settings.cache_clear()


setting_changed.connect(_reset)
