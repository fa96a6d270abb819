"""Ownership through Redis (``RedisLeases``): a lease per hot instance, a liveness key per worker.

The strategy ``cluster.cluster_for`` picks with channels-redis (see
``cluster`` for what a strategy does). Its Lua scripts take, renew and release
a lease atomically; every acquisition reads Redis' clock, the epoch of the
incarnation that starts. Each tick renews the leases of the instances hot here
and this worker's liveness key, notices the workers whose key expired (their
clients leave), and notices a Redis that lost its data (its leases and groups
are put back).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ImproperlyConfigured

from .conf import zocket_settings
from .epochs import new_epoch

if TYPE_CHECKING:
    from channels.layers import BaseChannelLayer
    from redis.asyncio import Redis

    from .cluster import Host

log = logging.getLogger("zocket_django.cluster")

_RENEW = """
local holder = redis.call('get', KEYS[1])
if holder == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
if holder then return 0 end
return -1
"""
# Shared opening of the two scripts below: ``now`` (Redis' clock, ms) and ``since``, when
# Redis' data was first seen (MARKER: the key of that marker, set to now when it is missing,
# that is when Redis lost its data since anyone looked).
_SINCE = """
local t = redis.call('time')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local since = tonumber(redis.call('get', MARKER))
if not since then
  redis.call('set', MARKER, now)
  since = now
end
"""
# Take a free lease, unless Redis lost its data less than a lease ago: then an
# owner that is still alive may not have noticed yet, and it must get the time
# to take its own leases back first. KEYS: lease, marker of Redis' data (when it
# was first seen empty, Redis' clock in ms); ARGV: me, ttl ms. Returns
# {0, now ms} (taken; the epoch of the new incarnation), {-1, 0} (held by
# someone), or {1, ms to wait}.
_ACQUIRE = (
    _SINCE.replace("MARKER", "KEYS[2]")
    + """
