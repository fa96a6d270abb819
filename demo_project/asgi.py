"""ASGI entry point: ``daphne demo_project.asgi:application``."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_project.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402

from zocket_django.routing import zocket_lifespan, zocket_websocket  # noqa: E402

# zocket_websocket also hooks daphne's shutdown (SIGTERM/SIGINT): hot actors are
# deactivated and saved first. "lifespan" does the same under uvicorn/hypercorn.
application = ProtocolTypeRouter(
    {"http": django_asgi_app, "websocket": zocket_websocket("ws/"), "lifespan": zocket_lifespan}
)
