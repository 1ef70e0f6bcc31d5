// Reconnection after the server went away: connection_close's reconnectAfter is a floor
// under the jittered backoff, and the manager opens a new authenticated connection once
// the server is back on the same port.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { startServer } from "./server.mjs";
import { manager, next, open } from "./helpers.mjs";

let server;
before(async () => {
  server = await startServer({ env: { TRIPSAGE_RECONNECT_AFTER_S: "0.3" } });
});
after(async () => {
  await server?.stop();
});

test("a restarted server: connection_close, backoff of at least reconnectAfter, a new connection", async () => {
  const m = manager(server, "alice");
  try {
    const first = await open(m);
    const closing = next(m, "connection_close");
    let noticeAt = 0;
    m.on("connection_close", () => (noticeAt = Date.now()));
    const closed = next(m, "close");
    let reconnectingAt = 0;
    const reconnecting = next(m, "reconnecting", () => ((reconnectingAt = Date.now()), true));
    const restarted = server.restart();
    const notice = await closing;
    assert.equal(notice.payload.reconnectAfter, 0.3);
    assert.equal((await closed).code, 1001);
    const { attempt, delay } = await reconnecting;
    assert.equal(attempt, 1);
    // reconnectAfter counts from the notice, not from the close that follows it (a few ms
    // of clock granularity aside).
    const returnsAfter = reconnectingAt + delay - noticeAt;
    assert.ok(returnsAfter >= 295, `back ${returnsAfter} ms after the notice, under reconnectAfter`);
    assert.equal(m.state, "offline");
    await restarted;
    const second = await next(m, "open", () => true, 20_000);
    assert.equal(second.userId, "alice");
    assert.notEqual(second.connectionId, first.connectionId);
    assert.equal(m.state, "open");
    assert.equal(m.reconnectAttempts, 0);
    assert.equal(m.getPerformanceMetrics().reconnections, 1);
  } finally {
    m.stop();
  }
});
