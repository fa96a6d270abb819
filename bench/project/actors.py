"""The bench's actors: in memory only, nothing persisted."""

from pydantic import BaseModel

from zocket_django import Actor, method


class CounterState(BaseModel):
    count: int = 0


class BenchCounter(Actor):
    """The RPC and fan-out subject: one integer, one method."""

    name = "bench_counter"
    State = CounterState

    @method
    async def increment(self, ctx) -> int:
        self.state.count += 1
        return self.state.count


class Item(BaseModel):
    id: int
    text: str


class ListState(BaseModel):
    items: list[Item] = []


class BenchList(Actor):
    """The patch-cost subject: a growing list of small objects."""

    name = "bench_list"
    State = ListState
    #: The patch bench grows it to 100,000 items (~3.3 MB): past the default limit on purpose.
    max_state_bytes = 64_000_000

    @method
    async def append(self, ctx, text: str) -> int:
        self.state.items.append(Item(id=len(self.state.items), text=text))
        return len(self.state.items)
