"""Real services the suite may need: use them when there, skip visibly when not, fail under CI.

DESIGN.md: tests that need Redis, PostgreSQL or Chromium run when the service
is there and are skipped with a visible reason when it is not, except under
``CI=true``, where a missing service fails the run.
"""

from __future__ import annotations

import os
from urllib.parse import urlparse

import pytest


def in_ci() -> bool:
    return os.environ.get("CI") == "true"


def postgres_url() -> str | None:
    """``DATABASE_URL`` when it names PostgreSQL (the suite then runs on it)."""
    url = os.environ.get("DATABASE_URL") or ""
    return url if urlparse(url).scheme in ("postgres", "postgresql") else None


def postgres_problem(url: str, timeout: float = 3.0) -> str | None:
    """Why PostgreSQL at ``url`` cannot be used, or ``None`` when it answers."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install -r requirements-dev.txt)"
    parsed = urlparse(url)
    try:
        # The maintenance database: pytest-django creates test_<name> itself.
        with psycopg.connect(
            host=parsed.hostname or "localhost",
            port=parsed.port or 5432,
            user=parsed.username or None,
            password=parsed.password or None,
            dbname="postgres",
            connect_timeout=max(1, int(timeout)),
        ):
            return None
    except Exception as exc:  # any failure to connect means "not available"
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"


def unavailable(service: str, reason: str) -> None:
    """Skip the current test (or, under ``CI=true``, fail it) because ``service`` is missing."""
    message = f"{service} is not available: {reason}"
    if in_ci():
        pytest.fail(f"{message} (CI=true: a missing service fails the run)", pytrace=False)
    pytest.skip(message)
