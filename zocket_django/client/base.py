"""The small types every part of the client shares: listeners, status, backoff."""

from __future__ import annotations

import dataclasses
import enum
import logging
import random
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final, Protocol

logger = logging.getLogger("zocket_django.client")

Callback = Callable[[Any], object]
"""A listener: called with one argument; may be a coroutine function."""
Unsubscribe = Callable[[], None]


class Unset(enum.Enum):
    UNSET = enum.auto()


UNSET: Final = Unset.UNSET


class ConnectionStatus(enum.StrEnum):
    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"


@dataclasses.dataclass(frozen=True)
class Backoff:
    """Full-jitter exponential backoff, so restarted servers are not stampeded.

    ``max_attempts`` counts consecutive failed connection attempts before the
    client gives up (``None``: never).
    """

    min_delay: float = 0.25
    max_delay: float = 10.0
    max_attempts: int | None = None

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based)."""
        cap = min(self.max_delay, self.min_delay * 2 ** min(attempt, 62))
        return (rng or random).uniform(0.0, max(cap, 0.0))


class NamedActor(Protocol):
    """Anything with a wire ``name``, e.g. the server's ``Actor`` subclasses."""

    name: str


class ClientLink(Protocol):
    """What actor handles and live states need of their client (``ZocketClient``)."""

    rpc_timeout: float | None
    _close_reason: str | None

    @property
    def _tokens(self) -> Iterator[int]: ...

    @property
    def closed(self) -> bool: ...

    async def _call(self, actor: str, actor_id: str, method: str, input: Any, timeout: float | Unset | None) -> Any: ...

    def _send(self, frame: Mapping[str, Any]) -> None: ...

    def _invoke(self, callback: Callback, arg: Any, what: str) -> None: ...
