// The client against the real server: the demo project under daphne (.venv/bin/daphne, made by
// scripts/setup), on a free port of 127.0.0.1 and a SQLite file of its own (migrated here: the
// demo's actors are durable), with its actors `counter` and `chat`.
// Without .venv the file is skipped with the reason shown, except under CI=true, where it fails.
import { test, before, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";
import { createClient } from "../../zocket_django/static/zocket_django/zocket.js";
import { until, sleep } from "./fake-server.mjs";

const root = fileURLToPath(new URL("../..", import.meta.url));
const daphnePath = `${root}.venv/bin/daphne`;
const pythonPath = `${root}.venv/bin/python`;
const skip = !existsSync(daphnePath) && process.env.CI !== "true" && `no ${daphnePath}: run scripts/setup first`;

/** A port that was free a moment ago. */
function freePort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
    probe.on("error", reject);
  });
}

const canConnect = (port) =>
  new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1", () => {
      socket.destroy();
      resolve(true);
    });
    socket.on("error", () => resolve(false));
  });

let env, dbDir;

/** The demo's environment, on a freshly migrated SQLite file in a temporary directory. */
function migratedEnv() {
  dbDir = mkdtempSync(join(tmpdir(), "zocket-js-live-"));
  const demo = { ...process.env, DJANGO_SETTINGS_MODULE: "demo_project.settings", DJANGO_DEBUG: "0" };
  demo.DATABASE_URL = `sqlite:///${join(dbDir, "db.sqlite3")}`;
  delete demo.REDIS_URL; // one process, the in-memory layer
  execFileSync(pythonPath, ["manage.py", "migrate", "--noinput", "-v0"], { cwd: root, env: demo, timeout: 120000 });
  return demo;
}

/** The demo under daphne on `port`: resolves once it accepts connections. */
async function startDaphne(port) {
  const child = spawn(daphnePath, ["-b", "127.0.0.1", "-p", String(port), "demo_project.asgi:application"], {
    cwd: root,
    env,
    stdio: ["ignore", "ignore", "pipe"],
  });
  let log = "";
  child.stderr.on("data", (chunk) => (log += chunk));
  const exited = new Promise((resolve) => child.once("exit", resolve));
  const deadline = Date.now() + 30000;
  while (!(await canConnect(port))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`daphne did not start on ${port}:\n${log}`);
    }
    await sleep(50);
  }
  return {
    /** Stops daphne (SIGKILL: a crash, no goodbye to the sockets) and waits for its exit. */
    async stop(signal = "SIGTERM") {
      if (child.exitCode === null) child.kill(signal);
      await exited;
    },
  };
}

let port, daphne;
const clients = [];

before(async () => {
  if (skip) return;
  env = migratedEnv();
  port = await freePort();
  daphne = await startDaphne(port);
});

after(async () => {
  await daphne?.stop();
  if (dbDir) rmSync(dbDir, { recursive: true, force: true });
});

afterEach(() => {
  for (const client of clients.splice(0)) client.connection.close();
});

function connect(options = {}) {
  const errors = [];
  const client = createClient({
    url: `ws://127.0.0.1:${port}/ws/`,
    WebSocket,
    reconnect: { minDelay: 50, maxDelay: 500 },
    onError: (e) => errors.push(e),
    ...options,
  });
  clients.push(client);
  return Object.assign(client, { errors });
}

// a fresh instance id per test, since the server keeps instances between tests
let serial = 0;
const fresh = (name) => `${name}-${process.pid}-${++serial}`;

test("counter: calls, errors with code and details, live state", { skip }, async () => {
  const client = connect();
  await client.connection.ready;
  assert.equal(typeof client.connection.clientId, "string");
  const counter = client.counter(fresh("c"));
  const states = [];
  counter.state.subscribe((s) => states.push(s.count));
  await until(() => states.length === 1, { what: "the snapshot" });
  assert.equal(await counter.add({ amount: 5 }), 5);
  assert.equal(await counter.increment(), 6);
  await until(() => counter.state.getSnapshot()?.count === 6, { what: "count 6" });
  assert.deepEqual(states, [0, 5, 6]);

  await assert.rejects(counter.add({ amount: "x" }), (err) => {
    assert.equal(err.code, "invalid_input");
    assert.ok(Array.isArray(err.details) && err.details[0].loc.includes("amount"), JSON.stringify(err.details));
    return true;
  });
  await assert.rejects(counter.nope(), { code: "unknown_method" });
  await assert.rejects(client.nosuchactor("x").go(), { code: "unknown_actor" });
  assert.deepEqual(client.errors, []);
});

test("counter: reset emits to event subscribers, refcounted", { skip }, async () => {
  const [a, b] = [connect(), connect()];
  await Promise.all([a.connection.ready, b.connection.ready]);
  const id = fresh("c");
  const got = [];
  const off1 = b.counter(id).on("reset", (p) => got.push(p));
  const off2 = b.counter(id).on("reset", (p) => got.push(p));
  await b.counter(id).increment(); // the subscription is in place once this answers
  await a.counter(id).reset();
  await until(() => got.length === 2, { what: "two deliveries" });
  assert.deepEqual(got, [{ by: a.connection.clientId }, { by: a.connection.clientId }]);
  off1();
  off2();
  await b.counter(id).increment();
  await a.counter(id).reset();
  await b.counter(id).increment();
  await sleep(50);
  assert.equal(got.length, 2);
});

