"""Actors written to exercise the runtime's rules in tests."""

import asyncio
import threading
import time
from typing import Annotated, Any

from django.contrib.auth.models import User
from pydantic import BaseModel, Field

from zocket_django import Actor, Forbidden, Persist, Rule, ZocketError, method


class Item(BaseModel):
    text: str
    done: bool = False


class LabState(BaseModel):
    items: list[Item] = []
    log: list[str] = []
    value: int = 0


class Note(BaseModel):
    text: str


class Lab(Actor):
    """Everything a test needs: failing, slow, sync and emitting handlers."""

    name = "lab"
    State = LabState
    events = {"note": Note, "count": int}

    @method
    async def add_item(self, ctx, text: str) -> Item:
        item = Item(text=text)
        self.state.items.append(item)
        return item

    @method
    async def fail_after_change(self, ctx) -> None:
        self.state.value += 100
        self.state.items.append(Item(text="never"))
        ctx.emit("note", Note(text="never"))
        raise RuntimeError("secret internals")

    @method
    async def refuse(self, ctx, why: str) -> None:
        self.state.value += 1
        raise ZocketError(why, code="not_today")

    @method
    async def bad_event(self, ctx) -> None:
        self.state.value += 1
        ctx.emit("note", {"wrong": "shape"})

    @method
    async def notify(self, ctx, text: str, to: list[str] | None = None, skip: list[str] | None = None) -> None:
        emission = ctx.emit("note", Note(text=text))
        if to is not None:
            emission.to(to)
        if skip is not None:
            emission.except_(skip)

    @method
    async def noop(self, ctx) -> int:
        return self.state.value

    @method
    async def slow(self, ctx, seconds: float) -> str:
        self.state.log.append("start")
        await asyncio.sleep(seconds)
        self.state.log.append("end")
        return "done"

    @method
    def sync_count_users(self, ctx) -> int:
        # A plain def runs in a worker thread: the ORM is allowed here.
        self.state.value = User.objects.count()
        return self.state.value

    @method
    def sync_overlap(self, ctx, seconds: float) -> int:
        """Records how many sync handlers of *this* instance run at once."""
        key = self.id
        with _lock:
            _running[key] = _running.get(key, 0) + 1
            _peak[key] = max(_peak.get(key, 0), _running[key])
            _peak["__all__"] = max(_peak.get("__all__", 0), sum(_running.values()))
        time.sleep(seconds)
        with _lock:
            _running[key] -= 1
        return _peak[key]

    @method
    async def whoami(self, ctx) -> dict:
        return {
            "client_id": ctx.client_id,
            "user_id": ctx.user_id,
            "claims": ctx.claims,
            "clients": sorted(ctx.clients),
        }

    @method
    async def census(self, ctx) -> dict:
        """What this worker holds: hot instances, and connections known to them (ghosts show here)."""
        from zocket_django.node import current_node

        node = current_node()
        instances = list(node.runtime.instances.values()) if node is not None else []
        return {
            "hot": len(instances),
            "presences": sum(len(i.clients) for i in instances),
            "sockets": len(node.fanout.sockets) if node is not None else 0,
        }

    async def on_activate(self, ctx) -> None:
        self.state.log.append("activated")

    async def on_deactivate(self, ctx) -> None:
        DEACTIVATED.append(self.id)


DEACTIVATED: list[str] = []
_lock = threading.Lock()
_running: dict[str, int] = {}
_peak: dict[str, int] = {}


# -- durable actors (tests/test_persistence.py) ----------------------------------------


class LedgerState(BaseModel):
    entries: list[int] = []
    total: int = 0
    activations: int = 0


class Ledger(Actor):
    """Write-through: every change is committed before its result."""

    name = "ledger"
    State = LedgerState
    persist = Persist.WRITE_THROUGH

    @method
    async def add(self, ctx, amount: int) -> int:
        self.state.entries.append(amount)
        self.state.total += amount
        return self.state.total

    @method
    async def peek(self, ctx) -> int:
        return self.state.total

    async def on_activate(self, ctx) -> None:
        # Runs after the restore: counts incarnations across restarts.
        self.state.activations += 1


class JournalState(BaseModel):
    lines: list[str] = []


class Journal(Actor):
    """Saved on deactivation; what on_deactivate changes is saved too."""

    name = "journal"
    State = JournalState
    persist = Persist.ON_DEACTIVATE

    @method
    async def write(self, ctx, line: str) -> int:
        self.state.lines.append(line)
        return len(self.state.lines)

    async def on_deactivate(self, ctx) -> None:
        self.state.lines.append("closed")


