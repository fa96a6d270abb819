"""docs/install.md and docs/testing.md, followed as a new user would, so that they cannot drift.

The test builds the wheel, installs it into a fresh virtualenv, and walks
through the guides' code blocks in order, extracted from the documents (never
copied here):

- a block whose info string names a file (```` ```python file=chat/actors.py ````)
  writes that file; with ``append`` it adds to the file's end;
- a ```` ```console ```` block at the start of a line is a list of commands, run
  in the project with the virtualenv's executables; servers (``runserver``,
  ``daphne``) start in the background on a free port, which replaces the port
  the guide shows in every file and command.

Then it checks what the guide promises: the browser client at its static URL
from both servers, the guide's page sending a message in Chromium (when
Playwright and ``/usr/bin/chromium`` are there; required under CI=true), a
call from the shipped Python client (the guide's own ``call.py``), and the
guide's tests passing under ``manage.py test`` and pytest.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.live import IN_CI, free_port, wait_for_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
GUIDES = [ROOT / "docs" / "install.md", ROOT / "docs" / "testing.md"]
#: The ports the guides show, each replaced by a free one.
GUIDE_PORTS = ("8000", "8001")
STATIC_JS = "/static/zocket_django/zocket.js"
#: What the wheel's build does not need from the working tree.
BUILD_IGNORES = (
    ".git",
    ".venv*",
    "node_modules",
    "__pycache__",
    "*.egg-info",
    "build",
    "dist",
    "artifacts",
    ".hypothesis",
)


@dataclass
class Block:
    info: str
    text: str
    source: str

    @property
    def file(self) -> str | None:
        match = re.search(r"\bfile=(\S+)", self.info)
        return match.group(1) if match else None


def blocks(path: Path) -> Iterator[Block]:
    """The fenced blocks that start at the beginning of a line (indented ones are illustrations)."""
    for match in re.finditer(r"^```([^\n]*)\n(.*?)^```$", path.read_text(), re.DOTALL | re.MULTILINE):
        yield Block(match.group(1).strip(), match.group(2), f"{path.name}: ```{match.group(1).strip()}")


class Walkthrough:
    """A fresh virtualenv and project, driven by the guides."""

    def __init__(self, tmp: Path, wheel: Path) -> None:
        self.venv = tmp / "venv"
        self.project = tmp / "project"
        self.project.mkdir()
        self.wheel = wheel
        self.ports = {port: str(free_port()) for port in GUIDE_PORTS}
        self.servers: dict[str, subprocess.Popen[bytes]] = {}
        self.output: dict[str, str] = {}  # command line as the guide writes it -> what it printed
        self.logs = tmp / "logs"
        self.logs.mkdir()
        self.env = {
            k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "PYTHONPATH", "VIRTUAL_ENV")
        }
        self.env["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{self.env['PATH']}"
        self.env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
        # No pip of its own (ensurepip is the slowest part of a venv): this pip installs into it.
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(self.venv)], check=True, timeout=120)

    def ported(self, text: str) -> str:
        for guide, real in self.ports.items():
            text = re.sub(rf"(?<=[:\s]){guide}\b", real, text)
        return text

    def apply(self, block: Block) -> None:
        if block.file is not None:
            target = self.project / block.file
            target.parent.mkdir(parents=True, exist_ok=True)
            text = self.ported(block.text)
            if "append" in block.info.split():
                assert target.exists(), f"{block.source} appends to {block.file}, which does not exist yet"
                text = target.read_text() + "\n" + text
            target.write_text(text)
        elif block.info == "console":
            for line in block.text.splitlines():
                if line.strip() and not line.lstrip().startswith("#"):
                    self.command(line.strip(), block.source)

    def command(self, line: str, source: str) -> None:
        argv = shlex.split(self.ported(line))
        if argv[:2] == ["pip", "install"]:
            python = str(self.venv / "bin" / "python")
            argv = [sys.executable, "-m", "pip", "--python", python, "install", "-q", *map(self.package, argv[2:])]
        elif argv[0] in ("python", "django-admin", "pytest", "daphne"):
            argv[0] = str(self.venv / "bin" / argv[0])
        else:
            raise AssertionError(f"{source}: the test does not know how to run {line!r}")
        if "runserver" in argv or Path(argv[0]).name == "daphne":
            self.serve(argv, line)
        else:
            self.run(argv, line)

    def package(self, requirement: str) -> str:
        """``zocket-django[extras]`` is the wheel just built, with those extras."""
        name, _, extras = requirement.partition("[")
        return f"{self.wheel}[{extras}" if name == "zocket-django" else requirement

    def run(self, argv: list[str], line: str) -> None:
        result = subprocess.run(argv, cwd=self.project, env=self.env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"`{line}` failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        self.output[line] = result.stdout + result.stderr

    def serve(self, argv: list[str], line: str) -> None:
        if "runserver" in argv:
            argv.append("--noreload")  # one process, so that stopping it stops everything
        port = int(next(a for a in argv if a in self.ports.values()))
        log = (self.logs / f"{port}.log").open("wb")
        proc = subprocess.Popen(
            argv, cwd=self.project, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.servers[line] = proc
        try:
            wait_for_port(port, timeout=120, proc=proc)
        except Exception as exc:
            raise AssertionError(f"`{line}` did not start: {exc}\n{self.server_log(port)}") from exc

    def server_log(self, port: int) -> str:
        return (self.logs / f"{port}.log").read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        for proc in self.servers.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=30)


def send_from_the_browser(ports: list[int]) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for port in ports:
                page = browser.new_page()
                page.goto(f"http://127.0.0.1:{port}/", timeout=60_000)
                text = f"hello from the browser on {port}"
                page.fill("#text", text)
                page.click("button")
                page.wait_for_selector(f"li:has-text('{text}')", timeout=60_000)
        finally:
            browser.close()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from a copy of the sources: building writes ``*.egg-info`` next to them,
    which would register the pytest plugin for every later run from the repository."""
    source = tmp_path_factory.mktemp("source") / "zocket-django"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*BUILD_IGNORES))
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(source)],
        check=True,
        timeout=600,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    (built,) = dist.glob("zocket_django-*.whl")
    return built


