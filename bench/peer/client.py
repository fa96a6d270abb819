"""A Socket.IO client speaking to the bench's jobs in zocket's frames (client side only).

``SioSocket`` wraps one websocket to the peer (Engine.IO 4, websocket
transport) and translates: an ``rpc`` frame becomes an acknowledged
``increment`` (or ``change``, for the fan-out's driver on a room), a
``state:sub`` frame a ``join``; the acknowledgements come back as
``rpc:result`` / ``state:snapshot`` and room emits as ``state:patch``. The
jobs in ``bench/load.py`` then run unchanged; the translation costs client
CPU only.
"""

from __future__ import annotations

import json

from websockets.asyncio.client import ClientConnection


class SioSocket:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.acks: dict[int, tuple[str, str]] = {}  # ack id -> (zocket frame type, rpc id)
        self.next_ack = 0

    @classmethod
    async def open(cls, ws: ClientConnection) -> SioSocket:
        opened = await ws.recv()
        assert str(opened).startswith("0"), opened
        await ws.send("40")
        connected = await ws.recv()
        assert str(connected).startswith("40"), connected
        return cls(ws)

    async def send(self, text: str) -> None:
        frame = json.loads(text)
        self.next_ack += 1
        ack = self.next_ack
        if frame["type"] == "rpc":
            event = "change" if frame["actorId"].startswith("fan-") else "increment"
            self.acks[ack] = ("rpc:result", frame["id"])
        else:
            event = "join"
            self.acks[ack] = ("state:snapshot", "")
        await self.ws.send(f"42{ack}" + json.dumps([event, frame["actorId"]]))

    async def recv(self) -> str:
        while True:
            text = str(await self.ws.recv())
            if text == "2":  # Engine.IO ping
                await self.ws.send("3")
                continue
            if text.startswith("43"):
                body = text.index("[")
                kind, rpc_id = self.acks.pop(int(text[2:body]))
                value = json.loads(text[body:])[0]
                if kind == "rpc:result":
                    return json.dumps({"type": kind, "id": rpc_id, "result": value})
                return json.dumps({"type": kind, "state": value})
            if text.startswith("42"):
                _, payload = json.loads(text[2:])
                return json.dumps({"type": "state:patch", "version": payload["version"]})

    def __aiter__(self) -> SioSocket:
        return self

    async def __anext__(self) -> str:
        return await self.recv()

    async def close(self) -> None:
        await self.ws.close()