test("chat: two clients see the same messages and presence", { skip }, async () => {
  const [a, b] = [connect(), connect()];
  await Promise.all([a.connection.ready, b.connection.ready]);
  const room = fresh("room");
  const heard = [];
  b.chat(room).on("newMessage", (m) => heard.push(m));
  a.chat(room).state.subscribe(() => {});
  b.chat(room).state.subscribe(() => {});
  const ids = [a.connection.clientId, b.connection.clientId].sort();
  await until(() => JSON.stringify([...(a.chat(room).state.getSnapshot()?.online ?? [])].sort()) === JSON.stringify(ids), {
    what: "both online",
  });
  assert.deepEqual(await a.chat(room).send({ text: "hello" }), { user: a.connection.clientId, text: "hello" });
  await b.chat(room).send({ text: "hi back" });
  await assert.rejects(a.chat(room).send({ text: "" }), { code: "invalid_input" });
  const expected = [
    { user: a.connection.clientId, text: "hello" },
    { user: b.connection.clientId, text: "hi back" },
  ];
  await until(() => heard.length === 2 && b.chat(room).state.getSnapshot()?.messages.length === 2, { what: "both messages" });
  assert.deepEqual(heard, expected);
  assert.deepEqual(a.chat(room).state.getSnapshot().messages, expected);
  assert.deepEqual(b.chat(room).state.getSnapshot(), a.chat(room).state.getSnapshot());
});

test("many concurrent calls: every client's copy converges on the server's", { skip }, async () => {
  const [a, b] = [connect(), connect()];
  const id = fresh("c");
  a.counter(id).state.subscribe(() => {});
  b.counter(id).state.subscribe(() => {});
  const calls = [];
  for (let i = 0; i < 50; i++) calls.push(a.counter(id).increment(), b.counter(id).add({ amount: 2 }));
  const results = await Promise.all(calls);
  assert.equal(Math.max(...results), 150);
  await until(() => a.counter(id).state.getSnapshot()?.count === 150 && b.counter(id).state.getSnapshot()?.count === 150, {
    what: "count 150 on both",
  });
  assert.deepEqual([...a.errors, ...b.errors], []);
});

test("the real server answers the heartbeat", { skip }, async () => {
  const client = connect({ heartbeatInterval: 20, heartbeatTimeout: 500 });
  const statuses = [];
  client.connection.subscribe((s) => statuses.push(s));
  await client.connection.ready;
  await sleep(300);
  assert.equal(client.connection.status, "connected");
  assert.deepEqual(statuses, ["connected"]);
});

test("a forged token: refused with 4401, and the client stops", { skip }, async () => {
  const client = connect({ url: `ws://127.0.0.1:${port}/ws/?token=not.a.token` });
  const statuses = [];
  client.connection.subscribe((s) => statuses.push(s));
  const message = "the server refused the connection (close code 4401): invalid token";
  await assert.rejects(client.connection.ready, { code: "unauthenticated", message });
  await assert.rejects(client.counter(fresh("c")).increment(), { code: "unauthenticated" });
  assert.deepEqual(statuses, ["closed"]);
  assert.deepEqual(client.errors.map((e) => [e.code, e.message]), [["unauthenticated", "invalid token"]]);
});

test("daphne killed and restarted: the client reconnects and its state converges", { skip, timeout: 60000 }, async () => {
  const client = connect();
  await client.connection.ready;
  const id = fresh("c");
  const counter = client.counter(id);
  const resets = [];
  counter.on("reset", (p) => resets.push(p));
  counter.state.subscribe(() => {});
  await counter.add({ amount: 7 });
  await until(() => counter.state.getSnapshot()?.count === 7);
  const firstId = client.connection.clientId;

  await daphne.stop("SIGKILL");
  await until(() => client.connection.status === "reconnecting", { what: "the loss to be noticed" });
  const during = counter.increment(); // waits for the connection, within rpcTimeout
  daphne = await startDaphne(port);
  await client.connection.ready;
  assert.notEqual(client.connection.clientId, firstId);
  // the counter is write-through: the new process restores it as acknowledged (7), then the waiting increment
  assert.equal(await during, 8);
  await until(() => counter.state.getSnapshot()?.count === 8, { what: "the new server's state" });
  // the event subscription came back too
  await counter.reset();
  await until(() => resets.length === 1, { what: "the reset event" });
  await until(() => counter.state.getSnapshot()?.count === 0);
  assert.deepEqual(client.errors, []);
});

test("refused subscriptions reach the handle's error callbacks", { skip }, async () => {
  const client = connect();
  await client.connection.ready;
  const ghost = client.nosuchactor("x");
  const refusals = [];
  ghost.state.subscribe(() => {}, (err) => refusals.push(["state", err.code, err.details]));
  ghost.on("anything", () => {}, (err) => refusals.push(["event", err.code, err.details]));
  await until(() => refusals.length === 2, { what: "both refusals" });
  assert.deepEqual(refusals.sort(), [
    ["event", "unknown_actor", { type: "event:sub", actor: "nosuchactor", actorId: "x" }],
    ["state", "unknown_actor", { type: "state:sub", actor: "nosuchactor", actorId: "x" }],
  ]);
  assert.equal(client.errors.length, 2); // client.on("error") hears them too
  // the socket is fine: a real subscription works alongside
  const counter = client.counter(fresh("c"));
  const states = [];
  counter.state.subscribe((s) => states.push(s.count), (err) => refusals.push(["counter", err.code]));
  await until(() => states.length === 1, { what: "the snapshot" });
  assert.equal(refusals.length, 2);
});
