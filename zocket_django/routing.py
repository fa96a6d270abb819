"""What a project routes: the consumer at a path, behind auth and origin checks."""

from __future__ import annotations

from typing import Any
from urllib.parse import ParseResult

from channels.security.websocket import OriginValidator
from django.apps import apps
from django.conf import settings
from django.core.exceptions import AppRegistryNotReady, ImproperlyConfigured
from django.urls import path as url_path

from . import checks, shutdown
from .auth import SessionAuthMiddleware
from .conf import zocket_settings
from .consumer import ZocketConsumer
from .shutdown import zocket_lifespan

__all__ = ["ZocketOriginValidator", "zocket_lifespan", "zocket_urlpatterns", "zocket_websocket"]


class ZocketOriginValidator(OriginValidator):
    """Channels' origin check against ``ALLOWED_HOSTS`` plus ``ZOCKET["ALLOWED_ORIGINS"]``.

    A socket without ``Origin`` is no cross-site risk (browsers always send
    one), so it is let in unless ``ALLOW_MISSING_ORIGIN`` is off.
    """

    def __init__(self, application: Any) -> None:
        hosts = list(settings.ALLOWED_HOSTS)
        if settings.DEBUG and not hosts:
            hosts = ["localhost", "127.0.0.1", "[::1]"]  # as Django's own DEBUG default
        super().__init__(application, hosts + list(zocket_settings().ALLOWED_ORIGINS))

    def valid_origin(self, parsed_origin: ParseResult | None) -> bool:
        if parsed_origin is None and zocket_settings().ALLOW_MISSING_ORIGIN:
            return True
        return super().valid_origin(parsed_origin)


def zocket_urlpatterns(path: str = "ws/") -> list[Any]:
    """URL patterns serving every actor at ``path``. Refuses to start on broken actors.

    Under daphne it also arranges for a clean stop (SIGTERM, SIGINT) to
    deactivate and save every hot instance first (``zocket_django.shutdown``).
    """
    _ensure_installed()
    checks.ensure_valid()
    shutdown.install()
    return [url_path(path, ZocketConsumer.as_asgi())]


def _ensure_installed() -> None:
    """The actors, checks and models come with the app: without it every call would be ``unknown_actor``."""
    try:
        installed = apps.is_installed("zocket_django")
    except AppRegistryNotReady:
        raise ImproperlyConfigured(
            "zocket_django's routing was used before Django was set up: in asgi.py, call "
            "get_asgi_application() before importing zocket_django.routing (docs/install.md)."
        ) from None
    if not installed:
        raise ImproperlyConfigured(
            '"zocket_django" is not in INSTALLED_APPS: add it, so that actors.py modules are found '
            "and its checks and tables exist."
        )


def zocket_websocket(path: str = "ws/") -> Any:
    """The ``"websocket"`` application for ``ProtocolTypeRouter``.

    Sessions and users come from ``SessionAuthMiddleware`` (what Channels'
    ``AuthMiddlewareStack`` sets, without its queue on Django's one sync
    thread and its wrapper around every frame sent); the ``Origin`` header must match
    ``ALLOWED_HOSTS`` (cross-site WebSocket hijacking is closed by default).
    """
    from channels.routing import URLRouter

    return ZocketOriginValidator(SessionAuthMiddleware(URLRouter(zocket_urlpatterns(path))))
