"""This process's sockets and what each of them reads: frames are written to them directly.

Consumers have no channel-layer channel of their own. The node joins each
instance's group once for all its local subscribers, and a frame published to
the group (already encoded) is written to every local subscriber that wants
its kind, in the order the instance produced them.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Protocol

from .messages import EVENTS, STATE, Deliver, Snapshot, group_name

if TYPE_CHECKING:
    from channels.layers import BaseChannelLayer

    from .actor import ActorSpec
    from .caller import Caller

#: Marks a state subscription whose snapshot has not reached the socket yet.
PENDING_STATE = "state?"


class Socket(Protocol):
    """What the fan-out needs of a connection (``consumer.ZocketConsumer``)."""

    client_id: str
    caller: Caller
    #: group → (actor, id) of every instance this connection touched.
    present: dict[str, tuple[ActorSpec, str]]

    async def send(
        self, text_data: str | None = None, bytes_data: bytes | None = None, close: bool = False
    ) -> None: ...


#: A local subscriber of a group: the socket, the actor and id, and the kinds it reads.
Subscriber = tuple[Socket, "ActorSpec", str, set[str]]


class LocalFanout:
    """Local sockets by client id, and the groups this node joined for them."""

    def __init__(self, layer: BaseChannelLayer, channel: str) -> None:
        self.layer = layer
        self.channel = channel
        self.sockets: dict[str, Socket] = {}
        #: group → client id → subscription kinds of that local client.
        self.local: dict[str, dict[str, set[str]]] = {}
        self.joined: dict[str, float] = {}
        self._membership = asyncio.Lock()

    def attach(self, socket: Socket) -> None:
        self.sockets[socket.client_id] = socket

    def detach(self, socket: Socket) -> list[str]:
        """Forget a closed socket and its subscriptions; the groups nobody here reads any more (to leave)."""
        client_id = socket.client_id
        self.sockets.pop(client_id, None)
        emptied = []
        for group in socket.present:
            members = self.local.get(group)
            if members is not None and members.pop(client_id, None) is not None and not members:
                emptied.append(group)
        return emptied

    async def send_frame(self, client_id: str, frame: str) -> None:
        """Write a frame to a local socket, if it is still connected."""
        socket = self.sockets.get(client_id)
        if socket is not None:
            await socket.send(text_data=frame)

    # -- subscriptions ------------------------------------------------------------------

    async def subscribe(self, socket: Socket, actor: str, actor_id: str, kind: str) -> None:
        """Start delivering ``kind`` frames of the instance to this socket.

        Events flow at once; state flows once the snapshot, which the owner
        sends back in order with the patches, has reached the socket.
        """
        group = group_name(actor, actor_id)
        async with self._membership:
            if group not in self.joined:
                await self.layer.group_add(group, self.channel)  # may raise (Redis is away): nothing changed
                self.joined[group] = time.monotonic()
            members = self.local.setdefault(group, {})
        kinds = members.setdefault(socket.client_id, set())
        if kind != STATE:
            kinds.add(EVENTS)
        elif STATE not in kinds:  # held already: patches keep flowing, a snapshot (if one is sent) replaces the copy
            kinds.add(PENDING_STATE)

    async def unsubscribe(self, socket: Socket, actor: str, actor_id: str, kind: str) -> None:
        group = group_name(actor, actor_id)
        members = self.local.get(group)
        if members is None or socket.client_id not in members:
            return
        kinds = members[socket.client_id]
        kinds.difference_update({STATE, PENDING_STATE} if kind == STATE else {EVENTS})
        if not kinds:
            del members[socket.client_id]
            if not members:
                await self.leave_group(group)

    async def leave_group(self, group: str) -> None:
        async with self._membership:
            if self.local.get(group):
                return  # someone subscribed again meanwhile
            self.local.pop(group, None)
            if self.joined.pop(group, None) is not None:
                await self.layer.group_discard(group, self.channel)

    def reads_state(self, group: str, client_id: str) -> bool:
        """Whether a local socket still subscribes to ``group``'s state (its snapshot may be on its way)."""
        kinds = self.local.get(group, {}).get(client_id)
        return kinds is not None and bool(kinds & {STATE, PENDING_STATE})

    def subscribers(self, group: str) -> list[Subscriber]:
        """This node's subscribers of ``group``: socket, actor, id and the kinds they want."""
        found: list[Subscriber] = []
        for client_id, kinds in list(self.local.get(group, {}).items()):
            socket = self.sockets.get(client_id)
            target = socket.present.get(group) if socket is not None else None
            if socket is not None and target is not None:
                found.append((socket, *target, {STATE if k == PENDING_STATE else k for k in kinds}))
        return found

    # -- frames ---------------------------------------------------------------------------

    async def deliver(self, message: Deliver) -> None:
        members = self.local.get(message.group)
        if not members:
            return
        kind, frame, only, excluded = message.kind, message.frame, message.only, message.excluded
        for client_id, kinds in list(members.items()):
            if only is not None and client_id not in only:
                continue
            if kind in kinds and client_id not in excluded:
                await self.send_frame(client_id, frame)

    async def snapshot(self, message: Snapshot) -> None:
        """A state subscription's snapshot: from now on, patches of the group reach the socket."""
        client_id = message.client
        kinds = self.local.get(message.group, {}).get(client_id)
        if client_id not in self.sockets or kinds is None or not kinds & {STATE, PENDING_STATE}:
            return  # unsubscribed (or gone) while the snapshot was on its way
        kinds.discard(PENDING_STATE)
        kinds.add(STATE)
        await self.send_frame(client_id, message.frame)

    # -- group membership upkeep --------------------------------------------------------

    async def rejoin(self) -> list[Subscriber]:
        """Redis lost its data: join our groups again; the subscribers to re-announce."""
        for group in list(self.joined):
            await self.layer.group_add(group, self.channel)
            self.joined[group] = time.monotonic()
        return [s for group in list(self.local) for s in self.subscribers(group)]

    async def renew(self) -> None:
        """Join again the groups that would otherwise expire in the layer."""
        renew_after = getattr(self.layer, "group_expiry", 86400) / 2
        now = time.monotonic()
        for group, joined in list(self.joined.items()):
            if now - joined > renew_after:
                await self.layer.group_add(group, self.channel)
                self.joined[group] = now

    async def leave_all(self) -> None:
        for group in list(self.joined):
            await self.layer.group_discard(group, self.channel)
        self.joined.clear()
