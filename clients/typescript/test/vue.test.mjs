// The Vue composable mounted in jsdom (createApp + a component) against a real server:
// refs follow the connection, a second user's edit and presence, our own edit's outcome;
// unmounting closes the connection.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { createTrip, installDom, jsonPeer, Signal } from "./env.mjs";
import { startServer } from "./server.mjs";

installDom();
const { createApp, defineComponent, h, ref } = await import("vue");
const { useWebSocketCollaboration, TripSagePlugin } = await import("../dist/vue/index.js");

let server;
before(async () => {
  // Many connections from one IP in a few seconds: the per-IP authentication limit off.
  server = await startServer({ env: { TRIPSAGE_RATE_LIMIT_AUTH_PER_MIN: "0" } });
});
after(async () => {
  await server?.stop();
});

/**
 * Mount a component using the composable; `until(check)` awaits a rendered state.
 * `plugin`: the settings given to the app (TripSagePlugin) instead of the composable.
 */
function mount(tripId, options, { plugin } = {}) {
  const signal = new Signal();
  const probe = { current: null };
  const Component = defineComponent({
    setup() {
      probe.current = useWebSocketCollaboration(tripId, options);
      return () => {
        const c = probe.current;
        return h("div", [
          h("span", { "data-testid": "status" }, c.status.value),
          h("span", { "data-testid": "editing" }, JSON.stringify(c.editingFields.value)),
          h("span", { "data-testid": "connected" }, String(c.isConnected.value)),
          h("span", { "data-testid": "updates" }, JSON.stringify(c.optimisticUpdates.value)),
          h("input", { "data-testid": "destination", value: String(c.fields.value.destination ?? "") }),
          h(
            "ul",
            { "data-testid": "active-collaborators" },
            c.activeCollaborators.value.map((u) => h("li", { key: u.userId }, u.userName ?? u.userId)),
          ),
        ]);
      };
    },
    updated: () => signal.notify(),
    mounted: () => signal.notify(),
  });
  const container = document.createElement("div");
  document.body.append(container);
  const app = createApp(Component);
  if (plugin) app.use(TripSagePlugin, plugin);
  app.mount(container);
  return {
    probe,
    container,
    // Checked after each render: every ref a test waits for is rendered.
    until: (check, what) => signal.until(() => check(probe.current, container), { what }),
    unmount: () => app.unmount(),
  };
}

test("useWebSocketCollaboration: refs follow the trip, another user's edit and presence", async () => {
  const tripId = await createTrip(server, "alice", "trip-vue", { destination: "Lisbon", budget: 900 }, { bob: "editor" });
  const view = mount(tripId, {
    url: `${server.ws}/ws/chat/s-vue`,
    token: server.token("alice", { name: "Alice" }),
    WebSocket,
  });
  await view.until((c) => c.isConnected.value, "isConnected");
  await view.until(
    (_c, el) => el.querySelector("[data-testid=destination]").value === "Lisbon",
    "the trip rendered",
  );
  assert.equal(view.probe.current.permissionLevel.value, "owner");

  const bob = await jsonPeer(server, "bob", { name: "Bob" });
  bob.send("collaboration_session_start", { tripId });
  await bob.next((m) => m.type === "collaboration_session_started", "joined");
  await view.until(
    (_c, el) => el.querySelector("[data-testid=active-collaborators]").textContent.includes("Bob"),
    "Bob rendered in presence",
  );

  bob.send("optimistic_update_start", { updateId: "bob-v1", tripId, fieldName: "destination", optimisticValue: "Porto" });
  await view.until((_c, el) => el.querySelector("[data-testid=destination]").value === "Porto", "bob's edit");

  view.probe.current.sendOptimisticUpdate("budget", 1200);
  assert.equal(view.probe.current.fields.value.budget, 1200, "shown at once");
  assert.equal(view.probe.current.optimisticUpdates.value.budget.status, "pending");
  await view.until((c) => c.optimisticUpdates.value.budget.status === "confirmed", "our edit confirmed");
  await view.until((_c, el) => el.querySelector("[data-testid=status]").textContent === "Synced", "Synced");
  const change = await bob.next((m) => m.type === "trip_update_broadcast" && m.payload.changes.budget, "our edit");
  assert.equal(change.payload.changes.budget.newValue, 1200);

  bob.send("trip_field_editing_start", { tripId, fieldName: "destination" });
  await view.until((c) => c.editingFields.value.destination === "bob", "bob's lock");

  const manager = view.probe.current.manager.value;
  view.unmount();
  assert.equal(manager.state, "closed", "onUnmounted closes the connection");
  assert.equal(view.probe.current.manager.value, null);
  await bob.next((m) => m.type === "trip_collaboration_leave" && m.payload.userId === "alice", "alice leaves");
  bob.close();
});

test("useWebSocketCollaboration: a reactive trip id moves the connection to the new trip", async () => {
  await createTrip(server, "dan", "trip-vue-a", { destination: "Kyoto" });
  await createTrip(server, "dan", "trip-vue-b", { destination: "Nara" });
  const tripId = ref("trip-vue-a");
  const view = mount(tripId, { url: `${server.ws}/ws/chat/s-vue-2`, token: server.token("dan"), WebSocket });
  await view.until((_c, el) => el.querySelector("[data-testid=destination]").value === "Kyoto", "trip a");
  tripId.value = "trip-vue-b";
  await view.until((_c, el) => el.querySelector("[data-testid=destination]").value === "Nara", "trip b");
  view.unmount();
});

test("with TripSagePlugin, useWebSocketCollaboration(tripId) as the spec writes it", async () => {
  const tripId = await createTrip(server, "dana", "trip-vue-plugin", { destination: "Quito" }, { erin: "editor" });
  const settings = { url: `${server.ws}/ws/chat/s-vue-plugin`, token: server.token("dana", { name: "Dana" }), WebSocket };
  const view = mount(tripId, undefined, { plugin: settings });
  const erin = await jsonPeer(server, "erin", { name: "Erin" });
  try {
    await view.until((c) => c.isConnected.value, "isConnected");
    erin.send("collaboration_session_start", { tripId });
    await erin.next((m) => m.type === "collaboration_session_started", "joined");
    await view.until((c) => c.activeCollaborators.value.some((u) => u.userId === "erin"), "erin in presence");
    view.probe.current.sendOptimisticUpdate("destination", "Cuenca");
    await view.until((c) => c.optimisticUpdates.value.destination?.status === "confirmed", "confirmed");
    const change = await erin.next((m) => m.type === "trip_update_broadcast" && m.payload.changes.destination, "edit");
    assert.equal(change.payload.changes.destination.newValue, "Cuenca");
  } finally {
    view.unmount();
    erin.close();
  }
});
