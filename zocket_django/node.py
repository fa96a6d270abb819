"""The process's mailbox: one channel-layer channel per worker process.

Consumers do not get channel-layer channels of their own. Instead the node
joins each instance's group once, for all its local subscribers, and writes the
already-encoded frames it receives to the local sockets that want them: one
channel message per *worker*, not per subscriber. Answers to requests come
back on the same channel, so they stay in order with the patches before them.
"""

from __future__ import annotations

import asyncio
import contextlib
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

from .conf import zocket_settings
from .runtime import EVENTS, STATE, Runtime

if TYPE_CHECKING:
    from .consumer import ZocketConsumer

log = logging.getLogger("zocket_django")

#: Marks a state subscription whose snapshot has not reached the socket yet.
PENDING_STATE = "state?"

#: How long a direct send keeps retrying a full channel before giving up.
SEND_RETRY_SECONDS = 5.0


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
        self.ready = asyncio.get_running_loop().create_future()

    async def start(self) -> None:
        self.channel = await self.layer.new_channel(prefix="zocket")
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._receive_loop()), loop.create_task(self._housekeeping())]
        self.ready.set_result(None)

    async def stop(self) -> None:
        """Deactivate every instance and stop listening (shutdown, tests)."""
        await self.runtime.deactivate_all()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for group in list(self._joined):
            await self.layer.group_discard(group, self.channel)
        self._joined.clear()

    # -- naming --------------------------------------------------------------

    @staticmethod
    def group_name(actor: str, actor_id: str) -> str:
        """A valid group name for any actor id (ids may hold any character)."""
        digest = hashlib.blake2b(f"{actor}\x00{actor_id}".encode(), digest_size=16).hexdigest()
        return f"zocket.{digest}"

    @staticmethod
    def new_client_id() -> str:
        """Unique across workers: 96 random bits."""
        return secrets.token_urlsafe(12)

    # -- sending -----------------------------------------------------------------

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        """Send to one channel, waiting out a full channel for a bounded time."""
        deadline = time.monotonic() + SEND_RETRY_SECONDS
        delay = 0.001
        while True:
            try:
                await self.layer.send(channel, message)
                return
            except ChannelFull:
                if time.monotonic() >= deadline:
                    log.error("zocket: channel %s stayed full; a %s was dropped", channel, message.get("type"))
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.1)

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        """Send to every node with subscribers; a full node loses it (versions show it)."""
        await self.layer.group_send(group, message)

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
            self.runtime.leave(spec, actor_id, client_id)

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

    def subscriptions(self, consumer: ZocketConsumer) -> int:
        return sum(len(m.get(consumer.client_id, ())) for m in self.local.values())

    async def _leave_group(self, group: str) -> None:
        async with self._membership:
            if self.local.get(group):
                return  # someone subscribed again meanwhile
            self.local.pop(group, None)
            if self._joined.pop(group, None) is not None:
                await self.layer.group_discard(group, self.channel)

    # -- the mailbox --------------------------------------------------------------------

    async def _receive_loop(self) -> None:
        while True:
            message = await self.layer.receive(self.channel)
            try:
                await self._handle(message)
            except Exception:
                log.exception("zocket: could not handle %s", message.get("type"))

    async def _handle(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "zocket.deliver":
            await self._deliver(message)
        elif kind == "zocket.reply":
            consumer = self.consumers.get(message["client"])
            if consumer is not None:
                await consumer.send(text_data=message["frame"])
        elif kind == "zocket.snapshot":
            await self._snapshot(message)
        else:
            log.warning("zocket: unknown node message %r", kind)

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
            self._announce(group, members)

    def _announce(self, group: str, members: dict[str, set[str]]) -> None:
        """Tell a new incarnation of an instance who subscribes to it from here."""
        for client_id, kinds in members.items():
            consumer = self.consumers.get(client_id)
            target = consumer.present.get(group) if consumer is not None else None
            if consumer is None or target is None:
                continue
            wanted = {STATE if k == PENDING_STATE else k for k in kinds}
            self.runtime.subscribe(target[0], target[1], consumer.caller, wanted, answer=False)

    async def _snapshot(self, message: dict[str, Any]) -> None:
        client_id = message["client"]
        kinds = self.local.get(message["group"], {}).get(client_id)
        consumer = self.consumers.get(client_id)
        if consumer is None or kinds is None or not kinds & {STATE, PENDING_STATE}:
            return  # unsubscribed (or gone) while the snapshot was on its way
        kinds.discard(PENDING_STATE)
        kinds.add(STATE)
        await consumer.send(text_data=message["frame"])

    # -- housekeeping ---------------------------------------------------------------------

    async def _housekeeping(self) -> None:
        """Deactivate idle instances; renew group memberships before the layer expires them."""
        while True:
            settings = zocket_settings()
            await asyncio.sleep(max(0.05, min(settings.IDLE_TIMEOUT / 4, 5.0)))
            try:
                await self.runtime.deactivate_idle()
                renew_after = getattr(self.layer, "group_expiry", 86400) / 2
                now = time.monotonic()
                for group, joined in list(self._joined.items()):
                    if now - joined > renew_after:
                        await self.layer.group_add(group, self.channel)
                        self._joined[group] = now
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
