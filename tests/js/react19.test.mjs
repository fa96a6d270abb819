// The React hooks (zocket-react.js) under React 19: tests/js/node_modules.
import { register } from "node:module";
register("./react-resolve.mjs", import.meta.url, { data: new URL("./", import.meta.url).href });
const { testHooks } = await import("./react-hooks.mjs");
testHooks("19");
