"""Operators' requests across workers: inventory, inspection, deactivation.

The admin (and any operator tool) asks from whichever worker served it. Each
request is a node message (``zocket.ops``) sent to the worker that can answer
it: every live worker for an inventory, the lease holder of the instance for
the rest. The answer (``zocket.ops.reply``) comes back on the asking node's
channel. Every wait is bounded: a worker that does not answer in time is
reported as silent, never silently left out.

With the in-memory layer there is one worker, this one, and every request is
answered directly, without the channel layer.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .conf import zocket_settings
from .messages import Message, OpsReply, OpsRequest, group_name
from .registry import registry

if TYPE_CHECKING:
    from .cluster import Cluster
    from .instance import Instance
    from .runtime import Runtime

log = logging.getLogger(__name__)

#: Seconds to wait for every worker's inventory, or for one instance's details.
OPS_TIMEOUT = 2.0

#: What ``act`` may ask of the owner of an instance.
ACTIONS = ("deactivate", "destroy")


class Silent(Exception):
    """The worker asked did not answer in time."""


class Failed(Exception):
    """The worker asked answered with an error."""


@dataclass
class WorkerReport:
    """One worker's answer to an inventory (``answered`` False: it did not answer in time)."""

    channel: str
    described: dict[str, Any]
    answered: bool
    instances: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    @property
    def label(self) -> str:
        return worker_label(self.described, self.channel)


def worker_label(described: dict[str, Any] | None, channel: str) -> str:
    """``host:pid`` of a worker, or its channel when it is not described."""
    if described and described.get("host") is not None:
        return f"{described['host']}:{described.get('pid')}"
    return channel


def persistence_mode(inst: Instance) -> str | None:
    """The actor's persistence mode as text, read defensively (``None``: not persisted)."""
    mode = getattr(inst.spec.cls, "persist", None)
    if mode is None or mode is False:
        return None
    text = str(getattr(mode, "value", mode))
    return None if text.lower() in ("", "none", "false") else text


def describe_instance(inst: Instance, channel: str) -> dict[str, Any]:
    """``Instance.info()`` plus what an operator also wants to see; plain JSON."""
    info = inst.info()
    info.update(
        worker=channel,
        busy=inst.busy,
        last_activity=time.time() - info["idle_seconds"],
        persist=persistence_mode(inst),
    )
    return info


def inspect_instance(inst: Instance, channel: str) -> dict[str, Any]:
    """Everything the detail page shows: the summary, the committed state, clients, recent steps."""
    details = describe_instance(inst, channel)
    details["state"] = inst.dump
    details["clients_detail"] = [
        {
            "client_id": client_id,
            "worker": p.caller.reply_to,
            "user_id": p.caller.user_id,
            "username": (p.caller.claims or {}).get("username"),
            "subscriptions": sorted(p.subs),
        }
        for client_id, p in inst.clients.items()
    ]
    details["recent"] = [
        {"at": at, "step": step, "client_id": client_id, "outcome": outcome, "version": version}
        for at, step, client_id, outcome, version in reversed(inst.recent)
    ]
    return details


