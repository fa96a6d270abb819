"""The demo's counter: the smallest useful actor, saved on every change (write-through)."""

from pydantic import BaseModel

from zocket_django import Actor, Persist, method


class CounterState(BaseModel):
    count: int = 0


class ResetBy(BaseModel):
    by: str


class Counter(Actor):
    name = "counter"
    State = CounterState
    events = {"reset": ResetBy}
    # Each change is committed before its rpc:result is sent: an acknowledged
    # increment survives even a kill -9.
    persist = Persist.WRITE_THROUGH

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
