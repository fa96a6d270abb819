"""The demo in a real browser: what a newcomer sees on each page, and that it stays live."""

from __future__ import annotations

import re
import signal
from typing import Any

import pytest

from tests.live import Worker

from .conftest import base_url, demo_env, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def expect(target: Any) -> Any:
    from playwright.async_api import expect

    return expect(target)


def number(text: str) -> int:
    """``1,234 B`` -> 1234"""
    return int(re.sub(r"\D", "", text))


async def test_counter_windows_see_each_others_clicks(browser, demo, windows):
    a = await windows.open(demo, "/counter/")
    b = await windows.open(demo, "/counter/")
    await a.click("#reset")
    await expect(a.locator("#count")).to_have_text("0")
    await expect(b.locator("#count")).to_have_text("0")

    await a.click("#increment")
    await expect(b.locator("#count")).to_have_text("1")
    await b.fill("#amount", "41")
    await b.click("#add")
    await expect(a.locator("#count")).to_have_text("42")

    await a.fill("#amount", "1.5")  # not an int: refused by the server, nothing changes
    await a.click("#add")
    await expect(a.locator("#error")).not_to_be_empty()
    await expect(b.locator("#count")).to_have_text("42")

    await b.click("#reset")
    await expect(a.locator("#count")).to_have_text("0")
    await expect(a.locator("#reset-notice")).to_contain_text("Reset by another window")
    await expect(b.locator("#reset-notice")).to_contain_text("Reset by you")
    await a.fill("#amount", "7")
    await a.click("#add")
    await expect(b.locator("#count")).to_have_text("7")
    await expect(a.locator("#error")).to_be_empty()
    await screenshot(a, "counter")

    await a.context.set_offline(True)  # the browser says it is offline: the client waits for it
    await expect(a.locator("#connection")).to_have_attribute("data-status", "offline")
    await expect(a.locator("#connection-lost")).to_contain_text("You are offline")
    await b.click("#increment")
    await expect(b.locator("#count")).to_have_text("8")
    await a.context.set_offline(False)
    await expect(a.locator("#connection")).to_have_attribute("data-status", "connected")
    await expect(a.locator("#connection-lost")).to_be_hidden()
    await expect(a.locator("#count")).to_have_text("8")


async def test_chat_messages_and_presence_in_both_windows(browser, demo, windows):
    alice = await windows.open(demo, "/chat/", user="alice")
    bob = await windows.open(demo, "/chat/", user="bob")
    for page in (alice, bob):
        await expect(page.locator("#people .name", has_text="alice")).to_have_count(1)
        await expect(page.locator("#people .name", has_text="bob")).to_have_count(1)
    await expect(alice.locator("#people li", has_text="alice")).to_contain_text("(you)")

    await alice.fill("#text", "Hi Bob! Are the actors hot today?")
    await alice.press("#text", "Enter")
    last = bob.locator("#messages li").last
    await expect(last.locator(".who")).to_have_text("alice")
    await expect(last.locator(".text")).to_have_text("Hi Bob! Are the actors hot today?")
    await expect(alice.locator("#text")).to_have_value("")

    await bob.fill("#text", "Piping hot, and one at a time.")
    await bob.click("#send button")
    last = alice.locator("#messages li").last
    await expect(last.locator(".who")).to_have_text("bob")
    await expect(last).not_to_have_class("mine")
    await expect(alice.locator("#messages li.mine").last.locator(".text")).to_have_text(
        "Hi Bob! Are the actors hot today?"
    )

    second_bob = await windows.open(demo, "/chat/", user="bob")
    await expect(alice.locator("#people li", has_text="bob")).to_contain_text("2 windows")
    await expect(second_bob.locator("#messages")).to_contain_text("Piping hot")
    await screenshot(alice, "chat")

    await bob.context.close()
    await second_bob.context.close()
    await expect(alice.locator("#people .name", has_text="bob")).to_have_count(0)
    await expect(alice.locator("#online-count")).to_have_text("1")


async def test_logging_in_changes_the_user_on_messages(browser, demo, windows):
    page = await windows.open(demo, "/chat/")
    await expect(page.locator(".hint")).to_contain_text("You are a guest")
    client_id = await page.evaluate("async () => (await import('/static/demo/client.js')).client.connection.clientId")
    await page.fill("#text", "hello from a guest")
    await page.press("#text", "Enter")
    mine = page.locator("#messages li.mine").last
    await expect(mine.locator(".text")).to_have_text("hello from a guest")
    await expect(mine.locator(".who")).to_have_text(client_id)

    await page.click(".hint a")  # "Log in", back to the chat afterwards
    await page.fill("#id_username", "bob")
    await page.fill("#id_password", "demo")
    await screenshot(page, "login")
    await page.click("button[type=submit]")
    await expect(page).to_have_url(f"{base_url(demo)}/chat/")
    await expect(page.locator("#username")).to_have_text("bob")
    await expect(page.locator(".hint")).to_have_count(0)
    await expect(page.locator("#connection")).to_have_attribute("data-status", "connected")

    await page.fill("#text", "hello, now signed in")
    await page.press("#text", "Enter")
    mine = page.locator("#messages li.mine").last
    await expect(mine.locator(".text")).to_have_text("hello, now signed in")
    await expect(mine.locator(".who")).to_have_text("bob")
    guest_message = page.locator("#messages li", has_text="hello from a guest")
    await expect(guest_message.locator(".who")).to_have_text(client_id)

    await page.click("text=Log out")
    await expect(page).to_have_url(f"{base_url(demo)}/")
    await expect(page.locator(".account")).to_contain_text("Log in")


