/**
 * Types of zocket.js, the browser client of zocket-django (written by hand; keep in step with
 * zocket.js). TypeScript picks this file up for `import ... from ".../zocket.js"`.
 *
 * Generic over an App type: the one `python manage.py zocket_typescript` generates from the
 * server's actors, so that calls, results, events and states are typed end to end.
 *
 *   import { createClient } from "./zocket.js";
 *   import type { App } from "./zocket-app";            // generated
 *   const client = createClient<App>({ url: "wss://example.com/ws/" });
 *   const total = await client.counter("main").add({ amount: 5 });   // number
 *   client.chat("lobby").on("newMessage", (m) => m.text);            // m: Message
 *
 * Without a type argument every actor, method, event and state is `any`, as in plain JS.
 */

export type Status = "connecting" | "connected" | "reconnecting" | "offline" | "closed";

/** Removes the listener it was returned for; calling it again does nothing. */
export type Unsubscribe = () => void;

export interface ClientOptions {
  /** WebSocket URL of the server's zocket route, e.g. "wss://example.com/ws/". */
  url: string;
  /** WebSocket class; defaults to the global one (pass `ws` in Node 20). */
  WebSocket?: new (url: string) => unknown;
  /** ms a call may take, the wait for a connection included; 0 = no limit. Default 10000. */
  rpcTimeout?: number;
  /** ms one attempt may take to open the socket and receive `welcome`. Default 10000. */
  connectTimeout?: number;
  /**
   * Backoff with full jitter: each wait is random in [0, min(maxDelay, minDelay * 2^failures)].
   * Defaults: minDelay 250, maxDelay 10000, maxAttempts Infinity. `false`: a lost connection closes the client.
   */
  reconnect?: false | { minDelay?: number; maxDelay?: number; maxAttempts?: number };
  /** ms between `ping`s; 0 = no heartbeat. Default 25000. */
  heartbeatInterval?: number;
  /** ms to wait for a `pong` before the socket is taken as dead. Default 10000. */
  heartbeatTimeout?: number;
  /** Make no connection attempt while the page is hidden. Default true. */
  pauseWhenHidden?: boolean;
  /** Receives what the client ignored, as `client.on("error", cb)`. */
  onError?: (error: ZocketError) => void;
}

/**
 * Every rejection and report of the client. `code` is the server's (`invalid_input`,
 * `unknown_method`, ...) or the client's own: "timeout" (its `details`: the last attempt's
 * error, "disconnected" or "unavailable", if any), "closed", "bad_frame", "bad_patch",
 * "listener_error". Calls carry a random key and are retried with it after a lost socket or
 * `unavailable`, so a call that resolves ran exactly once.
 */
export declare class ZocketError extends Error {
  constructor(message: string, code?: string, details?: unknown);
  name: "ZocketError";
  code: string | undefined;
  /** The server's details (e.g. pydantic's validation errors), the offending frame or thrown error, or a
   * timed-out call's last error. */
  details: unknown;
}

export interface Connection {
  readonly status: Status;
  /** The id the server gave this connection; null while not connected. */
  readonly clientId: string | null;
  /**
   * Settles when the client is (next) connected; rejects once it is closed, with the reason: code
   * "closed", or "unauthenticated" / "forbidden" when the server refused the connection (close
   * code 4401 / 4403, after which the client does not reconnect).
   */
  readonly ready: Promise<void>;
  subscribe(cb: (status: Status) => void): Unsubscribe;
  /** Closes the socket for good and rejects every unsettled call. */
  close(): void;
}

// -- the App type -------------------------------------------------------------------------------

/** One method: the JSON object it takes and the value its promise resolves with. */
export interface MethodShape {
  input: object;
  result: unknown;
}

/** One actor: its state, its methods by name, its event payloads by event name. */
export interface ActorShape {
  state: unknown;
  methods: { [method: string]: MethodShape };
  events: { [event: string]: unknown };
}

/** What an App type must be: actor name → ActorShape (`App extends AppShape<App>`). */
export type AppShape<App> = { [K in keyof App]: ActorShape };

/** The App of an untyped client: any actor, any method, `any` everywhere. */
export type AnyApp = { [actor: string]: AnyActor };
export interface AnyActor {
  state: any;
  methods: { [method: string]: { input: any; result: any } };
  events: { [event: string]: any };
}

