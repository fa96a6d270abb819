"""zocket-django: typed, stateful actors over one WebSocket, on Django Channels.

The public API is what this module exports; everything else is private.
"""

from .actor import Actor, Context, Emission, method
from .errors import ZocketError
from .manager import hot_actors
from .persistence import Persist
from .protocol import Code
from .signals import actor_activated, actor_deactivated

__all__ = [
    "Actor",
    "Code",
    "Context",
    "Emission",
    "Persist",
    "ZocketError",
    "actor_activated",
    "actor_deactivated",
    "hot_actors",
    "method",
]
