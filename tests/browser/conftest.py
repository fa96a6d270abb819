"""Browser tests: Debian's Chromium, driven by Playwright, against the demo on a real daphne.

Chromium is never downloaded (no ``playwright install``): it is ``/usr/bin/chromium``
from apt (scripts/setup installs it under CI=true). Without it these tests are
skipped with the reason shown, except under CI=true, where they fail.
"""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.live import ROOT, Worker, manage, migrate, need

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1040, "height": 660}
SCREENSHOTS = ROOT / "artifacts" / "screenshots"


def demo_env(directory: Path, **more: str) -> dict[str, str]:
    """A fresh SQLite database, migrated, with the demo users in it; DEBUG on (static files without collectstatic)."""
    env = {"DATABASE_URL": f"sqlite:///{directory / 'db.sqlite3'}", "ZOCKET_JSON": "{}", "DJANGO_DEBUG": "1", **more}
    migrate(env)
    manage(env, "demo_users")
    return env


def base_url(worker: Worker) -> str:
    return f"http://127.0.0.1:{worker.port}"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    """The demo on one daphne, shared by a module's tests."""
    directory = tmp_path_factory.mktemp("demo")
    worker = Worker(demo_env(directory), directory, "daphne").start()
    yield worker
    worker.stop()


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    need("Playwright", importlib.util.find_spec("playwright") is not None, "pip install -r requirements-dev.txt")
    need("Chromium", Path(CHROMIUM).exists(), f"no {CHROMIUM}; apt-get install chromium")
    from playwright.async_api import async_playwright, expect

    expect.set_options(timeout=15_000)
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


class Windows:
    """Browser windows (one context each: their own cookies) on a demo server."""

    def __init__(self, browser: Any) -> None:
        self.browser = browser
        self.contexts: list[Any] = []
        self.errors: list[str] = []

    async def open(self, worker: Worker, path: str = "/", user: str | None = None) -> Any:
        """A page at ``path``, logged in as ``user`` first if given, once its socket is connected."""
        from playwright.async_api import expect

        context = await self.browser.new_context(viewport=VIEWPORT)
        self.contexts.append(context)
        page = await context.new_page()
        page.on("pageerror", lambda error: self.errors.append(f"{page.url}: {error}"))
        if user is not None:
            await log_in(page, worker, user, then=path)
        else:
            await page.goto(base_url(worker) + path)
        await expect(page.locator("#connection")).to_have_attribute("data-status", "connected")
        return page

    async def close(self) -> None:
        for context in self.contexts:
            await context.close()


async def log_in(page: Any, worker: Worker, user: str, then: str = "/") -> None:
    from playwright.async_api import expect

    await page.goto(f"{base_url(worker)}/accounts/login/?next={then}")
    await page.fill("#id_username", user)
    await page.fill("#id_password", "demo")
    await page.click("button[type=submit]")
    await expect(page.locator("#username")).to_have_text(user)


@pytest.fixture
async def windows(browser: Any) -> AsyncIterator[Windows]:
    opened = Windows(browser)
    yield opened
    await opened.close()
    assert not opened.errors, f"JavaScript errors: {opened.errors}"


async def screenshot(page: Any, name: str, full_page: bool = False) -> None:
    """Saved under artifacts/screenshots/ (ignored by git; docs/screenshots/ has the README's copies)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.mouse.move(0, VIEWPORT["height"] - 1)  # no hover effect in the picture
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=full_page)
