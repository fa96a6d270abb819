// expect-error TS2345: Argument of type '(p: { by: number; }) => number' is not assignable
import { createClient } from "@zocket/client";
import type { App } from "./app";

createClient<App>({ url: "ws://localhost/ws/" }).counter("main").on("reset", (p: { by: number }) => p.by);
