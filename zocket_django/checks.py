"""System checks (``manage.py check``): every setup mistake found before the first request.

One small function per rule, as ``django.contrib.admin`` does, each returning
errors with the object at fault, a hint that says what to change, and an id
(docs/checks.md lists them all). They are registered in
``ZocketConfig.ready``; the routing helper runs the same checks and refuses
to start while any error remains.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from .conf import SNAPSHOT_ENVELOPE_BYTES, ZocketSettings, setting_problems, zocket_settings
from .models import Snapshot
from .persistence import Persist
from .registry import registry

Messages = list[checks.CheckMessage]

IN_MEMORY_LAYER = "channels.layers.InMemoryChannelLayer"


def check_actor_declarations(app_configs: Any = None, **kwargs: Any) -> Messages:
    """zocket.E001-E008, E013, E014: what is wrong in the actors' declarations."""
    return [checks.Error(p.message, hint=p.hint or None, obj=p.obj, id=p.id) for p in registry.problems()]


def check_zocket_setting(app_configs: Any = None, **kwargs: Any) -> Messages:
    """zocket.E011: ``ZOCKET`` is a dict of known keys, each of the type it needs."""
    given = getattr(settings, "ZOCKET", None)
    return [
        checks.Error(message, hint=hint, obj="settings.ZOCKET", id="zocket.E011")
        for message, hint in setting_problems(given)
    ]


def check_channel_layer(app_configs: Any = None, **kwargs: Any) -> Messages:
    """zocket.E010: a default channel layer whose backend can be imported."""
    layers = getattr(settings, "CHANNEL_LAYERS", None) or {}
    default = layers.get("default") if isinstance(layers, dict) else None
    if not isinstance(default, dict) or "BACKEND" not in default:
        return [
            checks.Error(
                "zocket_django needs a default channel layer; CHANNEL_LAYERS has none.",
                hint='One process: CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}. '
                'Several: "channels_redis.pubsub.RedisPubSubChannelLayer" with "CONFIG": {"hosts": [REDIS_URL]} '
                "(docs/install.md).",
                obj="settings.CHANNEL_LAYERS",
                id="zocket.E010",
            )
        ]
    try:
        import_string(default["BACKEND"])
    except ImportError as exc:
        extra = " (pip install 'zocket-django[redis]')" if str(default["BACKEND"]).startswith("channels_redis") else ""
        return [
            checks.Error(
                f"The channel layer backend {default['BACKEND']!r} cannot be imported: {exc}.",
                hint=f"Check the dotted path and that its package is installed{extra}.",
                obj="settings.CHANNEL_LAYERS",
                id="zocket.E010",
            )
        ]
    return []


def check_single_process_layer(app_configs: Any = None, **kwargs: Any) -> Messages:
    """zocket.E017: the in-memory layer is one process's; several workers would each own every actor."""
    layers = getattr(settings, "CHANNEL_LAYERS", None) or {}
    default = layers.get("default") if isinstance(layers, dict) else None
    if not isinstance(default, dict) or default.get("BACKEND") != IN_MEMORY_LAYER:
        return []
    workers, source = worker_count()
    if workers <= 1:
        return []
    return [
        checks.Error(
            f"The in-memory channel layer serves one process, but {source} asks for {workers} worker processes: "
            "each would keep its own copy of every actor.",
            hint="Use channels_redis (docs/install.md, 'Several workers'), or run one worker process.",
            obj="settings.CHANNEL_LAYERS",
            id="zocket.E017",
        )
    ]


def worker_count(environ: Mapping[str, str] | None = None, argv: Sequence[str] | None = None) -> tuple[int, str]:
    """How many server processes this deployment asks for, where that can be seen, and where it was seen.

    ``WEB_CONCURRENCY`` (read by uvicorn and gunicorn), ``GUNICORN_CMD_ARGS`` and
    this process's own ``--workers``/``-w``; 1 when none says more.
    """
    env: Mapping[str, str] = os.environ if environ is None else environ
    argv = sys.argv if argv is None else argv
    found = [(_int(env.get("WEB_CONCURRENCY")), "WEB_CONCURRENCY")]
    found.append((_workers_flag(shlex.split(env.get("GUNICORN_CMD_ARGS", ""))), "GUNICORN_CMD_ARGS"))
    if any(os.path.basename(a).startswith(("gunicorn", "uvicorn", "hypercorn")) for a in argv[:2]):
        found.append((_workers_flag(list(argv)), "the server's --workers"))
    return max(found, key=lambda f: f[0])


def _workers_flag(args: list[str]) -> int:
    for i, arg in enumerate(args):
        if arg in ("-w", "--workers") and i + 1 < len(args):
            return _int(args[i + 1])
        if arg.startswith("--workers="):
            return _int(arg.split("=", 1)[1])
    return 1


def _int(text: str | None) -> int:
    try:
        return int(text or 1)
    except ValueError:
        return 1


IDENTITY_APPS = {
    "django.contrib.contenttypes": "users and permissions",
    "django.contrib.auth": "ctx.user, ctx.claims and permissions",
    "django.contrib.sessions": "logged-in browsers (Channels' AuthMiddlewareStack reads the session cookie)",
}


