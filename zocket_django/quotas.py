"""What one connection, and one user's connections together, may take of a worker.

The per-connection rate limit (``MESSAGE_RATE``) bounds how fast one socket
talks; these caps bound what it and its user *hold*: actor instances kept hot,
open sockets, calls per second summed over all of a user's sockets. They are
counted by the node, so per worker process: a user whose sockets a load
balancer spreads over N workers may hold N times as much in the cluster, and
each worker's memory stays bounded by its own counts. Anonymous connections
have no user to add up; the per-connection caps and ``MAX_HOT_INSTANCES``
(see ``runtime``) bound them.

A refusal is a sentence naming the setting, sent back with ``overloaded`` on
the request it refuses.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sized

from .conf import zocket_settings


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, float(burst)
        self.tokens, self.stamp = self.burst, time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


class Quotas:
    """This worker's counts per user; the consumer asks before it takes anything."""

    def __init__(self) -> None:
        #: user id → open sockets of that user here.
        self.connections: dict[str, int] = {}
        #: user id → instance group → how many of the user's sockets use it.
        self.instances: dict[str, dict[str, int]] = {}
        self._calls: dict[str, TokenBucket] = {}

    def open(self, user_id: str | None) -> str | None:
        """Count a new socket of ``user_id``; why it is refused, or ``None``."""
        if user_id is None:
            return None
        limit = zocket_settings().MAX_CONNECTIONS_PER_USER
        count = self.connections.get(user_id, 0)
        if count >= limit:
            return f"too many connections of this user (at most {limit} per worker, MAX_CONNECTIONS_PER_USER)"
        self.connections[user_id] = count + 1
        return None

    def use(self, user_id: str | None, used_by_connection: Sized, group: str) -> str | None:
        """Count a connection's first use of the instance ``group``; why it is refused, or ``None``.

        ``used_by_connection`` holds the instances the connection uses already
        (``group`` is not among them).
        """
        settings = zocket_settings()
        limit = settings.MAX_INSTANCES_PER_CONNECTION
        if len(used_by_connection) >= limit:
            return f"this connection uses too many actor instances (at most {limit}, MAX_INSTANCES_PER_CONNECTION)"
        if user_id is None:
            return None
        used = self.instances.setdefault(user_id, {})
        if group not in used and len(used) >= settings.MAX_INSTANCES_PER_USER:
            limit = settings.MAX_INSTANCES_PER_USER
            return f"this user uses too many actor instances (at most {limit} per worker, MAX_INSTANCES_PER_USER)"
        used[group] = used.get(group, 0) + 1
        return None

    def call(self, user_id: str | None) -> str | None:
        """Take one call from ``user_id``'s budget; why it is refused, or ``None``."""
        settings = zocket_settings()
        if user_id is None or not settings.USER_CALL_RATE:
            return None
        bucket = self._calls.get(user_id)
        if bucket is None:
            bucket = self._calls[user_id] = TokenBucket(settings.USER_CALL_RATE, settings.USER_CALL_BURST)
        if bucket.take():
            return None
        return f"too many calls from this user (at most {settings.USER_CALL_RATE:g} per second, USER_CALL_RATE)"

    def close(self, user_id: str | None, groups: Iterable[str]) -> None:
        """A socket counted by ``open`` closed: give back its connection and the instances it used."""
        if user_id is None:
            return
        used = self.instances.get(user_id, {})
        for group in groups:
            left = used.get(group, 0) - 1
            if left > 0:
                used[group] = left
            else:
                used.pop(group, None)
        left = self.connections.get(user_id, 0) - 1
        if left > 0:
            self.connections[user_id] = left
        else:  # the user's last socket here: forget them
            self.connections.pop(user_id, None)
            self.instances.pop(user_id, None)
            self._calls.pop(user_id, None)
