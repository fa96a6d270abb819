// expect-error TS2339: Property 'total' does not exist on type 'CounterState'.
import { createClient } from "./zocket.js";
import type { App } from "./app";

const client = createClient<App>({ url: "ws://localhost/ws/" });
client.counter("main").state.subscribe((state) => console.log(state.total));
