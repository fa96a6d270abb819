// A small, scriptable zocket server for the client's tests, on 127.0.0.1 only.
// It answers the protocol the way zocket-django does, and lets a test break it:
// skip versions, stop answering pings, hold snapshots, drop sockets, send anything.
import { WebSocketServer } from "ws";

/** Resolves once `check()` is truthy (returning its value); rejects after `timeout` ms. */
export async function until(check, { timeout = 3000, what = "a condition" } = {}) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const keyOf = (actor, actorId) => JSON.stringify([actor, actorId]);

export class FakeServer {
  /** @param {{welcome?: boolean}} [options] welcome: false never greets (a server that hangs) */
  static async start(options) {
    const server = new FakeServer(options);
    await server.listen();
    return server;
  }

  constructor({ welcome = true } = {}) {
    this.welcome = welcome;
    this.answerPings = true;
    this.holdSnapshots = false; // when true, state:sub goes unanswered until releaseSnapshots()
    /** {closeCode, code, message}: new sockets get that error frame and close, as zocket-django refuses credentials */
    this.refusal = null;
    this.held = [];
    this.port = 0;
    this.connections = 0; // sockets accepted so far
    this.sockets = new Set();
    this.received = []; // every frame from every client, parsed
    this.instances = new Map(); // key -> {state, version, history, stateSubs, eventSubs}
    /** answers an rpc: return {result} or {error, code, details}; undefined sends nothing */
    this.onRpc = () => ({ result: null });
    /** when set, answers a state:sub with the frame it returns instead of the instance's snapshot */
    this.onStateSub = null;
  }

  get url() {
    return `ws://127.0.0.1:${this.port}/ws/`;
  }

  listen() {
    return new Promise((resolve, reject) => {
      this.wss = new WebSocketServer({ host: "127.0.0.1", port: this.port });
      this.wss.once("error", reject);
      this.wss.once("listening", () => {
        this.port = this.wss.address().port;
        resolve();
      });
      this.wss.on("connection", (socket) => this.accept(socket));
    });
  }

  /** Terminates every socket and stops listening (the port is kept for listen()). */
  async stop() {
    for (const socket of this.sockets) socket.terminate();
    this.sockets.clear();
    await new Promise((resolve) => this.wss.close(resolve));
  }

  /** Terminates every socket without a close handshake; the server goes on listening. */
  dropAll() {
    for (const socket of this.sockets) socket.terminate();
  }

  accept(socket) {
    this.connections++;
    this.sockets.add(socket);
    socket.clientId = `c${this.connections}`;
    socket.on("close", () => {
      this.sockets.delete(socket);
      for (const inst of this.instances.values()) {
        inst.stateSubs.delete(socket);
        inst.eventSubs.delete(socket);
      }
    });
    socket.on("message", (data) => this.handle(socket, JSON.parse(String(data))));
    if (this.refusal) this.refuse(socket, this.refusal);
    else if (this.welcome) this.send(socket, { type: "welcome", clientId: socket.clientId });
  }

  handle(socket, msg) {
    this.received.push({ ...msg, connection: socket.clientId });
    const inst = msg.actor === undefined ? null : this.instance(msg.actor, msg.actorId);
    switch (msg.type) {
      case "ping":
        if (this.answerPings) this.send(socket, { type: "pong", id: msg.id });
        break;
      case "event:sub":
        inst.eventSubs.add(socket);
        break;
      case "event:unsub":
        inst.eventSubs.delete(socket);
        break;
      case "state:sub":
        // as zocket-django: a plain repeat of a held subscription is answered only if the state
        // moved since this socket's last snapshot; `resync: true` always is
        if (inst.stateSubs.has(socket) && msg.resync !== true && inst.sent.get(socket) === inst.version) break;
        inst.stateSubs.add(socket);
        if (this.onStateSub) this.send(socket, this.onStateSub(msg));
        else if (this.holdSnapshots) this.held.push([socket, inst]);
        else this.sendSnapshot(socket, inst);
        break;
      case "state:unsub":
        inst.stateSubs.delete(socket);
        inst.sent.delete(socket);
        break;
      case "rpc": {
        const answer = this.onRpc(msg, socket);
        if (answer) this.send(socket, { type: "rpc:result", id: msg.id, ...answer });
        break;
      }
    }
  }

  send(socket, msg) {
    socket.send(typeof msg === "string" ? msg : JSON.stringify(msg));
  }

  /** Sends an `error` frame without `ref`, then closes the socket with `closeCode` (4401: refused credentials). */
  refuse(socket, { closeCode, code, message }) {
    this.send(socket, { type: "error", code, error: message });
    socket.close(closeCode);
  }

  /** Sends `msg` to every connected client. */
  broadcast(msg) {
    for (const socket of this.sockets) this.send(socket, msg);
  }

  instance(actor, actorId, initial = { count: 0 }) {
    const key = keyOf(actor, actorId);
    let inst = this.instances.get(key);
    if (!inst) {
      inst = { actor, actorId, state: initial, version: 0, history: [initial], stateSubs: new Set(), eventSubs: new Set() };
      inst.sent = new Map(); // socket -> version of the last snapshot it was sent
      this.instances.set(key, inst);
    }
    return inst;
  }

  sendSnapshot(socket, inst) {
    inst.sent.set(socket, inst.version);
    this.send(socket, { type: "state:snapshot", actor: inst.actor, actorId: inst.actorId, state: inst.state, version: inst.version });
  }

  releaseSnapshots() {
    for (const [socket, inst] of this.held.splice(0)) this.sendSnapshot(socket, inst);
  }

  /**
   * A step of the actor: the state becomes `state`, described by `patches`, one version up.
   * `lose: true` plays a lost message: the version moves on but no subscriber hears of it.
   */
  change(actor, actorId, state, patches, { lose = false } = {}) {
    const inst = this.instance(actor, actorId);
    inst.state = state;
    inst.version++;
    inst.history.push(state);
    if (lose) return;
    for (const socket of inst.stateSubs) {
      this.send(socket, { type: "state:patch", actor, actorId, patches, version: inst.version });
    }
  }

  emit(actor, actorId, event, payload) {
    for (const socket of this.instance(actor, actorId).eventSubs) {
      this.send(socket, { type: "event", actor, actorId, event, payload });
    }
  }

  /** Frames of `type` received so far (on connection `connection` if given). */
  frames(type, connection) {
    return this.received.filter((m) => m.type === type && (connection === undefined || m.connection === connection));
  }
}
