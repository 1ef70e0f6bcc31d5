// WebSocketManager against a real server: first-frame authentication, heartbeats and
// the metrics counted from them, in-band token refresh, final close codes, the jittered
// backoff.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { FINAL_CLOSE_CODES, PerformanceMonitor, WebSocketManager } from "../dist/index.js";
import WebSocket from "ws";
import { startServer } from "./server.mjs";
import { MANY_CONNECTIONS, manager, next, open, until } from "./helpers.mjs";

let server;
before(async () => {
  // Many authentications from one address in a few seconds: the per-IP limits off.
  server = await startServer({ env: { TRIPSAGE_HEARTBEAT_INTERVAL_S: "0.5", ...MANY_CONNECTIONS } });
});
after(async () => {
  await server?.stop();
});

test("the first frame authenticates; the answer gives the user and connection", async () => {
  const m = manager(server, "alice");
  const established = next(m, "connection_established");
  try {
    const answer = await open(m);
    assert.equal(answer.success, true);
    assert.equal(answer.userId, "alice");
    assert.equal(m.state, "open");
    assert.equal(m.userId, "alice");
    assert.equal(m.connectionId, answer.connectionId);
    const event = await established;
    assert.equal(event.payload.connectionId, answer.connectionId);
  } finally {
    m.stop();
  }
  assert.equal(m.state, "closed");
});

test("messages sent before the connection is up are sent once it is authenticated", async () => {
  const m = manager(server, "alice");
  try {
    const sent = [];
    m.on("send", (message) => sent.push(message.type));
    m.sendMessage("chat_message", { content: "queued while connecting", role: "user" });
    assert.equal(m.messageQueue.length, 1);
    const echo = next(m, "chat_message", (e) => e.payload.content === "queued while connecting");
    await open(m);
    assert.equal(m.messageQueue.length, 0);
    assert.equal((await echo).payload.role, "user");
    assert.ok(sent.includes("chat_message"), sent.join());
  } finally {
    m.stop();
  }
});

test("heartbeats are echoed once each and give the latency metrics", async () => {
  const m = manager(server, "alice");
  const heartbeats = [];
  m.on("connection_heartbeat", (e) => heartbeats.push(e));
  const echoes = [];
  m.on("send", (message) => {
    if (message.type === "connection_heartbeat") echoes.push(message.payload.serverTime);
  });
  try {
    await open(m);
    await until(m, "connection_heartbeat", () => heartbeats.length >= 3);
    // One echo per server heartbeat, carrying its serverTime (never answered again).
    assert.deepEqual(echoes, heartbeats.map((e) => e.payload.serverTime));
    const metrics = m.getPerformanceMetrics();
    assert.ok(metrics.lastHeartbeat, "lastHeartbeat");
    assert.ok(metrics.averageLatency >= 0 && metrics.averageLatency < 1000, String(metrics.averageLatency));
    assert.ok(metrics.maxLatency >= metrics.averageLatency);
    assert.ok(metrics.messagesSent >= 3, String(metrics.messagesSent));
    assert.ok(metrics.messagesReceived >= 4, String(metrics.messagesReceived)); // + connection_established
    assert.ok(metrics.bytesReceived > 0 && metrics.bytesSent > 0);
    assert.ok(metrics.averageMessageSize > 0);
    assert.ok(metrics.connectionDuration > 0);
    assert.ok(metrics.connectionTime > 0 && metrics.connectionTime < 5000, String(metrics.connectionTime));
    assert.equal(metrics.queuedMessages, 0);
    assert.equal(metrics.reconnections, 0);
    assert.equal(metrics.errors, 0);
    assert.equal(metrics.isHighFrequency, false);
    // The spec's shape: a monitor of its own, reset to zero.
    const monitor = new PerformanceMonitor(m);
    await next(m, "connection_heartbeat");
    assert.equal(monitor.getMetrics().messagesReceived, 1);
    monitor.reset();
    assert.equal(monitor.getMetrics().messagesReceived, 0);
  } finally {
    m.stop();
  }
  assert.equal(m.getPerformanceMetrics().connectionDuration, 0);
});

test("auth_expiring: a token from tokenProvider goes out as auth_refresh on the same socket", async () => {
  const fresh = server.token("alice", { ttlS: 3600 });
  let calls = 0;
  // 30 s left: less than the warning time, so auth_expiring comes at once.
  const m = manager(server, "alice", {
    ttlS: 30,
    tokenProvider: async () => {
      calls += 1;
      return fresh;
    },
  });
  const expiring = next(m, "auth_expiring");
  const refreshed = next(m, "auth_refreshed");
  let opens = 0;
  m.on("open", () => opens++);
  try {
    await open(m);
    await expiring;
    await refreshed;
    assert.equal(calls, 1);
    assert.equal(m.token, fresh);
    assert.equal(m.state, "open");
    assert.equal(opens, 1);
  } finally {
    m.stop();
  }
});

