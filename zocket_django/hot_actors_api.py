"""``hot_actors``: the hot actor instances, for code and operators, on every worker.

Every question goes to the whole cluster (each live worker, or the worker that
runs the instance) unless ``local=True`` limits it to this process. Like
Django's ORM, the plain methods are for sync code (views, ``manage.py shell``,
management commands) and the ``a``-prefixed ones for async code.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from asgiref.sync import async_to_sync

from . import persistence
from .actor import Actor
from .conf import zocket_settings
from .node import Node, current_node
from .ops import OPS_TIMEOUT, Failed, Operations, WorkerReport, describe_instance
from .registry import registry
from .sync_bridge import NodeUnavailable, in_event_loop, on_server, server_loop, visit

T = TypeVar("T")


class HotActors:
    """``count()``, ``list()``, ``get()``, ``deactivate()``, ``destroy()`` (and ``acount()``... in async code).

    Deactivating runs the instance's queued steps, then ``on_deactivate``, then
    saves the state of a durable actor, on the worker that runs it. Destroying
    does the same but deletes the saved snapshot instead (also when the
    instance is not hot): the next activation starts from the ``State``
    defaults. A worker that does not answer within ``timeout`` seconds makes
    a cluster-wide question raise ``TimeoutError``, never answer short.

    From a process without a server (the shell, a management command), the
    workers are asked through the channel layer (channels-redis); with the
    in-memory layer no other process can be reached, and nothing is hot here.
    """

    timeout = OPS_TIMEOUT

    # -- sync code ---------------------------------------------------------------------

    def count(self, *, local: bool = False) -> int:
        """How many instances are hot (``local``: in this process)."""
        return len(self.list(local=local))

    def list(self, *, local: bool = False) -> builtins.list[dict[str, Any]]:
        """One dict per hot instance: actor, actor_id, worker, version, clients, queued, idle seconds..."""
        node = current_node()
        if in_event_loop() and (local or node is None or not node.cluster.distributed):
            return _local_list(node)  # this process is all there is to ask, and it answers at once
        return self._sync("list", lambda: self.alist(local=local), self.timeout)

    def get(self, name: str, actor_id: str) -> Actor | None:
        """The live actor object (``.state``, ``.id``) if it is hot in this process, else ``None``."""
        if in_event_loop():
            return _local_actor(current_node(), name, actor_id)
        if server_loop() is None:
            return None  # no node in this process

        async def fetch() -> Actor | None:
            return _local_actor(current_node(), name, actor_id)

        return on_server(fetch, self.timeout)

    def deactivate(self, name: str, actor_id: str) -> bool:
        """Deactivate (and save) one instance wherever it runs; ``False`` if it was not hot."""
        return self._sync("deactivate", lambda: self.adeactivate(name, actor_id), _action_timeout())

    def deactivate_all(self, *, local: bool = False) -> int:
        """Deactivate every hot instance (``local``: of this process); how many were."""
        return self._sync("deactivate_all", lambda: self.adeactivate_all(local=local), _action_timeout())

    def destroy(self, name: str, actor_id: str) -> bool:
        """Deactivate without saving and delete the snapshot; ``False`` if there was neither."""
        return self._sync("destroy", lambda: self.adestroy(name, actor_id), _action_timeout())

    def destroy_all(self, *, local: bool = False) -> int:
        """Destroy every hot instance (their snapshots too); snapshots of cold instances stay."""
        return self._sync("destroy_all", lambda: self.adestroy_all(local=local), _action_timeout())

    def _sync(self, name: str, work: Callable[[], Awaitable[T]], timeout: float) -> T:
        if in_event_loop():
            raise RuntimeError(
                f"hot_actors.{name}() cannot wait for other workers on the event loop's thread: "
                f"use `await hot_actors.a{name}(...)` in async code"
            )
        if server_loop() is not None:
            return on_server(work, timeout + 2)

        async def run() -> T:
            return await work()

        return async_to_sync(run)()  # no server in this process: a visitor asks the workers

    # -- async code ---------------------------------------------------------------------

    async def acount(self, *, local: bool = False) -> int:
        return len(await self.alist(local=local))

    async def alist(self, *, local: bool = False) -> builtins.list[dict[str, Any]]:
        node = current_node()
        if local or (node is not None and not node.cluster.distributed):
            return _local_list(node)

        async def ask(ops: Operations) -> builtins.list[dict[str, Any]]:
            return _answered(await ops.inventory(self.timeout))

        return await self._ask(node, ask, [])

    async def adeactivate(self, name: str, actor_id: str) -> bool:
        return bool(await self._act("deactivate", name, actor_id))

    async def adestroy(self, name: str, actor_id: str) -> bool:
        spec = registry.get(name)
        if spec is None:
            raise LookupError(f"unknown actor {name!r}")
        if await self._act("destroy", name, actor_id):
            return True
        return await persistence.forget(spec, actor_id)  # not hot anywhere: forget what was saved

    async def adeactivate_all(self, *, local: bool = False) -> int:
        return await self._all("deactivate", local)

    async def adestroy_all(self, *, local: bool = False) -> int:
        return await self._all("destroy", local)

    async def _act(self, action: str, name: str, actor_id: str) -> bool:
        node = current_node()
        if node is not None and ((name, actor_id) in node.runtime.instances or not node.cluster.distributed):
            return await node.runtime.deactivate(name, actor_id, destroy=action == "destroy")  # hot here, or nowhere

        async def act(ops: Operations) -> bool:
            return await ops.act(action, name, actor_id, _action_timeout())

        return await self._ask(node, act, False)

    async def _all(self, action: str, local: bool) -> int:
        node = current_node()
        if local or (node is not None and not node.cluster.distributed):
            return await node.runtime.deactivate_all(destroy=action == "destroy") if node is not None else 0
        hot = await self.alist()
        done = await asyncio.gather(*(self._act(action, info["actor"], info["actor_id"]) for info in hot))
        return sum(done)

    @staticmethod
    async def _ask(node: Node | None, work: Callable[[Operations], Awaitable[T]], unreachable: T) -> T:
        """``work`` on this loop's node, or on a visitor when there is none here (``unreachable``: nobody)."""
        if node is not None:
            return await work(node.ops)
        try:
            return await visit(work)
        except NodeUnavailable:
            return unreachable


def _local_list(node: Node | None) -> list[dict[str, Any]]:
    if node is None:
        return []
    return [describe_instance(inst, node.channel) for inst in list(node.runtime.instances.values())]


def _local_actor(node: Node | None, name: str, actor_id: str) -> Actor | None:
    inst = node.runtime.instances.get((name, actor_id)) if node is not None else None
    return inst.actor if inst is not None else None


def _answered(reports: list[WorkerReport]) -> list[dict[str, Any]]:
    """Every instance the workers reported; ``TimeoutError`` if one stayed silent, ``Failed`` if one failed."""
    silent = [r.label for r in reports if not r.answered]
    if silent:
        raise TimeoutError(f"worker(s) {', '.join(silent)} did not answer in time")
    failed = [f"{r.label}: {r.error}" for r in reports if r.error is not None]
    if failed:
        raise Failed("; ".join(failed))
    return [info for r in reports for info in r.instances]


def _action_timeout() -> float:
    """Queued steps run first, then ``on_deactivate`` and the save."""
    return zocket_settings().call_budget + OPS_TIMEOUT


hot_actors = HotActors()
