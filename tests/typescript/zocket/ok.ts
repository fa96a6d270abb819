// Zocket's client (stand-in: zocket-client.d.ts) with the `--flavor zocket` declarations of the
// test project: exact inferred types under --strict.
import { createClient } from "@zocket/client";
import type { App, ChatState, Message, ResetBy } from "./app";

type Equals<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
const same = <A, B>(ok: Equals<A, B>): void => void ok;

export async function typed(): Promise<void> {
  const client = createClient<App>({ url: "ws://localhost/ws/" });
  const counter = client.counter("main");
  same<typeof counter.add, (input: { amount: number }) => Promise<number>>(true);
  same<typeof counter.increment, () => Promise<number>>(true); // no parameters: no argument
  same<typeof counter.reset, () => Promise<null>>(true);
  const total = await counter.add({ amount: 5 });
  same<typeof total, number>(true);

  // parameters with defaults are optional fields of the input
  const lab = client.lab("x");
  await lab.notify({ text: "hi" });
  await lab.notify({ text: "hi", to: ["a"], skip: null });
  same<Awaited<ReturnType<typeof lab.add_item>>, { text: string; done: boolean }>(true);
  same<Awaited<ReturnType<typeof lab.whoami>>, Record<string, unknown>>(true);

  counter.on("reset", (payload) => same<typeof payload, ResetBy>(true));
  lab.on("count", (n) => same<typeof n, number>(true));
  const chat = client.chat("lobby");
  chat.on("newMessage", (m) => same<typeof m, Message>(true));
  chat.state.subscribe((s) => same<typeof s, ChatState>(true));
  same<ReturnType<typeof counter.state.getSnapshot>, { count: number } | undefined>(true);
  same<Awaited<ReturnType<typeof chat.send>>, Message>(true);
}
