// The client over one healthy connection: calls, events, state, and what a bad server sends.
import { test, beforeEach, afterEach } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { createClient, ZocketError } from "../../zocket_django/static/zocket_django/zocket.js";
import { FakeServer, until, sleep } from "./fake-server.mjs";

let server, client, errors;

beforeEach(async () => {
  server = await FakeServer.start();
  errors = [];
  client = createClient({ url: server.url, WebSocket, onError: (e) => errors.push(e) });
  await client.connection.ready;
});

afterEach(async () => {
  client.connection.close();
  await server.stop();
});

// The states a listener of counter/main saw, as a list.
function watch(handle = client.counter("main")) {
  const seen = [];
  const unsubscribe = handle.state.subscribe((s) => seen.push(s));
  return { seen, unsubscribe };
}

test("welcome: connected, with the server's client id", () => {
  assert.equal(client.connection.status, "connected");
  assert.equal(client.connection.clientId, "c1");
});

test("an rpc resolves with its result", async () => {
  server.onRpc = (m) => ({ result: m.input.amount * 2 });
  assert.equal(await client.counter("main").add({ amount: 21 }), 42);
  assert.equal(await client.actor("counter", "x").$call("add", { amount: 1 }), 2);
  const [first, second] = server.frames("rpc");
  assert.deepEqual(
    { actor: first.actor, actorId: first.actorId, method: first.method, input: first.input },
    { actor: "counter", actorId: "main", method: "add", input: { amount: 21 } },
  );
  assert.equal(second.actorId, "x");
  assert.notEqual(first.id, second.id);
});

test("an rpc error rejects with the server's message, code and details", async () => {
  const details = [{ loc: ["amount"], msg: "Input should be a valid integer" }];
  server.onRpc = () => ({ error: "Invalid input for add", code: "invalid_input", details });
  await assert.rejects(client.counter("main").add({ amount: "x" }), (err) => {
    assert.ok(err instanceof ZocketError);
    assert.equal(err.message, "Invalid input for add");
    assert.equal(err.code, "invalid_input");
    assert.deepEqual(err.details, details);
    return true;
  });
});

test("awaiting or serialising a handle makes no call", async () => {
  const handle = client.counter("main");
  assert.equal(await handle, handle);
  assert.equal(await client.connection.ready, undefined);
  JSON.stringify(handle);
  String(handle.state);
  await sleep(20);
  assert.equal(server.frames("rpc").length, 0);
  assert.throws(() => client.counter(42), TypeError);
  assert.throws(() => handle.on("x", "not a function"), TypeError);
  assert.throws(() => client.on("nope", () => {}), TypeError);
});

test("events: the first listener subscribes, the last unsubscribe unsubscribes", async () => {
  const room = client.chat("lobby");
  const got = [];
  const listener = (p) => got.push(["a", p]);
  const offA = room.on("newMessage", listener);
  const offA2 = room.on("newMessage", listener); // the same function twice: two listeners
  const offB = room.on("typing", (p) => got.push(["b", p]));
  await until(() => server.instance("chat", "lobby").eventSubs.size === 1, { what: "event:sub" });
  assert.equal(server.frames("event:sub").length, 1);

  server.emit("chat", "lobby", "newMessage", { text: "hi" });
  server.emit("chat", "lobby", "typing", { user: "u" });
  server.emit("chat", "other", "newMessage", { text: "not for us" });
  await until(() => got.length === 3, { what: "3 deliveries" });
  assert.deepEqual(got, [["a", { text: "hi" }], ["a", { text: "hi" }], ["b", { user: "u" }]]);

  offA();
  offA(); // a second call changes nothing
  offB();
  server.emit("chat", "lobby", "newMessage", { text: "again" });
  await until(() => got.length === 4, { what: "the remaining listener" });
  assert.equal(server.frames("event:unsub").length, 0);
  offA2();
  await until(() => server.frames("event:unsub").length === 1, { what: "event:unsub" });
  await sleep(20);
  assert.equal(server.frames("event:unsub").length, 1);
  assert.equal(server.frames("event:sub").length, 1);
});

