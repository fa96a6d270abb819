"""System checks (``manage.py check``) for actor declarations and settings.

Ids: zocket.E001 duplicate actor name, E002 state not buildable from defaults,
E003 method parameters or result not expressible as JSON, E004 event without a
usable schema, E005 ``State`` not a pydantic model, E006 bad actor name,
E007 bad persistence options (``persist``, ``checkpoint_every``,
``schema_version``, ``upgrade_state``), E008 bad access rule (or a method
named like a rule attribute), E010 no channel layer, E011 bad ``ZOCKET``
setting, E012 actor ids longer than a snapshot can hold, E013 bad
``max_state_bytes``; W013 a ``max_state_bytes`` whose snapshots do not fit
``MAX_MESSAGE_BYTES``.
"""

from __future__ import annotations

from typing import Any

from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from .registry import registry


@checks.register("zocket")
def check_actors(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    return [checks.Error(message, id=code) for code, message in registry.problems()]


@checks.register("zocket")
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    from django.conf import settings

    from .conf import zocket_settings

    errors: list[checks.CheckMessage] = []
    if not getattr(settings, "CHANNEL_LAYERS", None):
        errors.append(
            checks.Error(
                "zocket_django needs a channel layer.",
                hint="Set CHANNEL_LAYERS: InMemoryChannelLayer for one process, channels_redis for several.",
                id="zocket.E010",
            )
        )
    try:
        zocket_settings()
    except (ImproperlyConfigured, TypeError) as exc:
        errors.append(checks.Error(str(exc), id="zocket.E011"))
    return errors


@checks.register("zocket")
def check_state_sizes(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    from .conf import SNAPSHOT_ENVELOPE_BYTES, zocket_settings

    try:
        room = zocket_settings().MAX_MESSAGE_BYTES - SNAPSHOT_ENVELOPE_BYTES
    except (ImproperlyConfigured, TypeError):
        return []  # reported by check_settings
    return [
        checks.Warning(
            f"{spec.cls.__qualname__}.max_state_bytes is {spec.max_state_bytes}, more than a snapshot frame "
            f"can carry (ZOCKET['MAX_MESSAGE_BYTES'] - {SNAPSHOT_ENVELOPE_BYTES} = {room}): subscribers of a "
            "state that large get a too_large error instead of the state.",
            hint="Raise daphne's --websocket-max-message-size and ZOCKET['MAX_MESSAGE_BYTES'] with it, "
            "or lower max_state_bytes.",
            id="zocket.W013",
        )
        for spec in registry.specs()
        if spec.max_state_bytes is not None and spec.max_state_bytes > room
    ]


@checks.register("zocket")
def check_persistence(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    from .conf import zocket_settings
    from .models import Snapshot
    from .persistence import Persist

    durable = sorted(spec.name for spec in registry.specs() if spec.persist != Persist.NONE)
    try:
        limit = zocket_settings().MAX_ACTOR_ID_LENGTH
    except (ImproperlyConfigured, TypeError):
        return []  # reported by check_settings
    room = Snapshot._meta.get_field("actor_id").max_length
    if durable and limit > room:
        return [
            checks.Error(
                f"ZOCKET['MAX_ACTOR_ID_LENGTH'] is {limit}, but snapshots of durable actors "
                f"({', '.join(durable)}) hold actor ids of at most {room} characters.",
                hint=f"Lower MAX_ACTOR_ID_LENGTH to {room} or less.",
                id="zocket.E012",
            )
        ]
    return []
