// expect-error TS2554: Expected 0 arguments, but got 1.
import { createClient } from "@zocket/client";
import type { App } from "./app";

await createClient<App>({ url: "ws://localhost/ws/" }).counter("main").increment({ amount: 5 });
