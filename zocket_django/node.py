"""One node per worker process (per event loop): the parts that serve its sockets, put together.

A node is one channel-layer channel and the pieces that share it, each with one
job: ``fanout.LocalFanout`` (this process's sockets and the groups it joined
for them), ``owners.OwnerRouter`` (requests carried to the worker owning the
instance, with tickets), ``runtime.Runtime`` (the instances hot here),
``mailbox.Mailbox`` (the receive loop and the ordered outbox), a
``cluster.Cluster`` (who owns what) and ``ops.Operations`` (operators'
requests). The node reads what arrives (``messages.parse``), hands it to the
piece it is for, and runs the housekeeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
import time
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from channels.layers import BaseChannelLayer, get_channel_layer
from django.core.exceptions import ImproperlyConfigured

from . import messages
from .cluster import Cluster, Host, cluster_for, describe_worker
from .conf import zocket_settings
from .fanout import LocalFanout
from .mailbox import Mailbox
from .messages import Deliver, Message, OpsReply, OpsRequest, Reply, Request, Snapshot, Unreadable
from .ops import Operations
from .owners import OwnerRouter, say_once
from .quotas import Quotas
from .reclaim import Reclaimer
from .runtime import Runtime

if TYPE_CHECKING:
    from .actor import ActorSpec
    from .fanout import Socket

log = logging.getLogger(__name__)

#: How long the cleanup of a closed socket retries what needs Redis (leaving groups, telling owners).
DETACH_RETRY_SECONDS = 30.0
#: How long stopping waits for closed sockets still parting.
PARTING_ON_STOP_SECONDS = 5.0

#: What to retry, and how to say it when given up on.
Attempt = tuple[str, Callable[[], Awaitable[None]]]


class Node:
    """Per-process (per event loop) hub: local sockets, routing to owners, the runtime, the mailbox."""

    channel: str
    fanout: LocalFanout
    router: OwnerRouter
    mailbox: Mailbox
    ops: Operations

    #: The group of an instance (``messages.group_name``).
    group_name = staticmethod(messages.group_name)

    def __init__(self, layer: BaseChannelLayer) -> None:
        self.layer = layer
        self.channel = ""
        self.runtime = Runtime(self)
        #: What each user's connections hold here (MAX_CONNECTIONS_PER_USER and the like).
        self.quotas = Quotas()
        #: Collects cycles and trims the heap after a mass of instances or sockets went away.
        self.reclaimer = Reclaimer()
        self.described = describe_worker()
        self.cluster: Cluster = cluster_for(layer, self._host())
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[None]] = set()  # closed sockets still parting
        self.ready = asyncio.get_running_loop().create_future()

    def _host(self) -> Host:
        def hot() -> list[tuple[str, str, str]]:
            return [(*key, inst.group) for key, inst in list(self.runtime.instances.items())]

        def remote_channels() -> set[str]:
            instances = self.runtime.instances.values()
            found = {p.caller.reply_to for inst in instances for p in inst.clients.values()}
            return found - {self.channel}

        runtime = self.runtime
        return Host(
            self.describe, hot, remote_channels, runtime.drop, runtime.part_worker, self._restore, runtime.resume
        )

    async def start(self) -> None:
        self.channel = channel = await self.layer.new_channel(prefix="zocket")
        self.fanout = LocalFanout(self.layer, channel)
        self.router = OwnerRouter(channel, self.runtime, self.cluster, self.fanout, self.send)
        # A validated call goes straight to the router (the per-call path: no forwarding coroutine).
        self.call = self.router.call
        self.mailbox = Mailbox(self.layer, channel, self._receive)
        self.ops = Operations(channel, self.runtime, self.cluster, self.send, self.describe)
        await self.cluster.start(channel)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(work) for work in (*self.mailbox.tasks(), self._housekeeping())]
        self.ready.set_result(None)

    def describe(self) -> dict[str, Any]:
        """What other workers and operators see of this one."""
        return {**self.described, "channel": self.channel}

    async def stop(self) -> None:
        """Deactivate every instance, hand what other workers must hear to the layer, stop listening."""
        if self._background:  # closed sockets still parting
            await asyncio.wait(list(self._background), timeout=PARTING_ON_STOP_SECONDS)
        await self.runtime.deactivate_all()
        await self.mailbox.flush()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.fanout.leave_all()
        await self.cluster.stop()

    @staticmethod
    def new_client_id() -> str:
        """Unique across workers: 96 random bits."""
        return secrets.token_urlsafe(12)

    # -- what the consumer asks ----------------------------------------------------

    def attach(self, socket: Socket) -> str | None:
        """Serve a new socket; why it is refused (its user has too many here), or ``None``."""
        refused = self.quotas.open(socket.caller.user_id)
        if refused is None:
            self.fanout.attach(socket)
        return refused

    def detach(self, socket: Socket) -> None:
        """The socket closed (or died): forget it; instances it touched run ``on_disconnect``.

        Never waits and never raises: the consumer calls it from ``finally``,
        possibly while being cancelled. What needs the channel layer or the
        owner of an instance (leaving groups, telling owners) runs in a task of
        the node's own, retried while Redis is away.
        """
        if socket.client_id in self.fanout.sockets:
            self.quotas.close(socket.caller.user_id, socket.present)
        emptied = self.fanout.detach(socket)
        present, socket.present = list(socket.present.values()), {}
        if emptied or present:
            self._spawn(self._part(socket.client_id, emptied, present))

    async def _part(self, client_id: str, groups: list[str], instances: list[tuple[ActorSpec, str]]) -> None:
        leaves: list[Attempt] = [
            (f"leave the group {group}", functools.partial(self.fanout.leave_group, group)) for group in groups
        ]
        leaves += [
            (
                f"tell {spec.name}/{actor_id} that {client_id} left",
                functools.partial(self.router.request_leave, spec, actor_id, client_id),
            )
            for spec, actor_id in instances
        ]
        await _retrying(leaves)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` in the background, keeping a reference until it is done."""
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def subscribe(self, socket: Socket, actor: str, actor_id: str, kind: str) -> None:
        await self.fanout.subscribe(socket, actor, actor_id, kind)

    async def unsubscribe(self, socket: Socket, actor: str, actor_id: str, kind: str) -> None:
        await self.fanout.unsubscribe(socket, actor, actor_id, kind)

    # -- sending (what the runtime asks) ----------------------------------------------

    async def send(self, channel: str, message: Message) -> None:
        """Send to one node: this one directly, another through the outbox."""
        if channel == self.channel:
            await self._dispatch(message)
        else:
            await self.mailbox.send(channel, message.build())

    async def publish(self, group: str, message: Deliver) -> None:
        """Deliver to this node's subscribers at once, and to other nodes through the outbox.

        Local delivery skips the layer entirely (with the in-memory layer there
        is no other node). Other nodes get one message each; one that cannot
        take it loses it, and the version gap that follows makes its clients
        resync.
        """
        await self._deliver(message)
        if self.cluster.distributed:
            message.origin = self.channel
            await self.mailbox.group_send(group, message.build())

    def listened(self, group: str) -> bool:
        """Whether ``publish`` to ``group`` may reach anyone: a subscriber here, or other workers."""
        return self.cluster.distributed or bool(self.fanout.local.get(group))

    async def released(self, group: str) -> None:
        """An instance deactivated here: give its lease back."""
        try:
            await self.cluster.release(group)
        except Exception:
            log.warning("zocket: could not release the lease of %s (it will expire)", group, exc_info=True)

    # -- receiving ------------------------------------------------------------------------

    async def _receive(self, raw: Any) -> None:
        try:
            message = messages.parse(raw)
        except Unreadable as exc:
            await self._unreadable(exc)
            return
        await self._dispatch(message)

    async def _dispatch(self, message: Message) -> None:
        if isinstance(message, Deliver):
            if message.origin != self.channel:  # our own were delivered directly
                await self._deliver(message)
        elif isinstance(message, Reply):
            if self.router.settle(message.ticket):
                await self.fanout.send_frame(message.client, message.frame)
        elif isinstance(message, Snapshot):
            if self.router.settle(message.ticket):
                await self.fanout.snapshot(message)
        elif isinstance(message, Request):
            await self.router.receive(message)
        else:
            await self.ops.handle(message)

    async def _deliver(self, message: Deliver) -> None:
        await self.fanout.deliver(message)
        if message.announce is not None:
            await self.router.announce(self.fanout.subscribers(message.group), message.announce)

    async def _unreadable(self, exc: Unreadable) -> None:
        """A message this worker cannot read: fail the request it belongs to, and say so once."""
        say_once(f"zocket: refused a {exc.type} message from another worker: {exc.reason}")
        remains, why = exc.remains, f"a worker sent a message this one cannot read ({exc.reason})"
        if exc.type == Request.TYPE:
            await self.router.refuse(remains, why)
        elif exc.type in (Reply.TYPE, Snapshot.TYPE):
            await self.router.fail(remains.ticket, why)
        elif exc.type == OpsRequest.TYPE and remains.reply_to is not None and remains.ticket is not None:
            await self.send(remains.reply_to, OpsReply(remains.ticket, False, error=f"unavailable: {why}"))
        elif exc.type == OpsReply.TYPE:
            self.ops.fail(remains.ticket, why)

    async def _restore(self) -> None:
        """Redis lost its data: join our groups again and re-announce our subscribers.

        Raises when Redis fails a step; the cluster's next tick runs it all again.
        State subscribers are sent a fresh snapshot by the owner (the patches
        in flight during the restart are lost).
        """
        await self.router.resubscribe(await self.fanout.rejoin())

    # -- housekeeping ---------------------------------------------------------------------

    async def _housekeeping(self) -> None:
        """Idle instances, leases, dead workers, unanswered requests, group renewal."""
        while True:
            settings = zocket_settings()
            period = min(settings.IDLE_TIMEOUT / 4, 5.0)
            if self.cluster.distributed:
                period = min(period, settings.LEASE_TTL / 3)
            await asyncio.sleep(max(0.05, period))
            try:
                await self.cluster.tick()
                await self.router.expire()
                self.runtime.deactivate_idle()
                await self.fanout.renew()
                self.reclaimer.tick(self.runtime.held() + len(self.fanout.sockets))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("zocket: housekeeping failed")


