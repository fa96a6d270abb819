"""Node work from sync code: Django's sync views under ASGI, the shell, management commands.

The hot instances live on a node, in an event loop. Sync code reaches it three ways:

- on the event loop's own thread (an async view calling a sync helper), it
  cannot wait for the loop it is blocking: only what this process knows is
  answered, at once;
- in a thread of the ASGI server's ``sync_to_async`` (Django runs sync views
  there), the work runs on the server's loop, on its node, and the thread waits
  (bounded) for the answer;
- anywhere else (``manage.py shell``, a management command, WSGI) there is no
  node in this process: the work runs on a *visitor*, a short-lived channel of
  this process that asks the workers through the channel layer and listens for
  their answers. It is no worker: it holds no instance and is not listed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from asgiref.sync import SyncToAsync
from channels.layers import get_channel_layer

from . import messages
from .cluster import Host, cluster_for, describe_worker
from .mailbox import Mailbox
from .node import get_node
from .ops import Operations, Silent

if TYPE_CHECKING:
    from .messages import Message

T = TypeVar("T")


class NodeUnavailable(Exception):
    """No worker can be asked from here (no ASGI server in this thread, no shared channel layer)."""


def in_event_loop() -> bool:
    """Whether this thread runs an event loop (sync code here must not wait for it)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def server_loop() -> asyncio.AbstractEventLoop | None:
    """The ASGI server's running loop, when this thread is one of its ``sync_to_async`` threads."""
    if os.getpid() != getattr(SyncToAsync.threadlocal, "main_event_loop_pid", None):
        return None
    loop: asyncio.AbstractEventLoop | None = getattr(SyncToAsync.threadlocal, "main_event_loop", None)
    return loop if loop is not None and loop.is_running() else None


def on_server(work: Callable[[], Awaitable[T]], timeout: float) -> T:
    """Run ``work()`` on the ASGI server's loop and wait at most ``timeout`` (``NodeUnavailable``, ``Silent``).

    The work runs there in an empty context, so that anything it starts (an
    instance's queue, a database save in a thread) belongs to the node, not to
    this thread, which only waits.
    """
    loop = server_loop()
    if loop is None:
        raise NodeUnavailable

    async def isolated() -> T:
        async def go() -> T:
            return await work()

        return await asyncio.get_running_loop().create_task(go(), context=contextvars.Context())

    future = asyncio.run_coroutine_threadsafe(isolated(), loop)
    try:
        return future.result(timeout)
    except concurrent.futures.TimeoutError:
        future.cancel()
        raise Silent("the event loop") from None


def on_node(work: Callable[[Operations], Awaitable[T]], timeout: float) -> T:
    """Run ``work(ops)`` on the operations of the server that serves this thread (see ``on_server``)."""

    async def go() -> T:
        return await work((await get_node()).ops)

    return on_server(go, timeout)


async def visit(work: Callable[[Operations], Awaitable[T]]) -> T:
    """``work(ops)`` with the operations of a short-lived visitor on the channel layer."""
    layer = get_channel_layer()
    if layer is None or not type(layer).__module__.startswith("channels_redis"):
        raise NodeUnavailable  # the in-memory layer reaches no other process
    channel = await layer.new_channel(prefix="zocket-visitor")
    outbox: Mailbox

    async def send(to: str, message: Message) -> None:
        await outbox.send(to, message.build())

    async def receive(raw: Any) -> None:
        try:
            message = messages.parse(raw)
        except messages.Unreadable as exc:
            ops.fail(exc.remains.ticket, exc.reason)
            return
        if isinstance(message, messages.OpsReply):
            await ops.handle(message)

    cluster = cluster_for(layer, _visitor_host())
    ops = Operations(channel, None, cluster, send, describe_worker)
    outbox = Mailbox(layer, channel, receive)
    tasks = [asyncio.get_running_loop().create_task(t) for t in outbox.tasks()]
    try:
        return await work(ops)
    finally:
        await outbox.flush()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await cluster.stop()


def _visitor_host() -> Host:
    """A visitor holds nothing: the cluster strategy is only asked who owns what and who is alive."""

    async def restore() -> None:
        pass

    return Host(
        describe_worker, list, set, lambda actor, actor_id: None, lambda channel: None, restore, lambda *lease: None
    )
