// expect-error TS2339: Property 'missing' does not exist on type 'CounterState'
import { createZocketReact } from "./zocket-react.js";
import type { App } from "./app";
const zocket = createZocketReact<App>();
export function C(): null {
  zocket.useActorState(zocket.useActor("counter", "main"), (s) => s.missing);
  return null;
}
