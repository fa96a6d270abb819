"""Requests routed to the worker that owns the instance, tracked with tickets.

A request for an instance hot here runs on this worker's runtime. One for an
instance another worker owns is forwarded to that worker's node channel with a
ticket; the answer (``Reply``, ``Snapshot``) settles the ticket, or the
housekeeping answers ``unavailable`` when the owner's lease moved or the
deadline passed. A request that cannot be carried out (an unknown actor, a
message this worker cannot read) is answered ``unavailable`` at once: the
caller is never left waiting for nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from . import protocol
from .conf import zocket_settings
from .messages import STATE, Call, Leave, Message, Op, Remains, Reply, Request, Subscribe, Unsubscribe, group_name
from .protocol import Code
from .registry import registry

if TYPE_CHECKING:
    from pydantic import BaseModel

    from .actor import ActorSpec, MethodSpec
    from .caller import Caller
    from .cluster import Cluster
    from .fanout import LocalFanout, Subscriber
    from .runtime import Runtime

log = logging.getLogger(__name__)

#: How many times a forwarded request may be passed on to yet another worker.
MAX_HOPS = 3
UNANSWERED = "the worker running this actor did not answer in time"

_said: set[str] = set()


def say_once(problem: str) -> None:
    """Log a problem that other workers may cause over and over (a rolling deploy) once, as an error."""
    if problem in _said:
        log.debug("%s (again)", problem)
        return
    if len(_said) < 1000:
        _said.add(problem)
    log.error("%s", problem)


@dataclass(slots=True)
class Pending:
    """A request forwarded to another worker, waiting for its answer."""

    client_id: str
    group: str
    owner: str
    actor: str
    actor_id: str
    rpc_id: str | None  # None for a state subscription
    deadline: float
    resend: Callable[[], Awaitable[None]] | None  # for subscriptions: how to ask the next owner


class OwnerRouter:
    """Carries requests to the owner of their instance: this worker's runtime, or another worker."""

    def __init__(
        self,
        channel: str,
        runtime: Runtime,
        cluster: Cluster,
        fanout: LocalFanout,
        send: Callable[[str, Message], Awaitable[None]],
    ) -> None:
        self.channel = channel
        self.runtime = runtime
        self.cluster = cluster
        self.fanout = fanout
        self.send = send
        self.pending: dict[int, Pending] = {}
        self._tickets = 0

    async def _owner(self, spec: ActorSpec, actor_id: str, group: str, *, acquire: bool = True) -> str | None:
        """``None`` if this worker runs the instance, else the owner's channel (``""``: nobody)."""
        if (spec.name, actor_id) in self.runtime.instances:
            return None  # hot here: no need to ask anyone
        return await self.cluster.owner(group, acquire=acquire)

    # -- from this worker's sockets ---------------------------------------------------

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
        if (spec.name, actor_id) in self.runtime.instances:  # hot here (``_owner``'s first answer), at once
            self.runtime.call(spec, actor_id, caller, method, args, rpc_id, key=key)
            return
        group = group_name(spec.name, actor_id)
        try:
            owner = await self._owner(spec, actor_id, group)
        except Exception:
            log.exception("zocket: cannot tell who owns %s/%s", spec.name, actor_id)
            await self.answer_unavailable(caller.client_id, rpc_id)
            return
        if owner is None:
            self.runtime.call(spec, actor_id, caller, method, args, rpc_id, key=key)
            return
        ticket = self._track(caller.client_id, group, owner, spec.name, actor_id, rpc_id, None)
        await self.send(owner, Request(spec.name, actor_id, caller, Call(method.name, raw, rpc_id, key), ticket))

    async def request_subscription(
        self, spec: ActorSpec, actor_id: str, caller: Caller, kind: str, *, if_moved: bool = False
    ) -> None:
        """Ask the owner to count this subscription (and send a snapshot for state).

        ``if_moved``: a plain repeat of a held subscription, answered with a
        snapshot only if the state moved since this connection's last one.
        Raises when the owner cannot be known (Redis is away): nothing was asked.
        """
        group = group_name(spec.name, actor_id)
        owner = await self._owner(spec, actor_id, group)
        if owner is None:
            self.runtime.subscribe(spec, actor_id, caller, {kind}, answer=True, if_moved=if_moved)
            return
        ticket = None
        if kind == STATE and not if_moved:  # a repeat may stay unanswered: nobody waits for it
            resend = self._resend(spec, actor_id, caller)
            ticket = self._track(caller.client_id, group, owner, spec.name, actor_id, None, resend)
        request = Request(spec.name, actor_id, caller, Subscribe((kind,), True, if_moved), ticket)
        await self.send(owner, request)

    def _resend(self, spec: ActorSpec, actor_id: str, caller: Caller) -> Callable[[], Awaitable[None]]:
        async def resend() -> None:
            await self.request_subscription(spec, actor_id, caller, STATE)

        return resend

    def ask_again(self, spec: ActorSpec, actor_id: str, caller: Caller, kind: str) -> None:
        """A socket's repeated ``state:sub`` could not reach the owner (Redis is away): ask on the next tick.

        The socket keeps its subscription, and the snapshot it asked for is
        owed: ``expire`` sends the request again on every housekeeping tick
        until it is sent. (An event subscription asks for no answer.)
        """
        if kind == STATE:
            group = group_name(spec.name, actor_id)
            resend = self._resend(spec, actor_id, caller)
            self._track(caller.client_id, group, "", spec.name, actor_id, None, resend, due=0.0)

    async def request_unsubscription(self, spec: ActorSpec, actor_id: str, client_id: str, kind: str) -> None:
        try:
            await self._tell(spec, actor_id, Unsubscribe(client_id, kind))
        except Exception:
            log.exception("zocket: cannot tell who owns %s/%s", spec.name, actor_id)

    async def request_leave(self, spec: ActorSpec, actor_id: str, client_id: str) -> None:
        """Raises when the owner cannot be known (Redis is away): the caller retries."""
        await self._tell(spec, actor_id, Leave(client_id))

    async def _tell(self, spec: ActorSpec, actor_id: str, op: Op) -> None:
        """Pass a notice to the owner, if any; nobody activates an instance just for that."""
        group = group_name(spec.name, actor_id)
        owner = await self._owner(spec, actor_id, group, acquire=False)
        if owner is None:
            self._carry_out(spec, Request(spec.name, actor_id, None, op))
        elif owner:
            await self.send(owner, Request(spec.name, actor_id, None, op))

    async def announce(self, subscribers: Iterable[Subscriber], owner: str) -> None:
        """Tell a new incarnation of an instance (on ``owner``) who subscribes to it from here."""
        for socket, spec, actor_id, kinds in subscribers:
            request = Request(spec.name, actor_id, socket.caller, Subscribe(tuple(sorted(kinds)), False))
            if owner == self.channel:
                self._carry_out(spec, request)
            else:
                await self.send(owner, request)

    async def resubscribe(self, subscribers: Iterable[Subscriber]) -> None:
        """Ask the owners again for every subscription of these subscribers (Redis lost its data).

        Raises when an owner cannot be found: the caller retries it all.
        """
        for socket, spec, actor_id, kinds in subscribers:
            for kind in kinds:
                await self.request_subscription(spec, actor_id, socket.caller, kind)

    # -- from other workers ---------------------------------------------------------------

    def _carry_out(self, spec: ActorSpec, request: Request) -> None:
        """Carry out a request (forwarded, or a local notice) on this worker's runtime."""
        op, caller, actor_id, ticket = request.op, request.caller, request.actor_id, request.ticket
        if isinstance(op, Call):
            assert caller is not None
            method = spec.methods[op.method]
            args = method.input_model.model_validate(op.input or {})
            self.runtime.call(spec, actor_id, caller, method, args, op.rpc_id, ticket, op.key)
        elif isinstance(op, Subscribe):
            assert caller is not None
            self.runtime.subscribe(
                spec, actor_id, caller, set(op.kinds), answer=op.answer, ticket=ticket, if_moved=op.if_moved
            )
        elif isinstance(op, Unsubscribe):
            self.runtime.unsubscribe(spec, actor_id, op.client_id, op.kind)
        else:
            self.runtime.leave(spec, actor_id, op.client_id)

    async def receive(self, request: Request) -> None:
        """A request forwarded by another worker: run it if we own the instance, else pass it on."""
        spec = registry.get(request.actor)
        op = request.op
        unknown = None
        if spec is None:
            unknown = f"actor {request.actor!r}"
        elif isinstance(op, Call) and op.method not in spec.methods:
            unknown = f"method {request.actor}.{op.method}"
        if spec is None or unknown is not None:
            say_once(f"zocket: a forwarded request names an unknown {unknown} (do the workers run different code?)")
            await self.refuse(Remains.of(request.build()), f"this worker does not know the {unknown}")
            return
        group = group_name(spec.name, request.actor_id)
        owner = await self._owner(spec, request.actor_id, group, acquire=request.creating)
        if owner is None:
            try:
                self._carry_out(spec, request)
            except ValidationError:
                say_once(f"zocket: a forwarded call to {spec.name} has input this worker refuses")
                await self.refuse(Remains.of(request.build()), "this worker refuses the input")
        elif owner and request.hops < MAX_HOPS:
            request.hops += 1
            await self.send(owner, request)
        elif request.creating and request.caller is not None:
            log.warning("zocket: no worker would take %s/%s", spec.name, request.actor_id)

    async def refuse(self, remains: Remains, why: str) -> None:
        """Answer a request this worker cannot carry out with ``unavailable``, wherever its caller is."""
        if remains.reply_to is None or remains.client is None:
            return  # a notice (unsubscribe, leave): nobody waits for it
        text = f"unavailable: {why}"
        frames: list[str] = []
        if remains.rpc_id is not None:
            frames.append(protocol.rpc_error(remains.rpc_id, Code.UNAVAILABLE, text))
        for kind in remains.kinds:
            ref = {"type": f"{kind}:sub", "actor": remains.actor, "actorId": remains.actor_id}
            frames.append(protocol.error(Code.UNAVAILABLE, text, {k: v for k, v in ref.items() if v is not None}))
        for frame in frames:
            await self.send(remains.reply_to, Reply(remains.client, frame, remains.ticket))

    # -- tickets ---------------------------------------------------------------------------

    def _track(
        self,
        client_id: str,
        group: str,
        owner: str,
        actor: str,
        actor_id: str,
        rpc_id: str | None,
        resend: Callable[[], Awaitable[None]] | None,
        due: float | None = None,
    ) -> int:
        """A new ticket for a request to ``owner`` (``""``: not sent yet), expired at ``due`` at the latest."""
        self._tickets += 1
        if due is None:
            due = time.monotonic() + zocket_settings().call_budget + zocket_settings().LEASE_TTL
        self.pending[self._tickets] = Pending(client_id, group, owner, actor, actor_id, rpc_id, due, resend)
        return self._tickets

    def settle(self, ticket: int | None) -> bool:
        """False for the late answer of a request already answered ``unavailable``."""
        return ticket is None or self.pending.pop(ticket, None) is not None

    async def fail(self, ticket: int | None, why: str) -> None:
        """The answer to ``ticket`` came back unreadable: the caller hears ``unavailable`` now."""
        pending = self.pending.pop(ticket, None) if ticket is not None else None
        if pending is None:
            return
        text = f"unavailable: {why}"
        if pending.rpc_id is not None:
            frame = protocol.rpc_error(pending.rpc_id, Code.UNAVAILABLE, text)
        else:
            ref = {"type": f"{STATE}:sub", "actor": pending.actor, "actorId": pending.actor_id}
            frame = protocol.error(Code.UNAVAILABLE, text, ref)
        await self.fanout.send_frame(pending.client_id, frame)

    async def answer_unavailable(self, client_id: str, rpc_id: str) -> None:
        await self.fanout.send_frame(client_id, protocol.rpc_error(rpc_id, Code.UNAVAILABLE, UNANSWERED))

    async def expire(self) -> None:
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
                await self.answer_unavailable(pending.client_id, pending.rpc_id)
            elif pending.resend is not None and self.fanout.reads_state(pending.group, pending.client_id):
                try:
                    await pending.resend()
                except Exception as exc:
                    # Kept for the next tick: a subscriber still waiting for its
                    # snapshot has no version yet to notice anything missing by,
                    # so nobody else would ever ask again.
                    log.warning("zocket: could not ask for a subscription again (%r); retrying", exc)
                    pending.owner, pending.deadline = "", 0.0
                    self.pending[ticket] = pending
