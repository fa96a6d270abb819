"""zocket-django: typed, stateful actors over one WebSocket, on Django Channels.

The public API is what this module exports; everything else is private.
"""

from .access import Request, Rule
from .actor import Actor, Context, Emission, method
from .auth import issue_token
from .errors import AuthenticationFailed, Forbidden, Unauthenticated, ZocketError
from .manager import hot_actors
from .persistence import Persist
from .protocol import Code
from .signals import actor_activated, actor_deactivated

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
