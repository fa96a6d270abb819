"""The connection loop: connect, serve, reconnect with backoff, or give up and say why."""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI, WebSocketException

from .base import ConnectionStatus, logger
from .connection import Connection, open_connection, write_frames
from .errors import ZocketRefused, refusal_from_close
from .inbound import Inbound


class Supervisor(Inbound):
    """Keeps one socket open while the client lives (a task per client)."""

    async def _run(self) -> None:
        """Supervise the connection; a bug here must end the client, not hang it."""
        try:
            await self._connection_loop()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("zocket client for %s crashed", self.url)
            self._shutdown("internal client error (see log)")

    async def _connection_loop(self) -> None:
        """Connect, serve, and reconnect with backoff until closed or given up.

        A connection that dies within ``_STABLE_AFTER`` seconds counts as a
        failed attempt, so a server that accepts and drops at once is retried
        with growing delays (and given up on) like one that refuses.
        """
        attempt = 0
        loop = asyncio.get_running_loop()
        while not self._closed:
            self._set_status(ConnectionStatus.RECONNECTING if self._ever_connected else ConnectionStatus.CONNECTING)
            try:
                conn = await open_connection(self.url, self.connect_timeout, self._connect_kwargs)
            except ZocketRefused as refusal:
                # The error frame came before any welcome: tell the error listeners here.
                for callback in list(self._error_listeners.values()):
                    self._invoke(callback, refusal.copy(), "error")
                self._refuse(refusal)
                return
            except (OSError, WebSocketException, ValueError) as exc:
                attempt += 1
                fatal = self._is_fatal(exc)
                logger.log(
                    logging.ERROR if fatal else logging.INFO,
                    "zocket connect attempt %d to %s failed: %s",
                    attempt,
                    self.url,
                    exc,
                )
                if fatal or self._out_of_attempts(attempt):
                    self._shutdown(f"could not connect to {self.url} after {attempt} attempt(s): {exc}")
                    return
                await asyncio.sleep(self.backoff.delay(attempt - 1))
                continue
            opened_at = loop.time()
            refused = await self._serve(conn)
            if self._closed:
                return
            if refused is not None:
                self._refuse(refused)
                return
            attempt = 0 if loop.time() - opened_at >= self._STABLE_AFTER else attempt + 1
            if self._out_of_attempts(attempt):
                self._shutdown(
                    "connection lost" if not self.reconnect else f"connection dropped {attempt} time(s) in a row"
                )
                return
            self._set_status(ConnectionStatus.RECONNECTING)
            await asyncio.sleep(self.backoff.delay(attempt))

    _STABLE_AFTER: Final = 5.0

    def _out_of_attempts(self, attempt: int) -> bool:
        limit = self.backoff.max_attempts
        return not self.reconnect or (limit is not None and attempt >= limit)

    def _refuse(self, refusal: ZocketRefused) -> None:
        """The server refused the connection for good (4401, 4403): close, and say why."""
        logger.error("zocket connection to %s refused, not reconnecting: %s", self.url, refusal.message)
        self._refusal = refusal
        self._shutdown(refusal.message)

    @staticmethod
    def _is_fatal(exc: Exception) -> bool:
        """A bad URL or a 4xx refusal of the handshake (auth, origin) will not heal by retrying.

        A refusal after the handshake (close code 4401 or 4403) is :class:`ZocketRefused`.
        """
        if isinstance(exc, InvalidURI | ValueError):
            return True
        if isinstance(exc, InvalidStatus):
            code = exc.response.status_code
            return 400 <= code < 500 and code not in (408, 429)
        return False

    async def _serve(self, conn: Connection) -> ZocketRefused | None:
        """Run one connection until it dies; then fail what cannot survive it.

        Returns the refusal when the server closed it with 4401 or 4403.
        """
        self._conn = conn
        self._ever_connected = True
        for handle in list(self._handles.values()):
            handle._restore(conn)
        self._set_status(ConnectionStatus.CONNECTED)
        tasks = [
            asyncio.create_task(self._reader(conn)),
            asyncio.create_task(write_frames(conn)),
        ]
        if self.heartbeat_interval:
            tasks.append(asyncio.create_task(self._heartbeat(conn, self.heartbeat_interval)))
        reason = "connection lost"
        refusal = None
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task.cancelled():
                    continue
                if (exc := task.exception()) is not None:
                    # A bug must cost this socket, not the client: reconnect.
                    logger.error("zocket connection task failed", exc_info=exc)
                    reason = f"internal error: {exc!r}"
                else:
                    reason = task.result()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._conn = None
            if conn.ws.close_code is None:
                conn.ws.transport.abort()
            if self._closed:
                reason = self._close_reason or "client closed"
            else:
                refusal = refusal_from_close(conn.close_rcvd, conn.last_error)
            conn.fail_pending(reason, refusal)
            for handle in list(self._handles.values()):
                handle._disconnected()
            self._notify()
        logger.info("zocket connection to %s ended: %s", self.url, reason)
        return refusal

    async def _reader(self, conn: Connection) -> str:
        try:
            async for raw in conn.ws:
                self._dispatch(conn, raw)
        except ConnectionClosed as exc:
            conn.close_rcvd = exc.rcvd
            return f"connection lost: {exc}"
        return f"connection closed by server (code {conn.ws.close_code})"

    async def _heartbeat(self, conn: Connection, interval: float) -> str:
        """Ping every ``interval``; a missing pong means the server is gone."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval)
            ping_id = f"hb{next(self._ids)}"
            fut: asyncio.Future[None] = loop.create_future()
            conn.pongs[ping_id] = fut
            conn.send({"type": "ping", "id": ping_id})
            try:
                await asyncio.wait_for(fut, self.heartbeat_timeout)
            except TimeoutError:
                logger.warning(
                    "no pong from %s within %ss; dropping the connection",
                    self.url,
                    self.heartbeat_timeout,
                )
                return "heartbeat timed out"
            finally:
                conn.pongs.pop(ping_id, None)