async def test_board_survives_a_reload_and_sends_small_patches(browser, demo, windows):
    page = await windows.open(demo, "/board/", user="alice")
    other = await windows.open(demo, "/board/")
    todos = ["Water the plants", "Read docs/architecture.md", "Try the demo in two windows", "Buy milk"]
    for text in todos:
        await page.fill("#text", text)
        await page.press("#text", "Enter")
        await expect(other.locator("#todos li", has_text=text)).to_have_count(1)
    await page.locator("#todos li", has_text="Water the plants").locator("input").check()
    await expect(other.locator("#todos li.done")).to_have_text("Water the plants" + "alice✕")
    await other.locator("#todos li", has_text="Buy milk").locator("button").click()
    await expect(page.locator("#todos li", has_text="Buy milk")).to_have_count(0)
    await expect(page.locator("#todos li")).to_have_count(3)
    await expect(page.locator("#patch")).to_contain_text('"op":"remove"')
    assert (
        0
        < number(await page.locator("#patch-bytes").text_content())
        < number(await page.locator("#state-bytes").text_content())
    )
    await other.fill("#text", "Tell bob about zocket")
    await other.press("#text", "Enter")
    await expect(page.locator("#todos li").last).to_contain_text("guest")
    await expect(page.locator("#patch")).to_contain_text('"op":"add"')
    for text in ["Log in as bob in another window", "Open the admin's hot actors", "Restart the server"]:
        await page.fill("#text", text)
        await page.press("#text", "Enter")
        await expect(other.locator("#todos li", has_text=text)).to_have_count(1)
    await other.locator("#todos li", has_text="Read docs").locator("input").check()
    await expect(page.locator("#patch")).to_have_text('{"op":"replace","path":"/items/1/done","value":true}')
    await other.locator("#todos li", has_text="Read docs").locator("input").uncheck()
    await expect(page.locator("#patch")).to_have_text('{"op":"replace","path":"/items/1/done","value":false}')
    assert number(await page.locator("#patch-bytes").text_content()) * 3 < number(
        await page.locator("#state-bytes").text_content()
    )
    await screenshot(page, "board", full_page=True)

    await page.reload()
    await expect(page.locator("#connection")).to_have_attribute("data-status", "connected")
    await expect(page.locator("#todos .text")).to_have_text(
        [
            "Water the plants",
            "Read docs/architecture.md",
            "Try the demo in two windows",
            "Tell bob about zocket",
            "Log in as bob in another window",
            "Open the admin's hot actors",
            "Restart the server",
        ]
    )
    await expect(page.locator("#todos li", has_text="Water the plants").locator("input")).to_be_checked()
    await expect(page.locator("#todos li.done")).to_have_count(1)


async def test_home_page_shows_live_values_and_links(browser, demo, windows):
    page = await windows.open(demo, "/")
    await expect(page.locator("#count")).to_have_text(re.compile(r"^\d+$"))
    await expect(page.locator("#items")).to_have_text(re.compile(r"^\d+$"))
    for link in ["/counter/", "/chat/", "/board/", "/admin/", "/admin/zocket_django/hotactor/"]:
        assert await page.locator(f'a[href="{link}"]').count() >= 1, link
    await screenshot(page, "home")
    css = await page.request.get(f"{base_url(demo)}/static/admin/css/base.css")
    assert css.ok

    admin = await windows.open(demo, "/", user="alice")
    await admin.goto(f"{base_url(demo)}/admin/zocket_django/hotactor/")
    await expect(admin.locator("#content")).to_contain_text("counter")
    await expect(admin.locator("#content")).to_contain_text("board")
    await screenshot(admin, "admin")


async def test_restarting_the_server_reconnects_to_the_same_state(browser, windows, tmp_path):
    worker = Worker(demo_env(tmp_path), tmp_path, "daphne").start()
    try:
        page = await windows.open(worker, "/board/")
        await page.fill("#text", "survive a restart")
        await page.press("#text", "Enter")
        await expect(page.locator("#todos .text")).to_have_text(["survive a restart"])
        counter = await windows.open(worker, "/counter/")
        await counter.fill("#amount", "5")
        await counter.click("#add")
        await counter.click("#increment")
        await expect(counter.locator("#count")).to_have_text("6")
        for p in (page, counter):
            await p.evaluate("window.sameDocument = true")

        worker.kill(signal.SIGTERM)  # as Ctrl-C on scripts/demo
        for p in (page, counter):
            await expect(p.locator("#connection")).to_have_attribute("data-status", "reconnecting")
            await expect(p.locator("#connection")).to_have_text("reconnecting")
            await expect(p.locator("#connection-lost")).to_contain_text("Reconnecting")
        await expect(counter.locator("#count")).to_have_text("6")  # the last state the server sent
        await screenshot(page, "reconnecting")

        worker.start()  # the same port and database
        for p in (page, counter):
            await expect(p.locator("#connection")).to_have_attribute("data-status", "connected", timeout=30_000)
            assert await p.evaluate("window.sameDocument") is True  # no reload happened
            await expect(p.locator("#connection-lost")).to_be_hidden()
        # The board's rows and the counter's snapshot (Persist.WRITE_THROUGH) came back from the database.
        await expect(page.locator("#todos .text")).to_have_text(["survive a restart"])
        await expect(counter.locator("#count")).to_have_text("6")
        await page.fill("#text", "and carry on")
        await page.press("#text", "Enter")
        await expect(page.locator("#todos .text")).to_have_text(["survive a restart", "and carry on"])
        await counter.click("#increment")
        await expect(counter.locator("#count")).to_have_text("7")
    finally:
        worker.stop()
