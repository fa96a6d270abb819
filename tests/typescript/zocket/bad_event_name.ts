// expect-error TS2345: Argument of type '"nope"' is not assignable
import { createClient } from "@zocket/client";
import type { App } from "./app";

createClient<App>({ url: "ws://localhost/ws/" }).counter("main").on("nope", () => {});
