"""Messages between workers: one builder and parser each, a version, and nothing dropped silently.

The cross-worker tests play the other worker by hand on the in-memory layer:
the node's cluster is told that a worker listening on a channel of the test
owns the instance, so requests are forwarded there, and the test answers (or
asks) with messages of a previous release or forged ones.
"""

import asyncio
import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zocket_django import messages
from zocket_django.caller import Caller
from zocket_django.messages import (
    VERSION,
    Call,
    Deliver,
    Leave,
    OpsReply,
    OpsRequest,
    Reply,
    Request,
    Snapshot,
    Subscribe,
    Unreadable,
    Unsubscribe,
)
from zocket_django.node import get_node

text = st.text(max_size=20)
ticket = st.none() | st.integers(min_value=0, max_value=2**53)
callers = st.builds(
    Caller, text, text, st.none() | text, st.dictionaries(text, text, max_size=2), st.none(), st.just({})
)
ops = (
    st.builds(Call, text, st.none() | st.dictionaries(text, st.integers(), max_size=3), text)
    | st.builds(Subscribe, st.tuples(st.sampled_from(["state", "event"])), st.booleans(), st.booleans())
    | st.builds(Unsubscribe, text, text)
    | st.builds(Leave, text)
)
every_message = (
    st.builds(
        Deliver,
        text,
        st.sampled_from(["state", "event"]),
        text,
        st.none() | st.frozensets(text, max_size=3),
        st.frozensets(text, max_size=3),
        st.none() | text,
        st.none() | text,
    )
    | st.builds(Reply, text, text, ticket)
    | st.builds(Snapshot, text, text, text, ticket)
    | st.builds(Request, text, text, callers, ops, ticket, st.integers(min_value=0, max_value=3))
    | st.builds(OpsRequest, text, st.dictionaries(text, text, max_size=2), text, st.integers(min_value=0))
    | st.builds(OpsReply, st.integers(min_value=0), st.just(True), st.none() | st.integers())
    | st.builds(OpsReply, st.integers(min_value=0), st.just(False), st.none(), text)
)


def comparable(message):
    """A message with its caller's lazy user left out (it is never sent)."""
    if isinstance(message, Request) and message.caller is not None:
        message.caller.user = None
    return message


@given(every_message)
def test_every_message_parses_back_to_what_was_built(message):
    built = message.build()
    assert built["v"] == VERSION
    assert comparable(messages.parse(built)) == message


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"v": None}, "no version"),
        ({"v": VERSION + 1}, f"version {VERSION + 1}"),
        ({"v": True}, "version True"),
        ({"type": "zocket.nonsense"}, "unknown message type"),
        ({"frame": 3}, "frame must be a string"),
        ({"ticket": "7"}, "ticket must be an integer"),
    ],
)
def test_another_version_or_a_damaged_message_is_unreadable(change, reason):
    raw = {**Reply("c", "{}", 7).build(), **change}
    with pytest.raises(Unreadable, match=reason) as caught:
        messages.parse(raw)
    assert caught.value.remains.ticket == (7 if change.get("ticket") is None else None)


def test_a_call_without_a_caller_or_with_an_unknown_op_is_unreadable():
    call = Request("counter", "a", Caller("c", "n"), Call("increment", None, "1")).build()
    with pytest.raises(Unreadable, match="needs a caller"):
        messages.parse({**call, "caller": None})
    with pytest.raises(Unreadable, match="unknown op"):
        messages.parse({**call, "op": "explode"})
    with pytest.raises(Unreadable, match="not a mapping"):
        messages.parse(["zocket.reply"])


