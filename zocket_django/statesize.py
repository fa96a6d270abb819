"""How large an instance's state is, checked on every step without encoding it every time.

Every snapshot must fit one frame of the server (daphne refuses to send more
than ``--websocket-max-message-size``, 1 MiB by default), so each actor has a
limit on its encoded state (``max_state_bytes``, default
``ZOCKET["MAX_STATE_BYTES"]``). Encoding a large state on every step would cost
more than the step, so an instance keeps an *upper bound* of its size instead:
a patch of ``n`` bytes (only ``add``, ``remove`` and ``replace`` operations,
each carrying its value) cannot grow the encoded state by more than ``n``
bytes. Only when the bound reaches the limit is the state encoded and measured
exactly; the bound then drops back to the truth.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from . import protocol
from .errors import ZocketError
from .protocol import Code, utf8_length


class StateTooLarge(ZocketError):
    """A step would make the state larger than its actor's ``max_state_bytes``: ``too_large``."""

    def __init__(self, name: str, size: int, limit: int) -> None:
        super().__init__(
            f"{name}: this change would make the state {size:,} bytes, over its limit of {limit:,}; nothing changed",
            code=Code.TOO_LARGE,
            details={"size": size, "limit": limit},
        )


class Measure(NamedTuple):
    """What is known of the size of one state: an upper bound, and whether it is exact.

    A named tuple, not a frozen dataclass: one is made on every step that changes the state.
    """

    bound: int
    exact: bool
    #: The state as JSON text when it was encoded to measure it (near the limit).
    text: str | None = None

    def without_text(self) -> Measure:
        """What an instance keeps: the size, not a copy of its state as text."""
        return Measure(self.bound, self.exact) if self.text is not None else self


def measure(dump: Any) -> Measure:
    """The exact size of ``dump``, encoded once."""
    text = protocol.encode(dump)
    return Measure(utf8_length(text), True, text)


def after_step(name: str, limit: int, before: Measure, new: Callable[[], Any], patch_frame: str) -> Measure:
    """The size of ``new()``, the state a step produced with ``patch_frame`` from one of size ``before``.

    ``new`` is called only when the bound known is over ``limit``: most steps never read the dump.

    Raises ``StateTooLarge`` when ``new`` is over ``limit`` and larger than
    the state was (a step that shrinks a state already over its limit, one
    restored from an older snapshot, is let through, so the actor can repair
    it; where only a bound of the old size is known, that bound is the test).
    """
    grown = utf8_length(patch_frame)
    if before.bound + grown <= limit:
        return Measure(before.bound + grown, False)
    now = measure(new())
    if now.bound > limit and now.bound > before.bound:
        raise StateTooLarge(name, now.bound, limit)
    return now
