// applyPatch: RFC 6902 (the examples of its appendix A), copy-on-write, and refusals.
import { test } from "node:test";
import assert from "node:assert/strict";
import { applyPatch, ZocketError } from "../../zocket_django/static/zocket_django/zocket.js";

const rejects = (doc, ops) =>
  assert.throws(() => applyPatch(doc, ops), (err) => err instanceof ZocketError && err.code === "bad_patch");

test("RFC 6902 appendix A examples that succeed", () => {
  const cases = [
    [{ foo: "bar" }, [{ op: "add", path: "/baz", value: "qux" }], { baz: "qux", foo: "bar" }],
    [{ foo: ["bar", "baz"] }, [{ op: "add", path: "/foo/1", value: "qux" }], { foo: ["bar", "qux", "baz"] }],
    [{ baz: "qux", foo: "bar" }, [{ op: "remove", path: "/baz" }], { foo: "bar" }],
    [{ foo: ["bar", "qux", "baz"] }, [{ op: "remove", path: "/foo/1" }], { foo: ["bar", "baz"] }],
    [{ baz: "qux", foo: "bar" }, [{ op: "replace", path: "/baz", value: "boo" }], { baz: "boo", foo: "bar" }],
    [
      { foo: { bar: "baz", waldo: "fred" }, qux: { corge: "grault" } },
      [{ op: "move", from: "/foo/waldo", path: "/qux/thud" }],
      { foo: { bar: "baz" }, qux: { corge: "grault", thud: "fred" } },
    ],
    [{ foo: ["all", "grass", "cows", "eat"] }, [{ op: "move", from: "/foo/1", path: "/foo/3" }], { foo: ["all", "cows", "eat", "grass"] }],
    [
      { baz: "qux", foo: ["a", 2, "c"] },
      [
        { op: "test", path: "/baz", value: "qux" },
        { op: "test", path: "/foo/1", value: 2 },
      ],
      { baz: "qux", foo: ["a", 2, "c"] },
    ],
    [{ foo: "bar" }, [{ op: "add", path: "/child", value: { grandchild: {} } }], { foo: "bar", child: { grandchild: {} } }],
    [{ foo: "bar" }, [{ op: "add", path: "/baz", value: "qux", xyz: 123 }], { foo: "bar", baz: "qux" }],
    [{ "/": 9, "~1": 10 }, [{ op: "test", path: "/~01", value: 10 }], { "/": 9, "~1": 10 }],
    [{ foo: ["bar"] }, [{ op: "add", path: "/foo/-", value: ["abc", "def"] }], { foo: ["bar", ["abc", "def"]] }],
  ];
  for (const [doc, ops, expected] of cases) assert.deepEqual(applyPatch(doc, ops), expected, JSON.stringify(ops));
});

test("RFC 6902 appendix A examples that fail", () => {
  rejects({ baz: "qux" }, [{ op: "test", path: "/baz", value: "bar" }]);
  rejects({ foo: "bar" }, [{ op: "add", path: "/baz/bat", value: "qux" }]);
  rejects({ "/": 9, "~1": 10 }, [{ op: "test", path: "/~01", value: "10" }]);
});

test("root, escapes, copy, array ends and nested tests", () => {
  assert.deepEqual(applyPatch({ a: 1 }, [{ op: "replace", path: "", value: [1] }]), [1]);
  assert.deepEqual(applyPatch({ a: 1 }, [{ op: "add", path: "", value: { b: 2 } }]), { b: 2 });
  assert.deepEqual(applyPatch({}, [{ op: "add", path: "/a~1b~0c", value: 1 }]), { "a/b~c": 1 });
  assert.deepEqual(applyPatch({}, [{ op: "add", path: "/", value: 1 }]), { "": 1 });
  assert.deepEqual(applyPatch([1, 2], [{ op: "add", path: "/2", value: 3 }]), [1, 2, 3]);
  assert.deepEqual(
    applyPatch({ a: { b: [1, { c: 2 }] } }, [{ op: "test", path: "/a", value: { b: [1, { c: 2 }] } }]),
    { a: { b: [1, { c: 2 }] } },
  );
  const copied = applyPatch({ a: { x: [1] } }, [
    { op: "copy", from: "/a", path: "/b" },
    { op: "add", path: "/b/x/-", value: 2 },
  ]);
  assert.deepEqual(copied, { a: { x: [1] }, b: { x: [1, 2] } });
  assert.deepEqual(applyPatch({ a: 1 }, [{ op: "move", from: "/a", path: "/a" }]), { a: 1 });
});