/** The arguments of a method: none (or `{}`) when every input field is optional, the input otherwise. */
export type MethodArgs<M extends MethodShape> = {} extends M["input"] ? [input?: M["input"]] : [input: M["input"]];

/** A method as a handle exposes it. */
export type MethodFunction<M extends MethodShape> = (...args: MethodArgs<M>) => Promise<M["result"]>;

export interface StateView<S> {
  /**
   * Calls `cb` with every new state (at once if there is one). The first subscriber
   * sends `state:sub`, the last unsubscribe `state:unsub`. `onError` receives the server's
   * refusal of the subscription, or its end (a `read` permission removed), with the server's
   * code: "forbidden", "unavailable", "too_large", "overloaded", "unknown_actor", ...
   */
  subscribe(cb: (state: S) => void, onError?: (error: ZocketError) => void): Unsubscribe;
  /** The latest state; undefined before the first snapshot or when nobody subscribes. */
  getSnapshot(): S | undefined;
}

/** The members of every handle; a method with one of these names is reached with `$call`. */
export interface ActorHandleBase<A extends ActorShape> {
  /**
   * Listens to an event; the first listener sends `event:sub`, the last unsubscribe `event:unsub`.
   * `onError` receives the server's refusal (or end) of the instance's event subscription.
   */
  on<E extends keyof A["events"] & string>(
    event: E,
    cb: (payload: A["events"][E]) => void,
    onError?: (error: ZocketError) => void,
  ): Unsubscribe;
  /** The instance's live state. */
  readonly state: StateView<A["state"]>;
  /** Calls a method by name (needed for names taken by the handle: `on`, `state`, `then`, ...). */
  $call<K extends keyof A["methods"] & string>(
    method: K,
    ...args: MethodArgs<A["methods"][K]>
  ): Promise<A["methods"][K]["result"]>;
}

/** Names a handle or the client cannot hand out as methods or actors (their own members, and the Proxy's exceptions). */
type ObjectMember =
  | "then"
  | "toJSON"
  | "constructor"
  | "toString"
  | "toLocaleString"
  | "valueOf"
  | "hasOwnProperty"
  | "isPrototypeOf"
  | "propertyIsEnumerable"
  | "__proto__"
  | "__defineGetter__"
  | "__defineSetter__"
  | "__lookupGetter__"
  | "__lookupSetter__";

export type HandleReserved = keyof ActorHandleBase<ActorShape> | ObjectMember;
export type ClientReserved = "connection" | "actor" | "on" | ObjectMember;

/** A handle on one actor instance: `handle.add({ amount: 5 })`, `handle.on(...)`, `handle.state`. */
export type ActorHandle<A extends ActorShape = AnyActor> = ActorHandleBase<A> & {
  [K in keyof A["methods"] as K extends HandleReserved ? never : K]: MethodFunction<A["methods"][K]>;
};

export interface ClientBase<App extends AppShape<App>> {
  readonly connection: Connection;
  /** A handle on one actor instance; `client.counter(id)` is `client.actor("counter", id)`. */
  actor<K extends keyof App & string>(name: K, id: string): ActorHandle<App[K]>;
  /** As `connection.subscribe`. */
  on(event: "status", cb: (status: Status) => void): Unsubscribe;
  /** Invalid frames, refused patches, throwing listeners and the server's `error` frames: reported here, never thrown. */
  on(event: "error", cb: (error: ZocketError) => void): Unsubscribe;
}

/** The client: `client.<actor>(id)` for every actor of App, and `connection`, `actor`, `on`. */
export type ZocketClient<App extends AppShape<App> = AnyApp> = ClientBase<App> & {
  [K in keyof App as K extends ClientReserved ? never : K]: (id: string) => ActorHandle<App[K]>;
};

/** Creates a client and starts connecting. `App`: the generated `interface App`. */
export declare function createClient<App extends AppShape<App> = AnyApp>(options: ClientOptions): ZocketClient<App>;

export interface PatchOperation {
  op: "add" | "remove" | "replace" | "move" | "copy" | "test";
  path: string;
  from?: string;
  value?: unknown;
}

/**
 * Applies RFC 6902 operations to `doc` and returns the new document; `doc` is left untouched
 * and the result shares every subtree the operations did not change. Throws a ZocketError
 * (code "bad_patch") when an operation fails.
 */
export declare function applyPatch(doc: any, ops: readonly PatchOperation[]): any;
