// The React hooks rendered in jsdom (react-dom/client createRoot, act) against a real
// server: useWebSocket connects and sends, useTripCollaboration shows a second user's
// edit and presence and confirms our own, <CollaborationPresence> lists the other user.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { createTrip, installDom, jsonPeer, Signal } from "./env.mjs";
import { startServer } from "./server.mjs";

installDom();
const React = await import("react");
const { createRoot } = await import("react-dom/client");
const { useWebSocket, useTripCollaboration, CollaborationPresence, TripSageProvider } = await import(
  "../dist/react/index.js"
);
const h = React.createElement;

let server;
before(async () => {
  // Many connections from one IP in a few seconds: the per-IP authentication limit off.
  server = await startServer({ env: { TRIPSAGE_RATE_LIMIT_AUTH_PER_MIN: "0" } });
});
after(async () => {
  await server?.stop();
});

/** act() with React's act environment on only around it (updates from sockets come outside). */
async function inAct(callback) {
  globalThis.IS_REACT_ACT_ENVIRONMENT = true;
  try {
    await React.act(callback);
  } finally {
    globalThis.IS_REACT_ACT_ENVIRONMENT = false;
  }
}

/** Render `useHook()` in a component; `probe.until(check)` awaits a rendered result. */
async function renderHook(useHook, { strict = false, extra = () => null } = {}) {
  const signal = new Signal();
  const probe = { current: undefined };
  function Probe() {
    const result = useHook();
    probe.current = result;
    React.useEffect(() => signal.notify());
    return extra(result);
  }
  const container = document.createElement("div");
  document.body.append(container);
  const root = createRoot(container);
  await inAct(() => root.render(strict ? h(React.StrictMode, null, h(Probe)) : h(Probe)));
  return {
    probe,
    container,
    until: (check, what) => signal.until(() => check(probe.current), { what }),
    unmount: () => inAct(() => root.unmount()),
  };
}

test("useWebSocket: connects, sendMessage goes out, lastMessage and onMessage see the answers", async () => {
  const seen = [];
  const url = `${server.ws}/ws/chat/s-react-1`;
  const hook = await renderHook(
    () =>
      useWebSocket({
        url,
        token: server.token("alice"),
        WebSocket,
        maxReconnectAttempts: 5,
        onMessage: (m) => seen.push(m.type),
      }),
    { strict: true },
  );
  try {
    assert.equal(hook.probe.current.isConnected, false);
    await hook.until((r) => r.isConnected && r.connectionState === "connected", "isConnected");
    assert.equal(hook.probe.current.userId, "alice");
    assert.equal(hook.probe.current.error, null);

    hook.probe.current.sendMessage({ type: "connection_heartbeat", payload: {} });
    // lastMessage is the newest message at each render (several between two renders show as
    // one); onMessage sees every one.
    await hook.until(() => seen.includes("connection_heartbeat"), "the heartbeat's answer");
    assert.ok(hook.probe.current.lastMessage, "lastMessage is set");
    assert.ok(seen.includes("connection_established"), `onMessage saw ${seen}`);
  } finally {
    const manager = hook.probe.current.manager;
    await hook.unmount();
    assert.equal(manager.state, "closed", "unmount stops the connection it opened");
  }
});

test("useWebSocket: a refused token is the error, connectionState closed", async () => {
  const hook = await renderHook(() =>
    useWebSocket(`${server.ws}/ws/chat/s-react-2`, { token: "not-a-jwt", WebSocket, reconnect: false }),
  );
  await hook.until((r) => r.connectionState === "closed", "closed");
  assert.equal(hook.probe.current.isConnected, false);
  assert.ok(hook.probe.current.error, "an error is shown");
  await hook.unmount();
});

