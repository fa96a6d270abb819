"""A clean stop saves durable actors: the ASGI lifespan path, in process (daphne's is in test_daphne.py)."""

import asyncio

from tests.test_persistence import row
from zocket_django import hot_actors
from zocket_django.shutdown import install, zocket_lifespan


async def test_lifespan_shutdown_deactivates_and_saves(connect):
    client = await connect()
    await client.call("journal", "life", "write", line="kept")
    inbox: asyncio.Queue = asyncio.Queue()
    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    app = asyncio.ensure_future(zocket_lifespan({"type": "lifespan"}, inbox.get, send))
    await inbox.put({"type": "lifespan.startup"})
    await inbox.put({"type": "lifespan.shutdown"})
    await asyncio.wait_for(app, 5)
    assert sent == [{"type": "lifespan.startup.complete"}, {"type": "lifespan.shutdown.complete"}]
    assert hot_actors.count() == 0
    assert (await row("journal", "life"))["state"]["lines"] == ["kept", "closed"]


def test_install_uses_the_reactor_daphne_installed():
    # INSTALLED_APPS has "daphne", whose app imports daphne.server: Twisted's asyncio reactor is there.
    assert install() is True
    assert install() is True  # idempotent
