"""Asyncio client for the zocket wire protocol (docs/protocol.md).

It mirrors the semantics of Zocket's browser client so that a Python script,
a test or a worker behaves like a browser tab: RPCs with a timeout, lazy
reference-counted event and state subscriptions, live state kept in sync by
versioned JSON patches, heartbeat, and reconnection with every subscription
restored.

The package imports nothing from Django nor from the server, so it can be used
from any process, configured or not. It needs ``websockets`` and ``jsonpatch``:
``pip install "zocket-django[client]"``.

    async with ZocketClient("ws://127.0.0.1:8000/ws/") as client:
        counter = client.actor("counter", "main")
        await counter.add(amount=5)
        state = await counter.state.wait_for(lambda s: s["count"] >= 5)
"""

try:
    import websockets  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in a venv without it
    raise ImportError('zocket_django.client needs the websockets package: pip install "zocket-django[client]"') from exc

from .base import Backoff, ConnectionStatus, NamedActor
from .errors import (
    ZocketConnectionError,
    ZocketError,
    ZocketRefused,
    ZocketRpcDisconnected,
    ZocketRpcError,
    ZocketRpcTimeout,
    ZocketTimeoutError,
)
from .handles import ActorHandle, EventStream
from .live_state import LiveState
from .zocket_client import ZocketClient

__all__ = [
    "ActorHandle",
    "Backoff",
    "ConnectionStatus",
    "EventStream",
    "LiveState",
    "NamedActor",
    "ZocketClient",
    "ZocketConnectionError",
    "ZocketError",
    "ZocketRefused",
    "ZocketRpcDisconnected",
    "ZocketRpcError",
    "ZocketRpcTimeout",
    "ZocketTimeoutError",
]
