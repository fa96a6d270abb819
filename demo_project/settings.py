"""Settings of the demo: SQLite and the in-memory channel layer unless told otherwise.

``DATABASE_URL`` (``postgres://...`` or ``sqlite:///path``) selects the database,
``REDIS_URL`` switches the channel layer to channels-redis.
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "demo-only-not-secret")
# Off unless asked (DJANGO_DEBUG=1): with DEBUG on, error answers carry exception
# messages (which may name a database host) and Django keeps every query in memory.
DEBUG = os.environ.get("DJANGO_DEBUG", "0") == "1"
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost").split(",")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "zocket_django",
    "demo_project.counter",
    "demo_project.chat",
    "demo_project.board",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",  # static files from daphne itself
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "demo_project.urls"
ASGI_APPLICATION = "demo_project.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "demo_project" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]


def _database(url: str | None) -> dict:
    """A DATABASES entry from a ``DATABASE_URL``-style string."""
    if not url:
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "db.sqlite3"}
    from urllib.parse import unquote, urlparse

    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": unquote(parsed.path[1:]) or ":memory:"}
    if parsed.scheme in ("postgres", "postgresql"):
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parsed.path[1:]),
            "USER": unquote(parsed.username or ""),
            "PASSWORD": unquote(parsed.password or ""),
            "HOST": parsed.hostname or "",
            "PORT": str(parsed.port or ""),
        }
    raise ValueError(f"unsupported DATABASE_URL scheme {parsed.scheme!r}")


DATABASES = {"default": _database(os.environ.get("DATABASE_URL"))}
if DATABASES["default"]["ENGINE"].endswith("postgresql"):
    # The counter saves on every call (write-through): reuse connections in the
    # worker threads instead of opening one per save (README, "Persistence").
    DATABASES["default"]["CONN_MAX_AGE"] = 60

if os.environ.get("REDIS_URL"):
    # CHANNEL_LAYER=pubsub selects channels-redis' pub/sub layer (see README, "Several workers").
    _pubsub = os.environ.get("CHANNEL_LAYER") == "pubsub"
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": f"channels_redis.{'pubsub.RedisPubSubChannelLayer' if _pubsub else 'core.RedisChannelLayer'}",
            "CONFIG": {
                # socket_timeout None: redis-py's 5 s read timeout equals the
                # layer's blocking wait and would close idle sockets (docs/architecture.md, "Hot paths").
                "hosts": [{"address": os.environ["REDIS_URL"], "socket_timeout": None}],
                "prefix": os.environ.get("CHANNEL_LAYER_PREFIX", "asgi"),
                **({} if _pubsub else {"capacity": 1000, "expiry": 60}),
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 10000}}}

ZOCKET = {}

AUTH_PASSWORD_VALIDATORS = []
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = os.environ.get("DJANGO_STATIC_ROOT") or BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "demo_project" / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# WhiteNoise serves static files on daphne's port: straight from the apps' static/
# folders with DEBUG (no collectstatic), from STATIC_ROOT without (scripts/demo collects).
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)-8s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    # Not propagated: daphne's command line gives the root logger a handler of its
    # own, and a propagated record would be printed by both (every line twice).
    "loggers": {"zocket_django": {"handlers": ["console"], "level": "INFO", "propagate": False}},
}
