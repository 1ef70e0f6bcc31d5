// The offline queue across a "reload": edits made while offline are kept in storage,
// and new objects (manager, TripSync) over the same storage send them once connected,
// each under its original updateId. Over a Web Storage-like adapter (what localStorage
// is in a browser) and over IndexedDB (fake-indexeddb).
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { IDBFactory } from "fake-indexeddb";
import { IndexedDBStorage, MemoryStorage, STATUS, TripSync, UpdateQueue, openStorage } from "../dist/index.js";
import { startServer } from "./server.mjs";
import { MANY_CONNECTIONS, createTrip, getTrip, manager, next, until } from "./helpers.mjs";

let server;
before(async () => {
  server = await startServer({ env: MANY_CONNECTIONS });
});
after(async () => {
  await server?.stop();
});

/** A page: a manager and a TripSync over `storage`, the manager not started. */
function page(userId, tripId, storage) {
  const m = manager(server, userId, { channels: [`trip:${tripId}`] });
  const sync = new TripSync({ manager: m, tripId, userId, storage });
  return { m, sync, close: () => (sync.destroy(), m.stop()) };
}

/** Load the trip, go offline, edit twice; the page is then closed. Returns the queued ids. */
async function editOffline(tripId, storage) {
  const first = page("alice", tripId, storage);
  const synced = until(first.sync, "status", () => first.sync.status === STATUS.SYNCED);
  first.m.start();
  await synced;
  first.m.stop(); // offline: nothing more reaches the server
  first.sync.edit("destination", "Kyoto");
  first.sync.edit("budget", 4200);
  assert.equal(first.sync.status, STATUS.OFFLINE);
  assert.equal(first.sync.pendingCount, 2);
  const ids = first.sync.queue.all().map((e) => e.updateId);
  first.close();
  return ids;
}

/** A new page over the storage: shows the queued edits, then sends them, one outcome each. */
async function reload(tripId, storage, ids) {
  const second = page("alice", tripId, storage);
  try {
    assert.equal(second.sync.pendingCount, 2);
    assert.equal(second.sync.value("destination"), "Kyoto"); // before any connection
    assert.equal(second.sync.value("budget"), 4200);
    assert.equal(second.sync.loaded, true); // the trip's last state was kept too
    const outcomes = [];
    second.sync.on("outcome", (o) => outcomes.push([o.entry.updateId, o.kind]));
    const sent = [];
    second.m.on("send", (message) => {
      if (message.type === "optimistic_update_start") sent.push(message.payload.updateId);
    });
    const synced = until(
      second.sync,
      "status",
      () => second.sync.status === STATUS.SYNCED && outcomes.length === 2,
    );
    second.m.start();
    await synced;
    assert.deepEqual(sent.sort(), [...ids].sort()); // the original updateIds
    assert.deepEqual(outcomes.sort(), ids.map((id) => [id, "confirmed"]).sort());
    assert.equal(second.sync.pendingCount, 0);
    const trip = await getTrip(server, "alice", tripId);
    assert.equal(trip.fields.destination, "Kyoto");
    assert.equal(trip.fields.budget, 4200);
  } finally {
    second.close();
  }
}

test("the queue survives a reload over Web Storage (localStorage's interface)", async () => {
  await createTrip(server, "alice", "t-reload-ls", { destination: "Paris", budget: 1000 });
  const storage = new MemoryStorage(); // what localStorage is to a reloaded page: the same store
  const ids = await editOffline("t-reload-ls", storage);
  const raw = JSON.parse(storage.getItem("tripsage.queue.alice.t-reload-ls"));
  assert.deepEqual(raw.map((e) => e.updateId), ids);
  await reload("t-reload-ls", storage, ids);
  assert.equal(storage.getItem("tripsage.queue.alice.t-reload-ls"), null); // emptied: removed
});

test("the queue survives a reload over IndexedDB", async () => {
  await createTrip(server, "alice", "t-reload-idb", { destination: "Paris", budget: 1000 });
  const indexedDB = new IDBFactory();
  const before = await IndexedDBStorage.open({ indexedDB, name: "app" });
  const ids = await editOffline("t-reload-idb", before);
  await before.close(); // flushed: every change committed

  const after = await openStorage("indexedDB", { indexedDB, name: "app" });
  assert.ok(after instanceof IndexedDBStorage);
  assert.deepEqual(new UpdateQueue(after, "tripsage.queue.alice.t-reload-idb").all().map((e) => e.updateId), ids);
  await reload("t-reload-idb", after, ids);
  await after.close();

  const third = await IndexedDBStorage.open({ indexedDB, name: "app" });
  assert.equal(third.getItem("tripsage.queue.alice.t-reload-idb"), null);
  assert.ok(third.getItem("tripsage.trip.alice.t-reload-idb"));
  await third.close();
});

test("IndexedDBStorage writes behind, in order, and flush() waits for the commit", async () => {
  const indexedDB = new IDBFactory();
  const a = await IndexedDBStorage.open({ indexedDB, name: "order" });
  a.setItem("k", "1");
  a.setItem("k", "2");
  a.setItem("gone", "x");
  assert.equal(a.getItem("k"), "2"); // read from memory at once
  await a.flush();
  a.removeItem("gone");
  a.setItem("k", "3");
  await a.close();
  const b = await IndexedDBStorage.open({ indexedDB, name: "order" });
  assert.equal(b.getItem("k"), "3");
  assert.equal(b.getItem("gone"), null);
  await b.close();
});

test("openStorage: memory where there is neither localStorage nor IndexedDB (Node)", async () => {
  assert.ok((await openStorage("auto")) instanceof MemoryStorage);
  assert.ok((await openStorage("memory")) instanceof MemoryStorage);
  assert.ok((await openStorage("auto", { indexedDB: new IDBFactory() })) instanceof IndexedDBStorage);
  await assert.rejects(openStorage("localStorage"), /no localStorage/);
  await assert.rejects(openStorage("indexedDB"), /no IndexedDB/);
  // A TripSync without a storage option uses the process's memory store.
  const m = manager(server, "alice");
  const sync = new TripSync({ manager: m, tripId: "t-none", userId: "alice" });
  sync.edit("destination", "Nowhere");
  assert.equal(new TripSync({ manager: m, tripId: "t-none", userId: "alice" }).pendingCount, 1);
  sync.destroy();
});
