"""``transport.DaphneSocket.write``: its own frame only where autobahn's state says it may.

The frame bytes themselves are checked against a real daphne in
``test_daphne_frames.py``; here, which way a frame goes.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest

from zocket_django.output import Output
from zocket_django.transport import DIRECT_WRITE_NEEDS, DaphneSocket


class Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)


class Protocol:
    """The attributes autobahn's server protocol has once connected, as daphne leaves them."""

    STATE_OPEN = 1

    def __init__(self) -> None:
        self.state = self.STATE_OPEN
        self._perMessageCompress = None
        self.send_queue: list[Any] = []
        self.trackedTimings = None
        self.logFrames = self.logOctets = self.maskServerFrames = False
        self.maxMessagePayloadSize = self.autoFragmentSize = 0
        self.transport = Transport()
        self.sent: list[bytes] = []

    def sendMessage(self, payload: bytes) -> None:
        self.sent.append(payload)


def test_a_plain_frame_is_written_to_the_transport_with_its_header() -> None:
    protocol = Protocol()
    DaphneSocket(protocol).write("héllo")
    assert protocol.transport.written == [b"\x81\x06" + "héllo".encode()]
    assert protocol.sent == []


def test_compression_goes_through_autobahn() -> None:
    protocol = Protocol()
    protocol._perMessageCompress = object()
    DaphneSocket(protocol).write("x")
    assert protocol.sent == [b"x"] and protocol.transport.written == []


def test_an_autobahn_without_one_of_the_attributes_read_gets_every_frame_through_send_message() -> None:
    for name in DIRECT_WRITE_NEEDS:
        if name in ("state", "STATE_OPEN"):  # what says the socket is open: any autobahn has them
            continue
        protocol = Protocol()
        delattr(protocol, name)
        socket = DaphneSocket(protocol)
        assert not socket.direct, name
        socket.write("x")
        assert protocol.sent == [b"x"] and protocol.transport.written == [], name


def test_a_closing_socket_gets_nothing_neither_written_nor_through_send_message() -> None:
    for direct in (True, False):
        protocol = Protocol()
        if not direct:
            protocol._perMessageCompress = object()
        protocol.state = 2  # autobahn's STATE_CLOSING
        DaphneSocket(protocol).write("x")  # dropped, not raised
        assert protocol.transport.written == [] and protocol.sent == [], direct


def test_output_drops_frames_for_a_closing_daphne_socket_quietly() -> None:
    protocol = Protocol()
    overflowed: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        raise AssertionError("frames go to the transport, not to ASGI send")

    output = Output(send, DaphneSocket(protocol), 10, overflowed.append)
    output.push("one")
    protocol.state = 2
    output.push("two")
    assert protocol.transport.written == [b"\x81\x03one"] and protocol.sent == [] and overflowed == []


class TcpTransport(Transport):
    """What ``DaphneSocket`` reads of Twisted's ``tcp.Connection``, over one end of a socket pair."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self.socket = sock
        self.TLS = False
        self.connected, self.disconnecting, self._writeDisconnected = True, False, False
        self.dataBuffer, self.offset, self._tempDataLen = b"", 0, 0


TcpTransport.__module__ = "twisted.internet.tcp"  # as daphne's plain TCP transport is


def test_with_nothing_buffered_a_frame_goes_to_the_kernel_at_once() -> None:
    ours, peer = socket.socketpair()
    with ours, peer:
        protocol = Protocol()
        protocol.transport = TcpTransport(ours)
        DaphneSocket(protocol).write("hi")
        assert peer.recv(16) == b"\x81\x02hi" and protocol.transport.written == []


def test_behind_buffered_bytes_or_under_tls_a_frame_waits_in_twisteds_buffer() -> None:
    ours, peer = socket.socketpair()
    with ours, peer:
        for change in ({"_tempDataLen": 3}, {"dataBuffer": b"abc"}, {"TLS": True}, {"connected": False}):
            protocol = Protocol()
            protocol.transport = transport = TcpTransport(ours)
            transport.__dict__.update(change)
            DaphneSocket(protocol).write("hi")
            assert transport.written == [b"\x81\x02hi"], change
        peer.setblocking(False)
        with pytest.raises(BlockingIOError):
            peer.recv(16)  # nothing went around the buffer


def test_what_the_kernel_does_not_take_is_left_to_twisted_in_order() -> None:
    ours, peer = socket.socketpair()
    with ours, peer:
        ours.setblocking(False)
        protocol = Protocol()
        protocol.transport = TcpTransport(ours)
        payload = "x" * 8_000_000  # more than any socket buffer holds
        DaphneSocket(protocol).write(payload)
        [rest] = protocol.transport.written
        header = b"\x81\x7f" + len(payload).to_bytes(8, "big")
        assert 0 < len(rest) < len(payload) and (header + payload.encode()).endswith(rest)
