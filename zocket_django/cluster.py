"""Who owns an actor instance when several worker processes share one Redis.

With the in-memory layer there is one process, and it owns everything
(``SingleProcess``). With channels-redis every instance is hot in exactly one
worker: ownership is a lease in Redis (``SET NX PX``), renewed by the owner
while the instance is hot and released when it deactivates (``RedisLeases``,
in ``redis_leases``).
Each worker also keeps a liveness key, so owners notice when the clients of a
dead worker are gone, and a worker notices when Redis lost its data (a
restart) and puts its leases and group memberships back.

A lease not renewed for a while is *in doubt* (``holds``): its instance
acknowledges nothing until a renewal succeeds, so that no acknowledged change
is made on a copy another worker may be about to replace. Every acquisition
reads Redis' clock: the *epoch* of the incarnation that starts, ordered across
workers (``epochs``).

This module holds what a node sees of ownership: the ``Cluster`` protocol,
``Host`` (what a strategy may ask of its worker), the single-process strategy,
and ``cluster_for``, which picks one.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from .epochs import new_epoch
from .redis_leases import connect

if TYPE_CHECKING:
    from channels.layers import BaseChannelLayer


class Cluster(Protocol):
    """Who owns an instance: the strategy a node asks before it runs or forwards a request."""

    #: Whether other workers exist (messages for them go through the channel layer).
    distributed: bool

    async def start(self, channel: str) -> None:
        """Begin as the worker listening on ``channel``."""

    async def stop(self) -> None: ...

    async def owner(self, group: str, *, acquire: bool) -> str | None:
        """``None``: this worker owns it (``acquire``: or takes it now); else the owner's channel (``""``: nobody)."""

    async def holder(self, group: str) -> str | None:
        """The channel of the worker holding the instance now, asked afresh (``None``: nobody)."""

    async def release(self, group: str) -> None:
        """The instance deactivated here: give it up."""

    def forget(self, group: str) -> None:
        """Drop what is remembered of the owner (it did not answer, or moved)."""

    def holds(self, group: str) -> bool:
        """Whether this worker surely still owns ``group`` (its lease is not in doubt)."""

    def epoch(self, group: str) -> int:
        """The epoch of the incarnation of ``group`` starting here (larger than any before it)."""

    async def tick(self) -> None:
        """Periodic upkeep (leases, liveness), from the node's housekeeping."""

    async def workers(self) -> dict[str, dict[str, Any]]:
        """Every live worker's description, by channel."""


@dataclass(frozen=True, slots=True)
class Host:
    """What an ownership strategy may ask of its worker, and nothing more."""

    #: This worker as others see it (``describe_worker`` plus its channel).
    describe: Callable[[], dict[str, Any]]
    #: ``(actor, id, group)`` of every instance hot here.
    hot: Callable[[], list[tuple[str, str, str]]]
    #: The channels of other workers whose clients use instances hot here.
    remote_channels: Callable[[], set[str]]
    #: Another worker took the instance over: forget it here, without hooks.
    drop: Callable[[str, str], None]
    #: A worker died: its clients leave every instance here.
    part_worker: Callable[[str], None]
    #: Redis lost its data: join the groups again and re-announce the subscribers (raises: retried).
    restore: Callable[[], Awaitable[None]]
    #: The lease of an instance hot here was in doubt and is ours again: check it, under a new epoch.
    resume: Callable[[str, str, int], None]


class SingleProcess:
    """The in-memory layer: this process owns every instance; nothing to renew."""

    distributed = False

    def __init__(self, host: Host) -> None:
        self.host = host
        self.channel = ""

    async def start(self, channel: str) -> None:
        self.channel = channel

    async def stop(self) -> None:
        pass

    async def owner(self, group: str, *, acquire: bool) -> str | None:
        return None

    async def holder(self, group: str) -> str | None:
        return self.channel

    async def release(self, group: str) -> None:
        pass

    def forget(self, group: str) -> None:
        pass

    def holds(self, group: str) -> bool:
        return True

    def epoch(self, group: str) -> int:
        return new_epoch()

    async def tick(self) -> None:
        pass

    async def workers(self) -> dict[str, dict[str, Any]]:
        return {self.channel: self.host.describe()}


def describe_worker() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}


def cluster_for(layer: BaseChannelLayer, host: Host) -> Cluster:
    """Leases in Redis when the channel layer is channels-redis, else a single process."""
    if not type(layer).__module__.startswith("channels_redis"):
        return SingleProcess(host)
    return connect(layer, host)
