// Calls that run exactly once (a key on every call, retried with it) and states of one incarnation (epochs).
import { test, beforeEach, afterEach } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { createClient } from "../../zocket_django/static/zocket_django/zocket.js";
import { FakeServer, until, sleep } from "./fake-server.mjs";

let server, client, errors;

beforeEach(async () => {
  server = await FakeServer.start();
  errors = [];
  client = createClient({
    url: server.url,
    WebSocket,
    reconnect: { minDelay: 10, maxDelay: 50 },
    onError: (e) => errors.push(e),
  });
  await client.connection.ready;
});

afterEach(async () => {
  client.connection.close();
  await server.stop();
});

const snapshot = (state, version, epoch) => ({ type: "state:snapshot", actor: "counter", actorId: "main", state, version, epoch });
const patch = (count, version, epoch) => ({
  type: "state:patch",
  actor: "counter",
  actorId: "main",
  patches: [{ op: "replace", path: "/count", value: count }],
  version,
  epoch,
});

function watch() {
  const seen = [];
  client.counter("main").state.subscribe((s) => seen.push(s));
  return seen;
}

test("every call carries its own random key", async () => {
  await client.counter("main").increment();
  await client.counter("main").increment();
  const [a, b] = server.frames("rpc");
  assert.match(a.key, /^[A-Za-z0-9_-]{22}$/);
  assert.notEqual(a.key, b.key);
});

test("a call answered unavailable goes again with the same key until it is answered", async () => {
  let attempts = 0;
  server.onRpc = () => (++attempts < 3 ? { error: "moving", code: "unavailable" } : { result: "ran once" });
  assert.equal(await client.counter("main").increment(), "ran once");
  const frames = server.frames("rpc");
  assert.equal(frames.length, 3);
  assert.equal(new Set(frames.map((f) => f.key)).size, 1);
});

test("other errors are not retried", async () => {
  server.onRpc = () => ({ error: "no", code: "forbidden" });
  await assert.rejects(client.counter("main").increment(), { code: "forbidden" });
  await sleep(30);
  assert.equal(server.frames("rpc").length, 1);
});

test("a call in flight when the socket drops is sent again, with its key, on the next connection", async () => {
  server.onRpc = (m, socket) => (socket.clientId === "c1" ? undefined : { result: "answered" });
  const call = client.counter("main").increment();
  await until(() => server.frames("rpc").length === 1);
  server.dropAll();
  assert.equal(await call, "answered");
  const [first, again] = server.frames("rpc");
  assert.equal(first.key, again.key);
  assert.equal(again.connection, "c2");
});

test("a call retried past its timeout rejects with timeout and the last error", async () => {
  client.connection.close();
  client = createClient({ url: server.url, WebSocket, rpcTimeout: 200, onError: () => {} });
  await client.connection.ready;
  server.onRpc = () => ({ error: "moving", code: "unavailable" });
  await assert.rejects(client.counter("main").increment(), (err) => err.code === "timeout" && err.details?.code === "unavailable");
  assert.ok(server.frames("rpc").length >= 2);
});

test("a patch of a newer epoch asks for the snapshot; one of an older epoch is ignored", async () => {
  server.onStateSub = () => snapshot({ count: 5 }, 5, 100);
  const seen = watch();
  await until(() => seen.length === 1);
  server.broadcast(patch(6, 6, 100));
  await until(() => seen.length === 2);
  server.broadcast(patch(99, 7, 50)); // a straggler of an incarnation that is gone
  await sleep(30);
  assert.deepEqual(seen.at(-1), { count: 6 });
  assert.equal(server.frames("state:sub").length, 1);
  server.onStateSub = () => snapshot({ count: 0 }, 0, 200);
  server.broadcast(patch(1, 1, 200)); // a new incarnation: versions start again
  await until(() => seen.length === 3, { what: "the resync" });
  assert.equal(server.frames("state:sub").length, 2);
  server.broadcast(patch(1, 1, 200));
  await until(() => seen.length === 4);
  assert.deepEqual(seen, [{ count: 5 }, { count: 6 }, { count: 0 }, { count: 1 }]);
});

test("a snapshot older than the state shown is never applied", async () => {
  server.onStateSub = () => snapshot({ count: 5 }, 5, 100);
  const seen = watch();
  await until(() => seen.length === 1);
  server.broadcast(snapshot({ count: 3 }, 3, 100)); // same incarnation, older version
  server.broadcast(snapshot({ count: 9 }, 9, 40)); // an older incarnation
  await sleep(30);
  assert.deepEqual(seen, [{ count: 5 }]);
  server.broadcast(snapshot({ count: 0 }, 0, 300)); // a newer incarnation replaces it
  await until(() => seen.length === 2);
  assert.deepEqual(seen.at(-1), { count: 0 });
});

test("without epochs (Zocket's server) versions alone decide, as before", async () => {
  const seen = watch();
  await until(() => seen.length === 1);
  server.broadcast({ type: "state:snapshot", actor: "counter", actorId: "main", state: { count: 100 }, version: 0 });
  await until(() => seen.length === 2);
  assert.deepEqual(seen.at(-1), { count: 100 });
});
