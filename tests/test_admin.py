"""The admin's hot actors (issue #6), through Django's async test client.

The admin and the WebSocket clients run in the test's event loop, as they run
in daphne's: the admin's sync views ask the node of that loop.
"""

import re

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import Permission, User
from django.test import AsyncClient, Client

from tests.testapp import actors as lab
from zocket_django import hot_actors
from zocket_django.admin_hot_actors import hot_actor_url

pytestmark = pytest.mark.django_db(transaction=True)

LIST = "/admin/zocket_django/hotactor/"
INVENTORY = LIST + "inventory.json"


@sync_to_async
def make_user(username, *, staff=True, perms=()):
    user = User.objects.create_user(username, password="pw", is_staff=staff)
    for codename in perms:
        user.user_permissions.add(Permission.objects.get(content_type__app_label="zocket_django", codename=codename))
    return user


async def client_for(user):
    client = AsyncClient()
    await client.aforce_login(user)
    return client


@pytest.fixture
async def viewer():
    return await client_for(await make_user("viewer", perms=["view_hotactor"]))


@pytest.fixture
async def operator():
    return await client_for(await make_user("operator", perms=["view_hotactor", "change_hotactor"]))


async def activate_some(connect):
    """chat/lobby with two clients (one subscribed to state and events), two counters."""
    a, b = await connect(), await connect()
    await a.subscribe_state("chat", "lobby")
    await a.subscribe_events("chat", "lobby")
    await b.call("chat", "lobby", "send", text="hello")
    await b.call("counter", "one", "increment")
    await b.call("counter", "two", "add", amount=5)
    await b.call("counter", "two", "increment")
    return a, b


def by_key(instances):
    return {(i["actor"], i["actor_id"]): i for i in instances}


# -- who may look ------------------------------------------------------------------


async def test_anonymous_and_non_staff_users_are_sent_to_the_login(connect):
    await activate_some(connect)
    anonymous = AsyncClient()
    non_staff = await client_for(await make_user("plain", staff=False, perms=["view_hotactor", "change_hotactor"]))
    for client in (anonymous, non_staff):
        for url in (LIST, INVENTORY, hot_actor_url("chat", "lobby"), hot_actor_url("chat", "lobby") + "live.json"):
            response = await client.get(url)
            assert response.status_code == 302, url
            assert response["Location"].startswith("/admin/login/")
        response = await client.post(hot_actor_url("chat", "lobby") + "deactivate/", {"post": "yes"})
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    assert hot_actors.get("chat", "lobby") is not None


async def test_staff_without_the_permission_is_refused(connect):
    await activate_some(connect)
    client = await client_for(await make_user("staff"))
    for url in (LIST, INVENTORY, hot_actor_url("chat", "lobby"), hot_actor_url("chat", "lobby") + "live.json"):
        assert (await client.get(url)).status_code == 403, url
    assert (await client.post(hot_actor_url("chat", "lobby") + "deactivate/", {"post": "yes"})).status_code == 403
    index = await client.get("/admin/")
    assert "Hot actors" not in index.content.decode()
    assert hot_actors.get("chat", "lobby") is not None


async def test_viewers_see_the_entry_but_may_not_act(connect, viewer):
    await activate_some(connect)
    index = (await viewer.get("/admin/")).content.decode()
    assert "Zocket" in index and f'href="{LIST}"' in index
    detail = (await viewer.get(hot_actor_url("chat", "lobby"))).content.decode()
    assert "deactivate/" not in detail  # no action buttons
    for action in ("deactivate", "destroy"):
        url = hot_actor_url("chat", "lobby") + f"{action}/"
        assert (await viewer.get(url)).status_code == 403
        assert (await viewer.post(url, {"post": "yes"})).status_code == 403
    bulk = await viewer.post(LIST, {"action": "deactivate", "_selected_action": "chat/lobby", "post": "yes"})
    assert bulk.status_code == 403
    assert hot_actors.get("chat", "lobby") is not None


# -- what they see ------------------------------------------------------------------------


async def test_inventory_lists_every_instance_with_its_counts(connect, viewer):
    await activate_some(connect)
    data = (await viewer.get(INVENTORY)).json()
    assert data["problem"] is None
    [worker] = data["workers"]
    assert worker["answered"] is True and worker["instances"] == 3
    found = by_key(data["instances"])
    assert set(found) == {("chat", "lobby"), ("counter", "one"), ("counter", "two")}
    lobby = found["chat", "lobby"]
    assert lobby["clients"] == 2
    assert lobby["state_subscribers"] == 1
    assert lobby["event_subscribers"] == 1
    assert lobby["queued"] == 0
    assert lobby["worker"] == worker["channel"]
    assert lobby["persist"] == "on_deactivate"  # the demo chat saves when it deactivates
    assert lobby["version"] >= 3  # a joined, b joined, b sent
    assert found["counter", "one"]["clients"] == 1 and found["counter", "one"]["state_subscribers"] == 0
    assert found["counter", "two"]["version"] == 2
    assert lobby["activated_at"] <= lobby["last_activity"]


