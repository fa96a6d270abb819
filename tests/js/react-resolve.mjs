// A module resolution hook for the hooks' tests: "react" and "react-dom" (and their subpaths),
// imported from anywhere outside node_modules (the test, zocket-react.js), resolve from the
// folder given as `data` (tests/js/ for React 19, tests/js/react18/ for React 18).
// Registered with module.register(), see react18.test.mjs and react19.test.mjs.
let base;

export function initialize(folderUrl) {
  base = new URL("resolve-from.mjs", folderUrl).href;
}

export function resolve(specifier, context, nextResolve) {
  const react = /^react(-dom)?(\/|$)/.test(specifier);
  if (react && !context.parentURL?.includes("/node_modules/")) return nextResolve(specifier, { ...context, parentURL: base });
  return nextResolve(specifier, context);
}
