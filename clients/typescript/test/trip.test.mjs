// TripSync against a real server: an optimistic update confirmed and broadcast to a
// second user, exactly one outcome per edit also when its answer was lost and it was
// re-sent after a reconnect, and the presence of two users.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { MemoryStorage, STATUS, TripSync } from "../dist/index.js";
import { startServer } from "./server.mjs";
import { MANY_CONNECTIONS, createTrip, getTrip, manager, next, until } from "./helpers.mjs";

let server;
before(async () => {
  server = await startServer({ env: MANY_CONNECTIONS });
});
after(async () => {
  await server?.stop();
});

/** A started manager and its TripSync, resolved once the trip is Synced. */
async function join(userId, tripId, { storage = new MemoryStorage(), ...options } = {}) {
  const m = manager(server, userId, { channels: [`trip:${tripId}`], ...options });
  const sync = new TripSync({ manager: m, tripId, userId, storage });
  const synced = until(sync, "status", () => sync.status === STATUS.SYNCED);
  m.start();
  try {
    await synced;
  } catch (error) {
    sync.destroy();
    m.stop();
    throw error;
  }
  return { m, sync, close: () => (sync.destroy(), m.stop()) };
}

/** Every outcome `sync` reports, by updateId. */
function outcomes(sync) {
  const seen = new Map();
  sync.on("outcome", (o) => seen.set(o.entry.updateId, [...(seen.get(o.entry.updateId) || []), o.kind]));
  return seen;
}

test("an optimistic edit is shown at once, confirmed once, and broadcast to a collaborator", async () => {
  await createTrip(server, "alice", "t-confirm", { destination: "Paris", budget: 1000 }, { bob: "editor" });
  const alice = await join("alice", "t-confirm");
  const bob = await join("bob", "t-confirm");
  try {
    assert.equal(alice.sync.permissionLevel, "owner");
    assert.equal(bob.sync.permissionLevel, "editor");
    assert.equal(bob.sync.value("destination"), "Paris");
    const seen = outcomes(alice.sync);
    const confirmed = next(alice.sync, "outcome");
    const broadcast = next(bob.sync, "fields", (f) => f.names.includes("destination"));

    alice.sync.edit("destination", "Rome");
    assert.equal(alice.sync.value("destination"), "Rome"); // optimistic
    assert.equal(alice.sync.isPending("destination"), true);
    assert.equal(alice.sync.status, STATUS.SYNCING);

    const outcome = await confirmed;
    assert.equal(outcome.kind, "confirmed");
    assert.equal(outcome.field, "destination");
    assert.equal(outcome.payload.confirmedValue, "Rome");
    await broadcast;
    assert.equal(bob.sync.value("destination"), "Rome");
    assert.equal(bob.sync.version, alice.sync.version);
    await until(alice.sync, "status", () => alice.sync.status === STATUS.SYNCED);
    assert.equal(alice.sync.pendingCount, 0);
    assert.deepEqual([...seen.values()], [["confirmed"]]);
    assert.equal((await getTrip(server, "alice", "t-confirm")).fields.destination, "Rome");
  } finally {
    alice.close();
    bob.close();
  }
});

/**
 * A WebSocket (the `ws` package's) that loses the first frame holding an outcome and
 * drops the connection there, as a network failure would, before the client reads it.
 */
function losingFirstOutcome() {
  let lost = 0;
  return {
    lost: () => lost,
    WebSocket: class LossySocket {
      constructor(url) {
        this.ws = new WebSocket(url);
        this.onopen = this.onmessage = this.onclose = this.onerror = null;
        this.ws.onopen = (e) => this.onopen?.(e);
        this.ws.onclose = (e) => this.onclose?.(e);
        this.ws.onerror = (e) => this.onerror?.(e);
        this.ws.onmessage = (e) => {
          if (lost === 0 && String(e.data).includes("optimistic_update_confirmed")) {
            lost += 1;
            this.ws.terminate(); // close 1006: the manager reconnects
            return;
          }
          this.onmessage?.(e);
        };
      }
      get readyState() {
        return this.ws.readyState;
      }
      send(data) {
        this.ws.send(data);
      }
      close(code, reason) {
        this.ws.close(code, reason);
      }
    },
  };
}

test("an edit whose answer was lost is re-sent under its updateId after the reconnect: one outcome", async () => {
  await createTrip(server, "alice", "t-resend", { destination: "Paris" });
  const lossy = losingFirstOutcome();
  const alice = await join("alice", "t-resend", { WebSocket: lossy.WebSocket });
  try {
    const sent = [];
    alice.m.on("send", (message) => {
      if (message.type === "optimistic_update_start") sent.push(message.payload.updateId);
    });
    const seen = outcomes(alice.sync);
    const reconnected = next(alice.m, "open");
    const confirmed = next(alice.sync, "outcome");
    alice.sync.edit("destination", "Lisbon");
    const [updateId] = alice.sync.queue.all().map((e) => e.updateId);

    await reconnected;
    const outcome = await confirmed;
    assert.equal(lossy.lost(), 1);
    assert.equal(outcome.entry.updateId, updateId);
    assert.equal(outcome.kind, "confirmed");
    assert.deepEqual(sent, [updateId, updateId]); // sent, then re-sent with the same id
    await until(alice.sync, "status", () => alice.sync.status === STATUS.SYNCED);
    assert.deepEqual([...seen.entries()], [[updateId, ["confirmed"]]]);
    const trip = await getTrip(server, "alice", "t-resend");
    assert.equal(trip.fields.destination, "Lisbon");
    assert.equal(trip.version, alice.sync.version); // applied once
  } finally {
    alice.close();
  }
});

test("two users in a trip see each other's presence", async () => {
  await createTrip(server, "alice", "t-presence", { destination: "Oslo" }, { bob: "viewer" });
  const alice = await join("alice", "t-presence");
  try {
    const both = (sync) => () => {
      const ids = sync.collaborators.map((c) => c.userId);
      return ids.includes("alice") && ids.includes("bob");
    };
    const aliceSeesBob = until(alice.sync, "presence", both(alice.sync));
    const bob = await join("bob", "t-presence");
    try {
      await aliceSeesBob;
      await until(bob.sync, "presence", both(bob.sync));
      assert.equal(bob.sync.canEdit, false);
      const aliceAlone = until(
        alice.sync,
        "presence",
        () => !alice.sync.collaborators.some((c) => c.userId === "bob"),
      );
      bob.close();
      await aliceAlone;
    } finally {
      bob.close();
    }
  } finally {
    alice.close();
  }
});