async def test_list_page_sorts_filters_searches_and_counts(connect, viewer):
    await activate_some(connect)
    await (await connect()).call("counter", "three", "increment")
    page = (await viewer.get(LIST)).content.decode()
    assert "4 hot actors on 1 worker: chat 1, counter 3" in page
    assert "chat (1)" in page and "counter (3)" in page  # totals per actor name in the filter
    assert ids_in(page) == ["lobby", "one", "three", "two"]  # by actor, then id

    counters = (await viewer.get(LIST, {"actor": "counter"})).content.decode()
    assert ids_in(counters) == ["one", "three", "two"]
    assert "3 results" in counters and "4 total" in counters

    assert ids_in((await viewer.get(LIST, {"q": "T"})).content.decode()) == ["three", "two"]
    assert ids_in((await viewer.get(LIST, {"o": "-version"})).content.decode())[0] == "lobby"
    by_version = ids_in((await viewer.get(LIST, {"o": "version", "actor": "counter"})).content.decode())
    assert by_version[-1] == "two"  # version 2, the others 1
    assert ids_in((await viewer.get(LIST, {"o": "-clients", "actor": "chat"})).content.decode()) == ["lobby"]


def ids_in(page):
    return re.findall(r'<td class="field-actor_id"><a href="[^"]+">([^<]+)</a></td>', page)


async def test_detail_page_shows_state_clients_and_recent_steps(connect, viewer):
    a, b = await activate_some(connect)
    page = (await viewer.get(hot_actor_url("chat", "lobby"))).content.decode()
    assert "&quot;text&quot;: &quot;hello&quot;" in page  # pretty JSON, escaped
    assert a.client_id in page and b.client_id in page
    assert "event, state" in page  # a's subscriptions
    assert "on_connect" in page and ">send<" in page  # recent steps
    assert "live.json" in page


async def test_live_json_follows_the_state(connect, viewer):
    _, b = await activate_some(connect)
    url = hot_actor_url("counter", "two") + "live.json"
    first = (await viewer.get(url)).json()
    assert first["hot"] is True and first["version"] == 2
    assert '"count": 6' in first["state"]
    await b.call("counter", "two", "add", amount=10)
    second = (await viewer.get(url)).json()
    assert second["version"] == 3 and '"count": 16' in second["state"]
    assert second["recent"][0][1] == "add" and second["recent"][0][3] == "ok"
    fields = {key: value for key, _, value in second["fields"]}
    assert fields["clients"] == "1" and fields["persist"] == "write_through"  # the demo counter


async def test_failed_steps_show_in_recent_activity(connect, viewer):
    client = await connect()
    await client.call_raw("lab", "oops", "refuse", why="no")
    await client.call_raw("lab", "oops", "fail_after_change")
    data = (await viewer.get(hot_actor_url("lab", "oops") + "live.json")).json()
    outcomes = [(row[1], row[3]) for row in data["recent"]]
    assert outcomes == [("fail_after_change", "RuntimeError"), ("refuse", "not_today"), ("on_activate", "ok")]
    assert data["version"] == 1  # on_activate's change; the failed steps were rolled back


async def test_ids_with_any_character_have_working_pages(connect, viewer):
    odd = "a/b?c#d_e:f %"
    await (await connect()).call("counter", odd, "increment")
    url = hot_actor_url("counter", odd)
    assert "/" not in url.removeprefix(LIST + "counter/").rstrip("/")
    assert (await viewer.get(url + "live.json")).json()["hot"] is True
    assert odd in (await viewer.get(LIST)).content.decode().replace("&#x27;", "'")


async def test_a_cold_instance_says_so(viewer):
    page = await viewer.get(hot_actor_url("counter", "nobody"))
    assert page.status_code == 200
    assert "This instance is not hot" in page.content.decode()
    assert (await viewer.get(hot_actor_url("counter", "nobody") + "live.json")).json() == {
        "hot": False,
        "problem": None,
    }


# -- actions ----------------------------------------------------------------------------------


