"""python-socketio answering the bench's RPC and fan-out, as its users would write them.

``increment(actor_id)`` is an acknowledged emit returning the actor id's new
count (the bench's ``bench_counter.increment``); ``join(room)`` enters a room
(the fan-out's subscription) and ``change(room)`` increments the room's count
and emits ``patch`` to the room. With ``REDIS_URL`` set, the server uses
``AsyncRedisManager``: emits to rooms go through Redis, as across processes.
Served by ``uvicorn bench.peer.app:app --loop asyncio`` (the event loop daphne uses).
"""

from __future__ import annotations

import os
from typing import Any

import socketio

_redis = os.environ.get("REDIS_URL")
_manager = (
    socketio.AsyncRedisManager(_redis, channel=os.environ.get("BENCH_REDIS_PREFIX", "zbench") + "-sio")
    if _redis
    else None
)
sio = socketio.AsyncServer(async_mode="asgi", client_manager=_manager, cors_allowed_origins=[])
app = socketio.ASGIApp(sio)
counts: dict[str, int] = {}


@sio.event
async def increment(sid: str, actor_id: str) -> int:
    counts[actor_id] = counts.get(actor_id, 0) + 1
    return counts[actor_id]


@sio.event
async def join(sid: str, room: str) -> dict[str, Any]:
    await sio.enter_room(sid, room)
    return {"count": counts.get(room, 0)}


@sio.event
async def change(sid: str, room: str) -> int:
    counts[room] = counts.get(room, 0) + 1
    await sio.emit("patch", {"version": counts[room], "count": counts[room]}, room=room)
    return counts[room]
