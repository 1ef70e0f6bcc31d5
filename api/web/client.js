// TripSage Sync browser client: an ES module, no build step, no dependencies.
//
// Three layers, each usable alone:
//
// - WebSocketManager: websocket-api.md "Connection Management / Reconnection
//   Strategy". Authenticates with the first frame ({token, sessionId,
//   channels}), reconnects with exponential backoff (1 s, 2 s, 4 s ... capped),
//   queues messages while the socket is down and flushes them once the server
//   accepted the token, answers heartbeats, unwraps `batch` envelopes. Browsers
//   keep an open WebSocket when the network goes away (Chromium, and so
//   Playwright's setOffline, holds its frames and delivers them once the
//   network is back), so on `offline` the manager only stops sending (state
//   "offline") and keeps the socket. On `online` it forgets the backoff and any
//   stale retryAfter and probes the kept socket with a heartbeat: any frame
//   within PROBE_TIMEOUT_MS and the connection resumes as it was (no new
//   authentication, which the server rate-limits per IP); otherwise it is
//   dropped and a new one opens at once. Close codes 1000, 1008, 1009 and 3000
//   are final; 3001 waits for retryAfter.
//   Live tokens: with a `tokenProvider` option (an async function the app
//   provides, returning a fresh JWT) the server's `auth_expiring` warning sends
//   `auth_refresh {token}` on the open socket, and a close at exp
//   (connection_error TOKEN_EXPIRED, 3000) or a token refused as expired
//   reconnects once with a fresh token instead of being final.
// - UpdateQueue: the optimistic updates not yet answered, in localStorage, so
//   a reload (even offline) loses nothing; each keeps its original updateId,
//   expectedVersion and clientTimestamp, so a re-send is idempotent on the
//   server and concurrency is judged from what the user had seen.
// - TripSync: one trip's state ("Real-time Collaboration", "Optimistic
//   Updates", "Conflict Resolution"). On every (re)connection it joins
//   (collaboration_session_start); when it already knew a version it asks for
//   what it missed (sync_request {tripId, sinceVersion}: trip_update_broadcast
//   replays or a trip_snapshot, then sync_complete) before re-sending the
//   queue. Each field keeps the version of its last change, so live and
//   replayed changes may arrive in any order. At most one update per field is
//   in flight; later edits of that field wait and are rebased on its outcome.
//   A rollback the server marks `canRetry` (rate_limited, server_error, ...)
//   is retried under a fresh updateId (the server keeps the rollback as the
//   old id's outcome) after a capped, jittered backoff of at least its
//   `retryAfter` ms, for as long as it takes: a transient refusal never drops
//   an edit. When the reason says our base was wrong, the retry is rebased on
//   the server's value, a few times at most. The page hears one outcome per edit.
//   An edit made before the trip was loaded says so: expectedVersion 0 and
//   previousValue null, which the server treats as concurrent with everything.
// - ChatSession: chat_message / chat_message_chunk / chat_message_complete and
//   the tool and agent status events of one chat session.

export const STATUS = Object.freeze({
  SYNCED: "Synced",
  SYNCING: "Syncing",
  OFFLINE: "Offline",
  CONFLICT: "Conflict", // a conflict dialog is open, or our edit awaits its resolution
  NOT_SAVED: "Not saved", // an edit of ours was rolled back or rejected
});

// websocket-api.md "Connection Close Codes": these are not retried.
export const FINAL_CLOSE_CODES = new Set([1000, 1008, 1009, 3000]);
const CLIENT_OFFLINE_CLOSE = 4000;
const PROBE_TIMEOUT_MS = 1000; // a kept socket must answer this soon after `online`
const MAX_QUEUED_MESSAGES = 500;