test("a refused token is final: auth_failed, close 3000, no reconnect", async () => {
  const m = new WebSocketManager({
    url: `${server.ws}/ws/chat/ts-mallory`,
    token: "not-a-jwt",
    sessionId: "ts-mallory",
    WebSocket,
  });
  const failed = next(m, "auth_failed");
  const fatal = next(m, "fatal");
  let reconnecting = 0;
  m.on("reconnecting", () => reconnecting++);
  m.start();
  try {
    assert.equal((await failed).success, false);
    assert.equal((await fatal).code, 3000);
    assert.ok(FINAL_CLOSE_CODES.has(3000));
    assert.equal(m.state, "closed");
    assert.equal(reconnecting, 0);
    assert.equal(m.getPerformanceMetrics().errors, 1);
  } finally {
    m.stop();
  }
});

test("reconnect delays: doubling, capped, never under the server's floor, jittered upwards", () => {
  const m = new WebSocketManager({
    url: "ws://unused",
    token: "t",
    WebSocket,
    reconnectDelay: 1000,
    maxReconnectDelay: 8000,
  });
  const samples = (attempt, floor) => Array.from({ length: 200 }, () => m.reconnectDelayFor(attempt, floor));
  const inRange = (values, low, high) => values.every((v) => v >= low && v <= high);
  assert.ok(inRange(samples(1), 1000, 1250));
  assert.ok(inRange(samples(3), 4000, 5000));
  assert.ok(inRange(samples(10), 8000, 10000)); // capped
  assert.ok(inRange(samples(1, 5000), 5000, 6250)); // reconnectAfter / retryAfter floor
  assert.ok(new Set(samples(2)).size > 10, "the delays are spread");
  m.reconnectJitter = 0;
  assert.deepEqual(new Set(samples(2)), new Set([2000]));
  assert.throws(() => new WebSocketManager({ url: "ws://unused", token: "t" }), /WebSocket option/);
});

/** Browser-like `online`/`offline` events on globalThis (Node has none) for `body`. */
async function withNetworkEvents(body) {
  const target = new EventTarget();
  globalThis.addEventListener = target.addEventListener.bind(target);
  globalThis.removeEventListener = target.removeEventListener.bind(target);
  try {
    await body((type) => target.dispatchEvent(new Event(type)));
  } finally {
    delete globalThis.addEventListener;
    delete globalThis.removeEventListener;
  }
}

test("a final close stays final: a later online or offline event neither reconnects nor changes the state", async () => {
  await withNetworkEvents(async (dispatch) => {
    let sockets = 0;
    class Counted extends WebSocket {
      constructor(url) {
        super(url);
        sockets += 1;
      }
    }
    const m = new WebSocketManager({
      url: `${server.ws}/ws/chat/ts-final`,
      token: "not-a-jwt",
      sessionId: "ts-final",
      WebSocket: Counted,
    });
    const fatal = next(m, "fatal");
    m.start();
    try {
      assert.equal((await fatal).code, 3000);
      assert.equal(m.state, "closed");
      const states = [];
      m.on("state", (s) => states.push(s));
      dispatch("offline");
      dispatch("online");
      assert.equal(sockets, 1, "no new socket after the final close");
      assert.deepEqual(states, []);
      assert.equal(m.state, "closed");
    } finally {
      m.stop();
    }
  });
});

test("start() twice keeps one socket; start() after stop() connects again", async () => {
  const sockets = [];
  class Tracked extends WebSocket {
    constructor(url) {
      super(url);
      sockets.push(this);
    }
  }
  const m = manager(server, "alice", { WebSocket: Tracked });
  try {
    const opened = next(m, "open");
    m.start();
    m.start();
    await opened;
    const live = sockets.filter((s) => s.readyState <= WebSocket.OPEN);
    assert.equal(live.length, 1, `${live.length} sockets open after start() twice`);
    m.stop();
    assert.equal(m.state, "closed");
    await open(m);
    assert.equal(m.state, "open");
    assert.equal(sockets.filter((s) => s.readyState <= WebSocket.OPEN).length, 1);
  } finally {
    m.stop();
  }
});
