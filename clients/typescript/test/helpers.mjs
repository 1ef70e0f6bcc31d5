// Helpers of the core's Node tests: awaiting events with a deadline (never a sleep),
// trips over HTTP, managers on the `ws` package.
import WebSocket from "ws";
import { WebSocketManager } from "../dist/index.js";

export const EVENT_TIMEOUT_MS = 10_000;

/** Server settings for a test file that opens many connections from one address at once. */
export const MANY_CONNECTIONS = Object.freeze({
  TRIPSAGE_RATE_LIMIT_CONNECTIONS_PER_MIN: "0",
  TRIPSAGE_RATE_LIMIT_AUTH_PER_MIN: "0",
});

/**
 * Resolves with the first `type` event of `emitter` for which `accept(data)` holds;
 * rejects after `timeoutMs`. Listens from the call on: start waiting before acting.
 */
export function next(emitter, type, accept = () => true, timeoutMs = EVENT_TIMEOUT_MS) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`timeout after ${timeoutMs} ms waiting for ${type}`));
    }, timeoutMs);
    const off = emitter.on(type, (data) => {
      if (!accept(data)) return;
      clearTimeout(timer);
      off();
      resolve(data);
    });
  });
}

/** Resolves once `condition()` holds, checked at each `type` event of `emitter`. */
export function until(emitter, type, condition, timeoutMs = EVENT_TIMEOUT_MS) {
  if (condition()) return Promise.resolve();
  return next(emitter, type, () => condition(), timeoutMs).then(() => undefined);
}

/** A promise with a deadline. */
export function within(promise, what, timeoutMs = EVENT_TIMEOUT_MS) {
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timeout after ${timeoutMs} ms: ${what}`)), timeoutMs);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

/** A manager (not started) for `userId` on the server's chat endpoint. */
export function manager(server, userId, options = {}) {
  const { ttlS, role, ...rest } = options;
  const sessionId = rest.sessionId ?? `ts-${userId}`;
  return new WebSocketManager({
    url: `${server.ws}/ws/chat/${encodeURIComponent(sessionId)}`,
    token: server.token(userId, { ttlS, role }),
    sessionId,
    WebSocket,
    reconnectDelay: 100,
    maxReconnectDelay: 1000,
    ...rest,
  });
}

/** Start `m` and resolve with the server's authentication answer. */
export async function open(m) {
  const opened = next(m, "open");
  m.start();
  return opened;
}

async function api(server, userId, method, path, body) {
  const response = await fetch(`${server.http}${path}`, {
    method,
    headers: { Authorization: `Bearer ${server.token(userId)}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${await response.text()}`);
  return response.json();
}

/** Create a trip owned by `owner` and share it ({userId: permissionLevel}). */
export async function createTrip(server, owner, tripId, fields, share = {}) {
  const trip = await api(server, owner, "POST", "/api/trips", { tripId, fields });
  for (const [user, permissionLevel] of Object.entries(share)) {
    await api(server, owner, "PUT", `/api/trips/${tripId}/collaborators/${user}`, { permissionLevel });
  }
  return trip;
}

/** The trip as the server has it now. */
export function getTrip(server, userId, tripId) {
  return api(server, userId, "GET", `/api/trips/${tripId}`);
}
