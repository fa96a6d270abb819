"""``daphne bench.project.asgi:application``: zocket at /ws/, raw baselines at /raw/ and /raw-tuned/."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.project.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from zocket_django.routing import zocket_websocket  # noqa: E402

from .consumers import RawCounterConsumer, TunedRawCounterConsumer  # noqa: E402

zocket_app = zocket_websocket("ws/")
# The baselines sit behind the same auth stack a user's asgi.py would have.
raw_app = AuthMiddlewareStack(
    URLRouter(
        [
            path("raw/", RawCounterConsumer.as_asgi()),
            path("raw-tuned/", TunedRawCounterConsumer.as_asgi()),
        ]
    )
)


async def websocket_app(scope, receive, send):
    app = zocket_app if scope["path"].startswith("/ws/") else raw_app
    await app(scope, receive, send)


application = ProtocolTypeRouter({"http": django_asgi_app, "websocket": websocket_app})
