// expect-error TS2353: Object literal may only specify known properties, and 'extra' does not exist
import { createClient } from "@zocket/client";
import type { App } from "./app";

await createClient<App>({ url: "ws://localhost/ws/" }).counter("main").add({ amount: 1, extra: 2 });