async def test_deactivate_asks_first_then_runs_on_deactivate(connect, operator):
    client = await connect()
    await client.call("lab", "bye", "add_item", text="x")
    url = hot_actor_url("lab", "bye") + "deactivate/"
    confirm = await operator.get(url)
    assert confirm.status_code == 200
    assert "Are you sure you want to deactivate this hot actor?" in confirm.content.decode()
    assert hot_actors.get("lab", "bye") is not None  # nothing happened yet
    lab.DEACTIVATED.clear()
    done = await operator.post(url, {"post": "yes"})
    assert done.status_code == 302 and done["Location"] == LIST
    assert hot_actors.get("lab", "bye") is None
    assert lab.DEACTIVATED == ["bye"]
    page = (await operator.get(LIST)).content.decode()
    assert "The hot actor “lab / bye” was deactivated." in page
    # The client is still connected; its next call activates a fresh instance.
    assert await client.call("lab", "bye", "noop") == 0


async def test_deactivate_saves_a_persisting_actor(connect, operator):
    """Runs against whatever persistence the counter declares: none today, saved state once merged."""
    client = await connect()
    await client.call("counter", "kept", "add", amount=41)
    persist = (await operator.get(INVENTORY)).json()["instances"][0]["persist"]
    await operator.post(hot_actor_url("counter", "kept") + "deactivate/", {"post": "yes"})
    assert hot_actors.get("counter", "kept") is None
    # TODO(lead, after merging persistence): give the counter (or a test actor) a persist mode,
    # so that this test checks that the admin's deactivation saved it.
    assert await client.call("counter", "kept", "increment") == (1 if persist is None else 42)


async def test_destroy_and_bulk_actions(connect, operator):
    await activate_some(connect)
    destroyed = await operator.post(hot_actor_url("counter", "one") + "destroy/", {"post": "yes"})
    assert destroyed.status_code == 302
    assert hot_actors.get("counter", "one") is None

    selection = {"action": "deactivate", "_selected_action": ["chat/lobby", "counter/two"]}
    confirm = await operator.post(LIST, selection)
    assert confirm.status_code == 200
    text = confirm.content.decode()
    assert "Are you sure you want to deactivate these hot actors?" in text
    assert "chat / lobby" in text and "counter / two" in text
    assert hot_actors.count() == 2
    done = await operator.post(LIST, {**selection, "post": "yes"})
    assert done.status_code == 302
    assert hot_actors.count() == 0
    again = await operator.post(LIST, {**selection, "post": "yes"}, follow=True)
    assert "The hot actor “chat / lobby” was not hot any more." in again.content.decode()


async def test_an_action_without_a_selection_does_nothing(connect, operator):
    await activate_some(connect)
    response = await operator.post(LIST, {"action": "deactivate"}, follow=True)
    assert "Items must be selected" in response.content.decode()
    assert hot_actors.count() == 3


# -- not served by ASGI -----------------------------------------------------------------------------


def test_without_asgi_the_pages_say_there_is_no_node():
    user = User.objects.create_user("wsgi", password="pw", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(user)
    page = client.get(LIST)
    assert page.status_code == 200
    assert "not served by the ASGI server that runs the actors" in page.content.decode()
    assert client.get(INVENTORY).json()["problem"].startswith("This page is not served")


# -- helpers for other admin pages --------------------------------------------------------------------


async def test_hot_instances_for_links_from_other_pages(connect):
    from zocket_django.admin_hot_actors import hot_instances

    await activate_some(connect)
    assert await sync_to_async(hot_instances)() == {("chat", "lobby"), ("counter", "one"), ("counter", "two")}


def test_hot_instances_without_a_node_is_none():
    from zocket_django.admin_hot_actors import hot_instances

    assert hot_instances() is None


@pytest.mark.parametrize(
    ("declared", "shown"),
    [
        (None, None),
        (False, None),
        ("none", None),
        ("write_through", "write_through"),
        ("on_deactivate", "on_deactivate"),
    ],
)
def test_persistence_mode_is_read_defensively(declared, shown):
    import enum
    from types import SimpleNamespace

    from zocket_django.ops import persistence_mode

    def instance(value):
        return SimpleNamespace(spec=SimpleNamespace(cls=type("A", (), {"persist": value})))

    assert persistence_mode(instance(declared)) == shown
    assert persistence_mode(SimpleNamespace(spec=SimpleNamespace(cls=object))) is None
    if isinstance(declared, str):
        mode = enum.Enum("Mode", {"X": declared})
        assert persistence_mode(instance(mode.X)) == shown