export function newId(kind) {
  const random = globalThis.crypto?.randomUUID
    ? crypto.randomUUID()
    : `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
  return `${kind}-${random}`;
}

/** Decode a JWT's claims for display (the server verifies it; we never trust it). */
export function tokenClaims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const json = decodeURIComponent(
      Array.from(atob(part), (c) => "%" + c.charCodeAt(0).toString(16).padStart(2, "0")).join(""),
    );
    return JSON.parse(json);
  } catch {
    return null;
  }
}

export class Emitter {
  #listeners = new Map();

  on(type, callback) {
    if (!this.#listeners.has(type)) this.#listeners.set(type, []);
    this.#listeners.get(type).push(callback);
    return () => this.off(type, callback);
  }

  off(type, callback) {
    const list = this.#listeners.get(type) || [];
    const i = list.indexOf(callback);
    if (i >= 0) list.splice(i, 1);
  }

  emit(type, data) {
    for (const callback of [...(this.#listeners.get(type) || [])]) {
      try {
        callback(data);
      } catch (error) {
        console.error(`listener of ${type} failed`, error);
      }
    }
  }
}

export class WebSocketManager extends Emitter {
  constructor({
    url,
    token,
    sessionId,
    channels = [],
    reconnectDelay = 1000,
    maxReconnectDelay = 30000,
    maxReconnectAttempts = Infinity,
    tokenProvider = null,
  }) {
    super();
    this.tokenProvider = tokenProvider;
    this._tokenExpired = false; // the server said TOKEN_EXPIRED on this socket
    this._expiredRetry = false; // one fresh-token retry per expiry, not a loop
    this._refreshing = false;
    this.url = url;
    this.token = token;
    this.sessionId = sessionId;
    this.channels = channels;
    this.reconnectDelay = reconnectDelay;
    this.maxReconnectDelay = maxReconnectDelay;
    this.maxReconnectAttempts = maxReconnectAttempts;
    this.reconnectAttempts = 0;
    this.messageQueue = [];
    this.socket = null;
    this.state = "idle"; // idle | connecting | open | offline | closed
    this.userId = null;
    this.connectionId = null;
    this._authenticated = false;
    this._retryNotBefore = 0; // Date.now() before which the server asked us not to return
    this._retryTimer = null;
    this._probeTimer = null;
    this._stopped = false;
    this._online = () => this._networkBack();
    this._offline = () => {
      clearTimeout(this._retryTimer);
      clearTimeout(this._probeTimer);
      this._probeTimer = null;
      this._setState("offline"); // the socket stays: see _networkBack
    };
  }

  get isOpen() {
    return this.state === "open";
  }

  start() {
    window.addEventListener("online", this._online);
    window.addEventListener("offline", this._offline);
    this.connect();
    return this;
  }

  stop() {
    this._stopped = true;
    window.removeEventListener("online", this._online);
    window.removeEventListener("offline", this._offline);
    clearTimeout(this._retryTimer);
    clearTimeout(this._probeTimer);
    const socket = this.socket;
    this.socket = null;
    if (socket) socket.close(1000, "client closing");
    this._setState("closed");
  }

  /** `online`: no backoff; resume the kept socket if it answers at once, else a new one. */
  _networkBack() {
    this.reconnectAttempts = 0;
    this._retryNotBefore = 0;
    clearTimeout(this._retryTimer);
    if (this._stopped || this.isOpen) return;
    const socket = this.socket;
    if (!socket) {
      this.connect();
      return;
    }
    this._setState("connecting");
    if (this._authenticated && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify({ type: "connection_heartbeat", payload: {} })); // answered
    } // else the pending authentication answers
    clearTimeout(this._probeTimer);
    this._probeTimer = setTimeout(() => {
      this._probeTimer = null;
      if (socket !== this.socket || this.isOpen) return;
      this._discardSocket();
      this.connect();
    }, PROBE_TIMEOUT_MS);
  }

  connect() {
    clearTimeout(this._retryTimer);
    if (this._stopped) return;
    if (!navigator.onLine) {
      this._setState("offline");
      return; // the `online` event reconnects
    }
    this._setState("connecting");
    const socket = new WebSocket(this.url);
    this.socket = socket;
    this._authenticated = false;
    this._tokenExpired = false;
    socket.onopen = () => {
      if (socket !== this.socket) return;
      // "Authentication Request": the first frame.
      socket.send(
        JSON.stringify({ token: this.token, sessionId: this.sessionId, channels: this.channels }),
      );
    };
    socket.onmessage = (event) => {
      if (socket === this.socket) this._receive(event.data);
    };
    socket.onclose = (event) => {
      if (socket !== this.socket) return;
      this.socket = null;
      this._closed(event.code, event.reason);
    };
    socket.onerror = () => {}; // a close event follows
  }

  /** Send an event now, or queue it until the connection is authenticated. */
  sendMessage(type, payload, extra = {}) {
    const message = { id: newId("msg"), type, timestamp: new Date().toISOString(), payload, ...extra };
    if (this.isOpen) {
      this.socket.send(JSON.stringify(message));
    } else {
      this.messageQueue.push(message);
      if (this.messageQueue.length > MAX_QUEUED_MESSAGES) this.messageQueue.shift();
    }
    return message;
  }

  /** Send only when connected (presence-like events that are stale later). */
  sendIfOpen(type, payload) {
    if (this.isOpen) this.sendMessage(type, payload);
  }

  _flushMessageQueue() {
    while (this.messageQueue.length > 0 && this.isOpen) {
      this.socket.send(JSON.stringify(this.messageQueue.shift()));
    }
  }

  _receive(raw) {
    let message;
    try {
      message = JSON.parse(raw);
    } catch {
      return;
    }
    if (this._probeTimer !== null) {
      // The kept socket answered after `online`: it lived through the outage.
      clearTimeout(this._probeTimer);
      this._probeTimer = null;
      if (this._authenticated) {
        this._setState("open");
        this.emit("resumed");
        this._flushMessageQueue();
      }
    }
    if (!this._authenticated && typeof message.success === "boolean") {
      if (message.success) {
        this._authenticated = true;
        this._expiredRetry = false;
        this.reconnectAttempts = 0;
        this.userId = message.userId;
        this.connectionId = message.connectionId;
        this._setState("open");
        this.emit("open", message);
        this._flushMessageQueue();
      } else {
        this._tokenExpired = message.code === "TOKEN_EXPIRED";
        this._retryAfter(message.retryAfter);
        this.emit("auth_failed", message); // the server closes (3000 or 3001)
      }
      return;
    }
    const events = message.type === "batch" ? message.payload?.messages || [] : [message];
    for (const event of events) {
      if (event.type === "connection_heartbeat" && this.isOpen) {
        // The echo carries the server's serverTime: the server measures latency from it
        // and does not answer it (an empty heartbeat would be answered: an endless loop).
        const echo = { serverTime: event.payload?.serverTime };
        this.socket.send(JSON.stringify({ type: "connection_heartbeat", payload: echo }));
      } else if (event.type === "auth_expiring") {
        this._refreshToken(this.socket);
      } else if (event.type === "connection_close" || event.type === "connection_error") {
        if (event.payload?.errorCode === "TOKEN_EXPIRED") this._tokenExpired = true;
        this._retryAfter(event.payload?.reconnectAfter || event.payload?.retryAfter);
      } else if (event.type === "error" && event.payload?.retryAfter) {
        this._retryAfter(event.payload.retryAfter);
      }
      this.emit("message", event);
      this.emit(event.type, event);
    }
  }

  /** `auth_expiring`: a fresh token from the app, sent as `auth_refresh` (once at a time). */
  async _refreshToken(socket) {
    if (!this.tokenProvider || this._refreshing) return;
    this._refreshing = true;
    try {
      const token = await this._freshToken();
      if (token && socket === this.socket && this.isOpen) {
        const message = { id: newId("refresh"), type: "auth_refresh", timestamp: new Date().toISOString() };
        socket.send(JSON.stringify({ ...message, payload: { token } }));
      }
    } finally {
      this._refreshing = false;
    }
  }

  /** A token from `tokenProvider`, kept for every later connection; null if none. */
  async _freshToken() {
    try {
      const token = await this.tokenProvider();
      if (typeof token === "string" && token) {
        this.token = token;
        return token;
      }
      console.warn("tokenProvider returned no token");
    } catch (error) {
      console.warn("tokenProvider failed", error?.name);
    }
    return null;
  }

  /** The server's retryAfter (seconds), as a deadline: a stale one expires by itself. */
  _retryAfter(seconds) {
    const ms = Number(seconds) > 0 ? Number(seconds) * 1000 : 0;
    this._retryNotBefore = ms ? Date.now() + ms : 0;
  }

  /** Forget the current socket (and a pending retry) without reporting a close. */
  _discardSocket() {
    clearTimeout(this._retryTimer);
    const socket = this.socket;
    this.socket = null;
    if (socket) socket.close(CLIENT_OFFLINE_CLOSE, "reconnecting");
  }

  _closed(code, reason) {
    this._authenticated = false;
    const probing = this._probeTimer !== null;
    clearTimeout(this._probeTimer);
    this._probeTimer = null;
    this.emit("close", { code, reason });
    if (this._stopped) return this._setState("closed");
    if (!navigator.onLine) return this._setState("offline");
    if (code === 3000 && this._tokenExpired && this.tokenProvider && !this._expiredRetry) {
      this._expiredRetry = true;
      this._setState("connecting");
      this._freshToken().then((token) => {
        if (this._stopped || this.socket) return;
        if (token) return this.connect();
        this._setState("closed");
        this.emit("fatal", { code, reason });
      });
      return;
    }
    if (FINAL_CLOSE_CODES.has(code)) {
      this._setState("closed");
      this.emit("fatal", { code, reason });
      return;
    }
    if (probing && this._retryNotBefore <= Date.now()) {
      this.connect(); // the kept socket died while the network was away: no backoff
      return;
    }
    this._scheduleReconnect();
  }

  _scheduleReconnect() {
    if (this.reconnectAttempts >= this.maxReconnectAttempts) {
      this._setState("closed");
      this.emit("fatal", { code: 0, reason: "Max reconnection attempts reached" });
      return;
    }
    this.reconnectAttempts++;
    const backoff = Math.min(
      this.maxReconnectDelay,
      this.reconnectDelay * Math.pow(2, this.reconnectAttempts - 1),
    );
    const delay = Math.max(backoff, this._retryNotBefore - Date.now());
    this._retryNotBefore = 0;
    this._setState("offline");
    this.emit("reconnecting", { attempt: this.reconnectAttempts, delay });
    this._retryTimer = setTimeout(() => this.connect(), delay);
  }

  _setState(state) {
    if (state === this.state) return;
    this.state = state;
    this.emit("state", state);
  }
}

export class UpdateQueue {
  constructor(storage, key) {
    this.storage = storage;
    this.key = key;
  }

  all() {
    try {
      const list = JSON.parse(this.storage.getItem(this.key) || "[]");
      return Array.isArray(list) ? list : [];
    } catch {
      return [];
    }
  }

  get(updateId) {
    return this.all().find((e) => e.updateId === updateId) || null;
  }

  put(entry) {
    const list = this.all();
    const i = list.findIndex((e) => e.updateId === entry.updateId);
    if (i >= 0) list[i] = entry;
    else list.push(entry);
    this._save(list);
  }

  /** Put `entry` in the place of `updateId` (a retry keeps the queue's order). */
  replace(updateId, entry) {
    const list = this.all();
    const i = list.findIndex((e) => e.updateId === updateId);
    if (i >= 0) list[i] = entry;
    else list.push(entry);
    this._save(list);
  }

  remove(updateId) {
    const list = this.all();
    const entry = list.find((e) => e.updateId === updateId) || null;
    this._save(list.filter((e) => e.updateId !== updateId));
    return entry;
  }

  _save(list) {
    if (list.length) this.storage.setItem(this.key, JSON.stringify(list));
    else this.storage.removeItem(this.key);
  }
}

const EDITORS = new Set(["editor", "owner"]);
// Retrying a rollback the server marks canRetry: 250 ms, 500 ms, 1 s ... at
// most 15 s apart, never sooner than the server's retryAfter, plus up to a
// quarter more at random so that a queue of refused edits does not return as
// one burst.
const RETRY_BASE_DELAY_MS = 250;
const RETRY_MAX_DELAY_MS = 15000;
// Rollback reasons that say the update's base was wrong (not the value): the
// retry starts from the server's value (rollbackToValue) at our version, at
// most MAX_REBASES times (a base that keeps failing is not transient).
const MAX_REBASES = 3;
// At most this many updates on the wire at once, and none while the server's
// rate limit asks us to wait: a long offline queue never earns the close for
// "ten refusals in a row" (README "Rate limits").
const MAX_INFLIGHT_UPDATES = 8;
const REBASE_REASONS = new Set(["invalid_expected_version", "stale_previous_value", "history_unavailable"]);
// Fields the server merges as text (README "Trips"): a rebase keeps others' text.
const TEXT_FIELDS = new Set(["notes"]);

function sameJson(a, b) {
  return JSON.stringify(a ?? null) === JSON.stringify(b ?? null);
}

/**
 * Our change `base -> ours` carried over onto `theirs` (the server's value
 * now), for a retry after the server refused our base. Scalars: ours wins
 * (the server's last-write-wins still orders it). Lists: the items we added
 * are appended and those we removed are removed, the rest is theirs. Text:
 * the one span we changed is replaced where its context is found in theirs,
 * else our inserted text is appended on a line of its own.
 */
export function rebaseValue(field, base, ours, theirs) {
  if (sameJson(base, theirs)) return ours;
  if (Array.isArray(ours) && Array.isArray(theirs)) {
    const before = Array.isArray(base) ? base.map((v) => JSON.stringify(v)) : [];
    const after = ours.map((v) => JSON.stringify(v));
    const removed = [...before];
    const added = [];
    for (const item of after) {
      const i = removed.indexOf(item);
      if (i >= 0) removed.splice(i, 1);
      else added.push(item);
    }
    const result = theirs.map((v) => JSON.stringify(v));
    for (const item of removed) {
      const i = result.indexOf(item);
      if (i >= 0) result.splice(i, 1);
    }
    return [...result, ...added].map((v) => JSON.parse(v));
  }
  if (TEXT_FIELDS.has(field) && typeof ours === "string" && typeof theirs === "string") {
    const old = typeof base === "string" ? base : "";
    let start = 0;
    while (start < old.length && start < ours.length && old[start] === ours[start]) start++;
    let end = 0;
    while (
      end < old.length - start &&
      end < ours.length - start &&
      old[old.length - 1 - end] === ours[ours.length - 1 - end]
    ) end++;
    const removed = old.slice(start, old.length - end);
    const inserted = ours.slice(start, ours.length - end);
    const prefix = old.slice(0, start);
    const suffix = old.slice(old.length - end);
    let at = -1;
    if (old && theirs.startsWith(prefix) && theirs.slice(start).startsWith(removed)) at = start;
    else if (old && theirs.endsWith(suffix) && theirs.length - end - removed.length >= 0 &&
      theirs.slice(0, theirs.length - end).endsWith(removed)) at = theirs.length - end - removed.length;
    if (at >= 0) return theirs.slice(0, at) + inserted + theirs.slice(at + removed.length);
    if (!inserted) return theirs;
    return theirs && !theirs.endsWith("\n") ? `${theirs}\n${inserted}` : theirs + inserted;
  }
  return ours;
}

export class TripSync extends Emitter {
  constructor({ manager, tripId, userId, storage = localStorage }) {
    super();
    this.manager = manager;
    this.tripId = tripId;
    this.userId = userId;
    this.storage = storage;
    this.stateKey = `tripsage.trip.${userId}.${tripId}`;
    this.queue = new UpdateQueue(storage, `tripsage.queue.${userId}.${tripId}`);
    const cached = this._load();
    this.version = cached.version || 0;
    this.server = cached.fields || {};
    this.fieldVersions = cached.fieldVersions || {};
    this.permissionLevel = cached.permissionLevel || null;
    this.manualFields = cached.manualFields || [];
    this.joined = false;
    this.syncing = false;
    this.resuming = false;
    this.inflight = new Set();
    this.collaborators = [];
    this.conflicts = new Map();
    this.awaitingResolution = new Map(); // conflictId -> field: our edit joined a manual conflict
    this.unsaved = new Map(); // field -> {kind, payload}: our edit was rolled back or rejected
    this.error = null;
    this._retryTimer = null;
    this._pausedUntil = 0; // Date.now() until which the rate limit holds our updates
    this._joinMessageId = null;
    this._joinTimer = null;

    const on = (type, handler) => manager.on(type, (event) => {
      const p = event.payload || {};
      if (p.tripId === undefined || p.tripId === tripId) handler(p, event);
    });
    manager.on("open", () => this._onOpen());
    manager.on("resumed", () => this._flush()); // the same connection: still joined
    manager.on("state", () => this._status());
    on("collaboration_session_started", (p) => this._onSessionStarted(p));
    on("trip_update_broadcast", (p) => this._onChange(p));
    on("trip_snapshot", (p) => this._onSnapshot(p));
    on("sync_complete", (p) => this._onSyncComplete(p));
    on("optimistic_update_confirmed", (p) => this._onOutcome("confirmed", p));
    on("optimistic_update_rejected", (p) => this._onOutcome("rejected", p));
    on("optimistic_update_rollback", (p) => this._onOutcome("rollback", p));
    on("trip_collaborator_presence", (p) => {
      this.collaborators = p.activeCollaborators || [];
      this.emit("presence", this.collaborators);
    });
    on("trip_field_editing_start", (p) => this.emit("editing", p));
    on("trip_field_editing_stop", (p) => this.emit("editing", p));
    on("trip_conflict_detected", (p) => this.emit("notice", { kind: "conflict_detected", payload: p }));
    on("conflict_resolution_required", (p) => {
      this.conflicts.set(p.conflictId, p);
      this.emit("conflict", p);
      this._status();
    });
    on("conflict_resolved", (p) => this._onResolved(p));
    on("trip_permission_change", (p) => this._onPermissionChange(p));
    manager.on("error", (event) => this._onError(event.payload || {}));
  }

  // -- reading ------------------------------------------------------------------

  get canEdit() {
    return EDITORS.has(this.permissionLevel);
  }

  get loaded() {
    return this.version > 0;
  }

  /** What the page shows: the newest queued value of the field, else the server's. */
  value(field) {
    const entries = this.queue.all().filter((e) => e.fieldName === field);
    if (entries.length) return entries[entries.length - 1].optimisticValue;
    return this.server[field] ?? null;
  }

  serverValue(field) {
    return this.server[field] ?? null;
  }

  fieldNames() {
    return Object.keys(this.server);
  }

  isPending(field) {
    return this.queue.all().some((e) => e.fieldName === field);
  }

  get pendingCount() {
    return this.queue.all().length;
  }

  /** "Synced" only when every edit of ours has landed and no conflict waits. */
  get status() {
    if (!this.manager.isOpen) return STATUS.OFFLINE;
    if (this.conflicts.size > 0 || this.awaitingResolution.size > 0) return STATUS.CONFLICT;
    if (this.unsaved.size > 0) return STATUS.NOT_SAVED;
    if (!this.joined || this.syncing || this.pendingCount > 0) return STATUS.SYNCING;
    return STATUS.SYNCED;
  }

  /** The user has read why an edit was not saved. */
  dismissUnsaved() {
    this.unsaved.clear();
    this._status();
  }

  // -- writing ------------------------------------------------------------------

  /**
   * An optimistic edit: shown at once, queued durably, sent when connected.
   * `base` ({value, version}) is what the edit started from (the page captures
   * it at the first keystroke); by default the field's current server value.
   */
  edit(field, value, base = null) {
    const entries = this.queue.all().filter((e) => e.fieldName === field);
    const unsent = entries.find((e) => !e.sent);
    if (unsent) {
      // Not on the wire yet: one update carries the newest value.
      unsent.optimisticValue = value;
      unsent.clientTimestamp = new Date().toISOString();
      this.queue.put(unsent);
    } else {
      const behind = entries.length > 0; // an update of this field is in flight
      const start = behind
        ? { value: entries[entries.length - 1].optimisticValue, version: null }
        : base || { value: this.serverValue(field), version: this.version };
      this.queue.put({
        updateId: newId("upd"),
        tripId: this.tripId,
        fieldName: field,
        optimisticValue: value,
        previousValue: start.value,
        expectedVersion: start.version,
        clientTimestamp: new Date().toISOString(),
        sent: false,
        chained: behind,
      });
    }
    this.emit("fields", { names: [field], local: true });
    this._status();
    this._flush();
  }

  editingStarted(field) {
    if (this.joined && this.canEdit) {
      this.manager.sendIfOpen("trip_field_editing_start", {
        tripId: this.tripId,
        fieldName: field,
        fieldPath: `trip.${field}`,
      });
    }
  }

  editingStopped(field) {
    if (this.joined && this.canEdit) {
      this.manager.sendIfOpen("trip_field_editing_stop", { tripId: this.tripId, fieldName: field });
    }
  }

  resolveConflict(conflictId, choice) {
    const payload = { conflictId, ...choice };
    this.manager.sendMessage("conflict_resolution_submit", payload);
  }

  // -- the protocol ---------------------------------------------------------------

  _onOpen() {
    this.joined = false;
    this.syncing = false;
    this.inflight.clear();
    this.resuming = this.loaded;
    this._join();
    this._status();
  }

  _join() {
    const message = this.manager.sendMessage("collaboration_session_start", {
      tripId: this.tripId,
      features: ["real_time_editing", "typing_indicators"],
    });
    this._joinMessageId = message.id;
  }

  _onSessionStarted(p) {
    this.permissionLevel = p.permissionLevel || (p.yourPermissions?.canEdit ? "editor" : "viewer");
    this.manualFields = p.manualResolutionFields || [];
    this.joined = true;
    this.error = null;
    if (this.resuming) {
      // Catch up from what we had (README "Resume protocol"), then re-send.
      this.syncing = true;
      this.manager.sendMessage("sync_request", { tripId: this.tripId, sinceVersion: this.version });
    } else {
      this._applyFields(p.fields || {}, p.version || 0);
      this._flush();
    }
    this._save();
    this.emit("permission", this.permissionLevel);
    this._status();
  }

  _applyFields(fields, version) {
    const names = [];
    for (const [name, value] of Object.entries(fields)) {
      if ((this.fieldVersions[name] || 0) < version) {
        this.server[name] = value;
        this.fieldVersions[name] = version;
        names.push(name);
      }
    }
    this.version = Math.max(this.version, version);
    this._save();
    this.emit("fields", { names });
  }

  _onChange(p) {
    const names = [];
    for (const [name, change] of Object.entries(p.changes || {})) {
      if ((this.fieldVersions[name] || 0) < p.version) {
        this.server[name] = change.newValue;
        this.fieldVersions[name] = p.version;
        names.push(name);
      }
    }
    this.version = Math.max(this.version, p.version);
    this._save();
    this.emit("fields", { names, updatedBy: p.updatedBy, replayed: !!p.replayed });
  }

  _onSnapshot(p) {
    if (p.reason === "unknown_version") {
      // We were ahead of the server (its data was restored): start from its copy.
      this.version = 0;
      this.fieldVersions = {};
    }
    this._applyFields(p.fields || {}, p.version);
  }

  _onSyncComplete(p) {
    this.version = Math.max(this.version, p.version || 0);
    this.syncing = false;
    this.resuming = false;
    this._save();
    this._flush();
    this._status();
  }

  _flush() {
    if (!this.manager.isOpen || !this.joined || this.syncing) return;
    const busy = new Set();
    const now = Date.now();
    let wakeAt = now < this._pausedUntil ? this._pausedUntil : Infinity;
    for (const entry of this.queue.all()) {
      if (busy.has(entry.fieldName)) continue; // one in flight per field
      busy.add(entry.fieldName);
      if (this.inflight.has(entry.updateId)) continue;
      if (now < this._pausedUntil || this.inflight.size >= MAX_INFLIGHT_UPDATES) continue;
      if (entry.retryAt > now) {
        wakeAt = Math.min(wakeAt, entry.retryAt); // a retry waiting for its backoff
        continue;
      }
      if (entry.chained) {
        // The update it waited for is gone (answered in another tab): start from now.
        entry.previousValue = this.serverValue(entry.fieldName);
        entry.expectedVersion = this.version;
        entry.chained = false;
      }
      entry.sent = true;
      this.queue.put(entry);
      this.inflight.add(entry.updateId);
      this.manager.sendMessage("optimistic_update_start", {
        updateId: entry.updateId,
        tripId: entry.tripId,
        fieldName: entry.fieldName,
        optimisticValue: entry.optimisticValue,
        previousValue: entry.previousValue,
        expectedVersion: entry.expectedVersion,
        clientTimestamp: entry.clientTimestamp,
      });
    }
    clearTimeout(this._retryTimer);
    if (wakeAt < Infinity) this._retryTimer = setTimeout(() => this._flush(), wakeAt - now);
    this._status();
  }

  _onOutcome(kind, p) {
    this.inflight.delete(p.updateId);
    const queued = this.queue.get(p.updateId);
    const rebase = REBASE_REASONS.has(p.rollbackReason);
    if (kind === "rollback" && p.canRetry && queued && (!rebase || (queued.rebases || 0) < MAX_REBASES)) {
      this._retry(queued, p);
      return;
    }
    // The entry may be gone: a tab of the same user re-sent it and got the answer.
    const entry = this.queue.remove(p.updateId);
    const field = (entry?.fieldName || p.fieldName || "").replace(/^trip\./, "");
    if (!field) return;
    if (kind === "confirmed") {
      this._setServer(field, p.confirmedValue, p.serverVersion);
    } else if (kind === "rejected") {
      this._setServer(field, p.currentServerValue, p.currentServerVersion);
    }
    if (entry) {
      // Our own edit's one outcome: "Synced" waits until nothing of ours failed.
      if (kind === "confirmed") this.unsaved.delete(field);
      else if (kind === "rejected" && p.conflictId) {
        this.unsaved.delete(field);
        this.awaitingResolution.set(p.conflictId, field);
      } else this.unsaved.set(field, { kind, payload: p });
    }
    // A rollback leaves the server's value as we know it: the page shows it again.
    const next = this.queue.all().find((e) => e.fieldName === field && e.chained);
    if (next) {
      next.previousValue = this.serverValue(field);
      next.expectedVersion = this.version;
      next.chained = false;
      this.queue.put(next);
    }
    this._save();
    if (entry) this.emit("outcome", { kind, field, entry, payload: p });
    this.emit("fields", { names: [field] });
    this._flush();
    this._status();
  }

  /** A rollback marked canRetry: the same edit again, later, under a new updateId. */
  _retry(entry, p) {
    const retries = (entry.retries || 0) + 1;
    const backoff = Math.min(RETRY_MAX_DELAY_MS, RETRY_BASE_DELAY_MS * 2 ** Math.min(retries - 1, 16));
    const floor = Math.max(backoff, Number(p.retryAfter) || 0); // retryAfter is in ms here
    const delay = Math.round(floor * (1 + Math.random() / 4));
    if (p.rollbackReason === "rate_limited") {
      this._pausedUntil = Math.max(this._pausedUntil, Date.now() + floor);
    }
    const next = { ...entry, updateId: newId("upd"), sent: false, retries, retryAt: Date.now() + delay };
    if (REBASE_REASONS.has(p.rollbackReason)) {
      next.rebases = (entry.rebases || 0) + 1;
      const field = entry.fieldName;
      const theirs = "rollbackToValue" in p ? p.rollbackToValue : this.serverValue(field);
      next.optimisticValue = rebaseValue(field, entry.previousValue, entry.optimisticValue, theirs);
      next.previousValue = theirs;
      next.expectedVersion = this.version;
    }
    this.queue.replace(entry.updateId, next);
    this.emit("retrying", { field: entry.fieldName, attempt: retries, delay, payload: p });
    this.emit("fields", { names: [entry.fieldName] });
    this._flush(); // sets the timer for the retry
  }

  _setServer(field, value, version) {
    if (typeof version !== "number") return;
    if ((this.fieldVersions[field] || 0) <= version) {
      this.server[field] = value;
      this.fieldVersions[field] = version;
    }
    this.version = Math.max(this.version, version);
  }

  _onResolved(p) {
    this.conflicts.delete(p.conflictId);
    this.awaitingResolution.delete(p.conflictId);
    if (typeof p.version === "number" && p.fieldName) {
      const field = p.fieldName.replace(/^trip\./, "");
      this._setServer(field, p.resolvedValue, p.version);
      this._save();
      this.emit("fields", { names: [field] });
    }
    this.emit("conflict_resolved", p);
    this._status();
  }

  _onPermissionChange(p) {
    if (p.targetUserId !== this.userId) return;
    this.permissionLevel = p.newPermission;
    this._save();
    this.emit("permission", this.permissionLevel);
  }

  _onError(p) {
    // A rate-limited optimistic_update_start also gets its rollback (canRetry,
    // retryAfter), which _onOutcome retries; a rate-limited join is sent again.
    if (p.code === "RATE_LIMITED") {
      const waitMs = Math.max(1, Number(p.retryAfter) || 1) * 1000;
      this._pausedUntil = Math.max(this._pausedUntil, Date.now() + waitMs);
      if (p.details?.messageId && p.details.messageId === this._joinMessageId && !this.joined) {
        clearTimeout(this._joinTimer);
        this._joinTimer = setTimeout(() => {
          if (this.manager.isOpen && !this.joined) this._join();
        }, waitMs);
      }
    }
    if (p.code === "PERMISSION_DENIED" && !this.joined) {
      this.error = p;
      this.emit("denied", p);
    }
    this.emit("notice", { kind: "error", payload: p });
  }

  _status() {
    this.emit("status", this.status);
  }

  _load() {
    try {
      return JSON.parse(this.storage.getItem(this.stateKey) || "{}") || {};
    } catch {
      return {};
    }
  }

  _save() {
    this.storage.setItem(
      this.stateKey,
      JSON.stringify({
        version: this.version,
        fields: this.server,
        fieldVersions: this.fieldVersions,
        permissionLevel: this.permissionLevel,
        manualFields: this.manualFields,
      }),
    );
  }
}

export class ChatSession extends Emitter {
  constructor({ manager, sessionId }) {
    super();
    this.manager = manager;
    this.sessionId = sessionId;
    this.messages = new Map(); // messageId -> {id, role, content, chunks, streaming, seq}
    this.tools = new Map(); // toolCallId -> {id, name, progress, status, done, error}
    this.order = [];
    this.agentStatus = null;
    const on = (type, handler) => manager.on(type, (event) => {
      if (!event.sessionId || event.sessionId === sessionId) handler(event.payload || {}, event);
    });
    on("chat_message", (p) => {
      const m = this._message(p.messageId || newId("msg"), p.role || "assistant");
      m.content = p.content || "";
      m.streaming = false;
      this.emit("message", m);
    });
    on("chat_message_chunk", (p) => {
      const m = this._message(p.messageId, "assistant");
      if (p.catchUp) m.chunks = new Map([[p.chunkIndex ?? 0, p.content || ""]]);
      else m.chunks.set(p.chunkIndex ?? m.chunks.size, p.content || "");
      m.content = [...m.chunks.entries()].sort((a, b) => a[0] - b[0]).map((c) => c[1]).join("");
      m.streaming = !p.isComplete;
      this.emit("message", m);
    });
    on("chat_message_complete", (p) => {
      const m = this._message(p.messageId, "assistant");
      m.content = p.finalContent ?? m.content;
      m.streaming = false;
      this.emit("message", m);
    });
    for (const type of ["tool_call_start", "tool_call_progress", "tool_call_complete", "tool_call_error"]) {
      on(type, (p) => this._tool(type, p));
    }
    on("agent_status_update", (p) => {
      this.agentStatus = p;
      this.emit("agent_status", p);
    });
  }

  send(content) {
    const messageId = newId("msg");
    const m = this._message(messageId, "user");
    m.content = content;
    m.sending = true;
    this.emit("message", m);
    this.manager.sendMessage("chat_message", { content, role: "user", messageId });
  }

  _message(id, role) {
    let m = this.messages.get(id);
    if (!m) {
      m = { id, role, content: "", chunks: new Map(), streaming: true, kind: "message" };
      this.messages.set(id, m);
      this.order.push(m);
    }
    return m;
  }

  _tool(type, p) {
    let t = this.tools.get(p.toolCallId);
    if (!t) {
      t = { id: p.toolCallId, kind: "tool", name: p.toolName || "tool", progress: 0, status: "", done: false };
      this.tools.set(p.toolCallId, t);
      this.order.push(t);
    }
    if (type === "tool_call_start") t.status = "started";
    if (type === "tool_call_progress") {
      t.progress = p.progress ?? t.progress;
      t.status = p.status || t.status;
    }
    if (type === "tool_call_complete") {
      t.progress = 1;
      t.done = true;
      t.status = "done";
    }
    if (type === "tool_call_error") {
      t.done = true;
      t.error = p.error || "failed";
      t.status = `failed: ${t.error}`;
    }
    this.emit("tool", t);
  }
}
