"""Epochs: the order of an instance's incarnations, on every snapshot and patch it publishes.

With leases in Redis an epoch is Redis' clock when the lease was taken
(``redis_leases``); without them (one process) it is this process's clock,
kept increasing here.
"""

from __future__ import annotations

import time

_last_epoch = 0


def new_epoch() -> int:
    """Wall-clock milliseconds, increasing within the process."""
    global _last_epoch
    _last_epoch = max(int(time.time() * 1000), _last_epoch + 1)
    return _last_epoch
