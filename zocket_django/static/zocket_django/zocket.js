/**
 * zocket.js: the browser client of zocket-django. A dependency-free ES module
 * speaking the Zocket wire protocol (docs/protocol.md); it also runs in Node 20
 * when given a WebSocket class (`import WebSocket from "ws"`, then
 * `createClient({ url, WebSocket })`).
 *
 *   import { createClient } from "/static/zocket_django/zocket.js";
 *   const client = createClient({ url: "wss://example.com/ws/" });
 *   const counter = client.counter("main");          // or client.actor("counter", "main")
 *   await counter.add({ amount: 5 });                 // an RPC; rejects with a ZocketError
 *   const off = counter.on("reset", (p) => ...);      // events; off() unsubscribes
 *   counter.state.subscribe((s) => render(s.count));  // live state, kept by JSON patches
 *   counter.state.subscribe(render, (err) => ...);     // err: the server refused the subscription
 *
 * Connection status (`client.connection.status`, `.subscribe(cb)`):
 *   "connecting"   no connection yet: opening the first socket, or waiting to retry
 *   "connected"    the server's `welcome` arrived; calls and subscriptions flow
 *   "reconnecting" the connection was lost; waiting for the next attempt, or trying
 *   "offline"      paused while the browser is offline or the page hidden; the
 *                  client reconnects as soon as it is back (an open socket is kept
 *                  while the page is hidden, dropped when the browser goes offline)
 *   "closed"       close() was called, reconnection is off, it gave up, or the server
 *                  refused the connection (close code 4401 or 4403); final
 *
 * Guarantees: every call carries a random `key`, and the server runs a key at most
 * once while it keeps its outcome (`CALL_KEY_SECONDS`, 60 s by default: keep
 * `rpcTimeout` well below it). A call whose socket dropped, or that the server answered `unavailable`
 * (the owner of the actor moved or was in doubt), is sent again with the same key
 * until it is answered or its timeout passes (with `rpcTimeout: 0`, for as long as
 * it takes): it runs exactly once, or the promise rejects with code "timeout" and the
 * last attempt's error as `details`. A call made while disconnected waits for the
 * connection, within its timeout. Subscriptions survive reconnection. State
 * listeners only ever see states the server had: a patch is applied only to the
 * state of the version just before it (or, for a coalesced patch, of its `from`), of the same `epoch` (incarnation of the
 * instance), anything else asks the server for a fresh snapshot (`state:sub` with
 * `resync: true`); a snapshot of an older incarnation, or older than the state shown, is never
 * applied. A subscription the server refuses (an `error` frame naming it) reaches the error
 * callback given with it, as well as client.on("error"). A socket the server closes with 4401 (credentials
 * refused: code "unauthenticated") or 4403 ("forbidden") is not reopened: the client
 * closes, and every unsettled call, `ready` and every later call reject with that code.
 */

/** @typedef {"connecting" | "connected" | "reconnecting" | "offline" | "closed"} Status */

/**
 * @typedef {object} ClientOptions
 * @property {string} url WebSocket URL of the server's zocket route, e.g. "wss://example.com/ws/".
 * @property {{ new (url: string): WebSocket }} [WebSocket] WebSocket class; defaults to the global one (pass `ws` in Node 20).
 * @property {number} [rpcTimeout=10000] ms a call may take, the wait for a connection and retries included;
 *   0 = no limit.
 * @property {number} [connectTimeout=10000] ms one attempt may take to open the socket and receive `welcome`.
 * @property {false | {minDelay?: number, maxDelay?: number, maxAttempts?: number}} [reconnect]
 *   Backoff with full jitter: the delay before a retry is random in [0, min(maxDelay, minDelay * 2^failures)].
 *   Defaults: minDelay 250, maxDelay 10000, maxAttempts Infinity (failed attempts in a row before
 *   giving up). `false`: a lost connection closes the client.
 * @property {number} [heartbeatInterval=25000] ms between `ping`s on an idle connection; 0 = no heartbeat.
 * @property {number} [heartbeatTimeout=10000] ms to wait for a `pong` before the socket is taken as dead.
 * @property {boolean} [pauseWhenHidden=true] make no connection attempt while the page is hidden.
 * @property {(error: ZocketError) => void} [onError] receives what the client ignored (see client.on("error")).
 */

