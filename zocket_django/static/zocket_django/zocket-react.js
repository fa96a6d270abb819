/**
 * zocket-react.js: React hooks for zocket.js (React 18 and 19), named as Zocket's own React
 * binding names them. An ES module next to zocket.js that imports "react": for a bundler, or a
 * page whose import map maps "react".
 *
 *   import { createClient } from "./zocket.js";
 *   import { ZocketProvider, useActor, useActorState, useEvent, useConnectionStatus } from "./zocket-react.js";
 *
 *   const client = createClient({ url: "wss://example.com/ws/" });
 *   <ZocketProvider client={client}><Counter /></ZocketProvider>
 *
 *   function Counter() {
 *     const counter = useActor("counter", "main");                // the same handle on every render
 *     const count = useActorState(counter, (s) => s.count);        // undefined until the snapshot
 *     useEvent(counter, "reset", ({ by }) => alert(`reset by ${by}`));
 *     const online = useConnectionStatus() === "connected";
 *     return <button disabled={!online} onClick={() => counter.increment()}>{count ?? "…"}</button>;
 *   }
 *
 * The hooks only subscribe while a component is mounted: the handle's own reference counting
 * sends `state:sub` / `event:sub` for the first subscriber and the `unsub` for the last.
 */
import { createContext, createElement, useCallback, useContext, useEffect, useMemo, useRef, useSyncExternalStore } from "react";

const ClientContext = createContext(null);

/** Makes `client` (from createClient) the one the hooks below use. */
export function ZocketProvider({ client, children }) {
  return createElement(ClientContext.Provider, { value: client }, children);
}

/** The client of the nearest ZocketProvider; throws without one. */
export function useClient() {
  const client = useContext(ClientContext);
  if (!client) throw new Error("zocket: useClient, useActor and useConnectionStatus need a <ZocketProvider client={...}>");
  return client;
}

/** A handle on actor `name`, instance `id`: the same object until the client, name or id change. */
export function useActor(name, id) {
  const client = useClient();
  return useMemo(() => client.actor(name, id), [client, name, id]);
}

const whole = (state) => state;
const unset = {};

/**
 * The handle's live state, or `selector(state)`; undefined until the first snapshot. The
 * component renders again when the selected value changes: by `Object.is`, or `isEqual`
 * (e.g. a shallow comparison for a selector that builds a new array each time).
 */
export function useActorState(handle, selector = whole, isEqual = Object.is) {
  const subscribe = useCallback((onChange) => handle.state.subscribe(onChange), [handle]);
  const last = useRef({ state: unset, selector: undefined, value: undefined });
  const getSnapshot = () => {
    const state = handle.state.getSnapshot();
    if (state === undefined) return undefined;
    const seen = last.current;
    if (seen.state === state && seen.selector === selector) return seen.value;
    const value = selector(state);
    // an equal value keeps its identity, so React sees no change
    last.current = { state, selector, value: seen.state !== unset && isEqual(seen.value, value) ? seen.value : value };
    return last.current.value;
  };
  return useSyncExternalStore(subscribe, getSnapshot, getSnapshot);
}

/**
 * Calls `callback` with the payload of each `event` of the handle while the component is
 * mounted. The latest `callback` is called: passing a new function on each render does not
 * subscribe again.
 */
export function useEvent(handle, event, callback) {
  const latest = useRef(callback);
  useEffect(() => {
    latest.current = callback;
  });
  useEffect(() => handle.on(event, (payload) => latest.current(payload)), [handle, event]);
}

/** The client's connection status ("connecting", "connected", "reconnecting", "offline", "closed"). */
export function useConnectionStatus() {
  const { connection } = useClient();
  const subscribe = useCallback((onChange) => connection.subscribe(onChange), [connection]);
  const getSnapshot = () => connection.status;
  return useSyncExternalStore(subscribe, getSnapshot, getSnapshot);
}

/** The same hooks, typed for one App in zocket-react.d.ts: `const { useActor } = createZocketReact<App>()`. */
export function createZocketReact() {
  return { ZocketProvider, useClient, useActor, useActorState, useEvent, useConnectionStatus };
}