class Operations:
    """A node's side of operator requests: asking other workers, and answering them.

    A visitor (``sync_bridge.visit``: a process without a node asking the
    workers) has no ``runtime``: it only asks, and is not one of the workers.
    """

    def __init__(
        self,
        channel: str,
        runtime: Runtime | None,
        cluster: Cluster,
        send: Callable[[str, Message], Awaitable[None]],
        describe: Callable[[], dict[str, Any]],
    ) -> None:
        self.channel = channel
        self.runtime = runtime
        self.cluster = cluster
        self.send = send
        self.describe = describe
        self._tickets = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[OpsReply]] = {}
        self._serving: set[asyncio.Task[None]] = set()
        self._workers: tuple[float, dict[str, dict[str, Any]]] = (0.0, {})

    async def workers(self, max_age: float = 0.0) -> dict[str, dict[str, Any]]:
        """Live workers by channel, this one included; ``max_age`` allows a recent answer (labels)."""
        fetched, known = self._workers
        if max_age <= 0 or time.monotonic() - fetched > max_age:
            known = dict(await self.cluster.workers())
            if self.runtime is not None:
                known.setdefault(self.channel, self.describe())
            self._workers = (time.monotonic(), known)
        return known

    # -- asking ------------------------------------------------------------------

    async def inventory(self, timeout: float = OPS_TIMEOUT) -> list[WorkerReport]:
        """Every live worker's hot instances; workers that stay silent are reported so."""
        workers = await self.workers()

        async def one(channel: str, described: dict[str, Any]) -> WorkerReport:
            try:
                instances = await self.ask(channel, "inventory", {}, timeout)
            except Silent:
                return WorkerReport(channel, described, False)
            except Failed as exc:
                return WorkerReport(channel, described, True, error=str(exc))
            return WorkerReport(channel, described, True, instances)

        reports = await asyncio.gather(*(one(ch, d) for ch, d in workers.items()))
        return sorted(reports, key=lambda r: (r.channel != self.channel, r.label))

    async def owner(self, actor: str, actor_id: str) -> str | None:
        """The channel of the worker holding the instance (``None``: nobody does)."""
        if self.runtime is not None and (actor, actor_id) in self.runtime.instances:
            return self.channel
        return await self.cluster.holder(group_name(actor, actor_id))

    async def inspect(self, actor: str, actor_id: str, timeout: float = OPS_TIMEOUT) -> dict[str, Any] | None:
        """The details of a hot instance wherever it runs, or ``None`` when it is not hot."""
        owner = await self.owner(actor, actor_id)
        if owner is None:
            return None
        return await self.ask(owner, "inspect", {"actor": actor, "actor_id": actor_id}, timeout)

    async def act(self, action: str, actor: str, actor_id: str, timeout: float | None = None) -> bool:
        """Deactivate or destroy an instance on the worker that runs it; False when it was not hot."""
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}")
        owner = await self.owner(actor, actor_id)
        if owner is None:
            return False
        if timeout is None:  # queued steps run first, then on_deactivate (and the save)
            timeout = zocket_settings().call_budget + OPS_TIMEOUT
        return bool(await self.ask(owner, action, {"actor": actor, "actor_id": actor_id}, timeout))

    async def ask(self, channel: str, op: str, args: dict[str, Any], timeout: float) -> Any:
        """Send one request to ``channel`` and wait for its answer (``Silent`` after ``timeout``)."""
        ticket = next(self._tickets)
        waiter = self._waiting[ticket] = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(timeout):
                await self.send(channel, OpsRequest(op, args, self.channel, ticket))
                reply = await waiter
        except TimeoutError:
            raise Silent(channel) from None
        finally:
            self._waiting.pop(ticket, None)
        if not reply.ok:
            raise Failed(reply.error or "failed")
        return reply.result

    # -- answering ---------------------------------------------------------------------

    async def handle(self, message: OpsRequest | OpsReply) -> None:
        """A request (served in its own task) or a reply."""
        if isinstance(message, OpsReply):
            waiter = self._waiting.get(message.ticket)
            if waiter is not None and not waiter.done():
                waiter.set_result(message)
            return
        # Deactivating waits for the instance's queue: never hold up the mailbox for it.
        task = asyncio.get_running_loop().create_task(self._serve(message))
        self._serving.add(task)
        task.add_done_callback(self._serving.discard)

    def fail(self, ticket: int | None, why: str) -> None:
        """The reply to ``ticket`` came back unreadable: the asker hears so now."""
        waiter = self._waiting.get(ticket) if ticket is not None else None
        if waiter is not None and not waiter.done():
            waiter.set_result(OpsReply(ticket or 0, False, error=f"unavailable: {why}"))

    async def _serve(self, message: OpsRequest) -> None:
        try:
            reply = OpsReply(message.ticket, True, await self._carry_out(message.op, message.args))
        except Exception as exc:
            log.exception("zocket: operator request %r failed", message.op)
            reply = OpsReply(message.ticket, False, error=f"{exc.__class__.__name__}: {exc}")
        await self.send(message.reply_to, reply)

    async def _carry_out(self, op: str, args: dict[str, Any]) -> Any:
        runtime = self.runtime
        channel = self.channel
        if runtime is None:
            raise RuntimeError("a visitor runs no instance")
        if op == "inventory":
            return [describe_instance(inst, channel) for inst in list(runtime.instances.values())]
        key = (args["actor"], args["actor_id"])
        if op == "inspect":
            inst = runtime.instances.get(key)
            return inspect_instance(inst, channel) if inst is not None else None
        if op == "deactivate":
            return await runtime.deactivate(*key)
        if op == "destroy":  # destroying also forgets what was saved
            spec = registry.get(key[0])
            if spec is None:
                raise LookupError(f"unknown actor {key[0]!r}")
            return await runtime.destroy(spec, key[1])
        raise ValueError(f"unknown operator request {op!r}")
