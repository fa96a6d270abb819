"""One socket: opening it up to the ``welcome``, writing frames in order, and what dies with it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed
from websockets.frames import Close

from .base import logger
from .errors import ZocketRefused, ZocketRpcDisconnected, refusal_from_close
from .frames import dumps


class Connection:
    """One open socket and what dies with it: pending calls and unsent frames."""

    def __init__(self, ws: ClientConnection, client_id: str | None) -> None:
        self.ws = ws
        self.client_id = client_id
        self.pending: dict[str, tuple[asyncio.Future[Any], str]] = {}
        self.pongs: dict[str, asyncio.Future[None]] = {}
        self.outbox: asyncio.Queue[str] = asyncio.Queue()
        self.close_rcvd: Close | None = None  # the server's close frame, once received
        self.last_error: str | None = None  # the last ``error`` frame about the connection (no ``ref``)

    def send(self, frame: Mapping[str, Any]) -> None:
        """Queue a frame; a single writer task keeps frames in order."""
        self.outbox.put_nowait(dumps(frame))

    def fail_pending(self, reason: str, refusal: ZocketRefused | None = None) -> None:
        for rid, (fut, method) in list(self.pending.items()):
            if fut.done():
                continue
            if refusal is not None:
                fut.set_exception(refusal.copy(method))
            else:
                fut.set_exception(ZocketRpcDisconnected("disconnected", reason, method=method, ref=rid))
        self.pending.clear()
        for fut in self.pongs.values():
            if not fut.done():
                fut.cancel()
        self.pongs.clear()


async def open_connection(url: str, timeout: float | None, connect_kwargs: Mapping[str, Any]) -> Connection:
    """Open a socket and read up to the ``welcome`` frame."""
    async with asyncio.timeout(timeout):
        ws = await ws_connect(url, **connect_kwargs)
        try:
            client_id = await _await_welcome(ws)
        except BaseException:
            ws.transport.abort()
            raise
    return Connection(ws, client_id)


async def _await_welcome(ws: ClientConnection) -> str:
    """The ``clientId`` of the ``welcome``; raises :class:`ZocketRefused` on a refusal instead."""
    error: str | None = None  # a refused connection gets an error frame, then the close
    while True:
        try:
            raw = await ws.recv()
        except ConnectionClosed as exc:
            refusal = refusal_from_close(exc.rcvd, error)
            if refusal is not None:
                raise refusal from None
            raise
        try:
            msg = json.loads(raw)
        except (TypeError, ValueError, RecursionError):
            msg = None
        if isinstance(msg, dict) and msg.get("type") == "welcome":
            client_id = msg.get("clientId")
            if isinstance(client_id, str):
                return client_id
        if isinstance(msg, dict) and msg.get("type") == "error":
            error = str(msg.get("error", "server error"))
            logger.debug("error frame before the welcome: %.200r", raw)
            continue
        logger.warning("ignoring frame received before a valid welcome: %.200r", raw)


async def write_frames(conn: Connection) -> str:
    """The connection's single writer: frames leave in the order they were queued."""
    try:
        while True:
            await conn.ws.send(await conn.outbox.get())
    except ConnectionClosed as exc:
        conn.close_rcvd = exc.rcvd
        return f"connection lost: {exc}"
