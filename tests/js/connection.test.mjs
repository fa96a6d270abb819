// The self-healing connection: restarts, silent servers, drops, timeouts, backoff, giving up.
import { test, afterEach } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { createClient } from "../../zocket_django/static/zocket_django/zocket.js";
import { FakeServer, until, sleep } from "./fake-server.mjs";

const cleanup = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

async function serve(options) {
  const server = await FakeServer.start(options);
  cleanup.push(() => server.stop());
  return server;
}

function connect(url, options = {}) {
  const statuses = [];
  const errors = [];
  const client = createClient({
    url,
    WebSocket,
    reconnect: { minDelay: 10, maxDelay: 50 },
    onError: (e) => errors.push(e),
    ...options,
  });
  client.connection.subscribe((s) => statuses.push(s));
  cleanup.push(() => client.connection.close());
  return { client, statuses, errors };
}

/** A port nothing listens on. */
async function deadPort() {
  const server = await FakeServer.start();
  const { port } = server;
  await server.stop();
  return port;
}

test("after a server restart: reconnects, restores subscriptions, state converges", async () => {
  const server = await serve();
  const { client, statuses } = connect(server.url);
  const counter = client.counter("main");
  const states = [];
  const events = [];
  counter.state.subscribe((s) => states.push(s));
  counter.on("reset", (p) => events.push(p));
  await until(() => states.length === 1);
  server.change("counter", "main", { count: 3 }, [{ op: "replace", path: "/count", value: 3 }]);
  await until(() => states.length === 2);

  await server.stop();
  await until(() => client.connection.status === "reconnecting", { what: "reconnecting" });
  assert.equal(client.connection.clientId, null);
  // the restarted server lost its memory: version 0 again, another state
  server.instances.clear();
  server.instance("counter", "main", { count: 40 });
  await server.listen();
  await client.connection.ready;
  assert.equal(client.connection.clientId, "c2");
  await until(() => states.length === 3, { what: "the new snapshot" });
  assert.deepEqual(states.at(-1), { count: 40 });
  assert.equal(server.frames("state:sub", "c2").length, 1);
  assert.equal(server.frames("event:sub", "c2").length, 1);

  // patches from the new server apply from its version; events flow again
  server.change("counter", "main", { count: 41 }, [{ op: "replace", path: "/count", value: 41 }]);
  server.emit("counter", "main", "reset", { by: "c7" });
  await until(() => states.length === 4 && events.length === 1);
  assert.deepEqual(counter.state.getSnapshot(), { count: 41 });
  assert.deepEqual(statuses, ["connected", "reconnecting", "connected"]);
});

test("the heartbeat finds a server that stopped answering", async () => {
  const server = await serve();
  const { client, statuses } = connect(server.url, { heartbeatInterval: 30, heartbeatTimeout: 60 });
  await client.connection.ready;
  await until(() => server.frames("ping").length >= 2, { what: "pings" });
  const ping = server.frames("ping")[0];
  assert.equal(typeof ping.id, "string");

  server.answerPings = false; // the socket stays open, the server says nothing
  await until(() => statuses.includes("reconnecting"), { what: "the heartbeat to give up" });
  server.answerPings = true;
  await client.connection.ready;
  assert.equal(client.connection.clientId, "c2");
});

test("calls in flight when the socket drops are sent again with their keys, and time out if never answered", async () => {
  const server = await serve();
  const { client } = connect(server.url, { rpcTimeout: 300 });
  await client.connection.ready;
  server.onRpc = () => undefined; // never answers
  const pending = client.counter("main").increment();
  await until(() => server.frames("rpc").length === 1);
  server.dropAll();
  await until(() => server.frames("rpc").length === 2, { what: "the retry" });
  const [first, again] = server.frames("rpc");
  assert.equal(first.key, again.key);
  await assert.rejects(pending, (err) => err.code === "timeout" && err.details?.code === "disconnected");
});

test("a call made while disconnected waits for the connection", async () => {
  const server = await serve();
  const { client } = connect(server.url);
  await client.connection.ready;
  await server.stop();
  await until(() => client.connection.status === "reconnecting");
  server.onRpc = (m) => ({ result: `done ${m.method}` });
  const call = client.counter("main").increment();
  await sleep(30);
  await server.listen();
  assert.equal(await call, "done increment");
  assert.equal(server.frames("rpc").length, 1);
});

test("the rpc timeout covers the wait for a socket", async () => {
  const { client } = connect(`ws://127.0.0.1:${await deadPort()}/ws/`, { rpcTimeout: 150 });
  const started = Date.now();
  await assert.rejects(client.counter("main").increment(), { code: "timeout" });
  const took = Date.now() - started;
  assert.ok(took >= 140 && took < 1000, `took ${took} ms`);
  assert.notEqual(client.connection.status, "connected");
});

test("an unanswered rpc times out, and its late answer is ignored", async () => {
  const server = await serve();
  const { client, errors } = connect(server.url, { rpcTimeout: 80 });
  await client.connection.ready;
  let late;
  server.onRpc = (m, socket) => {
    late = () => server.send(socket, { type: "rpc:result", id: m.id, result: 1 });
  };
  await assert.rejects(client.counter("main").increment(), { code: "timeout" });
  late();
  await sleep(30);
  assert.equal(errors.length, 0);
  assert.equal(client.connection.status, "connected");
});

