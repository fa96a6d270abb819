// expect-error TS2339: Property 'nope' does not exist on type
import { createClient } from "./zocket.js";
import type { App } from "./app";

const client = createClient<App>({ url: "ws://localhost/ws/" });
client.nope("main");
