"""The demo on a 390x844 phone: every page fits, nothing is cut off or squeezed, and while the
connection is down the actions are visibly disabled and the page says why.

Screenshots of every page go to artifacts/screenshots/phone-*.png (look at them).
"""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import base_url, log_in, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PHONE = {"width": 390, "height": 844}


def expect(target: Any) -> Any:
    from playwright.async_api import expect

    return expect(target)


@pytest.fixture
async def phone(browser: Any, windows: Any) -> Any:
    """A page in a phone-sized, touch window (its JavaScript errors fail the test, as in ``windows``)."""
    context = await browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    windows.contexts.append(context)
    page = await context.new_page()
    page.on("pageerror", lambda error: windows.errors.append(f"{page.url}: {error}"))
    return page


async def open_page(page: Any, worker: Any, path: str) -> None:
    await page.goto(base_url(worker) + path)
    await expect(page.locator("#connection")).to_have_attribute("data-status", "connected")


async def fits(page: Any, name: str) -> None:
    """Nothing wider than the screen, every header item on it and none cut off; then the screenshot."""
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"{name}: the page is {width} px wide"
    for selector in (".brand", ".nav a", "#connection", ".account"):
        for box in [await item.bounding_box() for item in await page.locator(selector).all()]:
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], (
                name,
                selector,
                box,
            )
    clipped = await page.evaluate(
        "[...document.querySelectorAll('.topbar *')].filter((e) => e.scrollWidth > e.clientWidth + 1)"
        ".map((e) => e.className || e.tagName)"
    )
    assert clipped == [], f"{name}: cut off in the header: {clipped}"
    await screenshot(page, f"phone-{name}", full_page=True)


async def test_every_page_fits_a_phone(browser, demo, phone):
    await open_page(phone, demo, "/")
    await expect(phone.locator("#count")).not_to_have_text("…")
    await fits(phone, "home")

    await open_page(phone, demo, "/counter/")
    await phone.fill("#amount", "1.5")
    await phone.click("#add")
    # the refusal says why: the field and the problem, from the server's message
    await expect(phone.locator("#error")).to_contain_text("amount: Input should be a valid integer")
    await fits(phone, "counter")

    await open_page(phone, demo, "/board/")
    long = "Read every page of docs/architecture.md before the review on Thursday morning, twice"
    await phone.fill("#text", long)
    await phone.press("#text", "Enter")
    item = phone.locator("#todos li", has_text="Thursday")
    await expect(item).to_have_count(1)
    author = await item.locator(".by").bounding_box()
    line = await item.locator(".by").evaluate("e => parseFloat(getComputedStyle(e).lineHeight)")
    assert author["height"] < 1.5 * line, f"the author wraps: {author}"  # one line, not a letter per line
    assert author["width"] > 30, f"the author is squeezed: {author}"
    await fits(phone, "board")

    await open_page(phone, demo, "/chat/")
    await phone.fill("#text", "Hello from a phone, with a message long enough to wrap over a few lines")
    await phone.press("#text", "Enter")
    await expect(phone.locator("#messages li.mine")).to_have_count(1)
    await fits(phone, "chat")

    await phone.goto(f"{base_url(demo)}/accounts/login/?next=/")
    await fits(phone, "login")

    await log_in(phone, demo, "alice")  # staff: the admin's pages
    await fits(phone, "home-alice")
    for name, path in [("admin", "/admin/"), ("hot-actors", "/admin/zocket_django/hotactor/")]:
        await phone.goto(base_url(demo) + path)
        await expect(phone.locator("#content")).to_be_visible()
        await screenshot(phone, f"phone-{name}", full_page=True)
    await phone.locator("#result_list tr", has_text="counter").locator("a", has_text="main").click()  # one instance
    await expect(phone.locator("#content")).to_contain_text("Version")
    await screenshot(phone, "phone-hot-actor", full_page=True)


async def test_offline_actions_are_disabled_and_say_why(browser, demo, phone):
    await open_page(phone, demo, "/counter/")
    actions = ["#increment", "#add", "#reset", "#amount"]
    for selector in actions:
        await expect(phone.locator(selector)).to_be_enabled()

    await phone.context.set_offline(True)
    await expect(phone.locator("#connection")).to_have_attribute("data-status", "offline")
    for selector in actions:
        await expect(phone.locator(selector)).to_be_disabled()
    await expect(phone.locator("#connection-lost")).to_contain_text("You are offline")
    await expect(phone.locator("#connection-lost")).to_be_in_viewport()
    await fits(phone, "counter-offline")

    await phone.context.set_offline(False)
    await expect(phone.locator("#connection")).to_have_attribute("data-status", "connected")
    for selector in actions:
        await expect(phone.locator(selector)).to_be_enabled()
    await phone.click("#increment")
    await expect(phone.locator("#error")).to_be_empty()


@pytest.mark.parametrize(
    ("path", "actions"),
    [
        ("/board/", ["#text", "#add button", "#todos li input >> nth=0", "#todos li button >> nth=0"]),
        ("/chat/", ["#text", "#send button"]),
    ],
)
async def test_every_page_disables_its_actions_while_offline(browser, demo, phone, path, actions):
    await open_page(phone, demo, path)
    if path == "/board/":  # an item to toggle and remove
        await phone.fill("#text", "an item")
        await phone.press("#text", "Enter")
        await expect(phone.locator("#todos li input").first).to_be_visible()
    await phone.context.set_offline(True)
    await expect(phone.locator("#connection")).to_have_attribute("data-status", "offline")
    for selector in actions:
        await expect(phone.locator(selector)).to_be_disabled()
    await expect(phone.locator("#connection-lost")).to_contain_text("You are offline")
    await phone.context.set_offline(False)
    await expect(phone.locator("#connection")).to_have_attribute("data-status", "connected")
    for selector in actions:
        await expect(phone.locator(selector)).to_be_enabled()