test("backoff: full jitter under an exponential cap, then giving up", async () => {
  const url = `ws://127.0.0.1:${await deadPort()}/ws/`;
  const opened = [];
  class CountingSocket extends WebSocket {
    constructor(...args) {
      super(...args);
      opened.push(Date.now());
    }
  }
  const random = Math.random;
  Math.random = () => 0.999; // the top of every jitter range
  try {
    const { client, statuses } = connect(url, {
      WebSocket: CountingSocket,
      reconnect: { minDelay: 40, maxDelay: 100, maxAttempts: 4 },
    });
    await assert.rejects(client.connection.ready, { code: "closed" });
    assert.equal(client.connection.status, "closed");
    assert.equal(opened.length, 4);
    assert.deepEqual(statuses, ["closed"]);
    // waits before attempts 2, 3, 4: min(100, 40 * 2^n) for n = 1, 2, 3
    const gaps = opened.slice(1).map((t, i) => t - opened[i]);
    for (const [i, expected] of [80, 100, 100].entries()) {
      assert.ok(gaps[i] >= expected - 5 && gaps[i] < expected + 150, `gaps ${gaps}`);
    }
  } finally {
    Math.random = random;
  }
});

test("the connect timeout abandons a server that never says welcome", async () => {
  const server = await serve({ welcome: false });
  const { client } = connect(server.url, { connectTimeout: 60, reconnect: { minDelay: 5, maxDelay: 10, maxAttempts: 2 } });
  await assert.rejects(client.connection.ready, { code: "closed" });
  assert.equal(server.connections, 2);
});

test("close(): final, rejects what is unsettled, later calls fail at once", async () => {
  const server = await serve();
  const { client, statuses } = connect(server.url);
  await client.connection.ready;
  server.onRpc = () => undefined;
  const pending = client.counter("main").increment();
  await until(() => server.frames("rpc").length === 1);
  client.connection.close();
  await assert.rejects(pending, { code: "closed" });
  await assert.rejects(client.counter("main").increment(), { code: "closed" });
  await assert.rejects(client.connection.ready, { code: "closed" });
  assert.deepEqual(statuses, ["connected", "closed"]);
  await sleep(50);
  assert.equal(server.connections, 1);
  assert.equal(server.sockets.size, 0);
});

test("reconnect: false closes the client when the connection is lost", async () => {
  const server = await serve();
  const { client, statuses } = connect(server.url, { reconnect: false });
  await client.connection.ready;
  server.dropAll();
  await until(() => client.connection.status === "closed");
  assert.deepEqual(statuses, ["connected", "closed"]);
  await sleep(30);
  assert.equal(server.connections, 1);
});

for (const [closeCode, code] of [
  [4401, "unauthenticated"],
  [4403, "forbidden"],
]) {
  test(`close code ${closeCode} before the welcome is final: ${code}`, async () => {
    const server = await serve();
    server.refusal = { closeCode, code, message: "token expired" };
    const { client, statuses, errors } = connect(server.url, { connectTimeout: 5000 });
    const waiting = client.counter("main").increment(); // waits for a connection that never comes
    const started = Date.now();
    const message = `the server refused the connection (close code ${closeCode}): token expired`;
    await assert.rejects(client.connection.ready, { code, message });
    assert.ok(Date.now() - started < 1000, "not retried until the connect timeout");
    await assert.rejects(waiting, { code });
    assert.equal(client.connection.status, "closed");
    assert.deepEqual(statuses, ["closed"]);
    assert.deepEqual(errors.map((e) => e.code), [code]); // the error frame itself, reported as any is
    await assert.rejects(client.counter("main").increment(), { code });
    await assert.rejects(client.connection.ready, { code });
    await sleep(100);
    assert.equal(server.connections, 1);
    assert.equal(server.frames("rpc").length, 0);
  });
}

test("a reconnection refused with 4401 closes the client: the token expired while the socket was down", async () => {
  const server = await serve();
  const { client, statuses } = connect(server.url);
  await client.connection.ready;
  await server.stop();
  await until(() => client.connection.status === "reconnecting");
  const waiting = client.counter("main").increment();
  server.refusal = { closeCode: 4401, code: "unauthenticated", message: "token expired" };
  await server.listen();
  await assert.rejects(waiting, { code: "unauthenticated" });
  await assert.rejects(client.connection.ready, { code: "unauthenticated" });
  assert.equal(client.connection.status, "closed");
  assert.deepEqual(statuses, ["connected", "reconnecting", "closed"]);
  await sleep(100);
  assert.equal(server.connections, 2);
});

test("4401 on an open connection rejects the call in flight with unauthenticated, and is final", async () => {
  const server = await serve();
  const { client, statuses } = connect(server.url);
  await client.connection.ready;
  server.onRpc = () => undefined; // never answers
  const pending = client.counter("main").increment();
  await until(() => server.frames("rpc").length === 1);
  const refusal = { closeCode: 4401, code: "unauthenticated", message: "session ended" };
  for (const socket of server.sockets) server.refuse(socket, refusal);
  await assert.rejects(pending, { code: "unauthenticated", message: /close code 4401\): session ended/ });
  assert.equal(client.connection.status, "closed");
  assert.deepEqual(statuses, ["connected", "closed"]);
  await sleep(100);
  assert.equal(server.connections, 1);
});

test("other application close codes are retried", async () => {
  const server = await serve();
  server.refusal = { closeCode: 4400, code: "bad_request", message: "not a refusal" };
  const { client } = connect(server.url, { reconnect: { minDelay: 5, maxDelay: 10, maxAttempts: 3 } });
  await assert.rejects(client.connection.ready, { code: "closed" });
  assert.equal(server.connections, 3);
});
