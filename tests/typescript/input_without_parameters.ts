// expect-error TS2322: Type 'number' is not assignable to type 'never'.
import { createClient } from "./zocket.js";
import type { App } from "./app";

const client = createClient<App>({ url: "ws://localhost/ws/" });
await client.counter("main").increment({ amount: 1 });
