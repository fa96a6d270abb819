"""The demo's collaborative board: a shared to-do list kept in the database.

Its handlers are plain ``def`` functions, so they run in a worker thread and
may use the ORM; the instance still runs one call at a time. The state is
loaded from the ``Todo`` rows when the instance starts (after a restart, say),
and every method writes its change through to them. Those writes commit with
the call's step: a call that raises or times out keeps no row, so the rows
and the state always agree.

An actor whose state needs no tables of its own can let zocket save it instead:
``persist = Persist.WRITE_THROUGH`` (see the counter). The board keeps its
items as rows because they are data in their own right: the admin lists them,
other code may query them.
"""

from typing import Annotated

from pydantic import BaseModel, Field

from zocket_django import Actor, ZocketError, method

from .models import Todo

#: Items a board holds: its state (every item is in it) stays well under the actor's size limit.
MAX_ITEMS = 1000


class Item(BaseModel):
    id: int
    text: str
    done: bool = False
    by: str


class BoardState(BaseModel):
    items: list[Item] = []


class Board(Actor):
    name = "board"
    State = BoardState

    def on_activate(self, ctx) -> None:
        rows = Todo.objects.filter(board=self.id).order_by("pk")
        self.state.items = [Item(id=t.pk, text=t.text, done=t.done, by=t.by) for t in rows]

    @method
    def add(self, ctx, text: Annotated[str, Field(min_length=1, max_length=200)]) -> Item:
        if len(self.state.items) >= MAX_ITEMS:  # refused before the row is written
            raise ZocketError(f"this board is full ({MAX_ITEMS} items); remove some first", code="too_large")
        by = ctx.claims.get("username") or "guest"
        todo = Todo.objects.create(board=self.id, text=text, by=by)
        item = Item(id=todo.pk, text=text, by=by)
        self.state.items.append(item)
        return item

    @method
    def toggle(self, ctx, id: int) -> bool:
        item = self._find(id)
        item.done = not item.done
        Todo.objects.filter(board=self.id, pk=id).update(done=item.done)
        return item.done

    @method
    def remove(self, ctx, id: int) -> None:
        self.state.items.remove(self._find(id))
        Todo.objects.filter(board=self.id, pk=id).delete()

    def _find(self, id: int) -> Item:
        for item in self.state.items:
            if item.id == id:
                return item
        raise ZocketError(f"no item {id} on this board", code="not_found")
