"""Raw Channels baselines: what a user writes by hand for the same requests.

They answer the zocket frames the bench sends (``rpc`` to ``increment``,
``state:sub``) with the same JSON shapes, so the client code is identical.
"""

from __future__ import annotations

from typing import Any

from channels.consumer import get_handler_name
from channels.generic.websocket import AsyncJsonWebsocketConsumer

#: actor id → count, shared by every raw connection of the process.
counts: dict[str, int] = {}
#: actor ids that have state subscribers (they get a group message per change).
watched: set[str] = set()


def group_for(actor_id: str) -> str:
    return f"rawfan.{actor_id}"


class RawCounterConsumer(AsyncJsonWebsocketConsumer):
    """The baseline as a user writes it: stock Channels dispatch."""

    async def receive_json(self, content: dict[str, Any], **kwargs: Any) -> None:
        kind = content.get("type")
        actor_id = str(content.get("actorId"))
        if kind == "rpc":
            count = counts[actor_id] = counts.get(actor_id, 0) + 1
            if actor_id in watched:
                await self.channel_layer.group_send(
                    group_for(actor_id), {"type": "counter.changed", "actor_id": actor_id, "count": count}
                )
            await self.send_json({"type": "rpc:result", "id": content.get("id"), "result": count})
        elif kind == "state:sub":
            watched.add(actor_id)
            await self.channel_layer.group_add(group_for(actor_id), self.channel_name)
            count = counts.get(actor_id, 0)
            await self.send_json(
                {
                    "type": "state:snapshot",
                    "actor": "bench_counter",
                    "actorId": actor_id,
                    "state": {"count": count},
                    "version": count,
                }
            )

    async def counter_changed(self, event: dict[str, Any]) -> None:
        # One group message per subscriber, each encoded here again.
        count = event["count"]
        await self.send_json(
            {
                "type": "state:patch",
                "actor": "bench_counter",
                "actorId": event["actor_id"],
                "patches": [{"op": "replace", "path": "/count", "value": count}],
                "version": count,
            }
        )


class TunedRawCounterConsumer(RawCounterConsumer):
    """The same, minus the ``close_old_connections`` thread hop Channels runs before every message."""

    async def dispatch(self, message: dict[str, Any]) -> None:
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)
