"""Recorded patches through the real application: what subscribers get for each kind of change.

tests/settings.py turns ``VERIFY_PATCHES`` on, and tests/conftest.py fails a
test whose recorded patches differ from a full diff.
"""

from zocket_django import hot_actors
from zocket_django.patches import apply


async def patches(client, actor_id):
    return (await client.next_patch("kanban", actor_id))["patches"]


async def test_handlers_changes_arrive_as_the_patches_of_those_changes(connect):
    client = await connect()
    assert await client.subscribe_state("kanban", "k") == ({"cards": [], "votes": {}}, 0)
    for text in ("a", "b", "c"):
        await client.call("kanban", "k", "add", text=text)
    assert await patches(client, "k") == [{"op": "add", "path": "/cards/0", "value": {"text": "a", "tags": []}}]
    await patches(client, "k")
    await patches(client, "k")

    assert await client.call("kanban", "k", "vote", key="x") == 2  # in a thread
    assert await patches(client, "k") == [
        {"op": "add", "path": "/votes/x", "value": 1},
        {"op": "replace", "path": "/votes/x", "value": 2},
    ]

    await client.call("kanban", "k", "tag", index=2, tag="t")  # the card moved to index 1 meanwhile
    assert await patches(client, "k") == [
        {"op": "remove", "path": "/cards/0"},
        {"op": "add", "path": "/cards/1/tags/0", "value": "t"},
    ]

    await client.call("kanban", "k", "keep", index=0)
    assert await client.nothing_more() == []
    await client.call("kanban", "k", "add", text="d")
    await patches(client, "k")
    await client.call("kanban", "k", "edit_kept", text="kept")  # a reference from an earlier step
    assert await patches(client, "k") == [{"op": "replace", "path": "/cards/0/text", "value": "kept"}]


async def test_a_failing_step_is_undone_from_the_record(connect):
    client = await connect()
    await client.call("kanban", "f", "add", text="a")
    await client.call("kanban", "f", "add", text="b")
    state, version = await client.subscribe_state("kanban", "f")
    frame = await client.call_raw("kanban", "f", "tag_and_fail", index=1, tag="t")
    assert frame["code"] == "handler_error"
    assert await client.nothing_more() == []
    live = hot_actors.get("kanban", "f").state
    assert live.model_dump(mode="json") == state == {"cards": [{"text": "a", "tags": []}, {"text": "b", "tags": []}],
                                                     "votes": {}}  # fmt: skip
    # The undone state is recorded as before: the next change is one small patch.
    await client.call("kanban", "f", "tag", index=1, tag="u")
    assert await patches(client, "f") == [
        {"op": "remove", "path": "/cards/0"},
        {"op": "add", "path": "/cards/0/tags/0", "value": "u"},
    ]
    assert (await client.subscribe_state("kanban", "f"))[1] == version + 1


async def test_replacing_the_state_is_diffed_whole(connect):
    client = await connect()
    await client.call("kanban", "r", "add", text="a")
    await client.call("kanban", "r", "vote", key="x")
    await client.subscribe_state("kanban", "r")
    await client.call("kanban", "r", "replace_all", texts=["a", "z"])
    assert await patches(client, "r") == [{"op": "add", "path": "/cards/1", "value": {"text": "z", "tags": []}}]
    await client.call("kanban", "r", "tag", index=1, tag="t")
    assert await patches(client, "r") == [
        {"op": "remove", "path": "/cards/0"},
        {"op": "add", "path": "/cards/0/tags/0", "value": "t"},
    ]


async def test_a_long_queue_taken_from_the_front_arrives_as_removals(connect, settings):
    """The dump counts the first items of a long list as removed and cuts them out later
    (``tracking.fronts``): what subscribers get, snapshots and the live state stay the same."""
    settings.ZOCKET = {**settings.ZOCKET, "VERIFY_PATCHES": False}  # it reads the dump, cutting every step
    client = await connect()
    assert await client.call("kanban", "q", "fill", count=2300) == 2300
    queue = [f"c{i}" for i in range(2300)]
    state, version = await client.subscribe_state("kanban", "q")
    # Counted, a slot taken back after each; a snapshot cuts them. Then past 1,024 counted: cut, later ones pop.
    for shifts in ((600, 1, 400), (1030,)):
        for count in shifts:
            assert await client.call("kanban", "q", "shift", count=count) == queue[count - 1]
            del queue[:count]
            await client.call("kanban", "q", "unshift", text=f"back {count}")
            queue.insert(0, f"back {count}")
            version += 2
            state = apply(apply(state, await patches(client, "q")), await patches(client, "q"))
        assert [card["text"] for card in state["cards"]] == queue
        assert hot_actors.get("kanban", "q").state.model_dump(mode="json") == state
        assert await (await connect()).subscribe_state("kanban", "q") == (state, version)
