// expect-error TS2554: Expected 1 arguments, but got 0.
import { createClient } from "@zocket/client";
import type { App } from "./app";

await createClient<App>({ url: "ws://localhost/ws/" }).counter("main").add();
