"""Hot actor instances: one FIFO queue each, steps that commit or roll back.

Every method call and lifecycle hook of an instance is a *step* in its queue;
steps run one at a time, different instances run concurrently. A step that
changes the state bumps the version and publishes one ``state:patch`` (through
the node: local sockets directly, other workers through the channel layer); a
step that raises leaves the state exactly as it was and publishes nothing.
Answers are sent after the patch, in order, so a subscribed caller always sees
the patch before its own ``rpc:result``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Set
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel

from . import persistence, protocol, signals, statesize, transactions
from .actor import Actor, ActorSpec, Context, Emission, MethodSpec
from .caller import Caller
from .callkeys import CallWindow, KeyReused, fingerprint
from .conf import zocket_settings
from .errors import ZocketError
from .messages import EVENTS, STATE, Deliver, Message, Reply, Snapshot, group_name
from .protocol import Code, utf8_length
from .statesize import StateTooLarge
from .tracking import Recorder

if TYPE_CHECKING:
    from .cluster import Cluster

log = logging.getLogger("zocket_django")
#: Steps each instance remembers for operators (the admin's "recent activity").
RECENT_STEPS = 20
#: Seconds between two warnings about activations refused at ``MAX_HOT_INSTANCES``.
REFUSAL_WARNING_INTERVAL = 10.0


class Links(Protocol):
    """How the runtime reaches sockets and other workers (``node.Node``)."""

    channel: str

    #: Who owns what: whether a lease is in doubt (``holds``), the epoch of a new incarnation.
    cluster: Cluster

    async def publish(self, group: str, message: Deliver) -> None:
        """To every subscriber of the group, here and on other workers."""

    async def send(self, channel: str, message: Message) -> None:
        """To one node: this one, or another worker's."""

    async def released(self, group: str) -> None:
        """An instance deactivated here (its lease can go)."""


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