/**
 * @typedef {object} Connection
 * @property {Status} status current status
 * @property {string | null} clientId the id the server gave this connection, null while not connected
 * @property {Promise<void>} ready settles when the client is (next) connected; rejects once it is
 *   closed, with the reason (code "closed", or "unauthenticated"/"forbidden" when the server refused it)
 * @property {(cb: (status: Status) => void) => () => void} subscribe status changes; returns an unsubscribe function
 * @property {() => void} close closes the socket for good and rejects every unsettled call
 */

/**
 * @typedef {object} StateView
 * @property {(cb: (state: any) => void, onError?: (error: ZocketError) => void) => () => void} subscribe
 *   called with each new state (at once if there is one); the first subscriber sends `state:sub`, the
 *   last unsubscribe `state:unsub`. `onError` gets the server's refusal of the subscription (or its
 *   end: a `read` permission removed), with the server's code: forbidden, unavailable, too_large, ...
 * @property {() => any} getSnapshot the latest state, undefined before the first snapshot or when nobody subscribes
 */

/**
 * A handle on one actor instance. Any other property is a method: `handle.add(input)`
 * sends an `rpc` and resolves with the result. A method whose name is taken here
 * (on, state, then, toJSON, toString, ...) is reached with `handle.$call(name, input)`.
 * @typedef {object} ActorHandleBase
 * @property {(event: string, cb: (payload: any) => void, onError?: (error: ZocketError) => void) => () => void} on
 *   listen to an event; the first listener sends `event:sub`, the last unsubscribe `event:unsub`;
 *   `onError` gets the server's refusal (or end) of the instance's event subscription
 * @property {StateView} state the instance's live state
 * @property {(method: string, input?: unknown) => Promise<any>} $call call a method by name
 * @typedef {ActorHandleBase & {[method: string]: (input?: unknown) => Promise<any>}} ActorHandle
 */

/**
 * The client. Any other property is an actor name: `client.counter(id)` is `client.actor("counter", id)`.
 * @typedef {object} ClientBase
 * @property {Connection} connection
 * @property {(name: string, id: string) => ActorHandle} actor a handle on one actor instance
 * @property {((event: "status", cb: (status: Status) => void) => () => void) &
 *   ((event: "error", cb: (error: ZocketError) => void) => () => void)} on
 *   "status": as connection.subscribe; "error": invalid frames, failed patches, throwing
 *   listeners and the server's `error` frames, which are reported here and never thrown
 * @typedef {ClientBase & {[actor: string]: (id: string) => ActorHandle}} ZocketClient
 */

/**
 * Every rejection and report of this client. `code` is the server's (docs/protocol.md) or one of
 * the client's own: "timeout" (details: the last attempt's error, "disconnected" or "unavailable"),
 * "closed", "bad_frame", "bad_patch", "listener_error" ("disconnected" also reports a socket that
 * could not be opened).
 */
export class ZocketError extends Error {
  /**
   * @param {string} message
   * @param {string} [code]
   * @param {unknown} [details] the server's details, or the offending frame or thrown error
   */
  constructor(message, code, details) {
    super(message);
    this.name = "ZocketError";
    this.code = code;
    this.details = details;
  }
}

/** Close codes after which reconnecting cannot help, and the error code each stands for. */
const FINAL_CLOSE_CODES = { 4401: "unauthenticated", 4403: "forbidden" };

const isObj = (v) => v !== null && typeof v === "object";
const isStr = (v) => typeof v === "string";
const isVersion = (v) => v === undefined || Number.isInteger(v);
/** Milliseconds before retry number `n` (0-based) of a call answered `unavailable`. */
const retryDelay = (n) => Math.min(1000, 50 * 2 ** n) * (0.5 + Math.random() / 2);

