"""The requests queued on this process's hot actor instances.

``Runtime`` is ``activation.Instances`` (the instances, activated on demand)
plus the requests: calls, subscriptions and leaving. Each instance
(``instance.Instance``) drains its own FIFO queue of steps; different
instances run concurrently. Answers are sent after the patch, in order, so a
subscribed caller always sees the patch before its own ``rpc:result``.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Set
from typing import Any

from pydantic import BaseModel

from . import protocol
from .activation import Instances
from .actor import ActorSpec, MethodSpec
from .caller import Caller
from .callkeys import INSTANCE_FULL, KeyReused, fingerprint
from .conf import zocket_settings
from .errors import ZocketError
from .instance import Instance, KeyedCall, Links, Presence
from .messages import STATE, Reply, Snapshot, group_name
from .protocol import Code

log = logging.getLogger(__name__)
#: Seconds between two warnings about activations refused at ``MAX_HOT_INSTANCES``.
REFUSAL_WARNING_INTERVAL = 10.0


class Runtime(Instances):
    """The instances this process owns, and the operations the consumer asks of them."""

    def __init__(self, node: Links) -> None:
        super().__init__(node)
        self._refused = 0  # activations refused since the last warning
        self._warned_at = -REFUSAL_WARNING_INTERVAL

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
        settings = zocket_settings()
        # Calls only: subscriptions and lifecycle steps queued (a crowd joining) are never refused.
        if inst.queued_calls >= settings.MAX_QUEUED_CALLS:
            log.warning(
                "%s %r has %d queued calls; call refused",
                spec.name,
                actor_id,
                inst.queued_calls,
                extra=inst.log_context(method=method.name, client=caller.client_id, user=caller.user_id),
            )
            frame = protocol.rpc_error(rpc_id, Code.OVERLOADED, f"{spec.name} is overloaded; try again later")
            self._spawn(self._reply(caller, frame, ticket))
            return
        queued_until = time.monotonic() + settings.QUEUE_TIMEOUT
        keyed = None
        if key is not None:
            keyed = KeyedCall(caller.key_scope, key, fingerprint(method.name, args.model_dump(mode="json")))
        inst.queued_calls += 1
        inst.enqueue(lambda: self._call(inst, caller, method, args, rpc_id, queued_until, ticket, keyed), now=True)

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
        inst.queued_calls -= 1
        if inst.failed is not None:  # the activation failed: nothing runs
            await self._answer(inst, caller, protocol.rpc_error(rpc_id, inst.failed.code, inst.failed.message), ticket)
            return
        if time.monotonic() > queued_until:  # nothing ran, so nothing changed: safe to answer timeout
            text = f"{method.name} waited in the queue longer than QUEUE_TIMEOUT; it did not run"
            await self._answer(inst, caller, protocol.rpc_error(rpc_id, Code.TIMEOUT, text), ticket)
            return
        await inst.join(caller)
        if keyed is not None:
            try:
                known = inst.calls.lookup(keyed.scope, keyed.key, keyed.fingerprint, time.time())
            except KeyReused:
                known = protocol.error_outcome(Code.BAD_REQUEST, "this key was already used for a different call")
            if known is not None:
                await self._answer(inst, caller, protocol.rpc_reply(rpc_id, known), ticket)
                return
            full = inst.calls.refusal(keyed.scope, time.time())
            if full is not None:  # its outcome could not be kept: it does not run (callkeys)
                await self._answer(
                    inst, caller, protocol.rpc_error(rpc_id, Code.OVERLOADED, _window_full(inst, full)), ticket
                )
                return
        body = await self._run_call(inst, caller, method, args, keyed)
        await self._answer(inst, caller, protocol.rpc_reply(rpc_id, body), ticket)

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

    async def _answer(self, inst: Instance, caller: Caller, frame: str, ticket: int | None) -> None:
        """Answer a step's caller after the patches of the steps before (held ones too: ``coalesce``)."""
        await inst.after_patches(functools.partial(self._reply, caller, frame, ticket))

    def subscribe(
        self,
        spec: ActorSpec,
        actor_id: str,
        caller: Caller,
        kinds: Set[str],
        *,
        answer: bool,
        ticket: int | None = None,
        if_moved: bool = False,
    ) -> None:
        """Add subscriptions; with ``answer`` and ``state`` among them, send a snapshot back.

        ``if_moved`` (a plain repeat of a held subscription): only if the state
        moved since the last snapshot this connection was sent.
        """
        try:
            inst = self.instance(spec, actor_id)
        except ZocketError as exc:
            self._refuse_activation(spec, actor_id, caller, exc)
            for kind in sorted(kinds):
                ref = {"type": f"{kind}:sub", "actor": spec.name, "actorId": actor_id}
                self._spawn(self._reply(caller, protocol.error(exc.code, exc.message, ref), ticket))
            return
        inst.enqueue(lambda: self._subscribe(inst, caller, kinds, answer, ticket, if_moved))

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
        self, inst: Instance, caller: Caller, kinds: Set[str], answer: bool, ticket: int | None, if_moved: bool
    ) -> None:
        if inst.failed is not None:  # an error frame per refused subscription; the client may send it again
            for kind in sorted(kinds):
                ref = {"type": f"{kind}:sub", "actor": inst.spec.name, "actorId": inst.actor_id}
                frame = protocol.error(inst.failed.code, inst.failed.message, ref)
                await self._answer(inst, caller, frame, ticket)
            return
        presence = await inst.join(caller)
        presence.subs.update(kinds)
        if answer and STATE in kinds:
            if if_moved and presence.snapshot_version == inst.version:
                return  # it has this version already: a repeat costs no snapshot
            # After the patches held (``coalesce``): encoded then, once for every subscriber
            # answered behind the same patch, at the version that patch produced.
            await inst.after_patches(functools.partial(self._send_snapshot, inst, caller, presence, ticket))

    async def _send_snapshot(self, inst: Instance, caller: Caller, presence: Presence, ticket: int | None) -> None:
        frame = inst.current_snapshot()
        if not frame.startswith('{"type":"state:snapshot"'):
            # too_large: answered; the subscription stays pending, as if the snapshot were on its way
            await self._reply(caller, frame, ticket)
            return
        presence.snapshot_version = inst.version
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
            if kind == STATE:
                presence.snapshot_version = None
            if not presence.subs:
                await inst.part(client_id)

    def leave(self, spec: ActorSpec, actor_id: str, client_id: str) -> None:
        """The connection closed: ``on_disconnect`` runs in the queue."""
        inst = self.instances.get((spec.name, actor_id))
        if inst is not None:
            inst.enqueue(lambda: inst.part(client_id))


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
