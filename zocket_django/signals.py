"""Signals sent as actor instances come and go (``sender`` is the actor class)."""

from django.dispatch import Signal

#: Sent after an instance is activated and ``on_activate`` ran; kwargs ``actor_id``, ``instance``.
actor_activated = Signal()
#: Sent after an instance is deactivated and ``on_deactivate`` ran; kwargs ``actor_id``, ``instance``.
actor_deactivated = Signal()