/** A random key for one call (128 bits, base64url): retries of the call carry it, so it runs once. */
function newKey() {
  const bytes = new Uint8Array(16);
  if (globalThis.crypto?.getRandomValues) globalThis.crypto.getRandomValues(bytes);
  else for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(Math.random() * 256);
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/**
 * Whether snapshot `m` is older than what entry `e` shows: an earlier incarnation, or an earlier
 * version of the same one. Servers without epochs (Zocket's own) send none: never older.
 */
const olderThanShown = (e, m) =>
  e.state !== undefined &&
  Number.isInteger(m.epoch) &&
  Number.isInteger(e.epoch) &&
  (m.epoch < e.epoch || (m.epoch === e.epoch && Number.isInteger(e.version) && m.version < e.version));
const badPatch = (why) => {
  throw new ZocketError(`invalid patch: ${why}`, "bad_patch");
};

/** JSON equality, for the `test` operation. */
const equal = (a, b) =>
  a === b ||
  (isObj(a) &&
    isObj(b) &&
    Array.isArray(a) === Array.isArray(b) &&
    Object.keys(a).length === Object.keys(b).length &&
    Object.keys(a).every((k) => Object.hasOwn(b, k) && equal(a[k], b[k])));

/** A JSON Pointer (RFC 6901) as unescaped segments; segments that could reach a prototype are refused. */
function pointer(path) {
  if (path === "") return [];
  if (!isStr(path) || path[0] !== "/" || /~([^01]|$)/.test(path)) badPatch(`bad path ${path}`);
  return path
    .slice(1)
    .split("/")
    .map((s) => {
      s = s.replace(/~1/g, "/").replace(/~0/g, "~");
      if (s === "__proto__" || s === "constructor" || s === "prototype") badPatch(`forbidden path ${path}`);
      return s;
    });
}

/**
 * Applies RFC 6902 operations to `doc` and returns the new document; `doc` is left
 * untouched and the result shares every subtree the operations did not change.
 * Throws a ZocketError (code "bad_patch") when an operation fails.
 * @param {any} doc
 * @param {Array<{op: string, path: string, from?: string, value?: any}>} ops
 * @returns {any}
 */
export function applyPatch(doc, ops) {
  if (!Array.isArray(ops)) badPatch("not an array");
  const root = { v: doc }; // the document as a child, so "" is a path like any other
  const copies = new WeakSet([root]); // containers made by this call, free to mutate

  // `k` checked as an existing key of container `c`, or with `adding` as a place to add at
  const key = (c, k, adding) => {
    if (Array.isArray(c)) {
      const i = adding && k === "-" ? c.length : /^(0|[1-9]\d*)$/.test(k) ? +k : -1;
      if (i < 0 || i > c.length - (adding ? 0 : 1)) badPatch(`no index ${k}`);
      return i;
    }
    if (!adding && !Object.hasOwn(c, k)) badPatch(`no member ${k}`);
    return k;
  };
  // [container, last segment] of `path`; to `write`, the containers on the way are copied first
  const locate = (path, write) => {
    const keys = ["v", ...pointer(path)];
    let c = root;
    for (const k of keys.slice(0, -1)) {
      const i = key(c, k);
      let child = c[i];
      if (!isObj(child)) badPatch(`${path} goes through a scalar`);
      if (write && !copies.has(child)) {
        child = c[i] = Array.isArray(child) ? child.slice() : { ...child };
        copies.add(child);
      }
      c = child;
    }
    return [c, keys[keys.length - 1]];
  };
  const get = (path) => {
    const [c, k] = locate(path);
    return c[key(c, k)];
  };
  const add = (path, value) => {
    const [c, k] = locate(path, true);
    const i = key(c, k, true);
    if (Array.isArray(c)) c.splice(i, 0, value);
    else c[i] = value;
  };
  const remove = (path) => {
    const [c, k] = locate(path, true);
    const i = key(c, k);
    const value = c[i];
    if (Array.isArray(c)) c.splice(i, 1);
    else delete c[i];
    return value;
  };

  for (const op of ops) {
    if (!isObj(op)) badPatch("not an operation");
    const value = () => (Object.hasOwn(op, "value") ? op.value : badPatch(`${op.op} without a value`));
    switch (op.op) {
      case "add":
        add(op.path, value());
        break;
      case "remove":
        remove(op.path);
        break;
      case "replace": {
        // in place: a replaced member keeps its position among its object's keys
        const [c, k] = locate(op.path, true);
        c[key(c, k)] = value();
        break;
      }
      case "move":
        if (String(op.path).startsWith(op.from + "/")) badPatch(`cannot move ${op.from} into itself`);
        add(op.path, remove(op.from));
        break;
      case "copy":
        add(op.path, structuredClone(get(op.from)));
        break;
      case "test":
        if (!equal(get(op.path), value())) badPatch(`test failed at ${op.path}`);
        break;
      default:
        badPatch(`unknown op ${op.op}`);
    }
  }
  return root.v;
}

/** A promise with its settle functions; never an unhandled rejection by itself. */
function deferred() {
  const d = {};
  d.p = new Promise((resolve, reject) => Object.assign(d, { resolve, reject }));
  d.p.catch(() => {});
  return d;
}

/**
 * A Proxy over `target`: its own members win, `then`, `toJSON` and symbols stay undefined (so
 * that `await handle` or JSON.stringify(handle) makes no call), every other name is `make(name)`.
 */
const dynamic = (target, make) =>
  new Proxy(target, {
    get: (t, p) => (p in t || typeof p === "symbol" || p === "then" || p === "toJSON" ? t[p] : make(p)),
  });

/**
 * Creates a client and starts connecting.
 * @param {ClientOptions} options
 * @returns {ZocketClient}
 */
export function createClient(options) {
  const {
    url,
    WebSocket: Socket = globalThis.WebSocket,
    rpcTimeout = 10000,
    connectTimeout = 10000,
    heartbeatInterval = 25000,
    heartbeatTimeout = 10000,
    pauseWhenHidden = true,
    onError,
  } = options;
  const retry =
    options.reconnect !== false && { minDelay: 250, maxDelay: 10000, maxAttempts: Infinity, ...options.reconnect };
  if (!Socket) throw new TypeError("zocket: no WebSocket class; pass one as options.WebSocket");
  // browser globals, absent in Node
  const { window: win, document: doc, navigator: nav } = globalThis;
  const paused = () => nav?.onLine === false || (pauseWhenHidden && doc?.visibilityState === "hidden");

  /** @type {any} the current socket, from its creation until it is dropped */
  let ws = null;
  /** @type {Status} */
  let status = "connecting";
  /** set by `welcome`, cleared when the socket is dropped: non-null means frames may be sent */
  let clientId = null;
  let everConnected = false;
  let attempts = 0; // connection attempts since the last `welcome`
  let seq = 0; // ids of calls and pings
  let pingId; // the ping waiting for its pong
  let lastError; // the message of the current socket's last `error` frame about the connection itself
  let closedBy; // the ZocketError the client closed with
  let retryTimer, connectTimer, pingTimer, pongTimer;
  let ready = deferred();
  const calls = new Map(); // call id -> unsettled call
  // actor key -> {actor, actorId, key, events, watchers, eventErrors, stateErrors, state, version, resyncing}
  const entries = new Map();
  const statusFns = new Set();
  const errorFns = new Set();

  const clearTimers = () => [retryTimer, connectTimer, pingTimer, pongTimer].forEach(clearTimeout);
  const send = (msg) => clientId !== null && ws.send(JSON.stringify(msg));
  const sendTo = (type, e) => send({ type, actor: e.actor, actorId: e.actorId });

  function report(error) {
    if (!onError && !errorFns.size) return console.error(error);
    for (const cb of [onError, ...errorFns]) {
      try {
        cb?.(error);
      } catch {
        // an error hook that throws has nobody left to tell
      }
    }
  }
  function emit(set, ...args) {
    for (const cb of set) {
      try {
        cb(...args);
      } catch (err) {
        report(new ZocketError("a listener threw", "listener_error", err));
      }
    }
  }
  /**
   * Adds a listener to `set` (as a fresh wrapper, so one function may be added twice) and returns
   * its unsubscribe function, which works once and calls `onEmpty` when the set becomes empty.
   * @param {Set<Function>} set
   * @param {Function} cb
   * @param {() => void} [onEmpty]
   * @param {(...args: any[]) => void} [wrapper] what goes into the set; by default it calls `cb`
   */
  function listen(set, cb, onEmpty, wrapper = (v) => cb(v)) {
    if (typeof cb !== "function") throw new TypeError("zocket: a listener must be a function");
    set.add(wrapper);
    return () => {
      if (set.delete(wrapper) && !set.size) onEmpty?.();
    };
  }
  function setStatus(next) {
    if (next === status) return;
    status = next;
    emit(statusFns, next);
  }

  // -- connection ------------------------------------------------------------------------------

  function connect() {
    clearTimers();
    if (paused()) return setStatus("offline");
    attempts++;
    setStatus(everConnected ? "reconnecting" : "connecting");
    let s;
    try {
      s = ws = new Socket(url);
    } catch (err) {
      report(new ZocketError(`cannot open ${url}`, "disconnected", err));
      ws = null;
      return schedule();
    }
    lastError = undefined;
    if (connectTimeout) connectTimer = setTimeout(() => drop(s), connectTimeout);
    s.onmessage = (e) => s === ws && receive(e.data);
    s.onclose = (e) => {
      const code = FINAL_CLOSE_CODES[e?.code];
      if (!code || s !== ws) return drop(s);
      const why = lastError || e.reason || code;
      shutdown(new ZocketError(`the server refused the connection (close code ${e.code}): ${why}`, code));
    };
    s.onerror = () => {}; // a close event follows (and `ws` in Node needs a listener)
  }

  // Forgets socket `s` if it is the current one: its calls in flight are rejected, subscriptions
  // are kept for the next connection. Does not wait for a close handshake a dead peer never answers.
  function drop(s) {
    if (s !== ws) return;
    ws = clientId = pingId = null;
    clearTimers();
    try {
      s.close();
    } catch {
      // already closing
    }
    if (status === "connected") ready = deferred();
    // Calls in flight go again, with their keys, on the next connection (the server runs a key once).
    for (const c of calls.values()) {
      c.sent = false;
      c.lastError = new ZocketError(`connection lost during ${c.method}`, "disconnected");
    }
    schedule();
  }

  // Plans the next attempt: none while paused, a random backoff otherwise.
  function schedule() {
    clearTimers();
    if (!retry) return shutdown(new ZocketError("connection lost", "closed"));
    if (paused()) return setStatus("offline");
    if (attempts >= retry.maxAttempts) return shutdown(new ZocketError(`no connection after ${attempts} attempts`, "closed"));
    setStatus(everConnected ? "reconnecting" : "connecting");
    retryTimer = setTimeout(connect, Math.random() * Math.min(retry.maxDelay, retry.minDelay * 2 ** attempts));
  }

  function shutdown(reason) {
    closedBy = reason;
    clearTimers();
    const s = ws;
    ws = clientId = null;
    try {
      s?.close();
    } catch {
      // already closing
    }
    setStatus("closed");
    for (const c of calls.values()) c.done(reason);
    ready.reject(reason);
    (ready = deferred()).reject(reason);
    win?.removeEventListener?.("online", onEnvironment);
    win?.removeEventListener?.("offline", onEnvironment);
    doc?.removeEventListener?.("visibilitychange", onEnvironment);
  }

  // Sends a ping after `delay`; a pong that does not come back in time drops the socket.
  function heartbeat(delay = heartbeatInterval) {
    if (!heartbeatInterval) return;
    clearTimeout(pingTimer);
    pingTimer = setTimeout(() => {
      const s = ws;
      send({ type: "ping", id: (pingId = String(++seq)) });
      pongTimer = setTimeout(() => drop(s), heartbeatTimeout);
    }, delay);
  }

  // The browser went offline or online, or the page was hidden or shown. Going offline drops the
  // socket (it is dead anyway); coming back connects at once, or checks an open socket with a ping
  // (timers of hidden pages are throttled, so a dead socket may have gone unnoticed).
  function onEnvironment() {
    if (status === "closed") return;
    if (nav?.onLine === false && ws) drop(ws);
    else if (paused()) {
      if (!ws) schedule();
    } else if (clientId !== null) {
      if (!pingId) heartbeat(0);
    } else if (!ws) connect();
  }

  // -- incoming frames -------------------------------------------------------------------------

  function receive(data) {
    let msg;
    try {
      if (isStr(data)) msg = JSON.parse(data);
    } catch {
      // reported below
    }
    if (!isObj(msg) || dispatch(msg) === false) report(new ZocketError("ignored an invalid frame", "bad_frame", data));
  }

  // Handles one message; false if it is not a valid one.
  function dispatch(m) {
    const addressed = isStr(m.actor) && isStr(m.actorId);
    const e = addressed ? entries.get(JSON.stringify([m.actor, m.actorId])) : undefined;
    switch (m.type) {
      case "welcome":
        if (!isStr(m.clientId)) return false;
        clearTimeout(connectTimer);
        clientId = m.clientId;
        attempts = 0;
        everConnected = true;
        for (const entry of entries.values()) {
          if (entry.events.size) sendTo("event:sub", entry);
          if (entry.watchers.size) requestState(entry); // a new socket holds nothing: a first state:sub
        }
        for (const c of calls.values()) if (!c.sent) transmit(c);
        heartbeat();
        setStatus("connected");
        ready.resolve();
        return;
      case "pong":
        if (m.id === pingId) {
          clearTimeout(pongTimer);
          pingId = null;
          heartbeat();
        }
        return;
      case "rpc:result": {
        if (!isStr(m.id)) return false;
        const c = calls.get(m.id); // absent for a call that timed out
        if (!c || !c.sent) return; // settled, or a stale answer to an attempt already being repeated
        if (m.error == null) return c.done(null, m.result);
        const error = new ZocketError(String(m.error), m.code, m.details);
        if (m.code !== "unavailable") return c.done(error);
        // Nothing ran, or its owner is moving: the same key again, after a short pause.
        c.sent = false;
        c.lastError = error;
        c.retry = setTimeout(() => clientId !== null && !c.sent && calls.has(m.id) && transmit(c), retryDelay(c.attempts++));
        return;
      }
      case "error": {
        if (m.ref === undefined && isStr(m.error)) lastError = m.error; // the reason, if a refusal follows
        const error = new ZocketError(isStr(m.error) ? m.error : "server error", m.code, m.ref);
        // a refused (or ended) subscription: the handles that asked for it hear it too
        const ref = isObj(m.ref) && isStr(m.ref.actor) && isStr(m.ref.actorId) ? m.ref : undefined;
        const asked = ref && entries.get(JSON.stringify([ref.actor, ref.actorId]));
        if (asked && ref.type === "state:sub" && asked.watchers.size) emit(asked.stateErrors, error);
        if (asked && ref.type === "event:sub" && asked.events.size) emit(asked.eventErrors, error);
        report(error);
        return;
      }
      case "event":
        if (!addressed || !isStr(m.event)) return false;
        if (e) emit(e.events, m.event, m.payload);
        return;
      case "state:snapshot":
        if (!addressed || !Object.hasOwn(m, "state") || !isVersion(m.version)) return false;
        // an answer to state:sub, or unsolicited when the instance was activated again
        if (!e?.watchers.size) return;
        if (olderThanShown(e, m)) {
          // a straggler of an earlier incarnation or version: not shown, unless the owner keeps
          // answering it (a clock gone backwards on the server): then it is the state there is
          if (!e.resyncing) return;
          if (++e.staleAnswers <= 3) return requestState(e, true);
        }
        e.resyncing = false;
        e.staleAnswers = 0;
        e.epoch = m.epoch;
        setState(e, m.state, m.version);
        return;
      case "state:patch": {
        if (!addressed || !Array.isArray(m.patches) || !isVersion(m.version) || !isVersion(m.from)) return false;
        if (!e?.watchers.size || e.resyncing) return; // a snapshot is on its way
        if (Number.isInteger(m.epoch) && Number.isInteger(e.epoch) && m.epoch !== e.epoch) {
          // another incarnation: a newer one replaces ours (ask for it), an older one is gone
          return m.epoch > e.epoch ? requestState(e, true) : undefined;
        }
        // a coalesced patch carries the ops of versions from+1..version: they apply to `from`
        if (Number.isInteger(m.from)) {
          if (m.from !== e.version || m.from >= m.version) return requestState(e, true);
        } else if (m.version !== (e.version === undefined ? undefined : e.version + 1)) {
          // a server without versions sends none on either message
          return requestState(e, true);
        }
        let next;
        try {
          next = applyPatch(e.state, m.patches);
        } catch (err) {
          report(err);
          return requestState(e, true);
        }
        setState(e, next, m.version);
        return;
      }
      default:
        return false;
    }
  }

  // -- state and calls -------------------------------------------------------------------------

  function setState(e, state, version) {
    e.state = state;
    e.version = version;
    emit(e.watchers, state);
  }

  // Asks for a snapshot; until it comes, patches are ignored and the last state stays visible.
  // `resync`: the socket holds the subscription already and its copy is stale. The server answers
  // a plain repeat only when the state moved since its last snapshot; `resync: true` always.
  function requestState(e, resync = false) {
    e.resyncing = true;
    const frame = { type: "state:sub", actor: e.actor, actorId: e.actorId };
    send(resync ? { ...frame, resync: true } : frame);
  }

  function transmit(c) {
    c.sent = true;
    ws.send(c.frame);
  }

  function call(actor, actorId, method, input) {
    return new Promise((resolve, reject) => {
      if (status === "closed") throw new ZocketError(closedBy.message, closedBy.code); // why it closed
      const id = String(++seq);
      const c = {
        method,
        frame: JSON.stringify({ type: "rpc", id, actor, actorId, method, input, key: newKey() }),
        sent: false,
        attempts: 0,
        lastError: undefined, // why the last attempt did not settle it (reported if time runs out)
        done(error, result) {
          clearTimeout(c.timer);
          clearTimeout(c.retry);
          calls.delete(id);
          if (error) reject(error);
          else resolve(result);
        },
      };
      if (rpcTimeout) {
        c.timer = setTimeout(() => {
          const why = c.lastError ? ` (last attempt: ${c.lastError.message})` : "";
          c.done(new ZocketError(`${method} timed out after ${rpcTimeout} ms${why}`, "timeout", c.lastError));
        }, rpcTimeout);
      }
      calls.set(id, c);
      if (clientId !== null) transmit(c);
    });
  }

  function entryFor(key, actor, actorId) {
    let e = entries.get(key);
    if (!e) {
      e = { actor, actorId, key, events: new Set(), watchers: new Set(), state: undefined, version: undefined };
      e.eventErrors = new Set(); // error callbacks of event listeners, and of state subscribers
      e.stateErrors = new Set();
      e.epoch = undefined; // the incarnation the state belongs to (servers without epochs: undefined)
      e.staleAnswers = 0;
      entries.set(key, e);
    }
    return e;
  }
  const release = (e) => !e.events.size && !e.watchers.size && entries.delete(e.key);
  const checkCallback = (f) => {
    if (f !== undefined && typeof f !== "function") throw new TypeError("zocket: an error callback must be a function");
  };
  // Adds `onError` (if any) to `set` for as long as the listener `unsubscribe` removes
  const withErrors = (set, onError, unsubscribe) => {
    if (onError === undefined) return unsubscribe;
    const off = listen(set, onError);
    return () => {
      off();
      unsubscribe();
    };
  };

  /** @type {(name: string, id: string) => ActorHandle} */
  function actor(name, id) {
    if (!isStr(name) || !isStr(id)) throw new TypeError("zocket: an actor name and id must be strings");
    const key = JSON.stringify([name, id]);
    const handle = {
      on(event, cb, onError) {
        checkCallback(onError);
        const e = entryFor(key, name, id);
        const unsubscribe = listen(
          e.events,
          cb,
          () => {
            sendTo("event:unsub", e);
            release(e);
          },
          (ev, payload) => ev === event && cb(payload),
        );
        if (e.events.size === 1) sendTo("event:sub", e);
        return withErrors(e.eventErrors, onError, unsubscribe);
      },
      state: {
        subscribe(cb, onError) {
          checkCallback(onError);
          const e = entryFor(key, name, id);
          const unsubscribe = listen(e.watchers, cb, () => {
            sendTo("state:unsub", e);
            e.state = e.version = e.epoch = undefined;
            e.resyncing = false;
            release(e);
          });
          if (e.watchers.size === 1) requestState(e);
          else if (e.state !== undefined) emit([cb], e.state);
          return withErrors(e.stateErrors, onError, unsubscribe);
        },
        getSnapshot: () => entries.get(key)?.state,
      },
      $call: (method, input) => call(name, id, method, input),
    };
    return /** @type {ActorHandle} */ (dynamic(handle, (method) => (input) => call(name, id, method, input)));
  }

  /** @type {Connection} */
  const connection = {
    get status() {
      return status;
    },
    get clientId() {
      return clientId;
    },
    get ready() {
      return ready.p;
    },
    subscribe: (cb) => listen(statusFns, cb),
    close: () => status !== "closed" && shutdown(new ZocketError("the client was closed", "closed")),
  };

  function on(event, cb) {
    if (event !== "status" && event !== "error") throw new TypeError(`zocket: no client event ${event}`);
    return listen(event === "status" ? statusFns : errorFns, cb);
  }

  win?.addEventListener?.("online", onEnvironment);
  win?.addEventListener?.("offline", onEnvironment);
  doc?.addEventListener?.("visibilitychange", onEnvironment);
  connect();
  return /** @type {ZocketClient} */ (dynamic({ connection, actor, on }, (name) => (id) => actor(name, id)));
}