class Instance:
    """One hot actor instance and its queue."""

    def __init__(self, runtime: Runtime, spec: ActorSpec, actor_id: str, group: str) -> None:
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
        # The running step's deadline (loop time) and task, watched by one timer at a time (``bounded``).
        self._deadline: float | None = None
        self._step_task: asyncio.Task[Any] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._expired = False
        self.store = persistence.store_for(self, lambda: runtime.drop(spec.name, actor_id))

    @property
    def dump(self) -> Any:
        """The committed state as JSON: what subscribers have (kept by the recorder, updated in place)."""
        return self.recorder.dump

    def reset_state(self, state: BaseModel) -> None:
        """Replace the state outside any step (a restored snapshot); nothing is published."""
        self.recorder.release()
        self.actor.state = state
        self.recorder = Recorder(self.spec.state_model, state, verify=self.recorder.verify)

    @property
    def active(self) -> bool:
        """Still the hot incarnation here (not deactivated, dropped or failed)."""
        return self.runtime.instances.get((self.spec.name, self.actor_id)) is self

    # -- the queue ---------------------------------------------------------

    def enqueue(self, step: Callable[[], Awaitable[None]]) -> None:
        self.queue.append(step)
        if not self.busy:
            self.busy = True
            asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        try:
            while self.queue:
                step = self.queue.popleft()
                try:
                    await step()
                except Exception:
                    log.exception("zocket step failed", extra=self.log_context())
                if self.lingering is not None:  # a timed-out sync handler: wait for its rollback
                    lingering, self.lingering = self.lingering, None
                    await lingering
                self.last_activity = time.monotonic()
        finally:
            self.busy = False

    async def bounded(self, work: Awaitable[Any], limit: float) -> Any:
        """``await work``, cancelled after ``limit`` seconds (``TimeoutError``), like ``asyncio.timeout``.

        Cheaper per step: ``asyncio.timeout`` pushes a timer onto the loop's heap
        for every call and cancels it (the heap is rebuilt as cancelled timers
        pile up). Here one timer per instance stays armed across steps: when it
        fires it cancels the step running past its deadline, or moves itself to
        the running step's deadline, or lapses when no step runs.
        """
        loop = asyncio.get_running_loop()
        deadline = self._deadline = loop.time() + limit
        task = self._step_task = asyncio.current_task()
        timer = self._timer
        if timer is None or timer.when() > deadline:
            if timer is not None:
                timer.cancel()
            self._timer = loop.call_at(deadline, self._watch)
        try:
            return await work
        except asyncio.CancelledError:
            if self._expired:
                raise TimeoutError from None
            raise
        finally:
            self._deadline = None
            if self._expired:
                self._expired = False
                if task is not None:
                    task.uncancel()

    def _watch(self) -> None:
        self._timer = None
        deadline, task = self._deadline, self._step_task
        if deadline is None or task is None:
            return  # no step runs: the next one arms a timer
        loop = asyncio.get_running_loop()
        if loop.time() >= deadline:
            self._expired = True
            task.cancel()
        else:
            self._timer = loop.call_at(deadline, self._watch)

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
            events = [self._event_message(e) for e in ctx.emissions]
            state = self.actor.state
            if not isinstance(state, self.spec.state_model):
                raise TypeError(f"{self.spec.name}.state must stay a {self.spec.state_model.__name__}")
            patches = recorder.changes(state)  # from here on self.dump is the new state's
            # Encoded before committing: a state that is not JSON (a float
            # that became inf) is rolled back like any other failure.
            frame = (
                protocol.state_patch(self.spec.name, self.actor_id, patches, self.version + 1, self.epoch)
                if patches
                else ""
            )
            if patches:
                size = statesize.after_step(self.label, self.max_state_bytes, self.size, self.dump, frame)
                frame = self._state_frame(frame, size, self.version + 1)
            self._check_owned()  # the lease went into doubt while the handler ran: acknowledge nothing
            if keyed is not None:
                self.calls.remember(keyed.scope, keyed.key, keyed.fingerprint, result, time.time())
            if patches and self.store.write_through:
                # raises: undone, nothing acknowledged (fenced: a stale owner's save is refused)
                await self.store.commit(self.dump, self.version + 1, patches)
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
        node = self.runtime.node
        if patches:
            self.version += 1
            self.size = size.without_text()
            await node.publish(self.group, self.delivery(STATE, frame))
        self.recent.append((time.time(), label or ctx.method or "?", ctx.client_id, "ok", self.version))
        for message, targets in events:
            if targets is None:
                await node.publish(self.group, message)
            else:
                for channel in targets:
                    await node.send(channel, message)
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

    @property
    def label(self) -> str:
        return f"{self.spec.name}/{self.actor_id}"

    def _state_frame(self, patch: str, size: statesize.Measure, version: int) -> str:
        """What tells subscribers of a step: its patch, or the whole state when that is smaller."""
        if size.text is not None and utf8_length(patch) > size.bound:
            patch = protocol.state_snapshot_of(self.spec.name, self.actor_id, size.text, version, self.epoch)
        return self.too_large(patch) or patch

    def snapshot_frame(self) -> str:
        """The ``state:snapshot`` of the current state, or the error its subscribers get instead."""
        frame = protocol.state_snapshot(self.spec.name, self.actor_id, self.dump, self.version, self.epoch)
        return self.too_large(frame) or frame

    def too_large(self, frame: str) -> str | None:
        """``None`` if the server can send ``frame`` (``MAX_MESSAGE_BYTES``), else a ``too_large`` error about it."""
        limit = zocket_settings().MAX_MESSAGE_BYTES
        size = utf8_length(frame)
        if size <= limit:
            return None
        log.error(
            "zocket: the state of %s does not fit one frame (%d bytes, MAX_MESSAGE_BYTES is %d); "
            "its subscribers get a too_large error instead",
            self.label,
            size,
            limit,
            extra=self.log_context(),
        )
        ref = {"type": "state:sub", "actor": self.spec.name, "actorId": self.actor_id}
        text = f"the state of {self.label} is too large to send ({size:,} bytes, over {limit:,})"
        return protocol.error(Code.TOO_LARGE, text, ref)

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

    def _event_message(self, emission: Emission) -> tuple[Deliver, set[str] | None]:
        schema = self.spec.events.get(emission.event)
        if schema is None:
            raise ValueError(f"{self.spec.name} declares no event {emission.event!r}")
        frame = protocol.event(self.spec.name, self.actor_id, emission.event, schema.dump(emission.payload))
        only = emission.only
        message = Deliver(self.group, EVENTS, frame, only, emission.excluded or frozenset())
        if only is None:
            return message, None
        # Narrowed events go straight to the nodes holding those clients.
        targets = {self.clients[c].caller.reply_to for c in only if c in self.clients}
        return message, targets

    def delivery(self, kind: str, frame: str, announce: str | None = None) -> Deliver:
        """The node message that carries one encoded frame to this instance's subscribers of ``kind``."""
        return Deliver(self.group, kind, frame, announce=announce)

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


