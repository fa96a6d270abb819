// The page's one connection to the server, shared by the header and the page's own script:
//   import { client } from "/static/demo/client.js";
//   const counter = client.counter("main");
import { createClient } from "../zocket_django/zocket.js";

const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws/`;

// Frames as they arrive, for the board's "on the wire" panel. An app needs none of this:
// `createClient({ url })` is all it takes.
export const wire = new EventTarget();
class WatchedSocket extends WebSocket {
  constructor(...args) {
    super(...args);
    this.addEventListener("message", (e) => wire.dispatchEvent(new MessageEvent("frame", { data: e.data })));
  }
}

export const client = createClient({ url, WebSocket: WatchedSocket });

// The header's connection indicator: connecting, connected, reconnecting, offline or closed.
const badge = document.getElementById("connection");
function show(status) {
  badge.dataset.status = status;
  badge.querySelector(".label").textContent = status;
}
show(client.connection.status);
client.connection.subscribe(show);
