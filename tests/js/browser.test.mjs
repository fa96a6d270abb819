// The browser hooks: offline/online and page visibility, with stand-ins for window, document
// and navigator (node --test runs each file in its own process, so these globals stay here).
import { test, afterEach } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { createClient } from "../../zocket_django/static/zocket_django/zocket.js";
import { FakeServer, until, sleep } from "./fake-server.mjs";

globalThis.window = new EventTarget();
globalThis.document = Object.assign(new EventTarget(), { visibilityState: "visible" });
globalThis.navigator = { onLine: true };

const setOnline = (onLine) => {
  navigator.onLine = onLine;
  window.dispatchEvent(new Event(onLine ? "online" : "offline"));
};
const setVisible = (visible) => {
  document.visibilityState = visible ? "visible" : "hidden";
  document.dispatchEvent(new Event("visibilitychange"));
};

const cleanup = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
  navigator.onLine = true;
  document.visibilityState = "visible";
});

async function setup(options = {}) {
  const server = await FakeServer.start();
  const statuses = [];
  // a huge backoff: any quick reconnection below comes from the browser hooks
  const client = createClient({ url: server.url, WebSocket, reconnect: { minDelay: 60000, maxDelay: 60000 }, ...options });
  client.connection.subscribe((s) => statuses.push(s));
  cleanup.push(() => server.stop(), () => client.connection.close());
  return { server, client, statuses };
}

test("going offline drops the socket and waits; coming online reconnects at once", async () => {
  const { server, client, statuses } = await setup();
  await client.connection.ready;
  const states = [];
  client.counter("main").state.subscribe((s) => states.push(s));
  await until(() => states.length === 1);

  setOnline(false);
  assert.equal(client.connection.status, "offline");
  await until(() => server.sockets.size === 0, { what: "the socket to close" });
  const call = client.counter("main").increment(); // waits for the connection
  await sleep(50);
  assert.equal(server.connections, 1);

  setOnline(true);
  await client.connection.ready;
  assert.equal(await call, null);
  assert.equal(server.connections, 2);
  await until(() => states.length === 2, { what: "the resubscribed snapshot" });
  assert.deepEqual(statuses, ["connected", "offline", "reconnecting", "connected"]);
});

test("a hidden page keeps its socket but does not reconnect until shown", async () => {
  const { server, client, statuses } = await setup();
  await client.connection.ready;
  setVisible(false);
  await sleep(30);
  assert.equal(client.connection.status, "connected");

  server.dropAll();
  await until(() => client.connection.status === "offline", { what: "offline" });
  await sleep(50);
  assert.equal(server.connections, 1);

  setVisible(true);
  await client.connection.ready;
  assert.equal(server.connections, 2);
  assert.deepEqual(statuses, ["connected", "offline", "reconnecting", "connected"]);
});

test("pauseWhenHidden: false reconnects in a hidden page", async () => {
  const { server, client } = await setup({ reconnect: { minDelay: 10, maxDelay: 10 }, pauseWhenHidden: false });
  await client.connection.ready;
  setVisible(false);
  server.dropAll();
  await until(() => server.connections === 2 && client.connection.status === "connected");
});

test("created offline: no attempt until the browser is online", async () => {
  navigator.onLine = false;
  const { server, client } = await setup();
  assert.equal(client.connection.status, "offline");
  await sleep(50);
  assert.equal(server.connections, 0);
  setOnline(true);
  await client.connection.ready;
  assert.equal(server.connections, 1);
});

test("a page shown again checks its open socket with a ping at once", async () => {
  const { server, client } = await setup({ heartbeatInterval: 60000 });
  await client.connection.ready;
  setVisible(false);
  setVisible(true);
  await until(() => server.frames("ping").length === 1, { what: "the ping" });
  // the pong arrived: the connection stays
  await sleep(30);
  assert.equal(client.connection.status, "connected");
  assert.equal(server.connections, 1);
});

test("closing the client removes its browser listeners", async () => {
  const { server, client } = await setup();
  await client.connection.ready;
  client.connection.close();
  setOnline(false);
  setOnline(true);
  setVisible(false);
  setVisible(true);
  await sleep(30);
  assert.equal(client.connection.status, "closed");
  assert.equal(server.connections, 1);
});
