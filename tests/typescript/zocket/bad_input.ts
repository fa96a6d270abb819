// expect-error TS2322: Type 'string' is not assignable to type 'number'
import { createClient } from "@zocket/client";
import type { App } from "./app";

await createClient<App>({ url: "ws://localhost/ws/" }).counter("main").add({ amount: "5" });
