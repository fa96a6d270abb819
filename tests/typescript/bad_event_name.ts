// expect-error TS2345: Argument of type '"nope"' is not assignable to parameter of type '"reset"'
import { createClient } from "./zocket.js";
import type { App } from "./app";

const client = createClient<App>({ url: "ws://localhost/ws/" });
client.counter("main").on("nope", (payload) => console.log(payload));