test("state: a snapshot, then patches in order; the last unsubscribe drops the copy", async () => {
  const counter = client.counter("main");
  const a = watch(counter);
  await until(() => a.seen.length === 1, { what: "the snapshot" });
  assert.deepEqual(a.seen[0], { count: 0 });

  server.change("counter", "main", { count: 5 }, [{ op: "replace", path: "/count", value: 5 }]);
  server.change("counter", "main", { count: 6, by: "c1" }, [
    { op: "replace", path: "/count", value: 6 },
    { op: "add", path: "/by", value: "c1" },
  ]);
  await until(() => a.seen.length === 3, { what: "two patches" });
  assert.deepEqual(a.seen, server.instance("counter", "main").history);
  assert.deepEqual(counter.state.getSnapshot(), { count: 6, by: "c1" });

  // a second subscriber gets the current state at once and sends nothing
  const b = watch(counter);
  assert.deepEqual(b.seen, [{ count: 6, by: "c1" }]);
  assert.equal(server.frames("state:sub").length, 1);

  a.unsubscribe();
  a.unsubscribe();
  await sleep(20);
  assert.equal(server.frames("state:unsub").length, 0);
  b.unsubscribe();
  await until(() => server.frames("state:unsub").length === 1, { what: "state:unsub" });
  assert.equal(counter.state.getSnapshot(), undefined);
});

test("a version gap resyncs; listeners only see states the server had", async () => {
  const a = watch();
  await until(() => a.seen.length === 1);
  server.change("counter", "main", { count: 1 }, [{ op: "replace", path: "/count", value: 1 }]);
  server.change("counter", "main", { count: 2 }, [{ op: "replace", path: "/count", value: 2 }], { lose: true });
  // applied to {count: 1}, this patch would give a state the server never had
  server.change("counter", "main", { count: 2, extra: true }, [{ op: "add", path: "/extra", value: true }]);
  await until(() => server.frames("state:sub").length === 2, { what: "the resync" });
  await until(() => a.seen.length === 3, { what: "the fresh snapshot" });
  const history = server.instance("counter", "main").history;
  for (const state of a.seen) assert.ok(history.some((h) => JSON.stringify(h) === JSON.stringify(state)));
  assert.deepEqual(a.seen.at(-1), { count: 2, extra: true });
  // and patches go on from the snapshot's version
  server.change("counter", "main", { count: 3, extra: true }, [{ op: "replace", path: "/count", value: 3 }]);
  await until(() => a.seen.length === 4);
  assert.deepEqual(a.seen.at(-1), { count: 3, extra: true });
});

test("patches before the snapshot are not applied", async () => {
  server.holdSnapshots = true;
  const a = watch();
  await until(() => server.frames("state:sub").length === 1);
  server.change("counter", "main", { count: 1 }, [{ op: "replace", path: "/count", value: 1 }]);
  await sleep(30);
  assert.deepEqual(a.seen, []);
  assert.equal(client.counter("main").state.getSnapshot(), undefined);
  server.releaseSnapshots();
  await until(() => a.seen.length === 1);
  assert.deepEqual(a.seen, [{ count: 1 }]);
  assert.equal(server.frames("state:sub").length, 1);
});

test("a patch whose version went back (a reactivation missed) resyncs", async () => {
  const a = watch();
  await until(() => a.seen.length === 1);
  for (let n = 1; n <= 3; n++) server.change("counter", "main", { count: n }, [{ op: "replace", path: "/count", value: n }]);
  await until(() => a.seen.length === 4);
  const inst = server.instance("counter", "main");
  inst.version = 0; // reactivated from scratch
  server.change("counter", "main", { count: 10 }, [{ op: "replace", path: "/count", value: 10 }]);
  await until(() => server.frames("state:sub").length === 2, { what: "the resync" });
  await until(() => a.seen.length === 5);
  assert.deepEqual(a.seen.at(-1), { count: 10 });
  assert.equal(errors.length, 0);
});

test("a coalesced patch (from) applies the ops of several versions at once", async () => {
  const a = watch();
  await until(() => a.seen.length === 1);
  const inst = server.instance("counter", "main");
  const ops = [1, 2, 3].map((n) => ({ op: "replace", path: "/count", value: n }));
  inst.version = 3;
  inst.state = { count: 3 };
  server.broadcast({ type: "state:patch", actor: "counter", actorId: "main", patches: ops, version: 3, from: 0 });
  await until(() => a.seen.length === 2);
  assert.deepEqual(a.seen.at(-1), { count: 3 });
  // the next plain patch follows version 3
  server.change("counter", "main", { count: 4 }, [{ op: "replace", path: "/count", value: 4 }]);
  await until(() => a.seen.length === 3);
  assert.deepEqual(a.seen.at(-1), { count: 4 });
  assert.equal(server.frames("state:sub").length, 1);
  assert.equal(errors.length, 0);
});

