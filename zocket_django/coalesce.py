"""Patches of steps that follow each other faster than they can be sent, published as one frame.

When an instance's queue is not empty after a step, the step's patch is held
instead of being published: the next steps' patches join it, and one
``state:patch`` carrying the ops of all of them (``"from"``: the version they
apply to, ``"version"``: the version they produce) goes out when the queue is
empty, before any event, or when the batch reaches ``COALESCE_PATCHES``
versions or ``COALESCE_BYTES`` of ops, or the moment a step behind it first
waits for anything (``eager.before_first_wait``: a slow step does not keep
the answers before it waiting; a hold spans only steps that run back to back
in one turn of the loop). Two thousand sockets joining one room
(each join a step whose patch goes to every member) cost one frame per member
per batch instead of one per join: n joins no longer cost n²/2 frames.

Order is kept by holding everything else the steps send behind the held
patch: answers (``rpc:result``, errors) and the snapshots of new subscribers
run, in order, right after it is published. A snapshot held so is encoded
then, once for all of them, at the version the patch produced. A held patch
never crosses an epoch: an instance's epoch changes only between steps run on
an empty queue, and ``flush`` runs before any frame of a new incarnation.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import protocol
from .conf import zocket_settings
from .messages import STATE

if TYPE_CHECKING:
    from collections import deque

    from .actor import ActorSpec
    from .messages import Deliver

log = logging.getLogger("zocket_django.instance")

#: Sends held behind a held patch: each is called, in order, once the patch was published.
Send = Callable[[], Awaitable[None]]


@dataclass(slots=True)
class Held:
    """Patches held for one frame: the version before the first, the ops of each, what waits behind them."""

    base: int
    version: int
    epoch: int
    ops: list[str] = field(default_factory=list)  # each step's ops, an encoded JSON array
    size: int = 0  # characters of ``ops``
    after: list[Send] = field(default_factory=list)


class Coalescer:
    """The held patch of one instance (at most one at a time) and the sends waiting behind it."""

    __slots__ = ("held",)

    def __init__(self) -> None:
        self.held: Held | None = None

    def fits(self, ops: str, max_versions: int, max_chars: int, epoch: int) -> bool:
        """Whether one more step's ops may join the held patch (nothing held takes anything).

        Never across epochs: versions of another incarnation do not follow these.
        """
        held = self.held
        if held is None:
            return True
        return held.epoch == epoch and len(held.ops) < max_versions and held.size + len(ops) <= max_chars

    def hold(self, ops: str, version: int, epoch: int) -> None:
        """Add the ops that produce ``version`` (one more than the held patch's, if any)."""
        held = self.held
        if held is None:
            held = self.held = Held(version - 1, version, epoch)
        elif version != held.version + 1 or epoch != held.epoch:
            raise ValueError(f"version {version} does not follow the held patch's {held.version}")
        held.ops.append(ops)
        held.size += len(ops)
        held.version = version

    def defer(self, send: Send) -> bool:
        """Hold ``send`` behind the held patch; ``False`` when nothing is held (send it now)."""
        if self.held is None:
            return False
        self.held.after.append(send)
        return True

    def take(self) -> Held | None:
        """What is held, now no longer (publish its patch, then run its ``after``)."""
        held, self.held = self.held, None
        return held


def joined_ops(ops: list[str]) -> str:
    """One JSON array of the operations of several encoded arrays, in order."""
    if len(ops) == 1:
        return ops[0]
    return "[" + ",".join(part[1:-1] for part in ops if part != "[]") + "]"


class Coalescing:
    """Holding and publishing of ``instance.Instance``'s patches (a mixin: it runs on the instance)."""

    if TYPE_CHECKING:  # the instance's
        spec: ActorSpec
        actor_id: str
        version: int
        epoch: int
        queue: deque[Any]
        coalescer: Coalescer
        _patch_head: str

        @property
        def dump(self) -> Any: ...

        def log_context(self, **more: Any) -> dict[str, Any]: ...
        def delivery(self, kind: str, frame: str, announce: str | None = None) -> Deliver: ...
        def too_large(self, frame: str) -> str | None: ...
        def snapshot_frame(self) -> str: ...
        async def _publish(self, message: Deliver, targets: set[str] | None) -> None: ...

    _snapshot: tuple[int, int, str] | None = None  # (version, epoch, frame) of the last snapshot encoded

    async def publish_state(self, frame: str, ops: str | None, *, more: bool) -> None:
        """A committed step's state frame: held while ``more`` steps follow, else published with what is held.

        ``ops`` is the step's encoded operations when ``frame`` is its plain
        ``state:patch``; ``None`` when the frame is the whole state (smaller
        than the patch) or an error, which replaces whatever is held.
        """
        settings = zocket_settings()
        most = settings.COALESCE_PATCHES
        coalescer = self.coalescer
        if ops is None or most <= 1 or (not more and coalescer.held is None):
            # The frame as the step built it: nothing to join it to (a single patch has no "from").
            held = coalescer.take()
            await self._publish(self.delivery(STATE, frame), None)
            await self._run_after(held)
            return
        if not coalescer.fits(ops, most, settings.COALESCE_BYTES, self.epoch):
            await self.flush()
        coalescer.hold(ops, self.version, self.epoch)
        if not more or not coalescer.fits("", most, settings.COALESCE_BYTES, self.epoch):
            await self.flush()

    async def flush(self) -> None:
        """Publish the held patch (one frame for all its versions), then what waited behind it."""
        held = self.coalescer.take()
        if held is None:
            return
        base = held.base if len(held.ops) > 1 else None  # "from" only on a coalesced patch
        frame = protocol.state_patch_ops(self._patch_head, joined_ops(held.ops), held.version, held.epoch, base)
        await self._publish(self.delivery(STATE, self.too_large(frame) or frame), None)
        await self._run_after(held)

    async def after_patches(self, send: Send) -> None:
        """Run ``send`` (an answer, a snapshot) after the patches of the steps before it reached the node."""
        if not self.coalescer.defer(send):
            await send()

    async def _run_after(self, held: Held | None) -> None:
        for send in held.after if held is not None else ():
            try:
                await send()
            except Exception:
                log.exception("zocket: an answer held behind a patch could not be sent", extra=self.log_context())

    def current_snapshot(self) -> str:
        """The ``state:snapshot`` of the current state (or its ``too_large`` error), encoded once per version."""
        cached = self._snapshot
        if cached is not None and cached[0] == self.version and cached[1] == self.epoch:
            return cached[2]
        frame = self.snapshot_frame()
        self._snapshot = (self.version, self.epoch, frame)
        return frame

    def forget_snapshot(self) -> None:
        """The state changed without a new version (restored, reset): encode the next snapshot afresh."""
        self._snapshot = None
