// expect-error TS2339: Property 'nope' does not exist
import { createClient } from "@zocket/client";
import type { App } from "./app";

createClient<App>({ url: "ws://localhost/ws/" }).nope("x");