def test_following_the_guides_from_startproject_to_a_tested_served_actor(tmp_path: Path, wheel: Path) -> None:
    walk = Walkthrough(tmp_path, wheel)
    try:
        applied = []
        for guide in GUIDES:
            for block in blocks(guide):
                walk.apply(block)
                applied.append(block.source)
        assert len([a for a in applied if "file=" in a]) >= 7, applied

        dev, production = (int(walk.ports[p]) for p in GUIDE_PORTS)
        assert [line.split()[0] for line in walk.servers] == ["python", "daphne"], walk.servers

        # The browser client, at the URL the guide gives, from both servers.
        for port in (dev, production):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{STATIC_JS}", timeout=60) as response:
                assert response.status == 200
                assert b"export function createClient" in response.read()

        # The guide's page, in a real browser, on each server: a message sent appears.
        if Path(CHROMIUM).exists() and importlib.util.find_spec("playwright") is not None:
            send_from_the_browser([dev, production])
        else:
            assert not IN_CI, f"CI=true needs {CHROMIUM} and Playwright for the guide's browser step"

        # The guide's call.py reached the running server with the shipped Python client.
        called = walk.output["python call.py"]
        assert "sent: {'user': " in called and "'text': 'hello from Python'" in called, called
        assert "messages: 1" in called, called

        # Its tests pass under both runners.
        assert "Ran 2 tests" in walk.output["python manage.py test chat"]
        assert re.search(r"\b3 passed\b", walk.output["pytest -q"]), walk.output["pytest -q"]
    finally:
        walk.stop()
