"""The hot actor instances of this process, and the requests queued on them.

Each instance (``instance.Instance``) drains its own FIFO queue of steps;
different instances run concurrently. Answers are sent after the patch, in
order, so a subscribed caller always sees the patch before its own
``rpc:result``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Set
from typing import Any

from pydantic import BaseModel

from . import persistence, protocol, signals, statesize, transactions
from .actor import Actor, ActorSpec, MethodSpec
from .caller import Caller
from .callkeys import INSTANCE_FULL, KeyReused, fingerprint
from .conf import zocket_settings
from .context import Context
from .errors import ZocketError
from .instance import Instance, KeyedCall, Links
from .messages import STATE, Reply, Snapshot, group_name
from .protocol import Code
from .statesize import StateTooLarge

log = logging.getLogger(__name__)
#: Seconds between two warnings about activations refused at ``MAX_HOT_INSTANCES``.
REFUSAL_WARNING_INTERVAL = 10.0


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
        """This worker's lease was in doubt and is back: go on, as a new incarnation, if nobody saved meanwhile.

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
                "zocket: %s was saved elsewhere while this worker's lease was in doubt; dropping it here",
                inst.label,
                exc_info=True,
                extra=inst.log_context(),
            )
            self.drop(inst.spec.name, inst.actor_id)
            await self.node.released(inst.group)
            return
        inst.epoch = epoch
        await self.node.publish(inst.group, inst.delivery(STATE, inst.snapshot_frame(), announce=self.node.channel))

    def part_worker(self, channel: str) -> None:
        """Every client of a dead worker leaves every instance here (``on_disconnect``)."""
        for inst in self.instances.values():
            for client_id, presence in list(inst.clients.items()):
                if presence.caller.reply_to == channel:
                    inst.enqueue(functools.partial(inst.part, client_id))

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
            full = inst.calls.refusal(keyed.scope, time.time())
            if full is not None:  # its outcome could not be kept: it does not run (callkeys)
                await self._reply(caller, protocol.rpc_error(rpc_id, Code.OVERLOADED, _window_full(inst, full)), ticket)
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
            return inst.timer.bounded(self.invoke(method.fn, method.is_async, inst.actor, ctx, kwargs), limit)

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


def _window_full(inst: Instance, whose: str) -> str:
    setting = "CALL_KEYS_PER_INSTANCE" if whose == INSTANCE_FULL else "CALL_KEYS_PER_CALLER"
    return (
        f"{inst.label} keeps as many outcomes of recent keyed calls as it may ({setting}); "
        "this call did not run: try again later"
    )


def debug_details(exc: BaseException) -> dict[str, str] | None:
    """With ``DEBUG`` on, what a developer needs to see in the client; ``None`` otherwise."""
    from django.conf import settings

    if not settings.DEBUG:
        return None
    return {"exception": f"{type(exc).__module__}.{type(exc).__qualname__}", "message": str(exc)}
