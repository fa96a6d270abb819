"""The consumer's side of identity: whose keys a socket uses, and what it does when its identity fails.

``ZocketConsumer`` inherits this. ``identity.IdentityWatch`` checks every
authenticated socket again while it is open, and calls back here: ``revoke``
when the socket's credentials no longer hold (an ``error`` frame, then close
with 4401, as a refused connect is closed), ``end_subscription`` when a
subscription's ``read`` rule refuses the user now.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from . import protocol
from .protocol import Code

if TYPE_CHECKING:
    from .actor import ActorSpec
    from .caller import Caller
    from .errors import ZocketError

log = logging.getLogger("zocket_django.consumer")

#: Close code of a connection whose credentials were refused.
CLOSE_UNAUTHENTICATED = 4401


class ConsumerIdentity:
    """Identity callbacks of ``consumer.ZocketConsumer`` (a mixin: it runs on the consumer)."""

    if TYPE_CHECKING:  # the consumer's, and Channels'
        client_id: str
        caller: Caller
        scope: dict[str, Any]
        subscriptions: set[tuple[str, str, str]]
        close: Callable[..., Awaitable[None]]

        def push(self, frame: str) -> None: ...

        def _detach(self) -> None: ...

        async def _drop_subscription(self, spec: ActorSpec, actor_id: str, kind: str) -> None: ...

    revoked = False  # its identity no longer holds: closing, nothing more is served

    def _key_scope(self, user_id: str | None) -> str:
        """Whose keyed calls this socket makes: an identity that outlives the socket (``callkeys``).

        A user's keys are theirs on every socket; an anonymous socket's are its
        Django session's when it has one, else shared by every anonymous caller
        (the shipped clients' keys are random, 128 bits: they do not collide,
        and a key is bound to the call it was first used for).
        """
        if user_id is not None:
            return f"user:{user_id}"
        session_key = getattr(self.scope.get("session"), "session_key", None)
        return f"session:{session_key}" if session_key else "anonymous"

    async def _close_unauthenticated(self, reason: str) -> None:
        self.push(protocol.error(Code.UNAUTHENTICATED, reason))
        await self.close(code=CLOSE_UNAUTHENTICATED)

    async def revoke(self, reason: str) -> None:
        """The identity this socket was opened with no longer holds (``identity``): close it with 4401.

        It leaves every instance at once; frames it sends meanwhile are ignored.
        """
        if self.revoked:
            return
        self.revoked = True
        log.warning(
            "zocket: closing %s: %s",
            self.client_id,
            reason,
            extra={"zocket": {"client": self.client_id, "user": self.caller.user_id, "code": Code.UNAUTHENTICATED}},
        )
        self._detach()
        await self._close_unauthenticated(reason)

    async def end_subscription(self, spec: ActorSpec, actor_id: str, kind: str, refusal: ZocketError) -> None:
        """Its ``read`` rule refuses this socket now (``identity``): unsubscribe it and say why."""
        if (spec.name, actor_id, kind) not in self.subscriptions or self.revoked:
            return
        log.info(
            "zocket: %s:sub of %s/%s ended for %s: %s",
            kind,
            spec.name,
            actor_id,
            self.client_id,
            refusal.message,
            extra={"zocket": {"client": self.client_id, "user": self.caller.user_id, "code": str(refusal.code)}},
        )
        await self._drop_subscription(spec, actor_id, kind)
        ref = {"type": f"{kind}:sub", "actor": spec.name, "actorId": actor_id}
        self.push(protocol.error(refusal.code, f"{refusal.message}; subscription ended", ref))
