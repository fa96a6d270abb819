"""The demo's chat room: messages, presence, and an event per message; saved when it goes idle or the server stops."""

from typing import Annotated

from pydantic import BaseModel, Field

from zocket_django import Actor, Persist, method

#: Messages a room keeps: the state (and so every snapshot) stays bounded however much is said.
HISTORY = 100


class Message(BaseModel):
    user: str
    text: str


class ChatState(BaseModel):
    messages: list[Message] = []
    online: list[str] = []  # client ids of the connections in the room
    names: dict[str, str] = {}  # client id -> who: the username, or the client id for a guest


class Chat(Actor):
    name = "chat"
    State = ChatState
    events = {"newMessage": Message}
    # Saved on deactivation (idle eviction, clean shutdown): cheap per message,
    # but a crash loses what was said since the room was last saved.
    persist = Persist.ON_DEACTIVATE

    @method
    async def send(self, ctx, text: Annotated[str, Field(min_length=1, max_length=500)]) -> Message:
        user = ctx.claims.get("username") or ctx.client_id
        message = Message(user=user, text=text)
        self.state.messages.append(message)
        del self.state.messages[:-HISTORY]
        ctx.emit("newMessage", message)
        return message

    async def on_activate(self, ctx) -> None:
        # A saved room comes back with the presence of its last incarnation;
        # nobody is connected to a freshly activated instance.
        self.state.online.clear()
        self.state.names.clear()
        del self.state.messages[:-HISTORY]  # a room saved before the history was bounded

    async def on_connect(self, ctx) -> None:
        if ctx.client_id not in self.state.online:
            self.state.online.append(ctx.client_id)
        self.state.names[ctx.client_id] = ctx.claims.get("username") or ctx.client_id

    async def on_disconnect(self, ctx) -> None:
        if ctx.client_id in self.state.online:
            self.state.online.remove(ctx.client_id)
        self.state.names.pop(ctx.client_id, None)
