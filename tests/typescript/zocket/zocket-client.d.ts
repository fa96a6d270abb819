// A STAND-IN for the types of Zocket's own client (`@zocket/client` and `@zocket/core` of
// ChiChuRita/zocket), for the tests of `manage.py zocket_typescript --flavor zocket`. Zocket's
// client is not on the npm registry, so CI cannot install it; this file restates, in its own
// words, only the behaviour of those types that the generated declarations rely on, as read
// in packages/core/src/types.ts and packages/client/src/client.ts:
//
// - createClient<App>() wants an AppDef: `{ readonly _tag: "AppDef"; readonly actors }`, each
//   actor an ActorDef: `{ readonly _tag: "ActorDef"; readonly config: { state; methods; events? } }`;
// - state, method inputs and event payloads are Standard Schemas, typed by their output type;
// - a method `{ input: S; handler: (...) => R }` is called as `(input) => Promise<Awaited<R>>`,
//   one with no `input` as `() => Promise<Awaited<R>>`;
// - a handle has `on(event, cb)`, `state.subscribe` / `state.getSnapshot`, `meta`; the client
//   `client.<actor>(id)` for every actor, and `connection`, `on`.
//
// The tests install it as node_modules/@zocket/client/index.d.ts of each project they compile.
// The real client was type-checked against the generated declarations by hand (issue 18's note
// says how); this stand-in keeps CI honest about the same shape.
import type { StandardSchemaV1 } from "@standard-schema/spec";

type Output<S> = S extends StandardSchemaV1 ? StandardSchemaV1.InferOutput<S> : never;
type Unsubscribe = () => void;

export interface ActorDef<
  State extends StandardSchemaV1 = StandardSchemaV1,
  Methods extends Record<string, any> = Record<string, any>,
  Events extends Record<string, any> = Record<string, StandardSchemaV1>,
> {
  readonly _tag: "ActorDef";
  readonly config: { state: State; methods: Methods; events?: Events };
}

export interface AppDef<Actors extends Record<string, ActorDef<any, any, any>> = Record<string, ActorDef<any, any, any>>> {
  readonly _tag: "AppDef";
  readonly actors: Actors;
}

type Calls<A> = A extends ActorDef<any, infer M, any>
  ? {
      [K in keyof M]: M[K] extends { input: infer I; handler: (...args: any[]) => infer R }
        ? I extends StandardSchemaV1
          ? (input: Output<I>) => Promise<Awaited<R>>
          : () => Promise<Awaited<R>>
        : M[K] extends { handler: (...args: any[]) => infer R }
          ? () => Promise<Awaited<R>>
          : never;
    }
  : never;
type Listeners<A> = A extends ActorDef<any, any, infer E>
  ? { [K in keyof E]: E[K] extends StandardSchemaV1 ? (payload: Output<E[K]>) => void : never }
  : never;
type StateOf<A> = A extends ActorDef<infer S, any, any> ? Output<S> : never;

export type ActorHandle<A extends ActorDef<any, any, any>> = Calls<A> & {
  on<K extends keyof Listeners<A>>(event: K, callback: Listeners<A>[K]): Unsubscribe;
  state: { subscribe(listener: (state: StateOf<A>) => void): Unsubscribe; getSnapshot(): StateOf<A> | undefined };
  meta: { name: string; id: string; dispose(): void };
};

export type ConnectionStatus = "connecting" | "connected" | "reconnecting" | "disconnected";

export declare function createClient<App extends AppDef<any>>(options: {
  url: string;
  rpcTimeout?: number;
}): (App extends AppDef<infer Actors> ? { [K in keyof Actors]: (id: string) => ActorHandle<Actors[K]> } : never) & {
  connection: { readonly status: ConnectionStatus; subscribe(cb: (status: ConnectionStatus) => void): Unsubscribe };
};
