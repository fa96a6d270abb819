// expect-error TS2339: Property 'subtract' does not exist
import { createClient } from "@zocket/client";
import type { App } from "./app";

await createClient<App>({ url: "ws://localhost/ws/" }).counter("main").subtract({ amount: 5 });