class OtherWorker:
    """A worker played by the test: the node believes it owns every instance."""

    def __init__(self, node, channel):
        self.node = node
        self.layer = node.layer
        self.channel = channel

    @classmethod
    async def install(cls, monkeypatch):
        node = await get_node()
        other = cls(node, await node.layer.new_channel(prefix="other"))

        async def owner(group, *, acquire):
            return other.channel

        async def holder(group):
            return other.channel

        monkeypatch.setattr(node.cluster, "owner", owner)
        monkeypatch.setattr(node.cluster, "holder", holder)
        return other

    async def receive(self):
        return await asyncio.wait_for(self.layer.receive(self.channel), 5)

    async def send(self, message):
        await self.layer.send(self.node.channel, message)


async def test_an_answer_from_a_worker_of_the_previous_version_fails_the_call_at_once(connect, monkeypatch, caplog):
    client = await connect()
    other = await OtherWorker.install(monkeypatch)
    caplog.set_level(logging.DEBUG, "zocket_django")
    for rpc_id in ("1", "2"):
        await client.send_json_to(
            {"type": "rpc", "id": rpc_id, "actor": "counter", "actorId": "a", "method": "increment"}
        )
        forwarded = await other.receive()
        assert forwarded["type"] == "zocket.request" and forwarded["v"] == VERSION
        # The previous release had no "v": its answer is refused, and the caller hears so.
        frame = f'{{"type":"rpc:result","id":"{rpc_id}","result":1}}'
        await other.send(
            {"type": "zocket.reply", "client": client.client_id, "frame": frame, "ticket": forwarded["ticket"]}
        )
        answer = await client.expect("rpc:result", id=rpc_id)
        assert answer["code"] == "unavailable" and "result" not in answer
        assert "cannot read" in answer["error"]
    refused = [r for r in caplog.records if "refused a zocket.reply" in r.getMessage()]
    assert [r.levelno for r in refused] == [logging.ERROR, logging.DEBUG]  # said once, clearly; then quietly
    assert "no version" in refused[0].getMessage()
    assert not (await get_node()).router.pending


async def test_a_request_of_the_previous_version_is_answered_unavailable(connect, monkeypatch):
    client = await connect()
    other = await OtherWorker.install(monkeypatch)
    # As the previous release forwarded a call: no "v".
    old = Request("counter", "b", Caller(client.client_id, other.channel), Call("increment", None, "9"), 41).build()
    del old["v"]
    await other.send(old)
    reply = await other.receive()
    assert reply["type"] == "zocket.reply" and reply["ticket"] == 41 and reply["client"] == client.client_id
    assert '"code":"unavailable"' in reply["frame"] and '"id":"9"' in reply["frame"]
    assert (await get_node()).runtime.instances == {}  # nothing ran


async def test_a_forged_subscription_request_is_answered_with_an_error_per_kind(connect, monkeypatch):
    client = await connect()
    other = await OtherWorker.install(monkeypatch)
    forged = Request("counter", "b", Caller(client.client_id, other.channel), Subscribe(("state",), True), 5).build()
    forged["caller"]["claims"] = ["not", "an", "object"]
    await other.send(forged)
    reply = await other.receive()
    assert reply["ticket"] == 5 and '"code":"unavailable"' in reply["frame"]
    assert '"ref":{"type":"state:sub","actor":"counter","actorId":"b"}' in reply["frame"]


async def test_a_forwarded_call_of_an_unknown_method_is_answered_unavailable(connect, monkeypatch):
    client = await connect()
    other = await OtherWorker.install(monkeypatch)
    caller = Caller(client.client_id, other.channel)
    await other.send(Request("counter", "b", caller, Call("vanished", None, "3"), 8).build())
    reply = await other.receive()
    assert reply["ticket"] == 8 and '"code":"unavailable"' in reply["frame"] and "vanished" in reply["frame"]


async def test_an_operator_request_of_another_version_gets_a_failed_reply(monkeypatch):
    other = await OtherWorker.install(monkeypatch)
    await other.send({**OpsRequest("inventory", {}, other.channel, 3).build(), "v": VERSION + 1})
    reply = messages.parse(await other.receive())
    assert isinstance(reply, OpsReply) and reply.ticket == 3 and not reply.ok
    assert "unavailable" in (reply.error or "")
