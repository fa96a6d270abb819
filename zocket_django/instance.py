"""One hot actor instance: its state, its clients, its queue, and the step that commits or rolls back.

Every method call and lifecycle hook of an instance is a *step* in its queue;
steps run one at a time. A step that changes the state bumps the version and
publishes one ``state:patch`` (through the node: local sockets directly, other
workers through the channel layer); a step that raises leaves the state
exactly as it was and publishes nothing. ``runtime.Runtime`` keeps the
instances of this process and queues the requests.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel

from . import eager, persistence, protocol, statesize, transactions
from .actor import Actor, ActorSpec
from .caller import Caller
from .callkeys import CallWindow
from .coalesce import Coalescer, Coalescing
from .conf import zocket_settings
from .context import Context
from .errors import ZocketError
from .instance_publish import InstancePublish
from .messages import EVENTS, STATE, Deliver, Message
from .protocol import Code
from .step_timer import StepTimer
from .tracking import Recorder

if TYPE_CHECKING:
    from .cluster import Cluster

log = logging.getLogger(__name__)

#: Steps each instance remembers for operators (the admin's "recent activity").
RECENT_STEPS = 20


class Links(Protocol):
    """How the runtime reaches sockets and other workers (``node.Node``)."""

    channel: str
    #: Who owns what: whether a lease is in doubt (``holds``), the epoch of a new incarnation.
    cluster: Cluster

    async def publish(self, group: str, message: Deliver) -> None:
        """To every subscriber of the group, here and on other workers."""

    def listened(self, group: str) -> bool:
        """Whether a ``publish`` to the group may reach anyone (``False``: it would do nothing)."""

    async def send(self, channel: str, message: Message) -> None:
        """To one node: this one, or another worker's."""

    async def released(self, group: str) -> None:
        """An instance deactivated here (its lease can go)."""


class Owner(Protocol):
    """What an instance needs of the runtime that keeps it (``runtime.Runtime``)."""

    node: Links
    instances: dict[tuple[str, str], Instance]
    #: Hot instances without connections, the longest idle first.
    idle: dict[tuple[str, str], None]

    def invoke(
        self, fn: Callable[..., Any], is_async: bool, actor: Actor, ctx: Context, kwargs: dict[str, Any]
    ) -> Awaitable[Any]: ...

    def drop(self, name: str, actor_id: str) -> None: ...


@dataclass(frozen=True, slots=True)
class KeyedCall:
    """A call that carries a key: whose it is, the key, and what call it stands for."""

    scope: str
    key: str
    fingerprint: str


@dataclass(slots=True)
class Presence:
    """A connection known to an instance: where it lives and what it reads."""

    caller: Caller
    subs: set[str] = field(default_factory=set)
    #: The version of the last ``state:snapshot`` this connection was answered (``None``: none yet).
    #: A plain repeated ``state:sub`` is answered only when the state moved past it.
    snapshot_version: int | None = None


