"""The hot actors' admin pages in headless Chromium, against a real daphne (issue #6).

Screenshots land in artifacts/screenshots/ for a person to look at.
"""

import uuid

import pytest

from tests.admin_live import PASSWORD, create_staff
from tests.live import ROOT, LiveClient, Worker, migrate

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SHOTS = ROOT / "artifacts" / "screenshots"


@pytest.fixture
def worker(tmp_path):
    env = {  # one process, the in-memory layer
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "REDIS_URL": "",
        "ZOCKET_JSON": "{}",
        "DJANGO_DEBUG": "1",  # the admin's static files, served by the demo's urls
    }
    migrate(env)
    create_staff(env, "ops")
    w = Worker(env, tmp_path, f"browser-{uuid.uuid4().hex[:6]}").start()
    yield w
    w.stop()


async def test_staff_watch_a_hot_actor_live_and_deactivate_it(worker, browser):
    from playwright.async_api import expect

    SHOTS.mkdir(parents=True, exist_ok=True)
    base = f"http://127.0.0.1:{worker.port}"
    alice, bob = await LiveClient.connect(worker.url), await LiveClient.connect(worker.url)
    await alice.subscribe_state("chat", "lobby")
    await alice.subscribe_events("chat", "lobby")
    await bob.call("chat", "lobby", "send", text="Hello from Bob")
    await alice.call("chat", "lobby", "send", text="Hi Bob!")
    for n, actor_id in enumerate(["main", "visits", "votes"]):
        await bob.call("counter", actor_id, "add", amount=n * 7 + 1)
    await bob.call("lab", "kitchen", "add_item", text="taste the soup")

    page = await browser.new_page(viewport={"width": 1440, "height": 900})
    await page.goto(base + "/admin/login/?next=/admin/")
    await page.fill("#id_username", "ops")
    await page.fill("#id_password", PASSWORD)
    await page.click("input[type=submit]")
    await page.wait_for_url(base + "/admin/")
    await expect(page.locator("#content-main")).to_contain_text("Hot actors")
    await page.screenshot(path=SHOTS / "admin-index.png", full_page=True)

    await page.click("text=Hot actors")
    await expect(page.locator("#result_list tbody tr")).to_have_count(5)
    await expect(page.locator("#changelist-filter")).to_contain_text("counter (3)")
    await expect(page.locator(".paginator")).to_contain_text("5 hot actors on 1 worker")
    await page.screenshot(path=SHOTS / "hot-actors-list.png", full_page=True)

    await page.click("#result_list >> text=lobby")
    state = page.locator("#zocket-state")
    await expect(state).to_contain_text("Hi Bob!")
    await expect(page.locator("#zocket-clients tr")).to_have_count(2)
    # Live: a new message shows up without reloading the page.
    await bob.call("chat", "lobby", "send", text="Is this live?")
    await expect(state).to_contain_text("Is this live?", timeout=5000)
    await expect(page.locator("#zocket-live")).to_contain_text("live: updated at")
    await expect(page.locator("#zocket-recent")).to_contain_text("send")
    await page.screenshot(path=SHOTS / "hot-actor-detail.png", full_page=True)

    await page.click(".submit-row >> text=Deactivate")
    await expect(page.locator("#content")).to_contain_text("Are you sure you want to deactivate")
    await page.screenshot(path=SHOTS / "hot-actor-confirm.png", full_page=True)
    await page.click("input[type=submit]")
    await expect(page.locator(".messagelist")).to_contain_text("“chat / lobby” was deactivated")
    await expect(page.locator("#result_list tbody tr")).to_have_count(4)
    await page.screenshot(path=SHOTS / "hot-actors-after-deactivate.png", full_page=True)
    for c in (alice, bob):
        await c.close()