test("a coalesced patch from another version resyncs; a from that is not an integer is refused", async () => {
  const a = watch();
  await until(() => a.seen.length === 1);
  const inst = server.instance("counter", "main");
  inst.version = 5;
  inst.state = { count: 5 };
  const ops = [{ op: "replace", path: "/count", value: 5 }];
  server.broadcast({ type: "state:patch", actor: "counter", actorId: "main", patches: ops, version: 5, from: 2 });
  await until(() => server.frames("state:sub").length === 2, { what: "the resync" });
  await until(() => a.seen.length === 2);
  assert.deepEqual(a.seen.at(-1), { count: 5 });
  server.broadcast({ type: "state:patch", actor: "counter", actorId: "main", patches: ops, version: 6, from: "5" });
  await until(() => errors.length === 1, { what: "the report" });
  assert.equal(errors[0].code, "bad_frame");
  assert.deepEqual(client.counter("main").state.getSnapshot(), { count: 5 });
});

test("an unsolicited snapshot replaces the state and sets the version", async () => {
  const a = watch();
  await until(() => a.seen.length === 1);
  server.change("counter", "main", { count: 7 }, [{ op: "replace", path: "/count", value: 7 }]);
  await until(() => a.seen.length === 2);
  server.broadcast({ type: "state:snapshot", actor: "counter", actorId: "main", state: { count: 100 }, version: 0 });
  server.broadcast({ type: "state:patch", actor: "counter", actorId: "main", version: 1, patches: [{ op: "replace", path: "/count", value: 101 }] });
  await until(() => a.seen.length === 4);
  assert.deepEqual(a.seen.slice(2), [{ count: 100 }, { count: 101 }]);
  assert.equal(server.frames("state:sub").length, 1);
});

test("prototype-polluting and failing patches are refused and resync", async () => {
  const a = watch();
  await until(() => a.seen.length === 1);
  const evil = [
    [{ op: "add", path: "/__proto__/polluted", value: true }],
    [{ op: "add", path: "/__proto__", value: { polluted: true } }],
    [{ op: "add", path: "/constructor/prototype/polluted", value: true }],
    [{ op: "copy", from: "/__proto__", path: "/polluted" }],
    [{ op: "test", path: "/count", value: 99 }],
  ];
  for (const [i, patches] of evil.entries()) {
    const inst = server.instance("counter", "main");
    server.broadcast({ type: "state:patch", actor: "counter", actorId: "main", patches, version: inst.version + 1 });
    await until(() => server.frames("state:sub").length === i + 2, { what: `resync ${i}` });
    await until(() => a.seen.length === i + 2, { what: `snapshot ${i}` });
  }
  assert.equal({}.polluted, undefined);
  for (const state of a.seen) {
    assert.deepEqual(state, { count: 0 });
    assert.equal(state.polluted, undefined);
  }
  assert.deepEqual(new Set(errors.map((e) => e.code)), new Set(["bad_patch"]));
  assert.equal(errors.length, evil.length);
});

test("invalid frames are ignored and reported, never thrown", async () => {
  const a = watch();
  await until(() => a.seen.length === 1);
  const garbage = [
    "not json",
    "[1, 2]",
    "null",
    "{}",
    JSON.stringify({ type: "mystery" }),
    JSON.stringify({ type: "rpc:result", result: 1 }),
    JSON.stringify({ type: "welcome" }),
    JSON.stringify({ type: "event", actor: "counter", event: "x" }),
    JSON.stringify({ type: "state:snapshot", actor: "counter", actorId: "main" }),
    JSON.stringify({ type: "state:patch", actor: "counter", actorId: "main", patches: {}, version: 1 }),
    JSON.stringify({ type: "state:patch", actor: "counter", actorId: "main", patches: [], version: "1" }),
  ];
  for (const frame of garbage) server.broadcast(frame);
  for (const socket of server.sockets) socket.send(Buffer.from("binary"), { binary: true });
  await until(() => errors.length === garbage.length + 1, { what: "the reports" });
  assert.ok(errors.every((e) => e instanceof ZocketError && e.code === "bad_frame"));
  assert.equal(errors[0].details, "not json");
  // nothing changed, and the connection still works
  assert.equal(client.connection.status, "connected");
  assert.deepEqual(a.seen, [{ count: 0 }]);
  server.onRpc = () => ({ result: "fine" });
  assert.equal(await client.counter("main").increment(), "fine");
});

test("the server's error frames are reported", async () => {
  const reported = [];
  const off = client.on("error", (e) => reported.push(e));
  server.broadcast({ type: "error", code: "unknown_type", error: "Unknown message type", ref: { type: "nope" } });
  await until(() => reported.length === 1);
  assert.equal(reported[0].code, "unknown_type");
  assert.deepEqual(reported[0].details, { type: "nope" });
  off();
});

