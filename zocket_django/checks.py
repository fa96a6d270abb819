"""System checks (``manage.py check``) for actor declarations and settings.

Ids: zocket.E001 duplicate actor name, E002 state not buildable from defaults,
E003 method parameters or result not expressible as JSON, E004 event without a
usable schema, E005 ``State`` not a pydantic model, E006 bad actor name,
E007 bad access rule (or a method named like a rule attribute), E010 no
channel layer, E011 bad ``ZOCKET`` setting.
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
