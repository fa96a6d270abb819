"""Models of zocket_django (they live in their own modules)."""

from .hotactor import HotActor

__all__ = ["HotActor"]
