"""One of each declaration mistake the system checks must catch."""

import socket

from pydantic import BaseModel

from zocket_django import Actor, method


class Needy(BaseModel):
    required: int  # no default: the initial state cannot be built


class Empty(BaseModel):
    pass


class SecondCounter(Actor):
    name = "counter"  # the demo has one already: zocket.E001
    State = Empty


class NoDefaults(Actor):
    name = "no_defaults"
    State = Needy  # zocket.E002


class BadParams(Actor):
    name = "bad_params"
    State = Empty

    @method
    async def connect(self, ctx, sock: socket.socket) -> None:  # zocket.E003
        pass


class SilentEvent(Actor):
    name = "silent_event"
    State = Empty
    events = {"ping": None}  # zocket.E004


class BadRules(Actor):
    name = "bad_rules"
    State = Empty
    permissions = ["no_app_label"]  # zocket.E008

    @method
    async def read(self, ctx) -> None:  # zocket.E008: "read" is the reading rule's attribute
        pass


class NoContext(Actor):
    name = "no_context"
    State = Empty

    @method
    async def add(self, amount: int) -> int:  # zocket.E014: where does ctx go?
        return amount


class Nameless(Actor):  # zocket.E013: no name, not abstract, never subclassed
    State = Empty