test("the input is never mutated and unchanged subtrees are shared", () => {
  const doc = { messages: [{ user: "a", text: "hi" }], online: ["c1"], meta: { n: 1 } };
  const before = structuredClone(doc);
  const next = applyPatch(doc, [
    { op: "add", path: "/messages/-", value: { user: "b", text: "yo" } },
    { op: "replace", path: "/meta/n", value: 2 },
    { op: "remove", path: "/online/0" },
  ]);
  assert.deepEqual(doc, before);
  assert.deepEqual(next, { messages: [{ user: "a", text: "hi" }, { user: "b", text: "yo" }], online: [], meta: { n: 2 } });
  assert.equal(next.messages[0], doc.messages[0]);
  assert.notEqual(next.messages, doc.messages);
  // a failing operation leaves the input as it was, too
  rejects(doc, [{ op: "remove", path: "/online/0" }, { op: "test", path: "/meta/n", value: 5 }]);
  assert.deepEqual(doc, before);
});

test("malformed operations and pointers are refused", () => {
  rejects({ a: [1] }, [{ op: "remove", path: "/a/01" }]);
  rejects({ a: [1] }, [{ op: "remove", path: "/a/1" }]);
  rejects({ a: [1] }, [{ op: "add", path: "/a/2", value: 0 }]);
  rejects({ a: [1] }, [{ op: "replace", path: "/a/-", value: 0 }]);
  rejects({ a: [1] }, [{ op: "remove", path: "/a/-1" }]);
  rejects({ a: 1 }, [{ op: "remove", path: "/b" }]);
  rejects({ a: 1 }, [{ op: "replace", path: "/b", value: 1 }]);
  rejects({ a: 1 }, [{ op: "add", path: "/a/b", value: 1 }]);
  rejects({ a: 1 }, [{ op: "add", path: "a", value: 1 }]);
  rejects({ a: 1 }, [{ op: "add", path: "/~2", value: 1 }]);
  rejects({ a: 1 }, [{ op: "add", path: "/b~", value: 1 }]);
  rejects({ a: 1 }, [{ op: "add", path: "/b" }]);
  rejects({ a: { b: 1 } }, [{ op: "move", from: "/a", path: "/a/c" }]);
  rejects({ a: 1 }, [{ op: "frobnicate", path: "/a" }]);
  rejects({ a: 1 }, [null]);
  rejects({ a: 1 }, [{ op: "add", path: 7, value: 1 }]);
  rejects({ a: 1 }, { op: "add", path: "/b", value: 1 });
  rejects({ a: 1 }, [{ op: "remove", path: "/toString" }]);
});

test("paths through __proto__, constructor or prototype are refused", () => {
  for (const ops of [
    [{ op: "add", path: "/__proto__/polluted", value: true }],
    [{ op: "replace", path: "/__proto__", value: { polluted: true } }],
    [{ op: "add", path: "/constructor/prototype/polluted", value: true }],
    [{ op: "add", path: "/a/prototype", value: true }],
    [{ op: "copy", from: "/__proto__", path: "/x" }],
    [{ op: "move", from: "/constructor", path: "/x" }],
    [{ op: "test", path: "/__proto__", value: {} }],
    [{ op: "add", path: "/a/__proto__/polluted", value: true }],
  ]) {
    rejects({ a: {} }, ops);
  }
  rejects({ a: {} }, [{ op: "add", path: "/__proto__", value: { polluted: true } }]);
  rejects({ a: {} }, [{ op: "add", path: "/a/constructor", value: { prototype: {} } }]);
  assert.equal({}.polluted, undefined);
  assert.equal(Object.prototype.polluted, undefined);
});
