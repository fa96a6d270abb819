// The React hooks (zocket-react.js) under React 18: the react18 workspace's node_modules.
import { register } from "node:module";
register("./react-resolve.mjs", import.meta.url, { data: new URL("./react18/", import.meta.url).href });
const { testHooks } = await import("./react-hooks.mjs");
testHooks("18");