async def _retrying(attempts: list[Attempt]) -> None:
    """Run each attempt until it works, all within one ``DETACH_RETRY_SECONDS`` (Redis may be restarting).

    One deadline for them all, not one each: a socket with many subscriptions
    closed while Redis stays away is given up on after one deadline, with one
    error. Each round tries every attempt still failing, so one that keeps
    failing does not hold up the others.
    """
    delay, deadline = 0.05, time.monotonic() + DETACH_RETRY_SECONDS
    while True:
        failing: list[Attempt] = []
        for what, attempt in attempts:
            try:
                await attempt()
            except Exception as exc:
                failing.append((what, attempt))
                last = exc
        attempts = failing
        if not attempts:
            return
        left = deadline - time.monotonic()
        if left <= 0:
            log.error(
                "zocket: %d leave(s) of a closed socket not delivered within %g s (could not %s); giving up",
                len(attempts),
                DETACH_RETRY_SECONDS,
                "; ".join(what for what, _ in attempts[:3]) + ("; ..." if len(attempts) > 3 else ""),
                exc_info=last,
            )
            return
        await asyncio.sleep(min(delay, left))
        delay = min(delay * 2, 2.0)


_nodes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Node] = weakref.WeakKeyDictionary()


async def get_node() -> Node:
    """This event loop's node, started on first use."""
    loop = asyncio.get_running_loop()
    node = _nodes.get(loop)
    if node is None:
        layer = get_channel_layer()
        if layer is None:
            raise ImproperlyConfigured(
                "zocket_django needs a channel layer: set CHANNEL_LAYERS (InMemoryChannelLayer for one "
                "process, channels_redis for several)."
            )
        node = _nodes[loop] = Node(layer)
        await node.start()
    await node.ready
    return node


def current_node() -> Node | None:
    """This event loop's node if one was started (for hot_actors and tests)."""
    try:
        return _nodes.get(asyncio.get_running_loop())
    except RuntimeError:
        return None


def forget_node(node: Node) -> None:
    for loop, n in list(_nodes.items()):
        if n is node:
            del _nodes[loop]
