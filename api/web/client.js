// GENERATED FILE, DO NOT EDIT: bundled from clients/typescript (@tripsage/sync-client)
// by `npm run bundle` there; `npm run check-bundle` fails when it is out of date.
// The browser client of the trip page (api/web/app.js imports it as /static/client.js).

// dist/core/emitter.js
var Emitter = class {
  #listeners = /* @__PURE__ */ new Map();
  on(type, callback) {
    let list = this.#listeners.get(type);
    if (!list)
      this.#listeners.set(type, list = []);
    list.push(callback);
    return () => this.off(type, callback);
  }
  off(type, callback) {
    const list = this.#listeners.get(type) || [];
    const i = list.indexOf(callback);
    if (i >= 0)
      list.splice(i, 1);
  }
  emit(type, data) {
    for (const callback of [...this.#listeners.get(type) || []]) {
      try {
        callback(data);
      } catch (error) {
        console.error(`listener of ${type} failed`, error);
      }
    }
  }
};

// dist/core/metrics.js
var LATENCY_SAMPLES = 100;
var HIGH_FREQUENCY_MESSAGES_PER_S = 10;
function zero() {
  return {
    messagesSent: 0,
    messagesReceived: 0,
    bytesSent: 0,
    bytesReceived: 0,
    connectionTime: 0,
    reconnections: 0,
    errors: 0
  };
}
var PerformanceMonitor = class {
  wsManager;
  metrics = zero();
  latencyHistory = [];
  startTime = Date.now();
  lastHeartbeat = null;
  connectingSince = null;
  openSince = null;
  opened = 0;
  constructor(wsManager) {
    this.wsManager = wsManager;
    this.setupMonitoring();
  }
  setupMonitoring() {
    const m = this.wsManager;
    m.on("message", (message) => {
      this.metrics.messagesReceived++;
      if (message.type === "connection_heartbeat") {
        const serverTime = message.payload?.serverTime;
        const at = typeof serverTime === "string" ? Date.parse(serverTime) : NaN;
        if (Number.isFinite(at)) {
          this.lastHeartbeat = serverTime;
          this.latencyHistory.push(Math.max(0, Date.now() - at));
          if (this.latencyHistory.length > LATENCY_SAMPLES)
            this.latencyHistory.shift();
        }
      } else if (message.type === "error" || message.type === "connection_error") {
        this.metrics.errors++;
      }
    });
    m.on("frame", ({ bytes }) => {
      this.metrics.bytesReceived += bytes;
    });
    m.on("send", (message) => {
      this.metrics.messagesSent++;
      this.metrics.bytesSent += JSON.stringify(message).length;
    });
    m.on("state", (state) => {
      if (state === "connecting" && this.connectingSince === null)
        this.connectingSince = Date.now();
      if (state !== "open")
        this.openSince = null;
    });
    m.on("open", () => {
      const now = Date.now();
      if (this.connectingSince !== null)
        this.metrics.connectionTime = now - this.connectingSince;
      this.connectingSince = null;
      this.openSince = now;
      if (this.opened++ > 0)
        this.metrics.reconnections++;
    });
    m.on("resumed", () => {
      this.connectingSince = null;
      this.openSince ??= Date.now();
    });
    m.on("auth_failed", () => {
      this.metrics.errors++;
    });
  }
  getMetrics() {
    const now = Date.now();
    const uptime = now - this.startTime;
    const latencies = this.latencyHistory;
    const averageLatency = latencies.length > 0 ? latencies.reduce((a, b) => a + b, 0) / latencies.length : 0;
    const { messagesSent, bytesSent, reconnections, errors } = this.metrics;
    const connectionDuration = this.openSince !== null && this.wsManager.isOpen ? now - this.openSince : 0;
    const messagesPerSecond = uptime > 0 ? messagesSent / (uptime / 1e3) : 0;
    return {
      ...this.metrics,
      uptime,
      averageLatency,
      maxLatency: latencies.length > 0 ? Math.max(...latencies) : 0,
      lastLatency: latencies.length > 0 ? latencies[latencies.length - 1] ?? null : null,
      lastHeartbeat: this.lastHeartbeat,
      messagesPerSecond,
      averageMessageSize: messagesSent > 0 ? bytesSent / messagesSent : 0,
      connectionStability: uptime > 0 ? Math.max(0, 1 - reconnections / (uptime / 6e4)) : 1,
      errorRate: messagesSent > 0 ? errors / messagesSent : 0,
      connectionDuration,
      queuedMessages: this.wsManager.messageQueue.length,
      isHighFrequency: messagesPerSecond > HIGH_FREQUENCY_MESSAGES_PER_S
    };
  }
  reset() {
    this.metrics = zero();
    this.latencyHistory = [];
    this.startTime = Date.now();
  }
};

// dist/core/util.js
var STATUS = Object.freeze({
  SYNCED: "Synced",
  SYNCING: "Syncing",
  OFFLINE: "Offline",
  CONFLICT: "Conflict",
  // a conflict dialog is open, or our edit awaits its resolution
  NOT_SAVED: "Not saved"
  // an edit of ours was rolled back or rejected
});
var FINAL_CLOSE_CODES = /* @__PURE__ */ new Set([1e3, 1008, 1009, 3e3]);
function newId(kind) {
  const random = globalThis.crypto?.randomUUID ? globalThis.crypto.randomUUID() : `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
  return `${kind}-${random}`;
}
function tokenClaims(token) {
  try {
    const part = (token.split(".")[1] ?? "").replace(/-/g, "+").replace(/_/g, "/");
    const json = decodeURIComponent(Array.from(atob(part), (c) => "%" + c.charCodeAt(0).toString(16).padStart(2, "0")).join(""));
    return JSON.parse(json);
  } catch {
    return null;
  }
}

// dist/core/manager.js
var CLIENT_OFFLINE_CLOSE = 4e3;
var PROBE_TIMEOUT_MS = 1e3;
var MAX_QUEUED_MESSAGES = 500;
var SOCKET_OPEN = 1;
function networkEvents() {
  const target = globalThis;
  return typeof target.addEventListener === "function" && typeof target.removeEventListener === "function" ? target : null;
}
function online() {
  return globalThis.navigator?.onLine !== false;
}
var WebSocketManager = class extends Emitter {
  url;
  token;
  sessionId;
  channels;
  reconnectDelay;
  maxReconnectDelay;
  maxReconnectAttempts;
  reconnectJitter;
  tokenProvider;
  WebSocket;
  reconnectAttempts = 0;
  messageQueue = [];
  socket = null;
  state = "idle";
  userId = null;
  connectionId = null;
  /** Counters of this manager (websocket-api.md "Performance Monitoring - WebSocket"). */
  monitor;
  _tokenExpired = false;
  // the server said TOKEN_EXPIRED on this socket
  _expiredRetry = false;
  // one fresh-token retry per expiry, not a loop
  _refreshing = false;
  _authenticated = false;
  _retryNotBefore = 0;
  // Date.now() before which the server asked us not to return
  _retryTimer = void 0;
  _probeTimer = null;
  _stopped = false;
  _online = () => this._networkBack();
  _offline = () => {
    clearTimeout(this._retryTimer);
    if (this._probeTimer !== null)
      clearTimeout(this._probeTimer);
    this._probeTimer = null;
    this._setState("offline");
  };
  constructor({ url, token, sessionId, channels = [], reconnectDelay = 1e3, maxReconnectDelay = 3e4, maxReconnectAttempts = Infinity, reconnectJitter = 0.25, tokenProvider = null, WebSocket = globalThis.WebSocket }) {
    super();
    if (!WebSocket)
      throw new TypeError("no WebSocket here: pass the WebSocket option (Node: the ws package)");
    this.url = url;
    this.token = token;
    this.sessionId = sessionId;
    this.channels = channels;
    this.reconnectDelay = reconnectDelay;
    this.maxReconnectDelay = maxReconnectDelay;
    this.maxReconnectAttempts = maxReconnectAttempts;
    this.reconnectJitter = Math.max(0, reconnectJitter);
    this.tokenProvider = tokenProvider;
    this.WebSocket = WebSocket;
    this.monitor = new PerformanceMonitor(this);
  }
  get isOpen() {
    return this.state === "open";
  }
  /** websocket-api.md "Client Metrics": `client.getPerformanceMetrics()`. */
  getPerformanceMetrics() {
    return this.monitor.getMetrics();
  }
  /** Connect (again, after stop() or a final close); one socket at a time. */
  start() {
    this._stopped = false;
    const network = networkEvents();
    network?.addEventListener("online", this._online);
    network?.addEventListener("offline", this._offline);
    this.connect();
    return this;
  }
  stop() {
    this._stopped = true;
    this._detachNetwork();
    clearTimeout(this._retryTimer);
    if (this._probeTimer !== null)
      clearTimeout(this._probeTimer);
    this._probeTimer = null;
    const socket = this.socket;
    this.socket = null;
    if (socket)
      socket.close(1e3, "client closing");
    this._setState("closed");
  }
  _detachNetwork() {
    const network = networkEvents();
    network?.removeEventListener("online", this._online);
    network?.removeEventListener("offline", this._offline);
  }
  /**
   * "closed" for good (a final close code, a refused fresh token, the attempts spent):
   * the network events no longer apply, so an `online` never reopens what the server
   * ended, nor does `offline` turn "closed" into "offline". Only start() opens again.
   */
  _fatal(code, reason) {
    this._detachNetwork();
    clearTimeout(this._retryTimer);
    this._setState("closed");
    this.emit("fatal", { code, reason });
  }
  /** `online`: no backoff; resume the kept socket if it answers at once, else a new one. */
  _networkBack() {
    this.reconnectAttempts = 0;
    this._retryNotBefore = 0;
    clearTimeout(this._retryTimer);
    if (this._stopped || this.isOpen)
      return;
    const socket = this.socket;
    if (!socket) {
      this.connect();
      return;
    }
    this._setState("connecting");
    if (this._authenticated && socket.readyState === SOCKET_OPEN) {
      this._write(socket, { type: "connection_heartbeat", payload: {} });
    }
    if (this._probeTimer !== null)
      clearTimeout(this._probeTimer);
    this._probeTimer = setTimeout(() => {
      this._probeTimer = null;
      if (socket !== this.socket || this.isOpen)
        return;
      this._discardSocket();
      this.connect();
    }, PROBE_TIMEOUT_MS);
  }
  connect() {
    clearTimeout(this._retryTimer);
    if (this._stopped)
      return;
    if (!online()) {
      this._setState("offline");
      return;
    }
    if (this.socket)
      this._discardSocket();
    this._setState("connecting");
    const socket = new this.WebSocket(this.url);
    this.socket = socket;
    this._authenticated = false;
    this._tokenExpired = false;
    socket.onopen = () => {
      if (socket !== this.socket)
        return;
      socket.send(JSON.stringify({ token: this.token, sessionId: this.sessionId, channels: this.channels }));
    };
    socket.onmessage = (event) => {
      if (socket === this.socket)
        this._receive(event.data);
    };
    socket.onclose = (event) => {
      if (socket !== this.socket)
        return;
      this.socket = null;
      this._closed(event.code, event.reason);
    };
    socket.onerror = () => {
    };
  }
  /** Send an event now, or queue it until the connection is authenticated. */
  sendMessage(type, payload, extra = {}) {
    const message = {
      id: newId("msg"),
      type,
      timestamp: (/* @__PURE__ */ new Date()).toISOString(),
      payload,
      ...extra
    };
    if (this.isOpen && this.socket) {
      this._write(this.socket, message);
    } else {
      this.messageQueue.push(message);
      if (this.messageQueue.length > MAX_QUEUED_MESSAGES)
        this.messageQueue.shift();
    }
    return message;
  }
  /** Send only when connected (presence-like events that are stale later). */
  sendIfOpen(type, payload) {
    if (this.isOpen)
      this.sendMessage(type, payload);
  }
  _write(socket, message) {
    socket.send(JSON.stringify(message));
    this.emit("send", message);
  }
  _flushMessageQueue() {
    while (this.messageQueue.length > 0 && this.isOpen && this.socket) {
      this._write(this.socket, this.messageQueue.shift());
    }
  }
  _receive(raw) {
    const text = typeof raw === "string" ? raw : String(raw);
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      return;
    }
    if (message === null || typeof message !== "object")
      return;
    if (this._probeTimer !== null) {
      clearTimeout(this._probeTimer);
      this._probeTimer = null;
      if (this._authenticated) {
        this._setState("open");
        this.emit("resumed", void 0);
        this._flushMessageQueue();
      }
    }
    if (!this._authenticated && typeof message.success === "boolean") {
      this.emit("frame", { bytes: text.length, events: 0 });
      if (message.success) {
        const answer = message;
        this._authenticated = true;
        this._expiredRetry = false;
        this.reconnectAttempts = 0;
        this.userId = answer.userId;
        this.connectionId = answer.connectionId;
        this._setState("open");
        this.emit("open", answer);
        this._flushMessageQueue();
      } else {
        const answer = message;
        this._tokenExpired = answer.code === "TOKEN_EXPIRED";
        this._retryAfter(answer.retryAfter);
        this.emit("auth_failed", answer);
      }
      return;
    }
    const events = message.type === "batch" ? message.payload?.messages || [] : [message];
    this.emit("frame", { bytes: text.length, events: events.length });
    for (const event of events) {
      if (event.type === "connection_heartbeat" && this.isOpen && this.socket) {
        const echo = { serverTime: event.payload?.serverTime };
        this._write(this.socket, { type: "connection_heartbeat", payload: echo });
      } else if (event.type === "auth_expiring") {
        void this._refreshToken(this.socket);
      } else if (event.type === "connection_close" || event.type === "connection_error") {
        if (event.payload?.errorCode === "TOKEN_EXPIRED")
          this._tokenExpired = true;
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
    if (!this.tokenProvider || this._refreshing)
      return;
    this._refreshing = true;
    try {
      const token = await this._freshToken();
      if (token && socket && socket === this.socket && this.isOpen) {
        const message = { id: newId("refresh"), type: "auth_refresh", timestamp: (/* @__PURE__ */ new Date()).toISOString() };
        socket.send(JSON.stringify({ ...message, payload: { token } }));
      }
    } finally {
      this._refreshing = false;
    }
  }
  /** A token from `tokenProvider`, kept for every later connection; null if none. */
  async _freshToken() {
    try {
      const token = await this.tokenProvider?.();
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
    const ms = Number(seconds) > 0 ? Number(seconds) * 1e3 : 0;
    this._retryNotBefore = ms ? Date.now() + ms : 0;
  }
  /** Forget the current socket (and a pending retry) without reporting a close. */
  _discardSocket() {
    clearTimeout(this._retryTimer);
    const socket = this.socket;
    this.socket = null;
    if (socket)
      socket.close(CLIENT_OFFLINE_CLOSE, "reconnecting");
  }
  _closed(code, reason) {
    this._authenticated = false;
    const probing = this._probeTimer !== null;
    if (this._probeTimer !== null)
      clearTimeout(this._probeTimer);
    this._probeTimer = null;
    this.emit("close", { code, reason });
    if (this._stopped)
      return this._setState("closed");
    if (!online())
      return this._setState("offline");
    if (code === 3e3 && this._tokenExpired && this.tokenProvider && !this._expiredRetry) {
      this._expiredRetry = true;
      this._setState("connecting");
      void this._freshToken().then((token) => {
        if (this._stopped || this.socket)
          return;
        if (token)
          return this.connect();
        this._fatal(code, reason);
      });
      return;
    }
    if (FINAL_CLOSE_CODES.has(code)) {
      this._fatal(code, reason);
      return;
    }
    if (probing && this._retryNotBefore <= Date.now()) {
      this.connect();
      return;
    }
    this._scheduleReconnect();
  }
  /** The delay before reconnect attempt `attempt` (1, 2, ...): backoff or floor, plus jitter. */
  reconnectDelayFor(attempt, floorMs = 0) {
    const backoff = Math.min(this.maxReconnectDelay, this.reconnectDelay * Math.pow(2, attempt - 1));
    const base = Math.max(backoff, floorMs);
    return Math.round(base * (1 + this.reconnectJitter * Math.random()));
  }
  _scheduleReconnect() {
    if (this.reconnectAttempts >= this.maxReconnectAttempts) {
      this._fatal(0, "Max reconnection attempts reached");
      return;
    }
    this.reconnectAttempts++;
    const delay = this.reconnectDelayFor(this.reconnectAttempts, this._retryNotBefore - Date.now());
    this._retryNotBefore = 0;
    this._setState("offline");
    this.emit("reconnecting", { attempt: this.reconnectAttempts, delay });
    this._retryTimer = setTimeout(() => this.connect(), delay);
  }
  _setState(state) {
    if (state === this.state)
      return;
    this.state = state;
    this.emit("state", state);
  }
};

// dist/core/queue.js
var UpdateQueue = class {
  storage;
  key;
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
    if (i >= 0)
      list[i] = entry;
    else
      list.push(entry);
    this._save(list);
  }
  /** Put `entry` in the place of `updateId` (a retry keeps the queue's order). */
  replace(updateId, entry) {
    const list = this.all();
    const i = list.findIndex((e) => e.updateId === updateId);
    if (i >= 0)
      list[i] = entry;
    else
      list.push(entry);
    this._save(list);
  }
  remove(updateId) {
    const list = this.all();
    const entry = list.find((e) => e.updateId === updateId) || null;
    this._save(list.filter((e) => e.updateId !== updateId));
    return entry;
  }
  _save(list) {
    if (list.length)
      this.storage.setItem(this.key, JSON.stringify(list));
    else
      this.storage.removeItem(this.key);
  }
};

// dist/core/storage.js
var MemoryStorage = class {
  #items = /* @__PURE__ */ new Map();
  getItem(key) {
    return this.#items.get(key) ?? null;
  }
  setItem(key, value) {
    this.#items.set(key, String(value));
  }
  removeItem(key) {
    this.#items.delete(key);
  }
  get length() {
    return this.#items.size;
  }
};
var IDB_VERSION = 1;
function request(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}
var IndexedDBStorage = class _IndexedDBStorage {
  #db;
  #store;
  #items;
  /** Changes not yet in a transaction: key -> value, null for a removal. */
  #pending = /* @__PURE__ */ new Map();
  #scheduled = false;
  #written = Promise.resolve();
  /** The first failed write, reported by the next flush(). */
  #failure = null;
  constructor(db, store, items) {
    this.#db = db;
    this.#store = store;
    this.#items = items;
  }
  static async open(options = {}) {
    const factory = options.indexedDB ?? globalThis.indexedDB;
    if (!factory)
      throw new Error("no IndexedDB here: pass options.indexedDB");
    const name = options.name ?? "tripsage-sync";
    const store = options.store ?? "kv";
    const opening = factory.open(name, IDB_VERSION);
    opening.onupgradeneeded = () => {
      if (!opening.result.objectStoreNames.contains(store))
        opening.result.createObjectStore(store);
    };
    const db = await request(opening);
    const tx = db.transaction(store, "readonly");
    const objects = tx.objectStore(store);
    const [keys, values] = await Promise.all([request(objects.getAllKeys()), request(objects.getAll())]);
    const items = /* @__PURE__ */ new Map();
    keys.forEach((key, i) => {
      const value = values[i];
      if (typeof key === "string" && typeof value === "string")
        items.set(key, value);
    });
    return new _IndexedDBStorage(db, store, items);
  }
  getItem(key) {
    return this.#items.get(key) ?? null;
  }
  setItem(key, value) {
    this.#items.set(key, String(value));
    this.#change(key, String(value));
  }
  removeItem(key) {
    this.#items.delete(key);
    this.#change(key, null);
  }
  /** Resolves once every change made so far is committed; rejects if one failed. */
  async flush() {
    if (this.#pending.size > 0)
      this.#write();
    await this.#written;
    if (this.#failure !== null) {
      const failure = this.#failure;
      this.#failure = null;
      throw failure;
    }
  }
  /** Flush, then close the database (the adapter is unusable after). */
  async close() {
    try {
      await this.flush();
    } finally {
      this.#db.close();
    }
  }
  #change(key, value) {
    this.#pending.set(key, value);
    if (this.#scheduled)
      return;
    this.#scheduled = true;
    queueMicrotask(() => this.#write());
  }
  /** One transaction for the changes pending, after the previous one (order kept). */
  #write() {
    this.#scheduled = false;
    if (this.#pending.size === 0)
      return;
    const changes = this.#pending;
    this.#pending = /* @__PURE__ */ new Map();
    const previous = this.#written;
    this.#written = previous.then(() => new Promise((resolve) => {
      const tx = this.#db.transaction(this.#store, "readwrite");
      const objects = tx.objectStore(this.#store);
      for (const [key, value] of changes) {
        if (value === null)
          objects.delete(key);
        else
          objects.put(value, key);
      }
      tx.oncomplete = () => resolve();
      tx.onerror = tx.onabort = () => {
        this.#failure ??= tx.error ?? new Error("IndexedDB write failed");
        console.warn("IndexedDB write failed", tx.error?.name);
        resolve();
      };
    }));
  }
};
var shared = new MemoryStorage();
function browserStorage() {
  try {
    const storage = globalThis.localStorage;
    return storage ?? null;
  } catch {
    return null;
  }
}
function defaultStorage() {
  return browserStorage() ?? shared;
}
async function openStorage(kind = "auto", options = {}) {
  switch (kind) {
    case "memory":
      return new MemoryStorage();
    case "localStorage": {
      const storage = browserStorage();
      if (!storage)
        throw new Error("no localStorage here");
      return storage;
    }
    case "indexedDB":
      return IndexedDBStorage.open(options);
    case "auto": {
      const storage = browserStorage();
      if (storage)
        return storage;
      if (options.indexedDB ?? globalThis.indexedDB)
        return IndexedDBStorage.open(options);
      return new MemoryStorage();
    }
    default: {
      const never = kind;
      throw new Error(`unknown storage kind ${String(never)}`);
    }
  }
}

// dist/core/trip.js
var EDITORS = /* @__PURE__ */ new Set(["editor", "owner"]);
var RETRY_BASE_DELAY_MS = 250;
var RETRY_MAX_DELAY_MS = 15e3;
var MAX_REBASES = 3;
var MAX_INFLIGHT_UPDATES = 8;
var REBASE_REASONS = /* @__PURE__ */ new Set(["invalid_expected_version", "stale_previous_value", "history_unavailable"]);
var TEXT_FIELDS = /* @__PURE__ */ new Set(["notes"]);
function sameJson(a, b) {
  return JSON.stringify(a ?? null) === JSON.stringify(b ?? null);
}
function rebaseValue(field, base, ours, theirs) {
  if (sameJson(base, theirs))
    return ours;
  if (Array.isArray(ours) && Array.isArray(theirs)) {
    const before = Array.isArray(base) ? base.map((v) => JSON.stringify(v)) : [];
    const after = ours.map((v) => JSON.stringify(v));
    const removed = [...before];
    const added = [];
    for (const item of after) {
      const i = removed.indexOf(item);
      if (i >= 0)
        removed.splice(i, 1);
      else
        added.push(item);
    }
    const result = theirs.map((v) => JSON.stringify(v));
    for (const item of removed) {
      const i = result.indexOf(item);
      if (i >= 0)
        result.splice(i, 1);
    }
    return [...result, ...added].map((v) => JSON.parse(v));
  }
  if (TEXT_FIELDS.has(field) && typeof ours === "string" && typeof theirs === "string") {
    const old = typeof base === "string" ? base : "";
    let start = 0;
    while (start < old.length && start < ours.length && old[start] === ours[start])
      start++;
    let end = 0;
    while (end < old.length - start && end < ours.length - start && old[old.length - 1 - end] === ours[ours.length - 1 - end])
      end++;
    const removed = old.slice(start, old.length - end);
    const inserted = ours.slice(start, ours.length - end);
    const prefix = old.slice(0, start);
    const suffix = old.slice(old.length - end);
    let at = -1;
    if (old && theirs.startsWith(prefix) && theirs.slice(start).startsWith(removed))
      at = start;
    else if (old && theirs.endsWith(suffix) && theirs.length - end - removed.length >= 0 && theirs.slice(0, theirs.length - end).endsWith(removed))
      at = theirs.length - end - removed.length;
    if (at >= 0)
      return theirs.slice(0, at) + inserted + theirs.slice(at + removed.length);
    if (!inserted)
      return theirs;
    return theirs && !theirs.endsWith("\n") ? `${theirs}
${inserted}` : theirs + inserted;
  }
  return ours;
}
var TripSync = class extends Emitter {
  manager;
  tripId;
  userId;
  storage;
  stateKey;
  queue;
  version;
  server;
  fieldVersions;
  permissionLevel;
  manualFields;
  joined = false;
  syncing = false;
  resuming = false;
  inflight = /* @__PURE__ */ new Set();
  collaborators = [];
  conflicts = /* @__PURE__ */ new Map();
  awaitingResolution = /* @__PURE__ */ new Map();
  // conflictId -> field: our edit joined a manual conflict
  unsaved = /* @__PURE__ */ new Map();
  // field -> our edit was rolled back or rejected
  error = null;
  _retryTimer = void 0;
  _pausedUntil = 0;
  // Date.now() until which the rate limit holds our updates
  _joinMessageId = null;
  _joinTimer = void 0;
  _unsubscribe = [];
  constructor({ manager, tripId, userId, storage = defaultStorage() }) {
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
    const subscribe = (off) => {
      this._unsubscribe.push(off);
    };
    const on = (type, handler) => subscribe(manager.on(type, (data) => {
      const event = data;
      const p = event.payload || {};
      const trip = p.tripId;
      if (trip === void 0 || trip === tripId)
        handler(p, event);
    }));
    subscribe(manager.on("open", () => this._onOpen()));
    subscribe(manager.on("resumed", () => this._flush()));
    subscribe(manager.on("state", () => this._status()));
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
    subscribe(manager.on("error", (event) => this._onError(event.payload || {})));
    if (manager.isOpen)
      this._onOpen();
  }
  /** Stop listening to the manager and drop the timers (the queue stays in storage). */
  destroy() {
    for (const off of this._unsubscribe.splice(0))
      off();
    clearTimeout(this._retryTimer);
    clearTimeout(this._joinTimer);
  }
  // -- reading ------------------------------------------------------------------
  get canEdit() {
    return this.permissionLevel !== null && EDITORS.has(this.permissionLevel);
  }
  get loaded() {
    return this.version > 0;
  }
  /** What the page shows: the newest queued value of the field, else the server's. */
  value(field) {
    const entries = this.queue.all().filter((e) => e.fieldName === field);
    const last = entries[entries.length - 1];
    if (last)
      return last.optimisticValue;
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
    if (!this.manager.isOpen)
      return STATUS.OFFLINE;
    if (this.conflicts.size > 0 || this.awaitingResolution.size > 0)
      return STATUS.CONFLICT;
    if (this.unsaved.size > 0)
      return STATUS.NOT_SAVED;
    if (!this.joined || this.syncing || this.pendingCount > 0)
      return STATUS.SYNCING;
    return STATUS.SYNCED;
  }
  /** The user has read why an edit was not saved. */
  dismissUnsaved() {
    this.unsaved.clear();
    this._status();
  }
  // -- writing ------------------------------------------------------------------
  /**
   * An optimistic edit: shown at once, queued durably, sent when connected. `base`
   * ({value, version}) is what the edit started from (the page captures it at the first
   * keystroke); by default the field's current server value.
   */
  edit(field, value, base = null) {
    const entries = this.queue.all().filter((e) => e.fieldName === field);
    const last = entries[entries.length - 1];
    if (last && !last.sent) {
      last.optimisticValue = value;
      last.clientTimestamp = (/* @__PURE__ */ new Date()).toISOString();
      this.queue.put(last);
    } else {
      const behind = last !== void 0;
      const start = last ? { value: last.optimisticValue, version: null } : base || { value: this.serverValue(field), version: this.version };
      this.queue.put({
        updateId: newId("upd"),
        tripId: this.tripId,
        fieldName: field,
        optimisticValue: value,
        previousValue: start.value,
        expectedVersion: start.version,
        clientTimestamp: (/* @__PURE__ */ new Date()).toISOString(),
        sent: false,
        chained: behind
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
        fieldPath: `trip.${field}`
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
      features: ["real_time_editing", "typing_indicators"]
    });
    this._joinMessageId = message.id;
  }
  _onSessionStarted(p) {
    this.permissionLevel = p.permissionLevel || (p.yourPermissions?.canEdit ? "editor" : "viewer");
    this.manualFields = p.manualResolutionFields || [];
    this.joined = true;
    this.error = null;
    if (this.resuming) {
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
    if (!this.manager.isOpen || !this.joined || this.syncing)
      return;
    const busy = /* @__PURE__ */ new Set();
    const now = Date.now();
    let wakeAt = now < this._pausedUntil ? this._pausedUntil : Infinity;
    for (const entry of this.queue.all()) {
      if (busy.has(entry.fieldName))
        continue;
      busy.add(entry.fieldName);
      if (this.inflight.has(entry.updateId))
        continue;
      if (now < this._pausedUntil || this.inflight.size >= MAX_INFLIGHT_UPDATES)
        continue;
      if (entry.retryAt !== void 0 && entry.retryAt > now) {
        wakeAt = Math.min(wakeAt, entry.retryAt);
        continue;
      }
      if (entry.chained) {
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
        clientTimestamp: entry.clientTimestamp
      });
    }
    clearTimeout(this._retryTimer);
    if (wakeAt < Infinity)
      this._retryTimer = setTimeout(() => this._flush(), wakeAt - now);
    this._status();
  }
  _onOutcome(kind, payload) {
    const p = payload;
    this.inflight.delete(p.updateId);
    const queued = this.queue.get(p.updateId);
    const rebase = REBASE_REASONS.has(p.rollbackReason ?? "");
    if (kind === "rollback" && p.canRetry && queued && (!rebase || (queued.rebases || 0) < MAX_REBASES)) {
      this._retry(queued, p);
      return;
    }
    const entry = this.queue.remove(p.updateId);
    const field = (entry?.fieldName || p.fieldName || "").replace(/^trip\./, "");
    if (!field)
      return;
    if (kind === "confirmed") {
      this._setServer(field, p.confirmedValue, p.serverVersion);
    } else if (kind === "rejected") {
      this._setServer(field, p.currentServerValue, p.currentServerVersion);
    }
    if (entry) {
      if (kind === "confirmed")
        this.unsaved.delete(field);
      else if (kind === "rejected" && p.conflictId) {
        this.unsaved.delete(field);
        this.awaitingResolution.set(p.conflictId, field);
      } else
        this.unsaved.set(field, { kind, payload: p });
    }
    const next = this.queue.all().find((e) => e.fieldName === field && e.chained);
    if (next) {
      next.previousValue = this.serverValue(field);
      next.expectedVersion = this.version;
      next.chained = false;
      this.queue.put(next);
    }
    this._save();
    if (entry)
      this.emit("outcome", { kind, field, entry, payload: p });
    this.emit("fields", { names: [field] });
    this._flush();
    this._status();
  }
  /** A rollback marked canRetry: the same edit again, later, under a new updateId. */
  _retry(entry, p) {
    const retries = (entry.retries || 0) + 1;
    const backoff = Math.min(RETRY_MAX_DELAY_MS, RETRY_BASE_DELAY_MS * 2 ** Math.min(retries - 1, 16));
    const floor = Math.max(backoff, Number(p.retryAfter) || 0);
    const delay = Math.round(floor * (1 + Math.random() / 4));
    if (p.rollbackReason === "rate_limited") {
      this._pausedUntil = Math.max(this._pausedUntil, Date.now() + floor);
    }
    const next = { ...entry, updateId: newId("upd"), sent: false, retries, retryAt: Date.now() + delay };
    if (REBASE_REASONS.has(p.rollbackReason ?? "")) {
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
    this._flush();
  }
  _setServer(field, value, version) {
    if (typeof version !== "number")
      return;
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
      const field = String(p.fieldName).replace(/^trip\./, "");
      this._setServer(field, p.resolvedValue, p.version);
      this._save();
      this.emit("fields", { names: [field] });
    }
    this.emit("conflict_resolved", p);
    this._status();
  }
  _onPermissionChange(p) {
    if (p.targetUserId !== this.userId)
      return;
    this.permissionLevel = p.newPermission;
    this._save();
    this.emit("permission", this.permissionLevel);
  }
  _onError(p) {
    if (p.code === "RATE_LIMITED") {
      const waitMs = Math.max(1, Number(p.retryAfter) || 1) * 1e3;
      this._pausedUntil = Math.max(this._pausedUntil, Date.now() + waitMs);
      if (p.details?.messageId && p.details.messageId === this._joinMessageId && !this.joined) {
        clearTimeout(this._joinTimer);
        this._joinTimer = setTimeout(() => {
          if (this.manager.isOpen && !this.joined)
            this._join();
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
    this.storage.setItem(this.stateKey, JSON.stringify({
      version: this.version,
      fields: this.server,
      fieldVersions: this.fieldVersions,
      permissionLevel: this.permissionLevel,
      manualFields: this.manualFields
    }));
  }
};

// dist/core/chat.js
var TOOL_EVENTS = ["tool_call_start", "tool_call_progress", "tool_call_complete", "tool_call_error"];
var ChatSession = class extends Emitter {
  manager;
  sessionId;
  messages = /* @__PURE__ */ new Map();
  tools = /* @__PURE__ */ new Map();
  /** Messages and tool calls in the order they first appeared. */
  order = [];
  agentStatus = null;
  _unsubscribe = [];
  constructor({ manager, sessionId }) {
    super();
    this.manager = manager;
    this.sessionId = sessionId;
    const on = (type, handler) => {
      this._unsubscribe.push(manager.on(type, (data) => {
        const event = data;
        if (!event.sessionId || event.sessionId === sessionId)
          handler(event.payload || {}, event);
      }));
    };
    on("chat_message", (p) => {
      const m = this._message(p.messageId || newId("msg"), p.role || "assistant");
      m.content = p.content || "";
      m.streaming = false;
      m.sending = false;
      this.emit("message", m);
    });
    on("chat_message_chunk", (p) => {
      const m = this._message(p.messageId, "assistant");
      if (m.complete)
        return;
      if (p.catchUp)
        m.chunks = /* @__PURE__ */ new Map([[p.chunkIndex ?? 0, p.content || ""]]);
      else
        m.chunks.set(p.chunkIndex ?? m.chunks.size, p.content || "");
      m.content = [...m.chunks.entries()].sort((a, b) => a[0] - b[0]).map((c) => c[1]).join("");
      m.streaming = !p.isComplete;
      this.emit("message", m);
    });
    on("chat_message_complete", (p) => {
      const m = this._message(p.messageId, "assistant");
      m.content = p.finalContent ?? m.content;
      m.streaming = false;
      m.complete = true;
      this.emit("message", m);
    });
    for (const type of TOOL_EVENTS) {
      on(type, (p) => this._tool(type, p));
    }
    on("agent_status_update", (p) => {
      this.agentStatus = p;
      this.emit("agent_status", p);
    });
  }
  /** Stop listening to the manager. */
  destroy() {
    for (const off of this._unsubscribe.splice(0))
      off();
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
      m = { id, role, content: "", chunks: /* @__PURE__ */ new Map(), streaming: true, kind: "message" };
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
    if (type === "tool_call_start")
      t.status = "started";
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
};

// dist/index.js
var VERSION = "0.1.0";
export {
  ChatSession,
  Emitter,
  FINAL_CLOSE_CODES,
  HIGH_FREQUENCY_MESSAGES_PER_S,
  IndexedDBStorage,
  LATENCY_SAMPLES,
  MemoryStorage,
  PerformanceMonitor,
  STATUS,
  TripSync,
  UpdateQueue,
  VERSION,
  WebSocketManager,
  PerformanceMonitor as WebSocketPerformanceMonitor,
  defaultStorage,
  newId,
  openStorage,
  rebaseValue,
  tokenClaims
};
