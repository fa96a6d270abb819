"""A clean stop: every hot instance is deactivated (durable ones saved) before the process exits.

Daphne (4.2) does not speak the ASGI lifespan protocol, but it runs on
Twisted's asyncio reactor, whose ``"before" "shutdown"`` triggers run on
SIGTERM and SIGINT and are waited for. ``install()`` adds one that stops this
process's node; the routing helpers (``zocket_websocket``,
``zocket_urlpatterns``) call it, so a project that routes through them has
nothing to do. Servers that do speak lifespan (uvicorn, hypercorn) get the
same from ``"lifespan": zocket_lifespan`` in the ``ProtocolTypeRouter``.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

from .node import current_node, forget_node

log = logging.getLogger(__name__)

_installed_on: set[int] = set()


async def shutdown() -> int:
    """Deactivate every hot instance of this event loop's node and stop the node; the count."""
    node = current_node()
    if node is None:
        return 0
    count = len(node.runtime.instances)
    forget_node(node)
    await node.stop()
    log.info("zocket: shut down, %d hot instance(s) deactivated", count)
    return count


def install() -> bool:
    """Run ``shutdown()`` before Twisted's reactor stops (daphne); ``False`` when not under Twisted.

    Safe to call more than once. Only a reactor that is already installed is
    used: importing ``twisted.internet.reactor`` here would install the wrong one.
    """
    reactor = sys.modules.get("twisted.internet.reactor")
    loop = getattr(reactor, "_asyncioEventloop", None)
    if reactor is None or loop is None:
        return False
    if id(reactor) not in _installed_on:
        _installed_on.add(id(reactor))
        reactor.addSystemEventTrigger("before", "shutdown", _before_reactor_shutdown, loop)
    return True


def _before_reactor_shutdown(loop: asyncio.AbstractEventLoop) -> Any:
    from twisted.internet.defer import Deferred

    async def stop() -> None:
        try:
            await shutdown()
        except Exception:
            log.exception("zocket: shutdown failed")
        await _cancel_leftover_tasks()

    return Deferred.fromFuture(asyncio.ensure_future(stop(), loop=loop))


async def _cancel_leftover_tasks(timeout: float = 5.0) -> None:
    """Cancel what is still running on the loop, as ``asyncio.run`` does before it returns.

    Daphne's own trigger is meant to cancel the application instances, but in
    daphne 4.2.3 it raises ``KeyError: 'application_instance'`` whenever a
    WebSocket connection is open (the upgraded HTTP request's entry has no
    instance), so the connections' coroutines outlive the reactor. On CPython
    3.11.7 garbage-collecting them at exit segfaults (python/cpython#113566),
    after the snapshots were saved but with exit status -11.
    """
    current = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=timeout)


async def zocket_lifespan(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An ASGI ``lifespan`` application: ``ProtocolTypeRouter({..., "lifespan": zocket_lifespan})``."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            try:
                await shutdown()
            except Exception as exc:
                log.exception("zocket: shutdown failed")
                await send({"type": "lifespan.shutdown.failed", "message": str(exc)})
            else:
                await send({"type": "lifespan.shutdown.complete"})
            return
