// expect-error TS2322: Type 'number' is not assignable to type 'string'.
import { createClient } from "./zocket.js";
import type { App } from "./app";

const client = createClient<App>({ url: "ws://localhost/ws/" });
const total: string = await client.counter("main").add({ amount: 1 });
console.log(total);
