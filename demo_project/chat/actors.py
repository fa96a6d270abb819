"""The demo's chat room: messages, presence, and an event per message."""

from typing import Annotated

from pydantic import BaseModel, Field

from zocket_django import Actor, method


class Message(BaseModel):
    user: str
    text: str


class ChatState(BaseModel):
    messages: list[Message] = []
    online: list[str] = []


class Chat(Actor):
    name = "chat"
    State = ChatState
    events = {"newMessage": Message}

    @method
    async def send(self, ctx, text: Annotated[str, Field(min_length=1, max_length=500)]) -> Message:
        user = ctx.claims.get("username") or ctx.client_id
        message = Message(user=user, text=text)
        self.state.messages.append(message)
        ctx.emit("newMessage", message)
        return message

    async def on_connect(self, ctx) -> None:
        if ctx.client_id not in self.state.online:
            self.state.online.append(ctx.client_id)

    async def on_disconnect(self, ctx) -> None:
        if ctx.client_id in self.state.online:
            self.state.online.remove(ctx.client_id)
