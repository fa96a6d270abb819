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

// The header's connection indicator: connecting, connected, reconnecting, offline or closed,
// a line under the header while the connection is down, and the page's actions (each page
// keeps them in a <fieldset class="live">) disabled until it is connected, so that a click
// never waits for a timeout.
const badge = document.getElementById("connection");
const banner = document.getElementById("connection-lost");
const lost = {
  reconnecting: "Connection lost. Reconnecting… what you see is the last state the server sent; actions are off until then.",
  offline: "You are offline: actions are off until the network is back, and the page reconnects by itself.",
  closed: "Disconnected: actions are off. Reload the page to connect again.",
};
function show(status) {
  badge.dataset.status = status;
  badge.querySelector(".label").textContent = status;
  banner.textContent = lost[status] ?? "";
  banner.hidden = !lost[status];
  for (const actions of document.querySelectorAll("fieldset.live")) actions.disabled = status !== "connected";
}
show(client.connection.status);
client.connection.subscribe(show);
