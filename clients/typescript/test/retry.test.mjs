// TripSync when the server refuses an update as rate limited (a rollback with canRetry):
// the edit is retried, and an edit made while the retry waits, with another edit of the
// same field queued behind it, is the one that lands (the newest value wins, never an
// older one re-sent after it).
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { MemoryStorage, STATUS, TripSync } from "../dist/index.js";
import { startServer } from "./server.mjs";
import { MANY_CONNECTIONS, createTrip, getTrip, manager, next, until } from "./helpers.mjs";

const MESSAGES_PER_MIN = 60; // one message a second once the burst is spent

let server;
before(async () => {
  server = await startServer({
    env: { ...MANY_CONNECTIONS, TRIPSAGE_RATE_LIMIT_MESSAGES_PER_MIN: String(MESSAGES_PER_MIN) },
  });
});
after(async () => {
  await server?.stop();
});

test("an edit made while a rate-limited update waits for its retry is the value that lands", async () => {
  await createTrip(server, "alice", "t-retry", { destination: "Paris" });
  const m = manager(server, "alice", { channels: ["trip:t-retry"] });
  const sync = new TripSync({ manager: m, tripId: "t-retry", userId: "alice", storage: new MemoryStorage() });
  try {
    const synced = until(sync, "status", () => sync.status === STATUS.SYNCED);
    m.start();
    await synced;
    // Spend the rest of the burst (the join took one): every message answered.
    let echoes = 0;
    m.on("chat_message", () => echoes++);
    for (let i = 1; i < MESSAGES_PER_MIN; i++) m.sendMessage("chat_message", { content: `spend ${i}`, role: "user" });
    await until(m, "chat_message", () => echoes >= MESSAGES_PER_MIN - 1, 20_000);

    const retrying = next(sync, "retrying");
    sync.edit("destination", "Rome"); // on the wire: refused
    sync.edit("destination", "Romeo"); // waits behind it
    assert.equal((await retrying).payload.rollbackReason, "rate_limited");
    sync.edit("destination", "Verona"); // while the retry waits
    assert.equal(sync.value("destination"), "Verona", "the page shows the newest edit");

    await until(sync, "status", () => sync.pendingCount === 0 && sync.status === STATUS.SYNCED, 30_000);
    assert.equal(sync.value("destination"), "Verona");
    assert.equal((await getTrip(server, "alice", "t-retry")).fields.destination, "Verona");
  } finally {
    sync.destroy();
    m.stop();
  }
});
