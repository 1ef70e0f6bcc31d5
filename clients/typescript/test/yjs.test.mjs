// YjsProvider against a real server: two Y.Docs converge through it, a JSON client's edit
// reaches both and theirs reaches the JSON client, awareness crosses, a refusal (4403) is
// final, a viewer's edit is denied, and a 4401 gets a fresh token from tokenProvider.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import * as Y from "yjs";
import { YjsProvider } from "../dist/yjs/index.js";
import { createTrip, jsonPeer, Signal } from "./env.mjs";
import { startServer } from "./server.mjs";

let server;
before(async () => {
  // Many connections from one IP in a few seconds: the per-IP authentication limit off.
  server = await startServer({ env: { TRIPSAGE_RATE_LIMIT_AUTH_PER_MIN: "0" } });
});
after(async () => {
  await server?.stop();
});

/** A Y.Doc with a provider; `until(check)` is checked after each document or awareness change. */
function peer(tripId, userId, options = {}) {
  const doc = new Y.Doc();
  const signal = new Signal();
  const provider = new YjsProvider(doc, {
    url: `${server.ws}/ws/yjs`,
    tripId,
    token: server.token(userId),
    WebSocket,
    ...options,
  });
  const events = [];
  doc.on("update", () => signal.notify());
  provider.awareness.on("change", () => signal.notify());
  for (const type of ["sync", "closed", "denied", "connection-close", "status"]) {
    provider.on(type, (data) => {
      events.push({ type, data });
      if (process.env.YJS_DEBUG) console.log(Date.now() % 100000, userId, type, JSON.stringify(data));
      signal.notify();
    });
  }
  return {
    doc,
    provider,
    events,
    trip: doc.getMap("trip"),
    until: (check, what) => signal.until(check, { what: `${userId}: ${what}` }),
  };
}

test("two Y.Docs sync through the server, and with a JSON client", async () => {
  const tripId = await createTrip(server, "alice", "trip-yjs", { destination: "Paris", notes: "" }, { bob: "editor" });
  const a = peer(tripId, "alice");
  const b = peer(tripId, "bob");
  await Promise.all([a.provider.whenSynced(), b.provider.whenSynced()]);
  assert.equal(a.trip.get("destination"), "Paris");
  assert.equal(b.provider.trip.get("destination"), "Paris");

  a.trip.set("budget", 1800);
  await b.until(() => b.trip.get("budget") === 1800, "alice's budget");
  b.trip.get("notes").insert(0, "pack light");
  await a.until(() => a.trip.get("notes")?.toString() === "pack light", "bob's notes");

  const carol = await jsonPeer(server, "alice");
  carol.send("collaboration_session_start", { tripId });
  const joined = await carol.next((m) => m.type === "collaboration_session_started", "joined");
  assert.equal(joined.payload.fields.budget, 1800);
  carol.send("optimistic_update_start", { updateId: "json-1", tripId, fieldName: "destination", optimisticValue: "Nice" });
  await a.until(() => a.trip.get("destination") === "Nice", "the JSON edit");
  await b.until(() => b.trip.get("destination") === "Nice", "the JSON edit");

  b.trip.set("destination", "Lyon");
  const change = await carol.next(
    (m) => m.type === "trip_update_broadcast" && m.payload.changes.destination?.newValue === "Lyon",
    "bob's Yjs edit",
  );
  assert.equal(change.payload.updatedBy, "bob");

  b.provider.awareness.setLocalStateField("currentField", "budget");
  await a.until(
    () => [...a.provider.awareness.getStates().values()].some((s) => s.user?.id === "bob" && s.currentField === "budget"),
    "bob's awareness, stamped with his identity",
  );

  b.provider.destroy();
  await a.until(
    () => ![...a.provider.awareness.getStates().values()].some((s) => s.user?.id === "bob"),
    "bob's awareness gone",
  );
  a.provider.destroy();
  carol.close();
});

test("a non-collaborator is refused for good (4403, no reconnect); a viewer's edit is denied", async () => {
  const tripId = await createTrip(server, "alice", "trip-yjs-2", { destination: "Bergen" }, { vic: "viewer" });
  const mallory = peer(tripId, "mallory");
  const never = mallory.provider.whenSynced();
  const closed = await mallory.until(() => mallory.events.find((e) => e.type === "closed"), "closed");
  assert.equal(closed.data.code, 4403);
  // Awaiting the sync of a refused provider fails instead of hanging, now and later.
  await assert.rejects(never, /4403/);
  await assert.rejects(mallory.provider.whenSynced(), /4403/);
  assert.equal(mallory.provider.socket, null);
  assert.equal(mallory.provider.status, "disconnected");
  mallory.provider.destroy(); // its Awareness has a timer

  const vic = peer(tripId, "vic");
  await vic.provider.whenSynced();
  assert.equal(vic.trip.get("destination"), "Bergen");
  vic.trip.set("destination", "Oslo");
  const denied = await vic.until(() => vic.events.find((e) => e.type === "denied"), "denied");
  assert.match(denied.data.reason, /permission denied|viewer|read/i);
  assert.equal(vic.provider.status, "connected", "a viewer stays connected");
  vic.provider.destroy();
  await assert.rejects(vic.provider.whenSynced(), /destroyed/);
});

test("a 4401 (expired token) reconnects once with the tokenProvider's token", async () => {
  const tripId = await createTrip(server, "alice", "trip-yjs-3", { destination: "Rome" });
  let asked = 0;
  const a = peer(tripId, "alice", {
    token: server.token("alice", { ttlS: -10 }),
    tokenProvider: async () => {
      asked++;
      return server.token("alice");
    },
  });
  await a.provider.whenSynced();
  assert.equal(asked, 1);
  assert.equal(a.trip.get("destination"), "Rome");
  assert.ok(a.events.some((e) => e.type === "connection-close" && e.data.code === 4401));
  assert.ok(!a.events.some((e) => e.type === "closed"));
  a.provider.destroy();
});
