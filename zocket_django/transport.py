"""What the ASGI server lets a consumer see of its socket beyond ASGI itself.

ASGI gives an application no flow control: under daphne, ``send`` writes into
Twisted's transport buffer at once (zocket's own frames try the kernel first:
``DaphneSocket._send``), however much of it the peer has not read
(Twisted buffers without bound and only tells registered producers), and
every frame the peer sends is read and queued for the application however
slowly the application takes them. To cap the bytes waiting for one socket
and to stop reading a socket that sends too fast, the consumer needs the
transport: daphne hands each application ``send = partial(Server.handle_reply,
protocol)`` (possibly wrapped by Channels' session middleware), and the
protocol holds it.

Under any other server (or the ASGI test communicator) :func:`socket_of`
returns ``None``, and the consumer falls back to what ASGI allows: a queue of
its own in front of ``send`` and not calling ``receive``.
"""

from __future__ import annotations

import functools
from typing import Any

#: How many send wrappers (middleware) to look through for daphne's own ``send``.
MAX_WRAPPERS = 8


#: What ``DaphneSocket.write`` reads of autobahn's protocol to decide it may write a frame itself.
#: These are autobahn's own (some private) names: a release that renames one makes every frame go
#: through ``sendMessage`` again (slower, never wrong) instead of failing each send.
DIRECT_WRITE_NEEDS = (
    "state",
    "STATE_OPEN",
    "_perMessageCompress",
    "send_queue",
    "trackedTimings",
    "logFrames",
    "logOctets",
    "maskServerFrames",
    "maxMessagePayloadSize",
    "autoFragmentSize",
)


#: What ``DaphneSocket._send`` reads of Twisted's TCP transport (``tcp.Connection``, ``unix.Server``) to know
#: that nothing waits in its buffer; as above, a Twisted that renames one gets every frame buffered.
KERNEL_WRITE_NEEDS = (
    "socket",
    "TLS",
    "connected",
    "disconnecting",
    "_writeDisconnected",
    "dataBuffer",
    "offset",
    "_tempDataLen",
)
_PLAIN_TRANSPORTS = ("twisted.internet.tcp", "twisted.internet.unix")


class DaphneSocket:
    """One socket served by daphne: its protocol (autobahn) and Twisted transport."""

    __slots__ = ("direct", "paused", "protocol", "sock")

    def __init__(self, protocol: Any) -> None:
        self.protocol = protocol
        self.paused = False
        self.direct = all(hasattr(protocol, name) for name in DIRECT_WRITE_NEEDS)
        transport: Any = getattr(protocol, "transport", None)
        plain = type(transport).__module__ in _PLAIN_TRANSPORTS  # not TLS-wrapped, not a test double
        self.sock = transport.socket if plain and all(hasattr(transport, n) for n in KERNEL_WRITE_NEEDS) else None

    def write(self, text: str) -> None:
        """Send one text frame now (``_send``: to the kernel, or Twisted's buffer); dropped once the socket is closing.

        The one check that the socket is open (daphne drops such frames too):
        nothing is written to a closing transport, and nothing is encoded.

        The frame is written as autobahn's ``sendMessage`` would write it
        (unmasked, unfragmented, uncompressed: a server's frame), minus what
        it does besides: its ``sendData`` formats a debug message with
        ``click`` styling on every frame whether or not anything logs it
        (``hltype``, ``hlval``: ~7% of the server's CPU per call with 50
        connections, ``bench --profile rpc``), and it counts traffic
        statistics nobody reads under daphne. Anything else (compression
        negotiated, frames queued, a size limit, fragmentation, masking,
        frame or octet logging) goes through ``sendMessage``.
        """
        protocol = self.protocol
        if protocol.state != protocol.STATE_OPEN:
            return
        payload = text.encode("utf-8")
        size = len(payload)
        if (
            not self.direct
            or protocol._perMessageCompress is not None
            or protocol.send_queue
            or protocol.trackedTimings
            or protocol.logFrames
            or protocol.logOctets
            or protocol.maskServerFrames
            or 0 < protocol.maxMessagePayloadSize < size
            or 0 < protocol.autoFragmentSize < size
        ):
            protocol.sendMessage(payload)
            return
        if size < 126:
            header = bytes((0x81, size))  # FIN, text; the length, unmasked
        elif size < 65536:
            header = b"\x81\x7e" + size.to_bytes(2, "big")
        else:
            header = b"\x81\x7f" + size.to_bytes(8, "big")
        self._send(header + payload)

    def _send(self, data: bytes) -> None:
        """Hand ``data`` to the kernel now when nothing waits before it; what it does not take, to Twisted.

        Twisted's ``write`` only buffers: it registers the socket for
        writability (an ``epoll_ctl``), sends on the reactor's next turn and
        unregisters it (another): a loop turn and two system calls per frame,
        a quarter of the server's samples with one connection (``bench
        --profile rpc``). asyncio's own transports (uvicorn's) try the send
        first, and so does this. Order is kept: only an empty buffer is passed
        by, so a frame autobahn wrote itself (a ping, a close) is never overtaken.
        Autobahn turns Nagle off (``tcpNoDelay``), so a small frame leaves at once.
        A failing send (the peer reset) is left to Twisted, which closes the connection.
        """
        transport = self.protocol.transport
        sock = self.sock
        if (
            sock is not None
            and not transport.TLS
            and transport.connected
            and not transport.disconnecting
            and not transport._writeDisconnected
            and not self.buffered()
        ):
            try:
                sent = sock.send(data)
            except OSError:  # would block, interrupted, or the connection is failing
                sent = 0
            if sent == len(data):
                return
            data = data[sent:]
        transport.write(data)

    def buffered(self) -> int:
        """Bytes written but not yet taken by the kernel (Twisted's write buffer)."""
        transport = self.protocol.transport
        if transport is None:
            return 0
        data = getattr(transport, "dataBuffer", b"")
        return len(data) - getattr(transport, "offset", 0) + getattr(transport, "_tempDataLen", 0)

    def pause_reading(self) -> None:
        """Stop reading the socket: the peer's frames wait in its kernel buffers, then TCP slows it down."""
        transport = self.protocol.transport
        if not self.paused and transport is not None:
            transport.pauseProducing()
            self.paused = True

    def resume_reading(self) -> None:
        transport = self.protocol.transport
        if self.paused and transport is not None:
            transport.resumeProducing()
        self.paused = False


def past_sessions(send: Any) -> Any:
    """``send`` without Channels' session wrappers, for frames.

    ``InstanceSessionWrapper.send`` acts on ``http.response.start`` only, but
    reads the lazy session (``modified``, ``is_empty()``) on every message: with
    1,000 subscribers that was a quarter of a change's CPU. The scope's session
    is untouched; closing and accepting still go through the wrappers.
    """
    for _ in range(MAX_WRAPPERS):
        inner = getattr(getattr(send, "__self__", None), "real_send", None)  # channels.sessions.InstanceSessionWrapper
        if inner is None:
            break
        send = inner
    return send


def socket_of(send: Any) -> DaphneSocket | None:
    """The daphne socket behind an ASGI ``send`` callable, or ``None`` under any other server."""
    send = past_sessions(send)
    if not isinstance(send, functools.partial) or not send.args:
        return None
    owner = getattr(send.func, "__self__", None)
    protocol = send.args[0]
    if getattr(send.func, "__name__", "") != "handle_reply" or type(owner).__module__ != "daphne.server":
        return None
    if not (hasattr(protocol, "sendMessage") and hasattr(protocol, "transport")):
        return None
    return DaphneSocket(protocol)