class Diary(Actor):
    """Saved on deactivation and every 0.1 s while hot and changed."""

    name = "diary"
    State = JournalState
    persist = Persist.ON_DEACTIVATE
    checkpoint_every = 0.1

    @method
    async def write(self, ctx, line: str) -> int:
        self.state.lines.append(line)
        return len(self.state.lines)


class ProfileState(BaseModel):
    full_name: str = ""
    tags: list[str] = []


class Profile(Actor):
    """Schema 2 of a state that used to be ``{"first": ..., "last": ...}``."""

    name = "profile"
    State = ProfileState
    persist = Persist.WRITE_THROUGH
    schema_version = 2

    @classmethod
    def upgrade_state(cls, data: dict, schema_version: int) -> dict:
        if schema_version == 1:
            return {"full_name": f"{data['first']} {data['last']}", "tags": data.get("tags", [])}
        raise ValueError(f"no upgrade from schema_version {schema_version}")

    @method
    async def rename(self, ctx, full_name: str) -> str:
        self.state.full_name = full_name
        return full_name


class StrictState(BaseModel):
    count: int = 0


class Strict(Actor):
    """Durable, with no upgrade hook: a snapshot that does not fit is refused."""

    name = "strict"
    State = StrictState
    persist = Persist.ON_DEACTIVATE

    @method
    async def bump(self, ctx) -> int:
        self.state.count += 1
        return self.state.count


# -- access rules (tests/test_auth.py) ------------------------------------------------


class Counted(BaseModel):
    opened: int = 0
    log: list[str] = []


def staff_only(ctx) -> bool:
    """A sync check: runs in a worker thread, so it could query."""
    return bool(ctx.claims.get("is_staff"))


async def even_amount(ctx) -> bool:
    """An async check that looks at the validated input."""
    return ctx.input["amount"] % 2 == 0


class Vault(Actor):
    """Everything needs a login; some methods need more."""

    name = "vault"
    State = Counted
    login_required = True

    @method
    async def peek(self, ctx) -> int:
        return self.state.opened

    @method(permissions=["auth.view_user"])
    async def open(self, ctx) -> int:
        self.state.opened += 1
        return self.state.opened

    @method(check=staff_only)
    async def audit(self, ctx) -> int:
        self.state.opened += 10
        return self.state.opened

    @method(check=even_amount)
    async def deposit(self, ctx, amount: int) -> int:
        self.state.opened += amount
        return self.state.opened

    async def on_activate(self, ctx) -> None:
        self.state.log.append("activated")


def owner_only(ctx) -> bool:
    return ctx.actor_id == ctx.claims.get("username")


class PrivateDiary(Actor):
    """Anyone may knock; only the owner (the id is a username) reads state and events."""

    name = "private_diary"
    State = Counted
    events = {"knocked": str}
    read = Rule(login_required=True, check=owner_only)

    @method
    async def knock(self, ctx) -> int:
        self.state.opened += 1
        ctx.emit("knocked", ctx.client_id)
        return self.state.opened


async def who(ctx):
    """Async middleware: refuses mallory, tags everyone else with a role."""
    if ctx.claims.get("username") == "mallory":
        raise Forbidden("mallory is banned")
    return {"role": "admin" if ctx.claims.get("is_staff") else "member"}


def audit_trail(ctx):
    """Sync middleware: sees what the previous one added; misbehaves on request."""
    if ctx.method == "leaky":
        return {"handle": object()}
    if ctx.method == "broken":
        raise RuntimeError("middleware bug")
    return {"seen": f"{ctx.role}:{ctx.kind}"}


class Club(Actor):
    name = "club"
    State = Counted
    login_required = True
    middleware = [who, audit_trail]

    @method
    async def whoami(self, ctx) -> dict:
        return {"role": ctx.role, "extra": ctx.extra, "user": ctx.user_id}

    @method(check=lambda ctx: ctx.role == "admin")
    async def admin_only(self, ctx) -> str:
        self.state.opened += 1
        return "ok"

    @method
    async def leaky(self, ctx) -> None:
        self.state.opened += 1

    @method
    async def broken(self, ctx) -> None:
        self.state.opened += 1

    async def on_connect(self, ctx) -> None:
        self.state.log.append(f"connect {ctx.role}")


class RosterState(BaseModel):
    log: list[str] = []  # "+<client>" for each on_connect, "-<client>" for each on_disconnect


