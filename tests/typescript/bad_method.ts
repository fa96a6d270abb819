// expect-error TS2339: Property 'subtract' does not exist on type
import { createClient } from "./zocket.js";
import type { App } from "./app";

const client = createClient<App>({ url: "ws://localhost/ws/" });
await client.counter("main").subtract({ amount: 1 });