def check_identity_apps(app_configs: Any = None, **kwargs: Any) -> Messages:
    """zocket.E016: the apps every socket's identity comes from are installed."""
    return [
        checks.Error(
            f"{app!r} is not in INSTALLED_APPS; zocket_django needs it for {why}.",
            hint=f"Add {app!r} to INSTALLED_APPS.",
            obj="settings.INSTALLED_APPS",
            id="zocket.E016",
        )
        for app, why in IDENTITY_APPS.items()
        if not apps.is_installed(app)
    ]


def check_dotted_paths(app_configs: Any = None, **kwargs: Any) -> Messages:
    """zocket.E015: ``AUTHENTICATOR`` and ``CLAIMS`` name functions that exist."""
    try:
        conf = zocket_settings()
    except ImproperlyConfigured:
        return []  # reported by check_zocket_setting
    errors: Messages = []
    for key in ("AUTHENTICATOR", "CLAIMS"):
        path = getattr(conf, key)
        if path is None:
            continue
        try:
            target = import_string(path)
        except ImportError as exc:
            problem = f"cannot be imported: {exc}"
        else:
            if callable(target):
                continue
            problem = f"is not callable: {target!r}"
        default = getattr(ZocketSettings, key)
        errors.append(
            checks.Error(
                f"ZOCKET[{key!r}] = {path!r} {problem}.",
                hint=f"Give the dotted path of a function (the default is {default!r}).",
                obj="settings.ZOCKET",
                id="zocket.E015",
            )
        )
    return errors


def check_snapshot_ids(app_configs: Any = None, **kwargs: Any) -> Messages:
    """zocket.E012: every accepted actor id of a durable actor fits its snapshot row."""
    durable = sorted(spec.name for spec in registry.specs() if spec.persist != Persist.NONE)
    try:
        limit = zocket_settings().MAX_ACTOR_ID_LENGTH
    except ImproperlyConfigured:
        return []  # reported by check_zocket_setting
    room = getattr(Snapshot._meta.get_field("actor_id"), "max_length", None)
    if durable and room is not None and limit > room:
        return [
            checks.Error(
                f"ZOCKET['MAX_ACTOR_ID_LENGTH'] is {limit}, but snapshots of durable actors "
                f"({', '.join(durable)}) hold actor ids of at most {room} characters.",
                hint=f"Lower MAX_ACTOR_ID_LENGTH to {room} or less.",
                obj="settings.ZOCKET",
                id="zocket.E012",
            )
        ]
    return []


def check_asgi_application(app_configs: Any = None, **kwargs: Any) -> Messages:
    """zocket.W001/W002: ``runserver`` serves WebSockets only through daphne's ASGI runserver."""
    warnings: Messages = []
    if not getattr(settings, "ASGI_APPLICATION", None):
        warnings.append(
            checks.Warning(
                "ASGI_APPLICATION is not set: `runserver` cannot serve the WebSocket.",
                hint='Set ASGI_APPLICATION = "mysite.asgi.application" (docs/install.md).',
                obj="settings.ASGI_APPLICATION",
                id="zocket.W001",
            )
        )
    installed = list(settings.INSTALLED_APPS)
    staticfiles = "django.contrib.staticfiles"
    if "daphne" in installed and staticfiles in installed and installed.index("daphne") > installed.index(staticfiles):
        warnings.append(
            checks.Warning(
                '"daphne" comes after "django.contrib.staticfiles" in INSTALLED_APPS, so `runserver` is '
                "staticfiles' WSGI server and answers the WebSocket with 404.",
                hint='Put "daphne" first in INSTALLED_APPS.',
                obj="settings.INSTALLED_APPS",
                id="zocket.W002",
            )
        )
    return warnings


def check_state_sizes(app_configs: Any = None, **kwargs: Any) -> Messages:
    """zocket.W003: an actor's ``max_state_bytes`` lets its state outgrow the frames the server sends."""
    try:
        room = zocket_settings().MAX_MESSAGE_BYTES - SNAPSHOT_ENVELOPE_BYTES
    except ImproperlyConfigured:
        return []  # reported by check_zocket_setting
    return [
        checks.Warning(
            f"max_state_bytes is {spec.max_state_bytes}, more than a snapshot frame carries "
            f"(ZOCKET['MAX_MESSAGE_BYTES'] - {SNAPSHOT_ENVELOPE_BYTES} = {room}): subscribers of a state that "
            "large get a too_large error instead of the state.",
            hint="Raise daphne's --websocket-max-message-size and ZOCKET['MAX_MESSAGE_BYTES'] with it, "
            "or lower max_state_bytes.",
            obj=spec.cls,
            id="zocket.W003",
        )
        for spec in registry.specs()
        if spec.max_state_bytes is not None and spec.max_state_bytes > room
    ]


ALL: tuple[Callable[..., Messages], ...] = (
    check_zocket_setting,
    check_channel_layer,
    check_single_process_layer,
    check_identity_apps,
    check_dotted_paths,
    check_actor_declarations,
    check_snapshot_ids,
    check_state_sizes,
    check_asgi_application,
)


def register() -> None:
    """Register every check under the ``zocket`` tag (from ``ZocketConfig.ready``)."""
    for check in ALL:
        checks.register(check, "zocket")


def ensure_valid() -> None:
    """Refuse to start while a zocket check reports an error (silenced ones excepted)."""
    errors = [
        message for check in ALL for message in check() if message.level >= checks.ERROR and not message.is_silenced()
    ]
    if errors:
        lines = "\n".join(f"  {message}" for message in errors)
        raise ImproperlyConfigured(f"zocket_django refuses to start; `manage.py check` says:\n{lines}")