local wait = since + tonumber(ARGV[2]) - now
if wait > 0 then return {1, wait} end
if redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {0, now} end
return {-1, 0}
"""
)
# How long, in ms, until Redis' data is a lease old (<= 0: it is). Marks the
# data as new when the marker is missing (Redis lost its data since anyone
# looked). KEYS: the marker; ARGV: ttl ms.
_SETTLED = _SINCE.replace("MARKER", "KEYS[1]") + "return since + tonumber(ARGV[1]) - now\n"
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""

#: A lease not renewed for this fraction of ``LEASE_TTL`` is in doubt: its
#: instance acknowledges nothing more until a renewal succeeds. Renewals come
#: every third of the TTL, so one late renewal is tolerated; the rest is the
#: margin before another worker may take the lease.
DOUBT_AFTER = 0.75


class RedisLeases:
    """Leases and worker liveness in the Redis the channel layer uses."""

    distributed = True

    def __init__(self, host: Host, redis: Redis, prefix: str) -> None:
        self.host = host
        self.channel = ""
        self.redis = redis
        self.prefix = f"{prefix}:zocket"
        self._owners: dict[str, tuple[str, float]] = {}  # group → (owner channel, valid until)
        #: group → when the last successful acquisition or renewal of our lease was sent (monotonic).
        self._held: dict[str, float] = {}
        #: group → Redis' clock (ms) when we took its lease: the epoch of the incarnation about to start.
        self._epochs: dict[str, int] = {}
        #: Redis lost its data and the groups and subscribers are not all back yet.
        self._restoring = False
        self._renew = redis.register_script(_RENEW)
        self._acquire = redis.register_script(_ACQUIRE)
        self._release = redis.register_script(_RELEASE)
        self._settled = redis.register_script(_SETTLED)

    @property
    def ttl(self) -> float:
        return zocket_settings().LEASE_TTL

    def _lease(self, group: str) -> str:
        return f"{self.prefix}:lease:{group}"

    def _alive(self, channel: str) -> str:
        return f"{self.prefix}:node:{channel}"

    @property
    def _since(self) -> str:
        """Marker of Redis' data: when it was first seen empty (milliseconds, Redis' clock)."""
        return f"{self.prefix}:since"

    async def start(self, channel: str) -> None:
        self.channel = channel
        # A cluster that starts from nothing has no owner to wait for.
        alive = [key async for key in self.redis.scan_iter(match=self._alive("*"), count=500)]
        if not alive:
            await self.redis.set(self._since, 0, nx=True)
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
            if holder == me:  # ours, but the instance is not hot here: renew before it runs anything
                sent = time.monotonic()
                if await self._renew(keys=[self._lease(group)], args=[me, int(self.ttl * 1000)]) == 1:
                    self._held[group] = sent
                self._epochs[group] = await self._redis_clock()
                return None
            if holder is not None:
                self._owners[group] = (holder, now + self.ttl / 2)
                return holder
            if not acquire:
                return ""
            sent = time.monotonic()
            taken, value = await self._acquire(keys=[self._lease(group), self._since], args=[me, int(self.ttl * 1000)])
            if taken == 0:
                self._held[group] = sent
                self._epochs[group] = value
                return None
            if taken == 1:  # Redis restarted: live owners take their leases back first
                await asyncio.sleep(value / 1000)
        raise ConnectionError(f"the lease of {group} keeps changing hands")

    def epoch(self, group: str) -> int:
        """The epoch of the incarnation starting here: Redis' clock when this worker took the lease.

        Every acquisition of a lease reads Redis' one clock, and a new
        acquisition follows the end of the last lease, so a later incarnation,
        wherever it runs, has a larger epoch.
        """
        epoch = self._epochs.pop(group, None)
        return epoch if epoch is not None else new_epoch()

    def holds(self, group: str) -> bool:
        """Whether this worker surely still owns ``group``'s lease (renewed recently enough)."""
        held = self._held.get(group)
        return held is not None and time.monotonic() - held < self.ttl * DOUBT_AFTER

    async def _redis_clock(self) -> int:
        """Redis' clock in milliseconds: the one clock every worker's epochs are read from."""
        seconds, micros = await self.redis.time()
        return int(seconds) * 1000 + int(micros) // 1000

    async def holder(self, group: str) -> str | None:
        value = await self.redis.get(self._lease(group))
        return value.decode() if isinstance(value, bytes) else value

    def forget(self, group: str) -> None:
        """Drop the cached owner (it did not answer, or moved)."""
        self._owners.pop(group, None)

    async def release(self, group: str) -> None:
        self._held.pop(group, None)
        await self._release(keys=[self._lease(group)], args=[self.channel])

    # -- upkeep ------------------------------------------------------------------

    async def tick(self) -> None:
        """Renew leases and liveness; notice dead workers and a Redis that lost its data.

        Each step raises when Redis fails it; the next tick does it again. The
        restoration of groups and subscribers after Redis lost its data is
        remembered as owed until it has completed once.
        """
        if await self._heartbeat():
            log.warning(
                "zocket: this worker's liveness key was gone (Redis lost its data, or this worker was paused "
                "past LEASE_TTL); restoring leases and groups"
            )
            self._restoring = True
        await self._renew_leases()
        if self._restoring:
            await self.host.restore()
            self._restoring = False
            log.warning("zocket: groups and subscribers restored after Redis lost its data")
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
            sent = time.monotonic()
            state = await self._renew(keys=[self._lease(group)], args=[self.channel, ttl_ms])
            if state == -1:  # expired, or Redis forgot it (a restart): nobody holds it now, take it back
                was_held = self.holds(group)
                if await self.redis.set(self._lease(group), self.channel, nx=True, px=ttl_ms):
                    self._held[group] = sent
                    if not was_held:  # someone may have held it meanwhile: check, and start a new epoch
                        self.host.resume(actor, actor_id, await self._redis_clock())
                    continue
            elif state == 1:
                self._held[group] = sent
                continue
            log.error("zocket: lost the lease of %s/%s; dropping it here", actor, actor_id)
            self._held.pop(group, None)
            self.host.drop(actor, actor_id)

    async def _part_dead_clients(self) -> None:
        """Clients of workers whose liveness key expired have left (``on_disconnect``).

        A missing key means a dead worker only once Redis' data is a lease
        old: right after Redis lost its data every key is missing, and live
        workers put theirs back on their next tick (a third of a lease).
        Parting their clients then would run ``on_disconnect`` for clients
        still connected, and forget them on the owner until they call or
        subscribe again.
        """
        channels = self.host.remote_channels()
        if not channels or await self._settled(keys=[self._since], args=[int(self.ttl * 1000)]) > 0:
            return
        for channel in channels:
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


def connect(layer: BaseChannelLayer, host: Host) -> RedisLeases:
    """Leases in the Redis a channels-redis layer uses (``REDIS_URL``, else the layer's first host)."""
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
