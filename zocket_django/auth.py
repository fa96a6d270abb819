"""Who is calling: the Django user of a WebSocket scope, its id and its claims."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async


def user_claims(user: Any) -> dict[str, Any]:
    """The default claims of an authenticated user (runs in a thread: it may query)."""
    return {
        "username": user.get_username(),
        "is_staff": bool(getattr(user, "is_staff", False)),
        "is_superuser": bool(getattr(user, "is_superuser", False)),
        "groups": sorted(user.groups.values_list("name", flat=True)) if hasattr(user, "groups") else [],
    }


async def identify(scope: dict[str, Any]) -> tuple[Any, str | None, dict[str, Any]]:
    """``(user, user_id, claims)`` for a connection; anonymous is ``(user, None, {})``."""
    user = scope.get("user")
    if user is None or not getattr(user, "is_authenticated", False):
        return user, None, {}
    claims = await database_sync_to_async(user_claims)(user)
    return user, str(user.pk), claims