class Runtime:
    """The instances this process owns, and the operations the consumer asks of them."""

    def __init__(self, node: Links) -> None:
        self.node = node
        self.instances: dict[tuple[str, str], Instance] = {}
        #: Hot instances without connections, the longest idle first: evicted first at ``MAX_HOT_INSTANCES``.
        self.idle: dict[tuple[str, str], None] = {}
        self._closing: dict[tuple[str, str], Instance] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._refused = 0  # activations refused since the last warning
        self._warned_at = -REFUSAL_WARNING_INTERVAL

    # -- activation ------------------------------------------------------------

    def instance(self, spec: ActorSpec, actor_id: str) -> Instance:
        """The hot instance, activated (``on_activate`` queued first) if it was not.

        At ``MAX_HOT_INSTANCES`` the longest idle instance without connections
        is deactivated to make room; ``ZocketError`` (``overloaded``) when none
        can be.
        """
        key = (spec.name, actor_id)
        inst = self.instances.get(key)
        if inst is None:
            limit = zocket_settings().MAX_HOT_INSTANCES
            if len(self.instances) >= limit and not self._evict_one():
                raise ZocketError(
                    f"this server keeps as many actor instances hot as it may ({limit}, MAX_HOT_INSTANCES); "
                    "try again later",
                    code=Code.OVERLOADED,
                )
            inst = self.instances[key] = Instance(self, spec, actor_id, group_name(spec.name, actor_id))
            inst.enqueue(lambda: self._activate(inst, self._closing.get(key)))
        return inst

    async def _activate(self, inst: Instance, predecessor: Instance | None) -> None:
        if predecessor is not None:  # it must be gone (and saved) before we start
            await asyncio.shield(predecessor.closed)
        try:
            await inst.store.restore()  # the saved state and version, before on_activate
        except ZocketError as exc:
            self._failed(inst, exc)
            return
        inst.size = statesize.measure(inst.dump).without_text()
        try:
            await inst.run_hook("on_activate", reraise=True)
        except StateTooLarge as exc:
            message = f"{inst.label} is unavailable: on_activate made its state too large ({exc.message})"
            self._failed(inst, ZocketError(message, code=Code.TOO_LARGE, details=exc.details))
            return
        except Exception:  # as a snapshot that cannot be read: never run on a half-built state
            self._failed(inst, persistence.ActivationFailed(f"{inst.label} is unavailable: its on_activate failed"))
            return
        # Subscribers of an earlier incarnation (a destroyed instance, a dead
        # worker) get the state afresh and announce themselves again.
        frame = inst.snapshot_frame()
        await self.node.publish(inst.group, inst.delivery(STATE, frame, announce=self.node.channel))
        inst.store.start()
        await signals.actor_activated.asend(inst.spec.cls, actor_id=inst.actor_id, instance=inst.actor)

    def _failed(self, inst: Instance, error: ZocketError) -> None:
        """The activation failed: answer what is queued with ``error``, keep nothing hot."""
        inst.failed = error
        key = (inst.spec.name, inst.actor_id)
        if self.instances.get(key) is inst:
            del self.instances[key]  # the next request tries again
            self.idle.pop(key, None)
        if not inst.closed.done():
            inst.closed.set_result(None)

    async def deactivate(self, name: str, actor_id: str, *, destroy: bool = False) -> bool:
        """Run ``on_deactivate`` after the queued steps, save (or with ``destroy`` delete) the state, forget it."""
        inst = self._retire((name, actor_id), destroy)
        if inst is None:
            return False
        await self._closed(inst)
        return True

    def _retire(self, key: tuple[str, str], destroy: bool = False) -> Instance | None:
        """Stop serving an instance now and queue its deactivation; ``None`` if it was not hot."""
        inst = self.instances.pop(key, None)
        if inst is None:
            return None
        self.idle.pop(key, None)
        self._closing[key] = inst
        inst.enqueue(lambda: self._deactivate(inst, destroy))
        return inst

    async def _closed(self, inst: Instance) -> None:
        """Wait until a retired instance is deactivated (saved when it persists)."""
        key = (inst.spec.name, inst.actor_id)
        try:
            await asyncio.shield(inst.closed)
        finally:
            if self._closing.get(key) is inst:
                del self._closing[key]

    def _evict_one(self) -> bool:
        """Deactivate the longest idle instance without connections or queued steps; ``False`` if none."""
        for key in list(self.idle):
            inst = self.instances.get(key)
            if inst is None or inst.clients:
                del self.idle[key]  # stale
            elif not inst.busy:
                retired = self._retire(key)
                assert retired is not None
                self._spawn(self._closed(retired))
                return True
        return False

    async def _deactivate(self, inst: Instance, destroy: bool = False) -> None:
        try:
            if inst.failed is not None:
                return  # never activated: nothing to run, nothing to save
            await inst.run_hook("on_deactivate")
            await inst.store.close(destroy=destroy)
            await signals.actor_deactivated.asend(inst.spec.cls, actor_id=inst.actor_id, instance=inst.actor)
        finally:
            if not inst.closed.done():
                inst.closed.set_result(None)
            if (inst.spec.name, inst.actor_id) not in self.instances:  # no new incarnation took over here
                await self.node.released(inst.group)

    def drop(self, name: str, actor_id: str) -> None:
        """Forget an instance another worker now owns: no hooks, nothing saved.

        Steps still queued on it are answered ``unavailable``.
        """
        inst = self.instances.pop((name, actor_id), None)
        self.idle.pop((name, actor_id), None)
        if inst is not None:
            inst.lost = True
            if not inst.closed.done():
                inst.closed.set_result(None)

    def resume(self, name: str, actor_id: str, epoch: int) -> None:
        """This worker's lease was in doubt and is back: continue, as a new incarnation, if nobody saved meanwhile.

        Nobody holds the lease now, but another worker may have held it while
        it was in doubt (a pause longer than ``LEASE_TTL``). A durable
        instance checks that with a fenced save: if the snapshot moved, the
        other worker's state wins and this copy is dropped. Either way the
        subscribers get a snapshot under a new epoch, so that no copy of the
        other incarnation is ever patched by this one.
        """
        inst = self.instances.get((name, actor_id))
        if inst is not None:
            inst.enqueue(lambda: self._resume(inst, epoch))

    async def _resume(self, inst: Instance, epoch: int) -> None:
        if not inst.active:
            return
        try:
            await inst.store.verify()
        except Exception:
            log.warning(
                "zocket: %s/%s was saved elsewhere while this worker's lease was in doubt; dropping it here",
                inst.spec.name,
                inst.actor_id,
                exc_info=True,
                extra=inst.log_context(),
            )
            self.drop(inst.spec.name, inst.actor_id)
            await self.node.released(inst.group)
            return
        inst.epoch = epoch
        frame = inst.snapshot_frame()
        await self.node.publish(inst.group, inst.delivery(STATE, frame, announce=self.node.channel))

    def part_worker(self, channel: str) -> None:
        """Every client of a dead worker leaves every instance here (``on_disconnect``)."""
        for inst in self.instances.values():
            for client_id, presence in list(inst.clients.items()):
                if presence.caller.reply_to == channel:
                    inst.enqueue(lambda inst=inst, client_id=client_id: inst.part(client_id))

    async def deactivate_all(self, *, destroy: bool = False) -> int:
        """Deactivate every hot instance, and wait for deactivations already under way."""
        keys = list(self.instances)
        await asyncio.gather(*(self.deactivate(*k, destroy=destroy) for k in keys), *self._background)
        return len(keys)

    async def destroy(self, spec: ActorSpec, actor_id: str) -> bool:
        """Deactivate without saving and delete the snapshot; ``True`` if there was anything."""
        if await self.deactivate(spec.name, actor_id, destroy=True):
            return True
        return await persistence.forget(spec, actor_id)

    def deactivate_idle(self) -> None:
        """Start deactivating instances nobody used for ``IDLE_TIMEOUT`` (without waiting for their saves)."""
        idle_for = zocket_settings().IDLE_TIMEOUT
        now = time.monotonic()
        for key, inst in list(self.instances.items()):
            if not inst.clients and not inst.busy and now - inst.last_activity >= idle_for:
                self._spawn(self.deactivate(*key))

    def _spawn(self, work: Awaitable[Any]) -> None:
        """Run ``work`` in the background, keeping a reference until it is done."""
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- requests ----------------------------------------------------------------

    def call(
        self,
        spec: ActorSpec,
        actor_id: str,
        caller: Caller,
        method: MethodSpec,
        args: BaseModel,
        rpc_id: str,
        ticket: int | None = None,
        key: str | None = None,
    ) -> None:
        """Queue a validated call; its ``rpc:result`` goes to ``caller.reply_to``.

        An instance with ``MAX_QUEUED_CALLS`` steps waiting answers ``overloaded``;
        a call still queued after ``QUEUE_TIMEOUT`` is answered ``timeout`` and never runs.
        A call with a ``key`` runs at most once: a retry is queued behind the
        first attempt (one queue) and answered with its remembered outcome.
        """
        try:
            inst = self.instance(spec, actor_id)
        except ZocketError as exc:
            self._refuse_activation(spec, actor_id, caller, exc)
            self._spawn(self._reply(caller, protocol.rpc_error(rpc_id, exc.code, exc.message), ticket))
            return
        if len(inst.queue) >= zocket_settings().MAX_QUEUED_CALLS:
            log.warning(
                "%s %r has %d queued steps; call refused",
                spec.name,
                actor_id,
                len(inst.queue),
                extra=inst.log_context(method=method.name, client=caller.client_id, user=caller.user_id),
            )
            frame = protocol.rpc_error(rpc_id, Code.OVERLOADED, f"{spec.name} is overloaded; try again later")
            self._spawn(self._reply(caller, frame, ticket))
            return
        queued_until = time.monotonic() + zocket_settings().QUEUE_TIMEOUT
        keyed = None
        if key is not None:
            keyed = KeyedCall(caller.key_scope, key, fingerprint(method.name, args.model_dump(mode="json")))
        inst.enqueue(lambda: self._call(inst, caller, method, args, rpc_id, queued_until, ticket, keyed))

    async def _call(
        self,
        inst: Instance,
        caller: Caller,
        method: MethodSpec,
        args: BaseModel,
        rpc_id: str,
        queued_until: float,
        ticket: int | None,
        keyed: KeyedCall | None = None,
    ) -> None:
        if inst.failed is not None:  # the activation failed: nothing runs
            await self._reply(caller, protocol.rpc_error(rpc_id, inst.failed.code, inst.failed.message), ticket)
            return
        if time.monotonic() > queued_until:  # nothing ran, so nothing changed: safe to answer timeout
            text = f"{method.name} waited in the queue longer than QUEUE_TIMEOUT; it did not run"
            await self._reply(caller, protocol.rpc_error(rpc_id, Code.TIMEOUT, text), ticket)
            return
        await inst.join(caller)
        if keyed is not None:
            try:
                known = inst.calls.lookup(keyed.scope, keyed.key, keyed.fingerprint, time.time())
            except KeyReused:
                known = protocol.error_outcome(Code.BAD_REQUEST, "this key was already used for a different call")
            if known is not None:
                await self._reply(caller, protocol.rpc_reply(rpc_id, known), ticket)
                return
        body = await self._run_call(inst, caller, method, args, keyed)
        await self._reply(caller, protocol.rpc_reply(rpc_id, body), ticket)

    async def _run_call(
        self, inst: Instance, caller: Caller, method: MethodSpec, args: BaseModel, keyed: KeyedCall | None
    ) -> str:
        """Run one call as a step; the encoded body of its ``rpc:result`` (a keyed one's is remembered)."""
        ctx = inst.context(caller, method.name)
        kwargs = args.__dict__  # the validated input's fields, by name
        limit = zocket_settings().CALL_TIMEOUT  # from now: time spent queued is not the handler's

        def timed() -> Awaitable[Any]:
            return inst.bounded(self.invoke(method.fn, method.is_async, inst.actor, ctx, kwargs), limit)

        try:
            # The result is encoded inside the step, so a result that is not JSON undoes it.
            return await inst.run(ctx, timed, lambda v: protocol.outcome(method.serialize_result(v)), keyed=keyed)
        except TimeoutError:
            # An async handler was cancelled; a sync one's transaction rolls back when it returns.
            body = protocol.error_outcome(
                Code.TIMEOUT, f"{method.name} ran longer than CALL_TIMEOUT; its step was undone"
            )
        except ZocketError as exc:
            body = protocol.error_outcome(exc.code, exc.message, exc.details)
            if exc.code in (Code.UNAVAILABLE, Code.OVERLOADED):
                return body  # nothing ran or nothing stayed: a retry may run it
        except Exception as exc:
            log.exception(
                "%s.%s raised; its changes were rolled back",
                inst.spec.name,
                method.name,
                extra=inst.log_context(method=method.name, client=caller.client_id, user=caller.user_id),
            )
            body = protocol.error_outcome(Code.HANDLER_ERROR, f"{method.name} failed", debug_details(exc))
        if keyed is not None:  # the handler's own failure is its outcome; a retry gets the same answer
            inst.calls.remember(keyed.scope, keyed.key, keyed.fingerprint, body, time.time())
        return body

    async def _reply(self, caller: Caller, frame: str, ticket: int | None = None) -> None:
        await self.node.send(caller.reply_to, Reply(caller.client_id, frame, ticket))

    def subscribe(
        self,
        spec: ActorSpec,
        actor_id: str,
        caller: Caller,
        kinds: Set[str],
        *,
        answer: bool,
        ticket: int | None = None,
    ) -> None:
        """Add subscriptions; with ``answer`` and ``state`` among them, send a snapshot back."""
        try:
            inst = self.instance(spec, actor_id)
        except ZocketError as exc:
            self._refuse_activation(spec, actor_id, caller, exc)
            for kind in sorted(kinds):
                ref = {"type": f"{kind}:sub", "actor": spec.name, "actorId": actor_id}
                self._spawn(self._reply(caller, protocol.error(exc.code, exc.message, ref), ticket))
            return
        inst.enqueue(lambda: self._subscribe(inst, caller, kinds, answer, ticket))

    def _refuse_activation(self, spec: ActorSpec, actor_id: str, caller: Caller, exc: ZocketError) -> None:
        """No room for one more hot instance: say so (one line per interval), give back the lease taken for it."""
        self._refused += 1
        now = time.monotonic()
        if now - self._warned_at >= REFUSAL_WARNING_INTERVAL:
            log.warning(
                "zocket: %d activation(s) refused, the last of %s/%s: %s",
                self._refused,
                spec.name,
                actor_id,
                exc.message,
                extra={"zocket": {"actor": spec.name, "actor_id": actor_id, "client": caller.client_id}},
            )
            self._refused, self._warned_at = 0, now
        if self.node.cluster.distributed:
            self._spawn(self.node.released(group_name(spec.name, actor_id)))

    async def _subscribe(
        self, inst: Instance, caller: Caller, kinds: Set[str], answer: bool, ticket: int | None
    ) -> None:
        if inst.failed is not None:  # an error frame per refused subscription; the client may send it again
            for kind in sorted(kinds):
                ref = {"type": f"{kind}:sub", "actor": inst.spec.name, "actorId": inst.actor_id}
                frame = protocol.error(inst.failed.code, inst.failed.message, ref)
                await self._reply(caller, frame, ticket)
            return
        presence = await inst.join(caller)
        presence.subs.update(kinds)
        if answer and STATE in kinds:
            frame = protocol.state_snapshot(inst.spec.name, inst.actor_id, inst.dump, inst.version, inst.epoch)
            error = inst.too_large(frame)
            if error is not None:  # answered; the subscription stays pending, as if the snapshot were on its way
                await self._reply(caller, error, ticket)
                return
            await self.node.send(caller.reply_to, Snapshot(caller.client_id, inst.group, frame, ticket))

    def unsubscribe(self, spec: ActorSpec, actor_id: str, client_id: str, kind: str) -> None:
        """Drop one subscription; a connection that drops its last one leaves."""
        inst = self.instances.get((spec.name, actor_id))
        if inst is not None:
            inst.enqueue(lambda: self._unsubscribe(inst, client_id, kind))

    async def _unsubscribe(self, inst: Instance, client_id: str, kind: str) -> None:
        presence = inst.clients.get(client_id)
        if presence is not None and kind in presence.subs:
            presence.subs.discard(kind)
            if not presence.subs:
                await inst.part(client_id)

    def leave(self, spec: ActorSpec, actor_id: str, client_id: str) -> None:
        """The connection closed: ``on_disconnect`` runs in the queue."""
        inst = self.instances.get((spec.name, actor_id))
        if inst is not None:
            inst.enqueue(lambda: inst.part(client_id))

    # -- invoking user code ----------------------------------------------------------

    def invoke(
        self, fn: Callable[..., Any], is_async: bool, actor: Actor, ctx: Context, kwargs: dict[str, Any]
    ) -> Awaitable[Any]:
        """Call a handler inside the running step: coroutines on the loop, plain functions in a
        worker thread, inside the step's database transaction (``transactions``)."""
        if is_async:
            return fn(actor, ctx, **kwargs)
        txn = transactions.current()
        if txn is None:
            raise RuntimeError("sync handlers run inside a step (Instance.run)")
        return txn.start(fn, actor, ctx, **kwargs)


def _outcome(exc: BaseException) -> str:
    """How a failed step is remembered: the error code, or the exception's class."""
    return getattr(exc, "code", None) or exc.__class__.__name__


def debug_details(exc: BaseException) -> dict[str, str] | None:
    """With ``DEBUG`` on, what a developer needs to see in the client; ``None`` otherwise."""
    from django.conf import settings

    if not settings.DEBUG:
        return None
    return {"exception": f"{type(exc).__module__}.{type(exc).__qualname__}", "message": str(exc)}