test("useTripCollaboration: another user's edit and presence show up; our edit is confirmed", async () => {
  const tripId = await createTrip(server, "alice", "trip-react", { destination: "Paris", budget: 2500 }, { bob: "editor" });
  const hook = await renderHook(
    () =>
      useTripCollaboration(tripId, {
        url: `${server.ws}/ws/chat/s-react-trip`,
        token: server.token("alice", { name: "Alice" }),
        WebSocket,
      }),
    {
      strict: true,
      extra: (collaboration) => h(CollaborationPresence, { collaboration, currentUserId: "alice" }),
    },
  );
  await hook.until((r) => r.joined && r.fields.destination === "Paris", "the join");
  assert.equal(hook.probe.current.permissionLevel, "owner");
  assert.equal(hook.probe.current.canEdit, true);

  const bob = await jsonPeer(server, "bob", { name: "Bob" });
  bob.send("collaboration_session_start", { tripId });
  await bob.next((m) => m.type === "collaboration_session_started", "joined");
  await hook.until((r) => r.activeCollaborators.some((c) => c.userId === "bob"), "bob in presence");
  await hook.until(
    () => hook.container.querySelector("[data-testid=active-collaborators]")?.textContent.includes("Bob"),
    "Bob rendered by <CollaborationPresence>",
  );

  bob.send("optimistic_update_start", {
    updateId: "bob-1",
    tripId,
    fieldName: "destination",
    optimisticValue: "Rome",
  });
  await hook.until((r) => r.fields.destination === "Rome", "bob's edit");

  bob.send("trip_field_editing_start", { tripId, fieldName: "budget" });
  await hook.until((r) => r.editingFields.budget === "bob", "bob's field lock");
  await hook.until(() => hook.container.querySelector(".editing-indicator[data-field=budget]"), "the indicator");
  bob.send("trip_field_editing_stop", { tripId, fieldName: "budget" });
  await hook.until((r) => !("budget" in r.editingFields), "the lock released");

  hook.probe.current.edit("budget", 3000);
  await hook.until((r) => r.fields.budget === 3000, "our edit shown at once");
  await hook.until((r) => r.optimisticUpdates.budget?.status === "confirmed", "our edit confirmed");
  const change = await bob.next((m) => m.type === "trip_update_broadcast" && m.payload.changes.budget, "our edit");
  assert.equal(change.payload.changes.budget.newValue, 3000);
  await hook.until((r) => r.status === "Synced", "Synced");

  hook.probe.current.startEditing("destination");
  const lock = await bob.next((m) => m.type === "trip_field_editing_start" && m.payload.userId === "alice", "alice's lock");
  assert.equal(lock.payload.fieldName, "destination");

  await hook.unmount();
  await bob.next((m) => m.type === "trip_collaboration_leave" && m.payload.userId === "alice", "alice leaves");
  bob.close();
});

test("useTripCollaboration on a shared useWebSocket connection joins an open manager", async () => {
  const tripId = await createTrip(server, "carol", "trip-react-shared", { destination: "Oslo" });
  const token = server.token("carol");
  let tripHook;
  const hook = await renderHook(
    () => useWebSocket({ url: `${server.ws}/ws/chat/s-react-shared`, token, WebSocket }),
  );
  await hook.until((r) => r.isConnected, "connected");
  const manager = hook.probe.current.manager;
  tripHook = await renderHook(() => useTripCollaboration(tripId, { manager, userId: "carol" }));
  await tripHook.until((r) => r.joined && r.fields.destination === "Oslo", "the join on the open manager");
  const second = await renderHook(() => useWebSocket({ manager }));
  await second.until((r) => r.isConnected && r.userId === "carol", "the shared connection's state");
  await second.unmount();
  await tripHook.unmount();
  assert.equal(manager.state, "open", "a shared manager stays open");
  await hook.unmount();
});

test("under <TripSageProvider> the spec's calls work as written: useTripCollaboration(tripId), <CollaborationPresence tripId currentUserId>", async () => {
  const tripId = await createTrip(server, "dana", "trip-react-provider", { destination: "Lima" }, { erin: "editor" });
  const signal = new Signal();
  const probe = { current: undefined };
  // websocket-api.md "Real-time Collaboration Hook" and "Collaboration Presence Component".
  function TripCollaboration({ tripId }) {
    const { isConnected, activeCollaborators, optimisticUpdates, handleOptimisticUpdate } = useTripCollaboration(tripId);
    probe.current = { isConnected, activeCollaborators, optimisticUpdates, handleOptimisticUpdate };
    React.useEffect(() => signal.notify());
    return h(CollaborationPresence, { tripId, currentUserId: "dana" });
  }
  const container = document.createElement("div");
  document.body.append(container);
  // <CollaborationPresence tripId> renders on its own connection's events: watch the DOM.
  const observer = new MutationObserver(() => signal.notify());
  observer.observe(container, { subtree: true, childList: true, characterData: true });
  const root = createRoot(container);
  const settings = { url: `${server.ws}/ws/chat/s-react-provider`, token: server.token("dana", { name: "Dana" }), WebSocket };
  await inAct(() => root.render(h(TripSageProvider, settings, h(TripCollaboration, { tripId }))));
  const erin = await jsonPeer(server, "erin", { name: "Erin" });
  try {
    await signal.until(() => probe.current.isConnected, { what: "connected" });
    erin.send("collaboration_session_start", { tripId });
    await erin.next((m) => m.type === "collaboration_session_started", "joined");
    await signal.until(() => probe.current.activeCollaborators.some((c) => c.userId === "erin"), { what: "erin" });
    const rendered = () => container.querySelector("[data-testid=active-collaborators]")?.textContent ?? "";
    await signal.until(() => rendered().includes("Erin"), { what: "Erin rendered by <CollaborationPresence tripId>" });

    probe.current.handleOptimisticUpdate("destination", "Cusco");
    await signal.until(() => probe.current.optimisticUpdates.destination?.status === "confirmed", { what: "confirmed" });
    const change = await erin.next((m) => m.type === "trip_update_broadcast" && m.payload.changes.destination, "the edit");
    assert.equal(change.payload.changes.destination.newValue, "Cusco");
  } finally {
    observer.disconnect();
    await inAct(() => root.unmount());
    erin.close();
  }
});
