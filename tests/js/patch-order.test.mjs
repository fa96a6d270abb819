// Patching keeps key order: a state kept up to date by the server's patches is the same JSON
// text as a fresh snapshot. Random states and changes (fast-check, fixed seed); the patches are
// computed by the server's own diff (zocket_django/patches.py, through .venv/bin/python, like
// live.test.mjs skipped without .venv except under CI=true); applyPatch applies them.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import fc from "fast-check";
import { applyPatch } from "../../zocket_django/static/zocket_django/zocket.js";

const root = fileURLToPath(new URL("../..", import.meta.url));
const pythonPath = `${root}.venv/bin/python`;
const skip = !existsSync(pythonPath) && process.env.CI !== "true" && `no ${pythonPath}: run scripts/setup first`;

test("replace keeps a member in its place, in objects and arrays", () => {
  const votes = { cat: 0, dog: 0, fish: 0 };
  const after = applyPatch(votes, [{ op: "replace", path: "/dog", value: 1 }]);
  assert.equal(JSON.stringify(after), '{"cat":0,"dog":1,"fish":0}');
  assert.equal(JSON.stringify(votes), '{"cat":0,"dog":0,"fish":0}'); // untouched
  const nested = applyPatch({ a: { x: [1, 2, 3], y: 0 }, b: 1 }, [{ op: "replace", path: "/a/x/1", value: 9 }]);
  assert.equal(JSON.stringify(nested), '{"a":{"x":[1,9,3],"y":0},"b":1}');
  assert.deepEqual(applyPatch({ a: 1 }, [{ op: "replace", path: "", value: [1] }]), [1]);
});

/** The server's diff of each [old, new] pair, in one Python process. */
function serverDiffs(pairs) {
  const script =
    "import json, sys\nfrom zocket_django.patches import diff\n" +
    "print(json.dumps([diff(old, new) for old, new in json.load(sys.stdin)]))";
  const out = execFileSync(pythonPath, ["-c", script], { cwd: root, input: JSON.stringify(pairs), timeout: 60000 });
  return JSON.parse(out);
}

// JSON without booleans: Python's == equates true and 1 inside containers, which typed states never
// mix (patches.py says so). Keys that could reach a prototype are refused by applyPatch by design.
const scalar = fc.oneof(fc.integer({ min: -1000, max: 1000 }), fc.string({ maxLength: 5 }), fc.constant(null));
const key = fc.string({ maxLength: 4 }).filter((k) => !["__proto__", "constructor", "prototype"].includes(k));
const { value, object } = fc.letrec((tie) => ({
  value: fc.oneof({ depthSize: "small", withCrossShrink: true }, scalar, tie("array"), tie("object")),
  array: fc.array(tie("value"), { maxLength: 4 }),
  object: fc.dictionary(key, tie("value"), { maxKeys: 4 }),
}));
const change = fc.tuple(fc.constantFrom("set", "add", "remove", "prepend"), fc.nat(), key, value);

/** Every object and array of `doc`, depth first. */
function containers(doc, out = []) {
  if (doc !== null && typeof doc === "object") {
    out.push(doc);
    for (const child of Object.values(doc)) containers(child, out);
  }
  return out;
}

/** `doc` changed the way a handler changes its state: set, add, remove members, or add one first. */
function changed(doc, changes) {
  const d = structuredClone(doc);
  for (const [kind, pick, k, v] of changes) {
    const all = containers(d);
    const c = all[pick % all.length];
    if (Array.isArray(c)) {
      const i = c.length ? pick % c.length : 0;
      if (kind === "set" && c.length) c[i] = v;
      else if (kind === "remove" && c.length) c.splice(i, 1);
      else c.splice(i, 0, v);
      continue;
    }
    const keys = Object.keys(c);
    if (kind === "set" && keys.length) c[keys[pick % keys.length]] = v;
    else if (kind === "remove" && keys.length) delete c[keys[pick % keys.length]];
    else if (kind === "prepend" && !Object.hasOwn(c, k)) {
      const rest = { ...c };
      for (const old of keys) delete c[old];
      Object.assign(c, { [k]: v }, rest);
    } else c[k] = v;
  }
  return d;
}

test("a patched state is the new state as JSON text, key order included", { skip }, () => {
  const cases = fc
    .sample(fc.tuple(object, fc.array(change, { minLength: 1, maxLength: 5 })), { numRuns: 400, seed: 18 })
    .map(([old, changes]) => [old, changed(old, changes)]);
  const diffs = serverDiffs(cases);
  let whole = 0;
  cases.forEach(([old, next], i) => {
    const before = JSON.stringify(old);
    const patched = applyPatch(old, diffs[i]);
    assert.equal(JSON.stringify(patched), JSON.stringify(next), `case ${i}: ${before} with ${JSON.stringify(diffs[i])}`);
    assert.equal(JSON.stringify(old), before, `case ${i}: the old state was changed`);
    if (diffs[i].some((op) => op.op === "replace" && op.value !== null && typeof op.value === "object")) whole++;
  });
  assert.ok(whole > 0, "some cases replace a whole object or array");
});
