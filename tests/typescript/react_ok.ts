// The React hooks (zocket-react.js), typed for the generated App: must compile under --strict.
import { createElement, type ReactElement } from "react";
import { createClient } from "./zocket.js";
import { createZocketReact, useActor as untypedActor, useActorState, useEvent } from "./zocket-react.js";
import type { App, Message, ResetBy } from "./app";

type Equals<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
const same = <A, B>(ok: Equals<A, B>): void => void ok;

const client = createClient<App>({ url: "ws://localhost/ws/" });
const zocket = createZocketReact<App>();

function Counter(): ReactElement {
  const counter = zocket.useActor("counter", "main");
  const state = zocket.useActorState(counter);
  same<typeof state, { count: number } | undefined>(true);
  const count = useActorState(counter, (s) => s.count);
  same<typeof count, number | undefined>(true);
  const tags = useActorState(counter, (s) => [s.count], (a, b) => a[0] === b[0]);
  same<typeof tags, number[] | undefined>(true);
  useEvent(counter, "reset", (payload) => same<typeof payload, ResetBy>(true));
  const chat = zocket.useActor("chat", "lobby");
  useEvent(chat, "newMessage", (m) => same<typeof m, Message>(true));
  const status = zocket.useConnectionStatus();
  same<typeof status, "connecting" | "connected" | "reconnecting" | "offline" | "closed">(true);
  same<ReturnType<typeof zocket.useClient>, typeof client>(true);
  const anything = untypedActor("whatever", "x");
  useEvent(anything, "any", (payload) => payload.deep.field);
  return createElement("button", { onClick: () => counter.add({ amount: 1 }) }, count ?? "…");
}

export const app = createElement(zocket.ZocketProvider, { client }, createElement(Counter));
