"""The demo's counter: the smallest useful actor."""

from pydantic import BaseModel

from zocket_django import Actor, method


class CounterState(BaseModel):
    count: int = 0


class ResetBy(BaseModel):
    by: str


class Counter(Actor):
    name = "counter"
    State = CounterState
    events = {"reset": ResetBy}

    @method
    async def increment(self, ctx) -> int:
        self.state.count += 1
        return self.state.count

    @method
    async def add(self, ctx, amount: int) -> int:
        self.state.count += amount
        return self.state.count

    @method
    async def reset(self, ctx) -> None:
        self.state.count = 0
        ctx.emit("reset", ResetBy(by=ctx.client_id))
