"""Settings for the test suite: the demo's apps plus actors written for tests."""

import os

from demo_project.settings import *  # noqa: F403
from demo_project.settings import INSTALLED_APPS, _database

INSTALLED_APPS = [*INSTALLED_APPS, "tests.testapp"]
# DATABASE_URL selects PostgreSQL (CI runs the suite on both); SQLite in memory otherwise.
DATABASES = {"default": _database(os.environ.get("DATABASE_URL") or "sqlite:///:memory:")}
CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 10000}}}
# VERIFY_PATCHES: every recorded step of every test is checked against a full dump.
ZOCKET = {"IDLE_TIMEOUT": 60.0, "VERIFY_PATCHES": True}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LOGGING = {"version": 1, "disable_existing_loggers": False}
WHITENOISE_USE_FINDERS = WHITENOISE_AUTOREFRESH = True  # static files without collectstatic, DEBUG or not
