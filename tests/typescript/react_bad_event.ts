// expect-error TS2345: Argument of type '"nope"' is not assignable to parameter of type '"reset"'
import { createZocketReact } from "./zocket-react.js";
import type { App } from "./app";
const zocket = createZocketReact<App>();
export function C(): null {
  zocket.useEvent(zocket.useActor("counter", "main"), "nope", () => {});
  return null;
}
