"""The testing helpers behave like Django's own: every test starts from fresh actor state.

Each scenario runs in a subprocess (its own pytest, or Django's test runner) on
the suite's settings, with the plugin loaded as its entry point would load it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # four subprocess test runs

ROOT = Path(__file__).resolve().parents[1]
PROJECT = Path(__file__).parent / "helpers_project"
ORDERS = [
    [],  # file order
    [
        "test_sync_no_db",
        "test_failed_activation_raises_at_once",
        "test_plain_db_fresh",
        "test_no_db_after",
        "test_transactional_fresh",
        "test_db_user_and_durable",
        "test_sync_test_sees_a_clean_database",
        "test_the_same_user_again",
        "test_no_db_after",
    ],
]


def run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{cwd}", "DJANGO_SETTINGS_MODULE": "tests.settings"}
    environ.pop("CI", None)  # the suite's conftest is not loaded here; nothing to require
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env={**environ, **env}, capture_output=True, text=True, timeout=300
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    shutil.copy(PROJECT / "any_order.py", tmp_path / "test_any_order.py")
    (tmp_path / "runner_tests").mkdir()
    (tmp_path / "runner_tests" / "__init__.py").touch()
    shutil.copy(PROJECT / "django_runner.py", tmp_path / "runner_tests" / "test_runner.py")
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
    )
    return tmp_path


@pytest.mark.parametrize("order", ORDERS, ids=["file-order", "mixed-order"])
def test_pytest_tests_pass_in_any_order_and_mix_of_marks(project: Path, order: list[str]) -> None:
    selected = [f"test_any_order.py::{name}" for name in order] or ["test_any_order.py"]
    result = run(
        ["-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "zocket_django.pytest_plugin", *selected], project
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


def test_without_the_plugin_state_leaks_from_one_test_into_the_next(project: Path) -> None:
    """The scenario is a real one: without the plugin, the durable counter's snapshot survives."""
    result = run(["-m", "pytest", "-q", "-p", "no:cacheprovider", "test_any_order.py"], project)
    assert result.returncode == 1
    assert "test_transactional_fresh" in result.stdout


def test_django_test_runner_with_the_mixin(project: Path) -> None:
    result = run(["-m", "django", "test", "runner_tests", "-v", "2"], project)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Ran 3 tests" in result.stderr
