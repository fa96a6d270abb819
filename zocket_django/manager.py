"""The hot instances of this process, for code and operators."""

from __future__ import annotations

from typing import Any

from . import persistence
from .node import current_node
from .registry import registry


class HotActors:
    """``hot_actors.count()``, ``.list()``, ``await .deactivate(name, id)``, ``await .destroy(name, id)``.

    Deactivating runs the instance's queued steps, then ``on_deactivate``, then
    saves the state of a durable actor. Destroying does the same but deletes
    the saved snapshot instead (also when the instance is not hot): the next
    activation starts from the ``State`` defaults.
    """

    def _instances(self) -> dict[tuple[str, str], Any]:
        node = current_node()
        return node.runtime.instances if node is not None else {}

    def count(self) -> int:
        return len(self._instances())

    def list(self) -> list[dict[str, Any]]:
        return [inst.info() for inst in self._instances().values()]

    def get(self, name: str, actor_id: str) -> Any:
        """The live actor object (``.state``, ``.id``), or ``None`` when not hot."""
        inst = self._instances().get((name, actor_id))
        return inst.actor if inst is not None else None

    async def deactivate(self, name: str, actor_id: str) -> bool:
        """Deactivate (and save) one instance; ``False`` if it was not hot."""
        node = current_node()
        return node is not None and await node.runtime.deactivate(name, actor_id)

    async def deactivate_all(self) -> int:
        node = current_node()
        return await node.runtime.deactivate_all() if node is not None else 0

    async def destroy(self, name: str, actor_id: str) -> bool:
        """Deactivate without saving and delete the snapshot; ``False`` if there was neither."""
        spec = registry.get(name)
        if spec is None:
            raise LookupError(f"unknown actor {name!r}")
        node = current_node()
        if node is not None:
            return await node.runtime.destroy(spec, actor_id)
        return await persistence.forget(spec, actor_id)

    async def destroy_all(self) -> int:
        """Destroy every hot instance (their snapshots too); snapshots of cold instances stay."""
        node = current_node()
        return await node.runtime.deactivate_all(destroy=True) if node is not None else 0


hot_actors = HotActors()