class Roster(Actor):
    """Who came and went, in order (tests/test_restart_presence.py)."""

    name = "roster"
    State = RosterState

    @method
    async def touch(self, ctx) -> int:
        return len(self.state.log)

    async def on_connect(self, ctx) -> None:
        self.state.log.append(f"+{ctx.client_id}")

    async def on_disconnect(self, ctx) -> None:
        self.state.log.append(f"-{ctx.client_id}")


# -- hostile input (tests/test_hostile.py) ---------------------------------------------


class Parcel(BaseModel):
    label: Annotated[str, Field(max_length=50)]
    weight: float
    tags: list[str] = []


class SinkState(BaseModel):
    parcels: list[Parcel] = []
    total: float = 0.0


class Sink(Actor):
    """Typed input of every shape, a nested model with a float, and a method that changes nothing."""

    name = "sink"
    State = SinkState
    events = {"stored": Parcel}

    @method
    async def store(self, ctx, parcel: Parcel, count: Annotated[int, Field(ge=1, le=3)] = 1) -> int:
        for _ in range(count):
            self.state.parcels.append(parcel)
            self.state.total += parcel.weight
        ctx.emit("stored", parcel)
        return len(self.state.parcels)

    @method
    async def echo(self, ctx, value: Any = None) -> Any:
        return value


class Card(BaseModel):
    text: str
    tags: list[str] = []


class KanbanState(BaseModel):
    cards: list[Card] = []
    votes: dict[str, int] = {}


class Kanban(Actor):
    """Mutations of every kind a handler writes, async and sync, for the recorded patches."""

    name = "kanban"
    State = KanbanState

    def __init__(self, actor_id: str, state: BaseModel) -> None:
        super().__init__(actor_id, state)
        self.favorite: Card | None = None  # a part of the state kept across steps

    @method
    async def add(self, ctx, text: str) -> int:
        self.state.cards.append(Card(text=text))
        return len(self.state.cards)

    @method
    def vote(self, ctx, key: str) -> int:  # a sync handler: runs in a thread
        self.state.votes[key] = self.state.votes.get(key, 0) + 1
        self.state.votes[key] += 1
        return self.state.votes[key]

    @method
    def tag_and_fail(self, ctx, index: int, tag: str) -> None:
        card = self.state.cards[index]  # fetched earlier in the step, changed after other changes
        self.state.cards.pop(0)
        card.tags.append(tag)
        card.text = "tagged"
        raise RuntimeError("undo all of it")

    @method
    async def tag(self, ctx, index: int, tag: str) -> None:
        card = self.state.cards[index]
        del self.state.cards[0]
        card.tags.append(tag)

    @method
    async def fill(self, ctx, count: int) -> int:
        self.state.cards.extend(Card(text=f"c{i}") for i in range(count))
        return len(self.state.cards)

    @method
    async def shift(self, ctx, count: int) -> str:
        """Takes ``count`` cards off the front, one ``pop(0)`` each (a queue)."""
        for _ in range(count):
            taken = self.state.cards.pop(0)
        return taken.text

    @method
    async def unshift(self, ctx, text: str) -> None:
        self.state.cards.insert(0, Card(text=text))

    @method
    async def keep(self, ctx, index: int) -> None:
        self.favorite = self.state.cards[index]

    @method
    async def edit_kept(self, ctx, text: str) -> None:
        assert self.favorite is not None
        self.favorite.text = text

    @method
    async def replace_all(self, ctx, texts: list[str]) -> None:
        self.state.cards = [Card(text=t) for t in texts]
        self.state = KanbanState(cards=self.state.cards, votes=dict(self.state.votes))


# -- a sync handler's database work and its step (tests/test_step_transactions.py) -----------


class Row(BaseModel):
    id: int
    text: str
    done: bool = False


class ShelfState(BaseModel):
    rows: list[Row] = []


#: Per actor id: a sync handler waits on it (``hold=True``) until the test sets it.
GATES: dict[str, threading.Event] = {}
#: Actor ids whose ``on_activate`` raises, as it would with the database down.
OUTAGES: set[str] = set()


