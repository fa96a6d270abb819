// expect-error TS2345: Argument of type '(payload: { by: number; }) => void' is not assignable
import { createClient } from "./zocket.js";
import type { App } from "./app";

const client = createClient<App>({ url: "ws://localhost/ws/" });
client.counter("main").on("reset", (payload: { by: number }) => console.log(payload.by));