test("a listener that throws does not stop delivery to the others", async () => {
  const counter = client.counter("main");
  const boom = () => {
    throw new Error("boom");
  };
  const got = [];
  counter.state.subscribe(boom);
  counter.state.subscribe((s) => got.push(["state", s]));
  counter.on("reset", boom);
  counter.on("reset", (p) => got.push(["event", p]));
  client.connection.subscribe(boom);
  await until(() => got.length === 1);
  server.emit("counter", "main", "reset", { by: "c9" });
  await until(() => got.length === 2);
  assert.deepEqual(got, [["state", { count: 0 }], ["event", { by: "c9" }]]);
  assert.deepEqual(errors.map((e) => e.code), ["listener_error", "listener_error"]);
  assert.equal(errors[0].details.message, "boom");
});

test("a stale copy asks with resync: true; a first subscription and a new socket ask plainly", async () => {
  const a = watch();
  await until(() => a.seen.length === 1);
  assert.equal(server.frames("state:sub")[0].resync, undefined);
  // a bad patch in sequence: the server sees nothing new, so a plain repeat would go unanswered
  const inst = server.instance("counter", "main");
  server.broadcast({ type: "state:patch", actor: "counter", actorId: "main", patches: [{ op: "remove", path: "/nope" }], version: inst.version + 1 });
  await until(() => a.seen.length === 2, { what: "the snapshot the resync asked for" });
  assert.deepEqual(server.frames("state:sub").map((f) => f.resync), [undefined, true]);
  server.dropAll();
  await until(() => server.frames("state:sub").length === 3, { what: "the subscription on the new socket" });
  assert.equal(server.frames("state:sub")[2].resync, undefined);
  assert.equal(server.frames("state:sub")[2].connection, "c2");
});

test("a refused state subscription reaches the error callbacks of its subscribers", async () => {
  server.onStateSub = (m) => ({
    type: "error",
    code: "forbidden",
    error: "permission denied",
    ref: { type: "state:sub", actor: m.actor, actorId: m.actorId },
  });
  const counter = client.counter("main");
  const refusals = [];
  const seen = [];
  const off = counter.state.subscribe((s) => seen.push(s), (err) => refusals.push(["first", err]));
  counter.state.subscribe(() => {}, (err) => refusals.push(["second", err]));
  client.counter("other").state.subscribe(() => {}, (err) => refusals.push(["other", err]));
  await until(() => refusals.length === 3, { what: "the refusals" });
  assert.deepEqual(
    refusals.map(([who, err]) => [who, err.code, err.details.actorId]),
    [["first", "forbidden", "main"], ["second", "forbidden", "main"], ["other", "forbidden", "other"]],
  );
  assert.ok(refusals.every(([, err]) => err instanceof ZocketError && err.message === "permission denied"));
  assert.deepEqual(seen, []);
  // client.on("error") hears every refusal, as before
  assert.deepEqual(errors.map((e) => e.code), ["forbidden", "forbidden"]);
  // once unsubscribed, a callback hears nothing more
  off();
  const ref = { type: "state:sub", actor: "counter", actorId: "main" };
  server.broadcast({ type: "error", code: "forbidden", error: "subscription ended", ref });
  await until(() => refusals.length === 4, { what: "the second refusal" });
  assert.equal(refusals[3][0], "second");
});

test("a refused event subscription reaches the error callbacks of that instance's listeners", async () => {
  const counter = client.counter("main");
  const refusals = [];
  const got = [];
  const off = counter.on("reset", (p) => got.push(p), (err) => refusals.push(["reset", err.code]));
  counter.on("newMessage", () => {}, (err) => refusals.push(["newMessage", err.code]));
  counter.on("other", () => {}); // no error callback: client.on("error") only
  counter.state.subscribe(() => {}, (err) => refusals.push(["state", err.code]));
  await until(() => server.frames("event:sub").length === 1);
  server.emit("counter", "main", "reset", { by: "c9" });
  const ref = { type: "event:sub", actor: "counter", actorId: "main" };
  server.broadcast({ type: "error", code: "unavailable", error: "activation failed", ref });
  await until(() => refusals.length === 2, { what: "the refusal" });
  assert.deepEqual(refusals, [["reset", "unavailable"], ["newMessage", "unavailable"]]);
  assert.deepEqual(got, [{ by: "c9" }]);
  assert.deepEqual(errors.map((e) => e.code), ["unavailable"]);
  off();
  assert.throws(() => counter.on("reset", () => {}, "not a function"), TypeError);
  assert.throws(() => counter.state.subscribe(() => {}, 42), TypeError);
});
