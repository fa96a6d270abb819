"""Every message one worker sends another through the channel layer, typed.

Workers talk in channel-layer messages (plain dicts on the wire). Each kind of
message is a class here with exactly one builder (``build``: the dict that goes
on the layer) and one parser (``parse``: the dict that came off it, checked
field by field). Nothing else in the package builds or reads these dicts.

Every message carries ``v``, the version of this vocabulary. The rule: bump
``VERSION`` whenever a message gains, loses or changes a field. A worker only
reads messages of its own version; anything else (a worker of a previous
release in a rolling deploy, a forged or damaged message) raises
``Unreadable``, and the node fails the request it belonged to with
``unavailable`` instead of acting on a message it may misread. (These messages
are between workers only; what clients see is ``protocol.py``'s wire format.)
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from typing import Any, ClassVar

from . import message_fields as fields
from .caller import Caller

# Part of this module's interface: ``parse`` raises ``Unreadable``, which keeps the ``Remains``.
from .message_fields import Remains as Remains
from .message_fields import Unreadable as Unreadable

#: The version of the messages between workers (see the module's docstring for when to bump it).
VERSION = 3

#: Subscription kinds: what a ``Deliver`` carries, what a ``Subscribe`` counts.
STATE, EVENTS = "state", "event"


@dataclass(slots=True)
class Deliver:
    """One encoded frame for the subscribers of ``kind`` (``state``/``event``) of an instance's group.

    ``only``/``excluded`` narrow an event to some clients. ``announce`` (the
    owner's channel) marks the snapshot of a new incarnation: nodes re-announce
    their subscribers to it. ``origin`` is the publishing node (it delivered
    its own subscribers directly).
    """

    TYPE: ClassVar[str] = "zocket.deliver"
    group: str
    kind: str
    frame: str
    only: frozenset[str] | None = None
    excluded: frozenset[str] = frozenset()
    announce: str | None = None
    origin: str | None = None

    def build(self) -> dict[str, Any]:
        message: dict[str, Any] = {"type": self.TYPE, "v": VERSION, "group": self.group, "kind": self.kind}
        message["frame"] = self.frame
        if self.only is not None:
            message["only"] = sorted(self.only)
        if self.excluded:
            message["except"] = sorted(self.excluded)
        if self.announce is not None:
            message.update(announce=True, owner=self.announce)
        if self.origin is not None:
            message["origin"] = self.origin
        return message

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> Deliver:
        return cls(
            fields.text(raw, "group"),
            fields.text(raw, "kind"),
            fields.text(raw, "frame"),
            frozenset(fields.texts(raw, "only")) if "only" in raw else None,
            frozenset(fields.texts(raw, "except")) if "except" in raw else frozenset(),
            fields.text(raw, "owner") if raw.get("announce") else None,
            fields.maybe_text(raw, "origin"),
        )


@dataclass(slots=True)
class Reply:
    """An encoded frame for one client (an answer), settling the forwarded request ``ticket``."""

    TYPE: ClassVar[str] = "zocket.reply"
    client: str
    frame: str
    ticket: int | None = None

    def build(self) -> dict[str, Any]:
        return {"type": self.TYPE, "v": VERSION, "client": self.client, "frame": self.frame, "ticket": self.ticket}

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> Reply:
        return cls(fields.text(raw, "client"), fields.text(raw, "frame"), fields.maybe_int(raw, "ticket"))


@dataclass(slots=True)
class Snapshot:
    """The ``state:snapshot`` frame that starts one client's state subscription to ``group``."""

    TYPE: ClassVar[str] = "zocket.snapshot"
    client: str
    group: str
    frame: str
    ticket: int | None = None

    def build(self) -> dict[str, Any]:
        return {
            "type": self.TYPE,
            "v": VERSION,
            "client": self.client,
            "group": self.group,
            "frame": self.frame,
            "ticket": self.ticket,
        }

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> Snapshot:
        return cls(
            fields.text(raw, "client"),
            fields.text(raw, "group"),
            fields.text(raw, "frame"),
            fields.maybe_int(raw, "ticket"),
        )


@dataclass(slots=True)
class Call:
    """Run a validated method call (``input`` as the client sent it) and answer ``rpc_id``.

    ``key``: the client's key for the call, which then runs at most once (``callkeys``).
    """

    OP: ClassVar[str] = "call"
    method: str
    input: Any
    rpc_id: str
    key: str | None = None


@dataclass(slots=True)
class Subscribe:
    """Count the caller as a subscriber of ``kinds``; with ``answer``, send the state snapshot back.

    ``if_moved``: a plain repeated ``state:sub`` of a subscription already held.
    The snapshot is sent only if the state moved since the last one this
    connection was sent (docs/protocol.md, "Subscribing again").
    """

    OP: ClassVar[str] = "subscribe"
    kinds: tuple[str, ...]
    answer: bool
    if_moved: bool = False


@dataclass(slots=True)
class Unsubscribe:
    OP: ClassVar[str] = "unsubscribe"
    client_id: str
    kind: str


@dataclass(slots=True)
class Leave:
    """The client's socket closed: it leaves the instance (``on_disconnect``)."""

    OP: ClassVar[str] = "leave"
    client_id: str


Op = Call | Subscribe | Unsubscribe | Leave


@dataclass(slots=True)
class Request:
    """``op`` for the instance ``actor``/``actor_id``, sent to the worker believed to own it.

    ``ticket`` names the request on the asking node (its answer settles it);
    ``hops`` counts how often it was passed on to yet another owner.
    """

    TYPE: ClassVar[str] = "zocket.request"
    actor: str
    actor_id: str
    caller: Caller | None
    op: Op
    ticket: int | None = None
    hops: int = 0

    @property
    def creating(self) -> bool:
        """Whether carrying it out may activate the instance."""
        return isinstance(self.op, Call | Subscribe)

    def build(self) -> dict[str, Any]:
        message: dict[str, Any] = {
            "type": self.TYPE,
            "v": VERSION,
            "actor": self.actor,
            "actor_id": self.actor_id,
            "caller": self.caller.to_wire() if self.caller is not None else None,
            "ticket": self.ticket,
            "hops": self.hops,
            "op": self.op.OP,
        }
        op = self.op
        if isinstance(op, Call):
            message.update(method=op.method, input=op.input, rpc_id=op.rpc_id, key=op.key)
        elif isinstance(op, Subscribe):
            message.update(kinds=list(op.kinds), answer=op.answer, if_moved=op.if_moved)
        elif isinstance(op, Unsubscribe):
            message.update(client_id=op.client_id, kind=op.kind)
        else:
            message.update(client_id=op.client_id)
        return message

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> Request:
        name = raw.get("op")
        op: Op
        if name == Call.OP:
            op = Call(
                fields.text(raw, "method"), raw.get("input"), fields.text(raw, "rpc_id"), fields.maybe_text(raw, "key")
            )
        elif name == Subscribe.OP:
            op = Subscribe(tuple(fields.texts(raw, "kinds")), bool(raw.get("answer")), bool(raw.get("if_moved")))
        elif name == Unsubscribe.OP:
            op = Unsubscribe(fields.text(raw, "client_id"), fields.text(raw, "kind"))
        elif name == Leave.OP:
            op = Leave(fields.text(raw, "client_id"))
        else:
            raise ValueError(f"unknown op {name!r}")
        caller = Caller.from_wire(raw["caller"]) if raw.get("caller") is not None else None
        if caller is None and isinstance(op, Call | Subscribe):
            raise ValueError(f"a {name} needs a caller")
        return cls(
            fields.text(raw, "actor"),
            fields.text(raw, "actor_id"),
            caller,
            op,
            fields.maybe_int(raw, "ticket"),
            fields.maybe_int(raw, "hops") or 0,
        )


@dataclass(slots=True)
class OpsRequest:
    """An operator's request (``inventory``, ``inspect``, ``deactivate``, ``destroy``) for one worker."""

    TYPE: ClassVar[str] = "zocket.ops"
    op: str
    args: dict[str, Any]
    reply_to: str
    ticket: int

    def build(self) -> dict[str, Any]:
        return {
            "type": self.TYPE,
            "v": VERSION,
            "op": self.op,
            "args": self.args,
            "reply_to": self.reply_to,
            "ticket": self.ticket,
        }

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> OpsRequest:
        ticket = fields.maybe_int(raw, "ticket")
        if ticket is None:
            raise ValueError("ticket must be an integer")
        return cls(fields.text(raw, "op"), fields.mapping(raw, "args"), fields.text(raw, "reply_to"), ticket)


@dataclass(slots=True)
class OpsReply:
    """The answer to an ``OpsRequest``: ``result`` when ``ok``, else ``error``."""

    TYPE: ClassVar[str] = "zocket.ops.reply"
    ticket: int
    ok: bool
    result: Any = None
    error: str | None = None

    def build(self) -> dict[str, Any]:
        message: dict[str, Any] = {"type": self.TYPE, "v": VERSION, "ticket": self.ticket, "ok": self.ok}
        if self.ok:
            message["result"] = self.result
        else:
            message["error"] = self.error
        return message

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> OpsReply:
        ticket = fields.maybe_int(raw, "ticket")
        if ticket is None:
            raise ValueError("ticket must be an integer")
        return cls(ticket, raw.get("ok") is True, raw.get("result"), fields.maybe_text(raw, "error"))


Message = Deliver | Reply | Snapshot | Request | OpsRequest | OpsReply

_KINDS: dict[str, Any] = {cls.TYPE: cls for cls in (Deliver, Reply, Snapshot, Request, OpsRequest, OpsReply)}


def parse(raw: Any) -> Message:
    """The typed message of a dict that came off the channel layer; ``Unreadable`` if it is none."""
    if not isinstance(raw, dict):
        raise Unreadable(raw, "not a mapping")
    cls = _KINDS.get(raw.get("type"))  # type: ignore[arg-type]
    if cls is None:
        raise Unreadable(raw, "unknown message type")
    version = raw.get("v")
    if version != VERSION or isinstance(version, bool):
        seen = "no version (a release before versioned messages)" if version is None else f"version {version!r}"
        raise Unreadable(raw, f"{seen}; this worker reads version {VERSION} only")
    try:
        message: Message = cls.parse(raw)
    except (KeyError, TypeError, ValueError) as exc:
        raise Unreadable(raw, f"malformed: {exc}") from None
    return message


@functools.lru_cache(maxsize=65536)
def group_name(actor: str, actor_id: str) -> str:
    """The channel-layer group of an instance: every worker must name it alike.

    Valid for any actor id (ids may hold any character); cached, it is asked per request.
    """
    digest = hashlib.blake2b(f"{actor}\x00{actor_id}".encode(), digest_size=16).hexdigest()
    return f"zocket.{digest}"
