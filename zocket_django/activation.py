"""The hot actor instances of this process: their activation, deactivation and hand-over.

An instance is activated on its first request (``on_activate`` queued first,
after its saved state is restored), deactivated when idle (``IDLE_TIMEOUT``),
evicted when room is needed (``MAX_HOT_INSTANCES``), and dropped without hooks
when another worker now owns it. Every one of these is a step in the
instance's own queue, so it happens between requests, never during one.
``runtime.Runtime`` adds the requests queued on them.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from . import persistence, signals, statesize, transactions
from .actor import Actor, ActorSpec
from .conf import zocket_settings
from .context import Context
from .errors import ZocketError
from .instance import Instance, Links
from .messages import STATE, group_name
from .protocol import Code
from .statesize import StateTooLarge

log = logging.getLogger("zocket_django.runtime")


class Instances:
    """The instances this process owns: activated on demand, deactivated, evicted, dropped (``runtime.Runtime``)."""

    def __init__(self, node: Links) -> None:
        self.node = node
        self.instances: dict[tuple[str, str], Instance] = {}
        #: Hot instances without connections, the longest idle first: evicted first at ``MAX_HOT_INSTANCES``.
        self.idle: dict[tuple[str, str], None] = {}
        self._closing: dict[tuple[str, str], Instance] = {}
        self._background: set[asyncio.Task[Any]] = set()

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
        await inst.flush()  # on_activate's patch, if held: before the snapshot that follows it
        frame = inst.current_snapshot()
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
        await inst.flush()  # the patches of the old epoch, if held, never cross into the new one
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
        await self.node.publish(inst.group, inst.delivery(STATE, inst.current_snapshot(), announce=self.node.channel))

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

    def held(self) -> int:
        """Instances in memory here: hot, and deactivating (saving on their way out)."""
        return len(self.instances) + len(self._closing)

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
