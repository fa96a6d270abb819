"""The hot instances of this process, for code and operators."""

from __future__ import annotations

from typing import Any

from .node import current_node


class HotActors:
    """``hot_actors.count()``, ``.list()``, ``await .deactivate(name, id)``, ``await .deactivate_all()``.

    Deactivating runs the instance's queued steps, then ``on_deactivate``.
    ``destroy`` and ``destroy_all`` are the same today; once state is
    persisted, destroying also forgets the saved state.
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
        node = current_node()
        return node is not None and await node.runtime.deactivate(name, actor_id)

    async def deactivate_all(self) -> int:
        node = current_node()
        return await node.runtime.deactivate_all() if node is not None else 0

    destroy = deactivate
    destroy_all = deactivate_all


hot_actors = HotActors()
