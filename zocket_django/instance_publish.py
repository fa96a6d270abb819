"""What an instance sends its subscribers: the frames of a committed step, handed to the node.

``instance.Instance`` inherits this. A step's change goes out as one
``state:patch``, or as the whole state when that is smaller; its events go to
every subscriber, or only to the nodes holding the clients they are narrowed
to. A frame the server cannot send (over ``MAX_MESSAGE_BYTES``) is replaced by
a ``too_large`` error about it. Publishing a committed frame never fails the
step: a failure is logged, and subscribers resync on the version gap.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from . import protocol, statesize
from .conf import zocket_settings
from .messages import EVENTS, Deliver
from .protocol import Code, utf8_length

if TYPE_CHECKING:
    from .actor import ActorSpec
    from .context import Emission
    from .instance import Owner, Presence

log = logging.getLogger("zocket_django.instance")


class InstancePublish:
    """Frames and publishing of ``instance.Instance`` (a mixin: it runs on the instance)."""

    if TYPE_CHECKING:  # the instance's
        runtime: Owner
        spec: ActorSpec
        actor_id: str
        group: str
        version: int
        epoch: int
        clients: dict[str, Presence]

        @property
        def dump(self) -> Any: ...

        def log_context(self, **more: Any) -> dict[str, Any]: ...

    @property
    def label(self) -> str:
        return f"{self.spec.name}/{self.actor_id}"

    async def _publish(self, message: Deliver, targets: set[str] | None) -> None:
        """Hand one committed frame to the node; a failure is logged, never raised (subscribers resync on the gap)."""
        node = self.runtime.node
        try:
            if targets is None:
                await node.publish(self.group, message)
            else:
                for channel in targets:
                    await node.send(channel, message)
        except Exception:
            log.exception("zocket: a committed %s could not be published", message.kind, extra=self.log_context())

    def _state_frame(self, patch: str, size: statesize.Measure, version: int) -> str:
        """What tells subscribers of a step: its patch, or the whole state when that is smaller."""
        if size.text is not None and utf8_length(patch) > size.bound:
            patch = protocol.state_snapshot_of(self.spec.name, self.actor_id, size.text, version, self.epoch)
        return self.too_large(patch) or patch

    def snapshot_frame(self) -> str:
        """The ``state:snapshot`` of the current state, or the error its subscribers get instead."""
        frame = protocol.state_snapshot(self.spec.name, self.actor_id, self.dump, self.version, self.epoch)
        return self.too_large(frame) or frame

    def too_large(self, frame: str) -> str | None:
        """``None`` if the server can send ``frame`` (``MAX_MESSAGE_BYTES``), else a ``too_large`` error about it."""
        limit = zocket_settings().MAX_MESSAGE_BYTES
        size = utf8_length(frame)
        if size <= limit:
            return None
        log.error(
            "zocket: the state of %s does not fit one frame (%d bytes, MAX_MESSAGE_BYTES is %d); "
            "its subscribers get a too_large error instead",
            self.label,
            size,
            limit,
            extra=self.log_context(),
        )
        ref = {"type": "state:sub", "actor": self.spec.name, "actorId": self.actor_id}
        text = f"the state of {self.label} is too large to send ({size:,} bytes, over {limit:,})"
        return protocol.error(Code.TOO_LARGE, text, ref)

    def _event_message(self, emission: Emission) -> tuple[Deliver, set[str] | None]:
        schema = self.spec.events.get(emission.event)
        if schema is None:
            raise ValueError(f"{self.spec.name} declares no event {emission.event!r}")
        frame = protocol.event(self.spec.name, self.actor_id, emission.event, schema.dump(emission.payload))
        only = emission.only
        message = Deliver(self.group, EVENTS, frame, only, emission.excluded or frozenset())
        if only is None:
            return message, None
        # Narrowed events go straight to the nodes holding those clients.
        targets = {self.clients[c].caller.reply_to for c in only if c in self.clients}
        return message, targets

    def delivery(self, kind: str, frame: str, announce: str | None = None) -> Deliver:
        """The node message that carries one encoded frame to this instance's subscribers of ``kind``."""
        return Deliver(self.group, kind, frame, announce=announce)