class Shelf(Actor):
    """The demo board's shape: sync handlers, one ``Todo`` row per item, rows loaded on activation."""

    name = "shelf"
    State = ShelfState

    def on_activate(self, ctx) -> None:
        from django.db import OperationalError

        from demo_project.board.models import Todo

        if self.id in OUTAGES:
            self.state.rows.append(Row(id=0, text="half-built"))
            raise OperationalError("connection refused (the database is down)")
        self.state.rows = [Row(id=t.pk, text=t.text, done=t.done) for t in Todo.objects.filter(board=self.id)]

    @method
    def add(self, ctx, text: str, hold: bool = False, linger: float = 0.0) -> int:
        """Writes a row, then waits for the test's gate (``hold``) or sleeps ``linger`` seconds."""
        from demo_project.board.models import Todo

        todo = Todo.objects.create(board=self.id, text=text, by="test")
        self.state.rows.append(Row(id=todo.pk, text=text))
        if hold:
            GATES.setdefault(self.id, threading.Event()).wait(10)
        time.sleep(linger)
        return todo.pk

    @method
    def count_then_add(self, ctx, text: str) -> int:
        """Reads, then writes: on SQLite, two such transactions at once would deadlock."""
        from demo_project.board.models import Todo

        before = Todo.objects.filter(board=self.id).count()
        todo = Todo.objects.create(board=self.id, text=text, by="test")
        self.state.rows.append(Row(id=todo.pk, text=text))
        return before + 1

    @method
    def add_then_refuse(self, ctx, text: str) -> None:
        from demo_project.board.models import Todo

        todo = Todo.objects.create(board=self.id, text=text, by="test")
        self.state.rows.append(Row(id=todo.pk, text=text))
        raise ZocketError("changed my mind", code="refused")

    @method
    def toggle(self, ctx, id: int) -> bool:
        from demo_project.board.models import Todo

        for row in self.state.rows:
            if row.id == id:
                row.done = not row.done
                Todo.objects.filter(pk=id).update(done=row.done)
                return row.done
        raise ZocketError(f"no row {id}", code="not_found")


class DurableShelf(Shelf):
    """The same, write-through: its rows and its snapshot are saved in one transaction."""

    name = "durable_shelf"
    persist = Persist.WRITE_THROUGH


# -- identity kept true (tests/test_identity.py) -------------------------------------------------


class Archive(Actor):
    """Reading needs a permission; so does one method. Its subscriptions end when the permission goes."""

    name = "archive"
    State = Counted
    events = {"filed": str}
    read = Rule(permissions="auth.view_user")

    @method(permissions="auth.view_user")
    async def peek(self, ctx) -> int:
        return self.state.opened

    @method
    async def file(self, ctx, what: str) -> int:
        self.state.opened += 1
        ctx.emit("filed", what)
        return self.state.opened


# -- state size (tests/test_state_size.py) ----------------------------------------------


class HeapState(BaseModel):
    blobs: list[str] = []


class Heap(Actor):
    """A state that grows on demand, capped at 2,000 bytes."""

    name = "heap"
    State = HeapState
    max_state_bytes = 2000

    @method
    async def put(self, ctx, size: int, count: int = 1) -> int:
        self.state.blobs.extend("x" * size for _ in range(count))
        return len(self.state.blobs)

    @method
    async def rewrite(self, ctx, size: int) -> None:
        """Replace every blob: a patch larger than the state it makes."""
        self.state.blobs = ["y" * size for _ in self.state.blobs]

    @method
    async def drop(self, ctx, count: int) -> int:
        del self.state.blobs[:count]
        return len(self.state.blobs)


class Hoard(Heap):
    """A heap allowed more than a frame can carry (when MAX_MESSAGE_BYTES is small)."""

    name = "hoard"
    max_state_bytes = 100_000


class Bloat(Actor):
    """An actor whose on_activate makes its state too large."""

    name = "bloat"
    State = HeapState
    max_state_bytes = 1000

    @method
    async def size(self, ctx) -> int:
        return len(self.state.blobs)

    async def on_activate(self, ctx) -> None:
        self.state.blobs = ["z" * 100] * 20


# -- live-server tests (tests/test_hostile_load.py) ---------------------------------------


class Nothing(BaseModel):
    pass


class Inspector(Actor):
    """What a test asks of the worker serving it: how many instances are hot, whom one knows."""

    name = "inspector"
    State = Nothing

    @method
    async def hot(self, ctx) -> int:
        from zocket_django.node import current_node

        node = current_node()
        return len(node.runtime.instances) if node is not None else 0

    @method
    async def clients(self, ctx, name: str, instance: str) -> int | None:
        """Connections the instance ``name``/``instance`` knows; ``None`` when it is not hot."""
        from zocket_django.node import current_node

        node = current_node()
        inst = node.runtime.instances.get((name, instance)) if node is not None else None
        return None if inst is None else len(inst.clients)


class BallastState(BaseModel):
    blobs: list[str] = []


class Ballast(Actor):
    """A state of any size up to the default limit, for floods of snapshots."""

    name = "ballast"
    State = BallastState

    @method
    async def fill(self, ctx, kib: int) -> int:
        self.state.blobs = ["b" * 1000] * kib
        return len(self.state.blobs)
