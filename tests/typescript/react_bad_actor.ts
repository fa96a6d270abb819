// expect-error TS2345: Argument of type '"nope"' is not assignable to parameter of type
import { createZocketReact } from "./zocket-react.js";
import type { App } from "./app";
export function C(): null {
  createZocketReact<App>().useActor("nope", "main");
  return null;
}
