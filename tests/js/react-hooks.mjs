// The tests of zocket-react.js, run once per React version by react18.test.mjs and
// react19.test.mjs (which make "react" and "react-dom" resolve to that version). Components
// render into a happy-dom document with react-dom's createRoot, under act(); the client is the
// real zocket.js against the scriptable fake server.
import { test, before, after, beforeEach, afterEach } from "node:test";
import assert from "node:assert/strict";
import { Window } from "happy-dom";
import WebSocket from "ws";
import { FakeServer, until } from "./fake-server.mjs";

export function testHooks(major) {
  let React, act, createRoot, hooks, createClient, window;
  let server, client, root, container;

  before(async () => {
    window = new Window({ url: "http://localhost/" });
    const globals = { window, document: window.document, navigator: window.navigator, IS_REACT_ACT_ENVIRONMENT: true };
    for (const [name, value] of Object.entries(globals)) {
      Object.defineProperty(globalThis, name, { value, configurable: true, writable: true });
    }
    React = await import("react");
    ({ act } = React);
    ({ createRoot } = await import("react-dom/client"));
    hooks = await import("../../zocket_django/static/zocket_django/zocket-react.js");
    ({ createClient } = await import("../../zocket_django/static/zocket_django/zocket.js"));
  });

  after(async () => {
    await window.happyDOM.close();
    for (const name of ["window", "document", "navigator", "IS_REACT_ACT_ENVIRONMENT"]) delete globalThis[name];
  });

  beforeEach(async () => {
    server = await FakeServer.start();
    client = createClient({ url: server.url, WebSocket, onError: (e) => assert.fail(e) });
    await client.connection.ready;
    container = document.createElement("div");
    root = createRoot(container);
  });

  afterEach(async () => {
    await act(async () => root.unmount());
    client.connection.close();
    await server.stop();
  });

  const h = (...args) => React.createElement(...args);
  const render = (element) => act(async () => root.render(h(hooks.ZocketProvider, { client }, element)));
  /** Waits until the rendered text is `text`, letting React handle what arrived meanwhile. */
  async function shows(text) {
    await until(() => container.textContent === text, { what: `the text ${JSON.stringify(text)}, not ${JSON.stringify(container.textContent)}` }).catch(async (err) => {
      await act(async () => {}); // a render React had queued
      if (container.textContent !== text) throw err;
    });
  }
  /** Sends the server's frames for one change of counter/main, and lets React render it. */
  const change = (count, op = { op: "replace", path: "/count", value: count }) =>
    act(async () => {
      server.change("counter", "main", { count }, [op]);
      await until(() => client.counter("main").state.getSnapshot()?.count === count, { what: `count ${count}` });
    });

  test(`React ${major}: it is the React this run is about`, () => {
    assert.equal(React.version.split(".")[0], major);
  });

  test(`React ${major}: useActorState renders the live state, then nothing once unmounted`, async () => {
    let renders = 0;
    function Count() {
      renders++;
      const counter = hooks.useActor("counter", "main");
      const state = hooks.useActorState(counter);
      return state === undefined ? "loading" : `count ${state.count}`;
    }
    await render(h(Count));
    await shows("count 0");
    await change(1);
    await shows("count 1");
    assert.equal(server.frames("state:sub").length, 1, "one subscription, however many renders");
    const before = renders;
    await act(async () => root.render(null));
    await until(() => server.frames("state:unsub").length === 1, { what: "state:unsub" });
    await act(async () => server.change("counter", "main", { count: 2 }, [{ op: "replace", path: "/count", value: 2 }]));
    assert.equal(renders, before);
  });

  test(`React ${major}: useActorState(selector) renders again only when the selected value changes`, async () => {
    server.instance("counter", "main", { count: 0, label: "a" });
    const seen = [];
    function Label() {
      const label = hooks.useActorState(hooks.useActor("counter", "main"), (s) => s.label);
      seen.push(label);
      return `label ${label}`;
    }
    await render(h(Label));
    await shows("label a");
    const renders = seen.length;
    await act(async () => {
      server.change("counter", "main", { count: 1, label: "a" }, [{ op: "replace", path: "/count", value: 1 }]);
      await until(() => client.counter("main").state.getSnapshot()?.count === 1);
    });
    assert.equal(seen.length, renders, "a change elsewhere does not render the component");
    await act(async () => {
      server.change("counter", "main", { count: 1, label: "b" }, [{ op: "replace", path: "/label", value: "b" }]);
      await until(() => client.counter("main").state.getSnapshot()?.label === "b");
    });
    await shows("label b");
    assert.deepEqual(seen.slice(renders), ["b"]);
  });

  test(`React ${major}: useActorState's isEqual keeps a derived value that did not change`, async () => {
    server.instance("counter", "main", { count: 0, tags: ["x"] });
    const seen = [];
    const sameItems = (a, b) => a.length === b.length && a.every((v, i) => v === b[i]);
    function Tags() {
      const tags = hooks.useActorState(hooks.useActor("counter", "main"), (s) => s.tags.map((t) => t.toUpperCase()), sameItems);
      seen.push(tags);
      return (tags ?? []).join(",");
    }
    await render(h(Tags));
    await shows("X");
    const renders = seen.length;
    const shown = seen.at(-1);
    await act(async () => {
      server.change("counter", "main", { count: 1, tags: ["x"] }, [{ op: "replace", path: "/count", value: 1 }]);
      await until(() => client.counter("main").state.getSnapshot()?.count === 1);
    });
    assert.equal(seen.length, renders);
    assert.equal(seen.at(-1), shown);
  });

  test(`React ${major}: useEvent calls the latest callback, subscribed once while mounted`, async () => {
    const calls = [];
    function Resets({ tag }) {
      const counter = hooks.useActor("counter", "main");
      hooks.useEvent(counter, "reset", (payload) => calls.push(`${tag}:${payload.by}`));
      return tag;
    }
    await render(h(Resets, { tag: "first" }));
    await until(() => server.frames("event:sub").length === 1, { what: "event:sub" });
    await act(async () => server.emit("counter", "main", "reset", { by: "alice" }));
    await until(() => calls.length === 1, { what: "the first event" });
    await render(h(Resets, { tag: "second" })); // a new callback: no new subscription
    await act(async () => server.emit("counter", "main", "reset", { by: "bob" }));
    await until(() => calls.length === 2, { what: "the second event" });
    assert.deepEqual(calls, ["first:alice", "second:bob"]);
    assert.equal(server.frames("event:sub").length, 1);
    await act(async () => root.render(null));
    await until(() => server.frames("event:unsub").length === 1, { what: "event:unsub" });
  });

  test(`React ${major}: useActor keeps its handle across renders and calls methods`, async () => {
    const handles = [];
    server.onRpc = (m) => ({ result: m.input.amount + 1 });
    function Adder({ id }) {
      const counter = hooks.useActor("counter", id);
      handles.push(counter);
      return id;
    }
    await render(h(Adder, { id: "a" }));
    await render(h(Adder, { id: "a" }));
    assert.equal(handles[0], handles[1]);
    await render(h(Adder, { id: "b" }));
    assert.notEqual(handles.at(-1), handles[0]);
    assert.equal(await handles.at(-1).add({ amount: 41 }), 42);
    assert.equal(server.frames("rpc")[0].actorId, "b");
  });

  test(`React ${major}: useConnectionStatus follows the connection`, async () => {
    const rendered = [];
    function Status() {
      const status = hooks.useConnectionStatus();
      rendered.push(status);
      return status;
    }
    await render(h(Status));
    await shows("connected");
    const before = rendered.length;
    await act(async () => {
      server.dropAll();
      await until(() => client.connection.status !== "connected", { what: "the drop" });
    });
    // Every status rendered since the drop, not only the last: the reconnect may already be done.
    const since = rendered.slice(before);
    assert.ok(since.some((s) => ["reconnecting", "connecting"].includes(s)), since.join(", "));
    await act(async () => client.connection.ready);
    await shows("connected");
    await act(async () => client.connection.close());
    await shows("closed");
  });

  test(`React ${major}: hooks without a ZocketProvider say what is missing`, async () => {
    function Lost() {
      hooks.useConnectionStatus();
      return null;
    }
    const errors = [];
    const quiet = console.error;
    console.error = () => {}; // React reports the error it rethrows
    try {
      await act(async () =>
        root.render(h(class extends React.Component {
          static getDerivedStateFromError(error) {
            errors.push(error);
            return {};
          }
          render() {
            return errors.length ? "failed" : h(Lost);
          }
        })),
      );
    } finally {
      console.error = quiet;
    }
    assert.match(String(errors[0]), /need a <ZocketProvider client=\{\.\.\.\}>/);
  });

  test(`React ${major}: createZocketReact hands out the same hooks`, () => {
    const typed = hooks.createZocketReact();
    for (const name of ["ZocketProvider", "useClient", "useActor", "useActorState", "useEvent", "useConnectionStatus"]) {
      assert.equal(typed[name], hooks[name], name);
    }
  });
}
