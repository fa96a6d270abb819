"""Who owns an actor instance when several worker processes share one Redis.

With the in-memory layer there is one process, and it owns everything
(``SingleProcess``). With channels-redis every instance is hot in exactly one
worker: ownership is a lease in Redis (``SET NX PX``), renewed by the owner
while the instance is hot and released when it deactivates (``RedisLeases``).
Each worker also keeps a liveness key, so owners notice when the clients of a
dead worker are gone, and a worker notices when Redis lost its data (a
restart) and puts its leases and group memberships back.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from django.core.exceptions import ImproperlyConfigured

from .conf import zocket_settings

if TYPE_CHECKING:
    from channels.layers import BaseChannelLayer
    from redis.asyncio import Redis

log = logging.getLogger(__name__)

_RENEW = """
local holder = redis.call('get', KEYS[1])
if holder == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
if holder then return 0 end
return -1
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


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
    #: Redis lost its data: join the groups again and re-announce the subscribers.
    restore: Callable[[], Awaitable[None]]


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

    async def tick(self) -> None:
        pass

    async def workers(self) -> dict[str, dict[str, Any]]:
        return {self.channel: self.host.describe()}


class RedisLeases:
    """Leases and worker liveness in the Redis the channel layer uses."""

    distributed = True

    def __init__(self, host: Host, redis: Redis, prefix: str) -> None:
        self.host = host
        self.channel = ""
        self.redis = redis
        self.prefix = f"{prefix}:zocket"
        self._owners: dict[str, tuple[str, float]] = {}  # group → (owner channel, valid until)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    @property
    def ttl(self) -> float:
        return zocket_settings().LEASE_TTL

    def _lease(self, group: str) -> str:
        return f"{self.prefix}:lease:{group}"

    def _alive(self, channel: str) -> str:
        return f"{self.prefix}:node:{channel}"

    async def start(self, channel: str) -> None:
        self.channel = channel
        await self._heartbeat()

    async def stop(self) -> None:
        """Say this worker is gone (a visitor, never started, has nothing to say) and close the pool."""
        try:
            if self.channel:
                await self.redis.delete(self._alive(self.channel))
        finally:
            await self.redis.aclose(close_connection_pool=True)

    # -- ownership -------------------------------------------------------------

    async def owner(self, group: str, *, acquire: bool) -> str | None:
        """For an instance not hot here: ``None`` when this worker owns it (or now does), else the
        owner's channel.

        ``acquire=False`` (leaving, unsubscribing) never takes a free lease:
        it answers the channel ``""`` for "nobody", so nothing is activated.
        """
        cached = self._owners.get(group)
        now = time.monotonic()
        if cached is not None and cached[1] > now:
            return cached[0]
        me = self.channel
        for _ in range(3):
            holder = await self.holder(group)
            if holder == me:
                return None
            if holder is not None:
                self._owners[group] = (holder, now + self.ttl / 2)
                return holder
            if not acquire:
                return ""
            if await self.redis.set(self._lease(group), me, nx=True, px=int(self.ttl * 1000)):
                return None
        raise ConnectionError(f"the lease of {group} keeps changing hands")

    async def holder(self, group: str) -> str | None:
        value = await self.redis.get(self._lease(group))
        return value.decode() if isinstance(value, bytes) else value

    def forget(self, group: str) -> None:
        """Drop the cached owner (it did not answer, or moved)."""
        self._owners.pop(group, None)

    async def release(self, group: str) -> None:
        await self._release(keys=[self._lease(group)], args=[self.channel])

    # -- upkeep ------------------------------------------------------------------

    async def tick(self) -> None:
        """Renew leases and liveness; notice dead workers and a Redis that lost its data."""
        if await self._heartbeat():
            log.warning("zocket: Redis lost this worker's keys (restart?); restoring leases and groups")
            await self.host.restore()
        await self._renew_leases()
        await self._part_dead_clients()

    async def _heartbeat(self) -> bool:
        """Refresh this worker's liveness key; True when it had vanished."""
        previous = await self.redis.set(
            self._alive(self.channel),
            json.dumps(self.host.describe()),
            px=int(self.ttl * 1000),
            get=True,
        )
        return previous is None

    async def _renew_leases(self) -> None:
        ttl_ms = int(self.ttl * 1000)
        for actor, actor_id, group in self.host.hot():
            state = await self._renew(keys=[self._lease(group)], args=[self.channel, ttl_ms])
            if state == -1 and await self.redis.set(self._lease(group), self.channel, nx=True, px=ttl_ms):
                continue  # Redis forgot it; we still hold the instance, so we take it back
            if state in (0, -1):
                log.error("zocket: lost the lease of %s/%s to another worker; dropping it here", actor, actor_id)
                self.host.drop(actor, actor_id)

    async def _part_dead_clients(self) -> None:
        """Clients of workers whose liveness key expired have left (``on_disconnect``)."""
        for channel in self.host.remote_channels():
            if not await self.redis.exists(self._alive(channel)):
                log.warning("zocket: worker %s is gone; its clients leave", channel)
                self.host.part_worker(channel)

    async def workers(self) -> dict[str, dict[str, Any]]:
        """Every live worker's description, by channel."""
        found: dict[str, dict[str, Any]] = {}
        pattern = self._alive("*")
        async for key in self.redis.scan_iter(match=pattern, count=500):
            value = await self.redis.get(key)
            if value is not None:
                channel = key.decode()[len(self._alive("")) :]
                found[channel] = json.loads(value)
        return found


def describe_worker() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}


def cluster_for(layer: BaseChannelLayer, host: Host) -> Cluster:
    """Leases in Redis when the channel layer is channels-redis, else a single process."""
    if not type(layer).__module__.startswith("channels_redis"):
        return SingleProcess(host)
    from redis.asyncio import BlockingConnectionPool, Redis

    settings = zocket_settings()
    kwargs = getattr(layer, "_kwargs", {})  # RedisPubSubChannelLayer keeps its arguments here
    prefix = getattr(layer, "prefix", None) or kwargs.get("prefix", "asgi")
    # A bounded pool that waits: redis-py's default pool raises past 100
    # connections, and many sockets may look up owners at once.
    options: dict[str, Any] = {"socket_timeout": 5, "socket_connect_timeout": 5, "max_connections": 32, "timeout": 5}
    if settings.REDIS_URL:
        pool = BlockingConnectionPool.from_url(settings.REDIS_URL, **options)
    else:
        from channels_redis.utils import decode_hosts

        hosts = getattr(layer, "hosts", None) or decode_hosts(kwargs.get("hosts"))
        first = dict(hosts[0])
        if "address" not in first and "host" not in first:
            raise ImproperlyConfigured(
                "zocket_django cannot derive a Redis connection from this channel layer's hosts; "
                'set ZOCKET["REDIS_URL"].'
            )
        first.update(options)
        address = first.pop("address", None)
        pool = BlockingConnectionPool.from_url(address, **first) if address else BlockingConnectionPool(**first)
    return RedisLeases(host, Redis(connection_pool=pool), prefix)
