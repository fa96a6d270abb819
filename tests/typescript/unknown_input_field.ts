// expect-error TS2353: Object literal may only specify known properties, and 'by' does not exist in type '{ amount: number; }'.
import { createClient } from "./zocket.js";
import type { App } from "./app";

const client = createClient<App>({ url: "ws://localhost/ws/" });
await client.counter("main").add({ amount: 1, by: 2 });
