// expect-error TS2322: Type 'string' is not assignable to type 'number'
import { createClient } from "./zocket.js";
import type { App } from "./app";

const client = createClient<App>({ url: "ws://localhost/ws/" });
await client.counter("main").add({ amount: "5" });