class Instance(InstancePublish, Coalescing):
    """One hot actor instance and its queue (what it publishes: ``instance_publish``; patches held: ``coalesce``)."""

    def __init__(self, runtime: Owner, spec: ActorSpec, actor_id: str, group: str) -> None:
        self.runtime = runtime
        self.spec = spec
        self.actor_id = actor_id
        self.group = group
        self.actor: Actor = spec.cls(actor_id, spec.initial_state())
        self.recorder = Recorder(spec.state_model, self.actor.state, verify=zocket_settings().VERIFY_PATCHES)
        self.version = 0
        #: This incarnation, on every snapshot and patch: versions count within one epoch, and a
        #: later incarnation has a larger one (``cluster.epoch``).
        self.epoch = runtime.node.cluster.epoch(group)
        settings = zocket_settings()
        #: Outcomes of recent keyed calls (saved with the state of durable actors).
        self.calls = CallWindow(
            settings.CALL_KEYS_PER_CALLER, settings.CALL_KEYS_PER_INSTANCE, settings.CALL_KEY_SECONDS
        )
        #: Largest encoded state this instance may reach, and what is known of its size.
        self.max_state_bytes = spec.max_state_bytes or zocket_settings().MAX_STATE_BYTES
        self.size = statesize.measure(self.dump).without_text()
        self.clients: dict[str, Presence] = {}
        self.queue: deque[Callable[[], Awaitable[None]]] = deque()
        #: Calls among them (``MAX_QUEUED_CALLS`` counts these only).
        self.queued_calls = 0
        #: The patch held while more steps are queued, and the answers waiting behind it.
        self.coalescer = Coalescer()
        self.busy = False
        self.lost = False  # another worker took it over: answer nothing from here
        self.activated_at = time.time()
        self.last_activity = time.monotonic()
        #: (time, method or hook, client id, "ok" or the error, version after) of the last steps.
        self.recent: deque[tuple[float, str, str | None, str, int]] = deque(maxlen=RECENT_STEPS)
        self.closed = asyncio.get_running_loop().create_future()
        # Gone (deactivated, dropped, failed): the recorder lets go of the state's objects.
        self.closed.add_done_callback(lambda _: self.recorder.release())
        #: Set when the activation failed: queued requests get this error, nothing runs.
        self.failed: ZocketError | None = None
        #: A timed-out sync handler still running: the next step waits for it.
        self.lingering: Awaitable[None] | None = None
        self._patch_head = protocol.state_patch_head(spec.name, actor_id)
        #: Bounds the running step (``CALL_TIMEOUT``).
        self.timer = StepTimer()
        self.store = persistence.store_for(self, lambda: runtime.drop(spec.name, actor_id))

    @property
    def dump(self) -> Any:
        """The committed state as JSON: what subscribers have (kept by the recorder, updated in place)."""
        return self.recorder.dump

    def reset_state(self, state: BaseModel) -> None:
        """Replace the state outside any step (a restored snapshot); nothing is published."""
        self.recorder.release()
        self.forget_snapshot()
        self.actor.state = state
        self.recorder = Recorder(self.spec.state_model, state, verify=self.recorder.verify)

    @property
    def active(self) -> bool:
        """Still the hot incarnation here (not deactivated, dropped or failed)."""
        return self.runtime.instances.get((self.spec.name, self.actor_id)) is self

    # -- the queue ---------------------------------------------------------

    def enqueue(self, step: Callable[[], Awaitable[None]], *, now: bool = False) -> None:
        """Queue ``step``; steps run one at a time, in order, in a task that drains the queue.

        With ``now`` (an RPC: its caller does nothing after queueing it) and an
        idle instance, the queue is drained at once, in the caller's turn of the
        event loop, until a step first waits (``eager``): most calls then finish
        without a task of their own. The order is the queue's either way, and a
        step that waits goes on in a task, as any other.
        """
        self.queue.append(step)
        if self.busy:
            return
        self.busy = True
        if not now:
            self.timer.task = asyncio.get_running_loop().create_task(self._drain())
            return
        try:
            task = eager.start(self._drain())
        except Exception:  # _drain catches what steps raise: this is a bug, not a step's failure
            log.exception("zocket: draining the queue failed", extra=self.log_context())
            self.busy = False
            return
        if task is not None:
            self.timer.task = task

    async def _drain(self) -> None:
        try:
            while self.queue:
                step = self.queue.popleft()
                try:
                    if self.coalescer.held is None:
                        await step()
                    else:  # held for this step: it goes out the moment this step waits for anything
                        await eager.before_first_wait(step(), self.flush)
                except Exception:
                    log.exception("zocket step failed", extra=self.log_context())
                if self.lingering is not None:  # a timed-out sync handler: wait for its rollback
                    lingering, self.lingering = self.lingering, None
                    await lingering
                if not self.queue:  # nothing follows: what was held goes now
                    await self.flush()
                self.last_activity = time.monotonic()
        finally:
            self.busy = False

    def log_context(self, **more: Any) -> dict[str, Any]:
        return {"zocket": {"actor": self.spec.name, "actor_id": self.actor_id, **more}}

    # -- running one handler -------------------------------------------------

    def context(self, caller: Caller | None, method: str | None = None) -> Context:
        return Context(
            actor=self.spec.name,
            actor_id=self.actor_id,
            client_id=caller.client_id if caller else None,
            clients=self.clients.keys(),
            user_id=caller.user_id if caller else None,
            claims=caller.claims if caller else None,
            user=caller.user if caller else None,
            method=method,
            extra=caller.extra if caller else None,
        )

    async def run(
        self,
        ctx: Context,
        invoke: Callable[[], Awaitable[Any]],
        serialize: Callable[[Any], Any] | None = None,
        label: str | None = None,
        keyed: KeyedCall | None = None,
    ) -> Any:
        """Run ``invoke`` as one step: commit state and events if it returns, roll back if it raises.

        A sync handler's database work is part of the step (``transactions``):
        committed after everything else succeeded, before anything is published.
        A keyed call's outcome (``serialize``'s encoded body) is remembered in
        the same commit as the state it produced.
        """
        self._check_owned()
        recorder = self.recorder
        recorder.begin()
        txn, token = transactions.begin()
        try:
            value = await invoke()
            result = serialize(value) if serialize is not None else None
            events = [self._event_message(e) for e in ctx.emissions] if ctx.emissions else []
            state = self.actor.state
            if type(state) is not self.spec.state_model and not isinstance(state, self.spec.state_model):
                raise TypeError(f"{self.spec.name}.state must stay a {self.spec.state_model.__name__}")
            patches = recorder.changes(state)  # from here on self.dump is the new state's
            # Encoded before committing: a state that is not JSON (a float
            # that became inf) is rolled back like any other failure.
            ops = protocol.encode(patches) if patches else ""
            frame = protocol.state_patch_ops(self._patch_head, ops, self.version + 1, self.epoch) if patches else ""
            if patches:
                size = statesize.after_step(self.label, self.max_state_bytes, self.size, lambda: self.dump, frame)
                plain = frame
                frame = self._state_frame(frame, size, self.version + 1)
            self._check_owned()  # the lease went into doubt while the handler ran: acknowledge nothing
            if keyed is not None and result is not None:
                self.calls.remember(keyed.scope, keyed.key, keyed.fingerprint, result, time.time())
            if patches and self.store.write_through:
                # raises: undone, nothing acknowledged (fenced: a stale owner's save is refused)
                await self.store.commit(self.dump, self.version + 1, patches)
            if txn.held:
                await txn.commit()  # a sync handler's ORM work (and the save above, in its transaction)
        except BaseException as exc:
            if keyed is not None:
                self.calls.forget(keyed.scope, keyed.key)
            self.actor.state = recorder.rollback()
            await self._roll_back(txn)
            self.recent.append((time.time(), label or ctx.method or "?", ctx.client_id, _outcome(exc), self.version))
            raise
        finally:
            transactions.end(token)
        recorder.commit(state)
        if patches:
            self.version += 1
            self.size = size.without_text()
        self.recent.append((time.time(), label or ctx.method or "?", ctx.client_id, "ok", self.version))
        # Committed: from here on nothing may turn the step into an error for its caller.
        # The patch is held while more steps are queued (``coalesce``); events go after it.
        # Nobody subscribed: no message to build (what is held goes first, so that nothing overtakes it).
        if patches and self.runtime.node.listened(self.group):
            await self.publish_state(frame, ops if frame is plain else None, more=bool(self.queue) and not events)
        elif patches or events:
            await self.flush()
        for message, targets in events:
            await self._publish(message, targets)
        return result

    def _check_owned(self) -> None:
        """Refuse to run (or acknowledge) a step once this worker may no longer own the instance.

        Another worker may take the instance over when the lease is gone; from
        the moment the lease is in doubt (not renewed for a while) this one
        acknowledges nothing more, so that no acknowledged change is made on a
        copy that is about to be replaced.
        """
        if self.lost or not self.runtime.node.cluster.holds(self.group):
            raise ZocketError("this actor is moving to another worker; try again", code=Code.UNAVAILABLE)

    async def _roll_back(self, txn: transactions.StepTransaction) -> None:
        """Undo a sync handler's database work before its caller hears of the failure.

        A handler still running past its deadline cannot be stopped: its caller
        is answered now, and the next step waits until it has returned and
        rolled back, then the state it touched meanwhile is undone.
        """
        ending = txn.roll_back()
        if ending is None:
            return
        running = txn.running

        async def settle() -> None:
            try:
                await ending
            except Exception:
                log.exception("zocket: rolling back a sync handler's transaction failed", extra=self.log_context())
            if running:  # what it changed after the step was undone: back to the committed state, whole
                self.reset_state(self.spec.state_model.model_validate(self.dump))

        if running:
            self.lingering = settle()
        else:
            await settle()

    async def run_hook(self, hook: str, caller: Caller | None = None, *, reraise: bool = False) -> None:
        """Run a lifecycle hook as a step; a failure is logged (and raised again with ``reraise``)."""
        entry = self.spec.hooks.get(hook)
        if entry is None:
            return
        fn, is_async = entry
        ctx = self.context(caller)
        try:
            await self.run(ctx, lambda: self.runtime.invoke(fn, is_async, self.actor, ctx, {}), label=hook)
        except Exception:
            log.exception(
                "%s.%s raised; its changes were rolled back", self.spec.name, hook, extra=self.log_context(hook=hook)
            )
            if reraise:
                raise

    # -- presence ------------------------------------------------------------

    async def join(self, caller: Caller) -> Presence:
        """Know ``caller`` from now on; its first arrival runs ``on_connect``."""
        presence = self.clients.get(caller.client_id)
        if presence is None:
            if not self.clients:
                self.runtime.idle.pop((self.spec.name, self.actor_id), None)
            presence = self.clients[caller.client_id] = Presence(caller)
            await self.run_hook("on_connect", caller)
        return presence

    async def part(self, client_id: str) -> None:
        presence = self.clients.pop(client_id, None)
        if presence is not None:
            if not self.clients and self.active:
                self.runtime.idle[(self.spec.name, self.actor_id)] = None
            await self.run_hook("on_disconnect", presence.caller)

    def info(self) -> dict[str, Any]:
        """What operators see of this instance (admin, manager)."""
        subs = [p.subs for p in self.clients.values()]
        return {
            "actor": self.spec.name,
            "actor_id": self.actor_id,
            "version": self.version,
            "clients": len(self.clients),
            "state_subscribers": sum(STATE in s for s in subs),
            "event_subscribers": sum(EVENTS in s for s in subs),
            "queued": len(self.queue),
            "activated_at": self.activated_at,
            "idle_seconds": time.monotonic() - self.last_activity,
        }


def _outcome(exc: BaseException) -> str:
    """How a failed step is remembered: the error code, or the exception's class."""
    return getattr(exc, "code", None) or exc.__class__.__name__
