"""How fast one connection may send: frames and bytes per second, with bursts.

Two token buckets (``MESSAGE_RATE``/``MESSAGE_BURST`` frames,
``BYTE_RATE``/``BYTE_BURST`` bytes). A frame the buckets cannot pay for is
not refused: the consumer waits the time the buckets need to refill, and
meanwhile does not read the socket, so a client that sends too fast is slowed
down by TCP itself. A frame never costs more bytes than the bucket holds, so
every frame can be paid for eventually.
"""

from __future__ import annotations


class Budget:
    """Frame and byte allowance of one connection; ``None`` or ``0`` as a rate means no limit."""

    __slots__ = ("_burst", "_byte_burst", "_byte_rate", "_bytes", "_frames", "_rate", "_stamp")

    def __init__(self, rate: float | None, burst: int, byte_rate: float | None, byte_burst: int, now: float) -> None:
        self._rate = float(rate or 0)
        self._burst = float(burst)
        self._byte_rate = float(byte_rate or 0)
        self._byte_burst = float(byte_burst)
        self._frames = self._burst
        self._bytes = self._byte_burst
        self._stamp = now

    def charge(self, size: int, now: float) -> float:
        """Pay for one frame of ``size`` bytes arriving at ``now``; the seconds to wait before handling it.

        The payment is taken at once (the buckets may go below zero); the
        wait is how long they take to climb back to zero.
        """
        elapsed = max(0.0, now - self._stamp)
        self._stamp = now
        wait = 0.0
        if self._rate:
            self._frames = min(self._burst, self._frames + elapsed * self._rate) - 1.0
            if self._frames < 0:
                wait = -self._frames / self._rate
        if self._byte_rate:
            self._bytes = min(self._byte_burst, self._bytes + elapsed * self._byte_rate) - min(size, self._byte_burst)
            if self._bytes < 0:
                wait = max(wait, -self._bytes / self._byte_rate)
        return wait
