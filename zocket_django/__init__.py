"""zocket-django: typed, stateful actors over one WebSocket, on Django Channels.

The public API is what this module exports; everything else is private.

The names are loaded on first use (PEP 562), so that importing a subpackage
that needs no Django, such as ``zocket_django.client``, does not import the
server (and Django) through this module. Type checkers and IDEs read the
imports under ``TYPE_CHECKING``.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .access import Request, Rule
    from .actor import Actor, method
    from .auth import issue_token
    from .context import Context, Emission
    from .errors import AuthenticationFailed, Forbidden, Unauthenticated, ZocketError
    from .hot_actors_api import hot_actors
    from .persistence import Persist
    from .protocol import Code
    from .signals import actor_activated, actor_deactivated

#: Each public name and the module it lives in.
_EXPORTS = {
    "Actor": "actor",
    "AuthenticationFailed": "errors",
    "Code": "protocol",
    "Context": "context",
    "Emission": "context",
    "Forbidden": "errors",
    "Persist": "persistence",
    "Request": "access",
    "Rule": "access",
    "Unauthenticated": "errors",
    "ZocketError": "errors",
    "actor_activated": "signals",
    "actor_deactivated": "signals",
    "hot_actors": "hot_actors_api",
    "issue_token": "auth",
    "method": "actor",
}

__all__ = [
    "Actor",
    "AuthenticationFailed",
    "Code",
    "Context",
    "Emission",
    "Forbidden",
    "Persist",
    "Request",
    "Rule",
    "Unauthenticated",
    "ZocketError",
    "actor_activated",
    "actor_deactivated",
    "hot_actors",
    "issue_token",
    "method",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value  # once loaded, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
