// Correct use of the generated App type: must compile under --strict.
import { applyPatch, createClient, ZocketError, type ActorHandle, type Status } from "./zocket.js";
import type { App, ChatState, Message, ResetBy } from "./app";

type Equals<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
const same = <A, B>(ok: Equals<A, B>): void => void ok;

export async function typed(): Promise<void> {
  const client = createClient<App>({ url: "ws://localhost/ws/", rpcTimeout: 0, reconnect: { maxAttempts: 3 } });
  const counter = client.counter("main");

  // methods: inputs, results; no parameters means no argument (or an empty object)
  const total = await counter.add({ amount: 5 });
  same<typeof total, number>(true);
  same<Awaited<ReturnType<typeof counter.increment>>, number>(true);
  await counter.increment();
  await counter.increment({});
  const nothing = await counter.reset();
  same<typeof nothing, null>(true);
  same<Awaited<ReturnType<typeof counter.$call<"add">>>, number>(true);
  await counter.$call("add", { amount: 1 });
  await counter.$call("increment");

  // optional parameters (defaults) may be left out
  const lab = client.actor("lab", "x");
  await lab.notify({ text: "hi" });
  await lab.notify({ text: "hi", to: ["a"], skip: null });
  const item = await lab.add_item({ text: "milk" });
  same<typeof item, { text: string; done: boolean }>(true);
  const who = await lab.whoami();
  same<typeof who, Record<string, unknown>>(true);

  // events: the callback's payload is the event's type
  const off = counter.on("reset", (payload) => {
    same<typeof payload, ResetBy>(true);
    console.log(payload.by.toUpperCase());
  });
  off();
  client.chat("lobby").on("newMessage", (m: Message) => console.log(m.user, m.text));
  lab.on("count", (n) => same<typeof n, number>(true));

  // state: subscribe and getSnapshot
  const chat: ActorHandle<App["chat"]> = client.chat("lobby");
  const unsubscribe = chat.state.subscribe((s) => {
    same<typeof s, ChatState>(true);
    console.log(s.messages.length, s.online.join());
  });
  unsubscribe();
  const snapshot = counter.state.getSnapshot();
  same<typeof snapshot, { count: number } | undefined>(true);
  if (snapshot) console.log(snapshot.count + 1);
  const sent = await chat.send({ text: "hello" });
  same<typeof sent, Message>(true);

  // the connection and the client's own events
  const status: Status = client.connection.status;
  const id: string | null = client.connection.clientId;
  await client.connection.ready;
  client.connection.subscribe((s) => console.log(s satisfies Status));
  client.on("status", (s: Status) => console.log(s, status, id));
  client.on("error", (e) => console.log(e.code, e.details, e.message));
  client.connection.close();

  try {
    await counter.add({ amount: 1 });
  } catch (err) {
    if (err instanceof ZocketError && err.code === "invalid_input") console.log(err.details);
  }
  const doc: { count: number } = applyPatch({ count: 1 }, [{ op: "replace", path: "/count", value: 2 }]);
  console.log(doc.count);
}

export async function untyped(): Promise<void> {
  // no App: anything goes, as in plain JS
  const client = createClient({ url: "ws://localhost/ws/" });
  const value = await client.anything("id").whatever({ x: 1 });
  client.anything("id").on("some-event", (payload) => payload.deep.field);
  client.actor("other", "id").state.subscribe((s) => s.whatever);
  console.log(value.foo);
}
