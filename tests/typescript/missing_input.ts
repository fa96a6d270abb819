// expect-error TS2554: Expected 1 arguments, but got 0.
import { createClient } from "./zocket.js";
import type { App } from "./app";

const client = createClient<App>({ url: "ws://localhost/ws/" });
await client.counter("main").add();
