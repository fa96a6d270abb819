"""The demo's settings for live-server tests; ``ZOCKET_JSON`` overrides ``ZOCKET``."""

import json
import os

from demo_project.settings import *  # noqa: F403
from demo_project.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "tests.testapp"]
ZOCKET = json.loads(os.environ.get("ZOCKET_JSON", "{}"))
