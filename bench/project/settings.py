"""Settings of the bench server: in-memory channel layer, or channels-redis with ``REDIS_URL``.

Nothing is persisted; the database is only there because ``AuthMiddlewareStack``
(used by zocket and by the raw baselines alike) resolves the anonymous user.
"""

import os

SECRET_KEY = "bench-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "zocket_django",
    "bench.project",
]

ROOT_URLCONF = "bench.project.urls"
ASGI_APPLICATION = "bench.project.asgi.application"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}

if os.environ.get("REDIS_URL"):
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # socket_timeout None: see docs/architecture.md ("Hot paths", redis-py 8).
                "hosts": [{"address": os.environ["REDIS_URL"], "socket_timeout": None}],
                "capacity": 1000,
                # Every run gets its own key prefix: others may use the same Redis.
                "prefix": os.environ.get("BENCH_REDIS_PREFIX", "zbench"),
            },
        }
    }
else:
    # As the demo: zocket sends one channel message per process, so its node
    # channel needs more than the default capacity of 100.
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 10000}}}

# Hot instances stay hot for the whole run (memory is measured with them); the
# clients send as fast as answers come back, which the per-connection budget
# would slow down to MESSAGE_RATE: the bench measures the server, not the limiter.
ZOCKET = {"IDLE_TIMEOUT": 3600.0, "MESSAGE_RATE": None, "BYTE_RATE": None}

USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"zocket_django": {"handlers": ["console"], "level": "WARNING"}},
}
