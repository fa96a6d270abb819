"""The process's mailbox: one channel-layer channel per worker process.

Consumers do not get channel-layer channels of their own. Frames for this
process's sockets are written to them directly, already encoded; other
workers get one channel message each (not one per subscriber) through an
ordered outbox, and the node joins each instance's group once for all its
local subscribers. Requests for instances another worker owns are forwarded to
that worker's node, and their answers come back here.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import secrets
import time
import weakref
from collections.abc import Set
from typing import TYPE_CHECKING, Any

from channels.exceptions import ChannelFull
from channels.layers import BaseChannelLayer, get_channel_layer
from django.core.exceptions import ImproperlyConfigured

from . import protocol
from .cluster import RedisLeases, SingleProcess, cluster_for, describe_worker
from .conf import zocket_settings
from .ops import Operations
from .protocol import Code
from .registry import registry
from .runtime import EVENTS, STATE, Caller, Runtime

if TYPE_CHECKING:
    from pydantic import BaseModel

    from .actor import ActorSpec, MethodSpec
    from .consumer import ZocketConsumer

log = logging.getLogger("zocket_django")

#: Marks a state subscription whose snapshot has not reached the socket yet.
PENDING_STATE = "state?"

#: How long a message for another node waits for an unreachable Redis before it is dropped.
SEND_RETRY_SECONDS = 5.0
#: How long it waits for a full channel (a stuck node must not hold up the others).
FULL_RETRY_SECONDS = 0.5
#: Messages for other nodes that may wait in the outbox; beyond, senders wait.
OUTBOX_SIZE = 10000
#: How many times a forwarded request may be passed on to yet another worker.
MAX_HOPS = 3


class Pending:
    """A request forwarded to another worker, waiting for its answer."""

    __slots__ = ("client_id", "deadline", "group", "owner", "resend", "rpc_id")

    def __init__(self, client_id: str, group: str, owner: str, rpc_id: str | None, deadline: float, resend: Any):
        self.client_id = client_id
        self.group = group
        self.owner = owner
        self.rpc_id = rpc_id  # None for a state subscription
        self.deadline = deadline
        self.resend = resend  # for subscriptions: how to ask the next owner


class Node:
    """Per-process (per event loop) hub: local sockets, group membership, the runtime."""

    def __init__(self, layer: BaseChannelLayer) -> None:
        self.layer = layer
        self.channel = ""
        self.runtime = Runtime(self)
        self.consumers: dict[str, ZocketConsumer] = {}
        #: group → client id → subscription kinds of that local client.
        self.local: dict[str, dict[str, set[str]]] = {}
        self._joined: dict[str, float] = {}
        self._membership = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._outbox: asyncio.Queue[tuple[str | None, str | None, dict[str, Any]]] = asyncio.Queue(OUTBOX_SIZE)
        self._tickets = 0
        self.pending: dict[int, Pending] = {}
        self.described = describe_worker()
        self.cluster: SingleProcess | RedisLeases = cluster_for(self)
        self.ops = Operations(self)  # operators' requests: inventory, inspect, deactivate
        self.ready = asyncio.get_running_loop().create_future()

    async def start(self) -> None:
        self.channel = await self.layer.new_channel(prefix="zocket")
        await self.cluster.start()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._receive_loop()),
            loop.create_task(self._housekeeping()),
            loop.create_task(self._send_outbox()),
        ]
        self.ready.set_result(None)

    def describe(self) -> dict[str, Any]:
        """What other workers and operators see of this one."""
        return {**self.described, "channel": self.channel}

    async def stop(self) -> None:
        """Deactivate every instance, hand what other workers must hear to the layer, stop listening."""
        await self.runtime.deactivate_all()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._outbox.join(), SEND_RETRY_SECONDS)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for group in list(self._joined):
            await self.layer.group_discard(group, self.channel)
        self._joined.clear()
        await self.cluster.stop()

    # -- naming --------------------------------------------------------------

    @staticmethod
    @functools.lru_cache(maxsize=65536)
    def group_name(actor: str, actor_id: str) -> str:
        """A valid group name for any actor id (ids may hold any character); cached, it is asked per request."""
        digest = hashlib.blake2b(f"{actor}\x00{actor_id}".encode(), digest_size=16).hexdigest()
        return f"zocket.{digest}"

    @staticmethod
    def new_client_id() -> str:
        """Unique across workers: 96 random bits."""
        return secrets.token_urlsafe(12)

    # -- sending -----------------------------------------------------------------

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        """Send to one node: this one directly, another through the outbox."""
        if channel == self.channel:
            await self._handle(message)
        else:
            await self._outbox.put((channel, None, message))

    async def publish(self, group: str, message: dict[str, Any]) -> None:
        """Deliver to this node's subscribers at once, and to other nodes through the outbox.

        Local delivery skips the layer entirely (with the in-memory layer there
        is no other node). Other nodes get one message each; one that cannot
        take it loses it, and the version gap that follows makes its clients
        resync.
        """
        await self._deliver(message)
        if self.cluster.distributed:
            await self._outbox.put((None, group, {**message, "origin": self.channel}))

    async def _send_outbox(self) -> None:
        """Hand messages for other nodes to the layer in order, off the actors' queues.

        One task keeps them in order (a patch before the answer that follows
        it), and a step never waits for a Redis round trip. A full channel is
        retried briefly, an unreachable Redis for longer; then the message is
        dropped and logged (the requester's deadline answers ``unavailable``).
        """
        while True:
            channel, group, message = await self._outbox.get()
            delay, started = 0.001, time.monotonic()
            while True:
                try:
                    if group is not None:
                        await self.layer.group_send(group, message)
                    else:
                        await self.layer.send(channel, message)
                    break
                except asyncio.CancelledError:
                    raise
                except ChannelFull:
                    problem, patience = "stayed full", FULL_RETRY_SECONDS
                except Exception as exc:  # Redis restarting, network
                    problem, patience = f"is unreachable ({exc.__class__.__name__})", SEND_RETRY_SECONDS
                if time.monotonic() - started >= patience:
                    log.error("zocket: %s %s; a %s was dropped", channel or group, problem, message.get("type"))
                    break
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.2)
            self._outbox.task_done()

    # -- routing requests to the owner ----------------------------------------------

    async def _owner(self, spec: ActorSpec, actor_id: str, group: str, *, acquire: bool = True) -> str | None:
        """``None`` if this worker runs the instance, else the owner's channel (``""``: nobody)."""
        if (spec.name, actor_id) in self.runtime.instances:
            return None  # hot here: no need to ask anyone
        return await self.cluster.owner(group, acquire=acquire)

    async def call(
        self,
        spec: ActorSpec,
        actor_id: str,
        caller: Caller,
        method: MethodSpec,
        args: BaseModel,
        raw: Any,
        rpc_id: str,
        key: str | None = None,
    ) -> None:
        """Run a validated call here or on the worker that owns the instance (``key``: at most once)."""
        group = self.group_name(spec.name, actor_id)
        try:
            owner = await self._owner(spec, actor_id, group)
        except Exception:
            log.exception("zocket: cannot tell who owns %s/%s", spec.name, actor_id)
            await self._answer_unavailable(caller.client_id, rpc_id)
            return
        if owner is None:
            self.runtime.call(spec, actor_id, caller, method, args, rpc_id, key=key)
            return
        ticket = self._track(caller.client_id, group, owner, rpc_id, None)
        request = {"op": "call", "method": method.name, "input": raw, "rpc_id": rpc_id, "key": key}
        await self._forward(owner, spec, actor_id, caller, request, ticket)

    async def request_subscription(self, spec: ActorSpec, actor_id: str, caller: Caller, kind: str) -> None:
        """Ask the owner to count this subscription (and send a snapshot for state)."""
        try:
            await self._request_subscription(spec, actor_id, caller, kind)
        except Exception:
            log.exception("zocket: cannot tell who owns %s/%s", spec.name, actor_id)

    async def _request_subscription(self, spec: ActorSpec, actor_id: str, caller: Caller, kind: str) -> None:
        """``request_subscription`` that raises when the owner cannot be found (Redis away)."""
        group = self.group_name(spec.name, actor_id)
        owner = await self._owner(spec, actor_id, group)
        if owner is None:
            self.runtime.subscribe(spec, actor_id, caller, {kind}, answer=True)
            return
        ticket = None
        if kind == STATE:

            async def resend() -> None:
                await self.request_subscription(spec, actor_id, caller, kind)

            ticket = self._track(caller.client_id, group, owner, None, resend)
        request = {"op": "subscribe", "kinds": [kind], "answer": True}
        await self._forward(owner, spec, actor_id, caller, request, ticket)

    async def request_unsubscription(self, spec: ActorSpec, actor_id: str, client_id: str, kind: str) -> None:
        await self._tell(spec, actor_id, {"op": "unsubscribe", "client_id": client_id, "kind": kind})

    async def request_leave(self, spec: ActorSpec, actor_id: str, client_id: str) -> None:
        await self._tell(spec, actor_id, {"op": "leave", "client_id": client_id})

    async def _tell(self, spec: ActorSpec, actor_id: str, request: dict[str, Any]) -> None:
        """Unsubscribe or leave: never activates an instance just for that."""
        group = self.group_name(spec.name, actor_id)
        try:
            owner = await self._owner(spec, actor_id, group, acquire=False)
        except Exception:
            log.exception("zocket: cannot tell who owns %s/%s", spec.name, actor_id)
            return
        if owner is None:
            self._local_request(spec, actor_id, None, request, None)
        elif owner:
            await self._forward(owner, spec, actor_id, None, request, None)

    async def _forward(
        self,
        owner: str,
        spec: ActorSpec,
        actor_id: str,
        caller: Caller | None,
        request: dict[str, Any],
        ticket: int | None,
        hops: int = 0,
    ) -> None:
        message = {
            "type": "zocket.request",
            "actor": spec.name,
            "actor_id": actor_id,
            "caller": caller.to_wire() if caller is not None else None,
            "ticket": ticket,
            "hops": hops,
            **request,
        }
        await self.send(owner, message)

    def _local_request(
        self, spec: ActorSpec, actor_id: str, caller: Caller | None, request: dict[str, Any], ticket: int | None
    ) -> None:
        """Carry out a request (forwarded, or a local unsubscribe/leave) on this worker's runtime."""
        op = request["op"]
        if op == "call":
            assert caller is not None
            method = spec.methods[request["method"]]
            args = method.input_model.model_validate(request["input"] or {})
            self.runtime.call(spec, actor_id, caller, method, args, request["rpc_id"], ticket, request.get("key"))
        elif op == "subscribe":
            assert caller is not None
            self.runtime.subscribe(
                spec, actor_id, caller, set(request["kinds"]), answer=request["answer"], ticket=ticket
            )
        elif op == "unsubscribe":
            self.runtime.unsubscribe(spec, actor_id, request["client_id"], request["kind"])
        elif op == "leave":
            self.runtime.leave(spec, actor_id, request["client_id"])

    async def _request(self, message: dict[str, Any]) -> None:
        """A request forwarded by another worker: run it if we own the instance, else pass it on."""
        spec = registry.get(message["actor"])
        if spec is None:
            log.error("zocket: forwarded request for unknown actor %r (workers run different code?)", message["actor"])
            return
        actor_id = message["actor_id"]
        caller = Caller.from_wire(message["caller"]) if message.get("caller") else None
        group = self.group_name(spec.name, actor_id)
        creating = message["op"] in ("call", "subscribe")
        owner = await self._owner(spec, actor_id, group, acquire=creating)
        if owner is None:
            self._local_request(spec, actor_id, caller, message, message.get("ticket"))
        elif owner and message["hops"] < MAX_HOPS:
            await self.send(owner, {**message, "hops": message["hops"] + 1})
        elif creating and caller is not None:
            log.warning("zocket: no worker would take %s/%s", spec.name, actor_id)

    def _track(self, client_id: str, group: str, owner: str, rpc_id: str | None, resend: Any) -> int:
        self._tickets += 1
        deadline = time.monotonic() + zocket_settings().call_budget + zocket_settings().LEASE_TTL
        self.pending[self._tickets] = Pending(client_id, group, owner, rpc_id, deadline, resend)
        return self._tickets

    async def _answer_unavailable(self, client_id: str, rpc_id: str) -> None:
        consumer = self.consumers.get(client_id)
        if consumer is not None:
            frame = protocol.rpc_error(rpc_id, Code.UNAVAILABLE, "the worker running this actor did not answer in time")
            await consumer.send(text_data=frame)

    async def _expire_pending(self) -> None:
        """Fail forwarded requests whose owner died or moved; retry subscriptions."""
        if not self.pending:
            return
        now = time.monotonic()
        holders: dict[str, str | None] = {}
        for ticket, pending in list(self.pending.items()):
            if pending.group not in holders:
                try:
                    holders[pending.group] = await self.cluster.holder(pending.group)
                except Exception:
                    holders[pending.group] = pending.owner  # Redis is away: wait for the deadline
            if holders[pending.group] == pending.owner and now < pending.deadline:
                continue
            del self.pending[ticket]
            self.cluster.forget(pending.group)
            if pending.rpc_id is not None:
                await self._answer_unavailable(pending.client_id, pending.rpc_id)
            elif pending.resend is not None and pending.client_id in self.consumers:
                await pending.resend()

    # -- local sockets ---------------------------------------------------------------

    def attach(self, consumer: ZocketConsumer) -> None:
        self.consumers[consumer.client_id] = consumer

    async def detach(self, consumer: ZocketConsumer) -> None:
        """The socket closed: forget its subscriptions; instances it touched run ``on_disconnect``."""
        client_id = consumer.client_id
        self.consumers.pop(client_id, None)
        for group, (spec, actor_id) in consumer.present.items():
            members = self.local.get(group)
            if members is not None and members.pop(client_id, None) is not None and not members:
                await self._leave_group(group)
            await self.request_leave(spec, actor_id, client_id)

    async def subscribe(self, consumer: ZocketConsumer, actor: str, actor_id: str, kind: str) -> None:
        """Start delivering ``kind`` frames of the instance to this consumer.

        Events flow at once; state flows once the snapshot, which the owner
        sends back in order with the patches, has reached the socket.
        """
        group = self.group_name(actor, actor_id)
        async with self._membership:
            members = self.local.setdefault(group, {})
            if group not in self._joined:
                await self.layer.group_add(group, self.channel)
                self._joined[group] = time.monotonic()
        kinds = members.setdefault(consumer.client_id, set())
        kinds.add(PENDING_STATE if kind == STATE else EVENTS)

    async def unsubscribe(self, consumer: ZocketConsumer, actor: str, actor_id: str, kind: str) -> None:
        group = self.group_name(actor, actor_id)
        members = self.local.get(group)
        if members is None or consumer.client_id not in members:
            return
        kinds = members[consumer.client_id]
        kinds.difference_update({STATE, PENDING_STATE} if kind == STATE else {EVENTS})
        if not kinds:
            del members[consumer.client_id]
            if not members:
                await self._leave_group(group)

    async def _leave_group(self, group: str) -> None:
        async with self._membership:
            if self.local.get(group):
                return  # someone subscribed again meanwhile
            self.local.pop(group, None)
            if self._joined.pop(group, None) is not None:
                await self.layer.group_discard(group, self.channel)

    # -- the mailbox --------------------------------------------------------------------

    async def _receive_loop(self) -> None:
        failures = 0
        while True:
            try:
                message = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                # Redis restarting, a network blip: keep listening, with backoff.
                failures += 1
                log.warning("zocket: channel layer receive failed (%d); retrying", failures, exc_info=True)
                await asyncio.sleep(min(0.05 * 2**failures, 2.0))
                continue
            failures = 0
            try:
                await self._handle(message)
            except Exception:
                log.exception("zocket: could not handle %s", message.get("type"))

    async def _handle(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "zocket.deliver":
            if message.get("origin") != self.channel:  # our own were delivered directly
                await self._deliver(message)
        elif kind == "zocket.reply":
            if self._settle(message):
                consumer = self.consumers.get(message["client"])
                if consumer is not None:
                    await consumer.send(text_data=message["frame"])
        elif kind == "zocket.snapshot":
            if self._settle(message):
                await self._snapshot(message)
        elif kind == "zocket.request":
            await self._request(message)
        elif kind in ("zocket.ops", "zocket.ops.reply"):
            await self.ops.handle(message)
        else:
            log.warning("zocket: unknown node message %r", kind)

    def _settle(self, message: dict[str, Any]) -> bool:
        """False for the late answer of a request already answered ``unavailable``."""
        ticket = message.get("ticket")
        return ticket is None or self.pending.pop(ticket, None) is not None

    async def _deliver(self, message: dict[str, Any]) -> None:
        group = message["group"]
        members = self.local.get(group)
        if not members:
            return
        kind = message["kind"]
        frame = message["frame"]
        only: Set[str] | None = set(message["only"]) if "only" in message else None
        excluded: Set[str] = set(message.get("except", ()))
        for client_id, kinds in list(members.items()):
            if only is not None and client_id not in only:
                continue
            if kind in kinds and client_id not in excluded:
                consumer = self.consumers.get(client_id)
                if consumer is not None:
                    await consumer.send(text_data=frame)
        if message.get("announce"):
            await self._announce(group, members, message["owner"])

    async def _announce(self, group: str, members: dict[str, set[str]], owner: str) -> None:
        """Tell a new incarnation of an instance (on ``owner``) who subscribes to it from here."""
        for consumer, spec, actor_id, kinds in self._subscribers(group, members):
            request = {"op": "subscribe", "kinds": sorted(kinds), "answer": False}
            if owner == self.channel:
                self._local_request(spec, actor_id, consumer.caller, request, None)
            else:
                await self._forward(owner, spec, actor_id, consumer.caller, request, None)

    def _subscribers(
        self, group: str, members: dict[str, set[str]]
    ) -> list[tuple[ZocketConsumer, ActorSpec, str, set[str]]]:
        """This node's subscribers of ``group``: consumer, actor, id and the kinds they want."""
        found = []
        for client_id, kinds in list(members.items()):
            consumer = self.consumers.get(client_id)
            target = consumer.present.get(group) if consumer is not None else None
            if consumer is not None and target is not None:
                found.append((consumer, *target, {STATE if k == PENDING_STATE else k for k in kinds}))
        return found

    async def _snapshot(self, message: dict[str, Any]) -> None:
        client_id = message["client"]
        kinds = self.local.get(message["group"], {}).get(client_id)
        consumer = self.consumers.get(client_id)
        if consumer is None or kinds is None or not kinds & {STATE, PENDING_STATE}:
            return  # unsubscribed (or gone) while the snapshot was on its way
        kinds.discard(PENDING_STATE)
        kinds.add(STATE)
        await consumer.send(text_data=message["frame"])

    async def released(self, group: str) -> None:
        """An instance deactivated here: give its lease back."""
        try:
            await self.cluster.release(group)
        except Exception:
            log.warning("zocket: could not release the lease of %s (it will expire)", group, exc_info=True)

    async def restore_groups(self) -> None:
        """Redis lost its data: join our groups again and re-announce our subscribers.

        Raises when Redis fails a step; the cluster's next tick runs it all again.
        State subscribers are sent a fresh snapshot by the owner (the patches
        in flight during the restart are lost).
        """
        for group in list(self._joined):
            await self.layer.group_add(group, self.channel)
            self._joined[group] = time.monotonic()
        for group, members in list(self.local.items()):
            for consumer, spec, actor_id, kinds in self._subscribers(group, members):
                for kind in kinds:
                    await self._request_subscription(spec, actor_id, consumer.caller, kind)

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
                await self._expire_pending()
                self.runtime.deactivate_idle()
                renew_after = getattr(self.layer, "group_expiry", 86400) / 2
                now = time.monotonic()
                for group, joined in list(self._joined.items()):
                    if now - joined > renew_after:
                        await self.layer.group_add(group, self.channel)
                        self._joined[group] = now
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("zocket: housekeeping failed")


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
    """This event loop's node if one was started (for the manager and tests)."""
    try:
        return _nodes.get(asyncio.get_running_loop())
    except RuntimeError:
        return None


def forget_node(node: Node) -> None:
    for loop, n in list(_nodes.items()):
        if n is node:
            del _nodes[loop]
