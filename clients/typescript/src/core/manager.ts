// WebSocketManager: websocket-api.md "Connection Management / Reconnection Strategy".
//
// Theory of operation
// -------------------
// Authenticates with the first frame ({token, sessionId, channels}: "Authentication
// Request"), reconnects with exponential backoff (1 s, 2 s, 4 s ... capped) plus up to
// `reconnectJitter` (a quarter) more at random, so that the clients of a restarted
// server do not return as one burst, queues messages while the socket is down and
// flushes them once the server accepted the token, answers heartbeats, unwraps `batch`
// envelopes. The server's retryAfter / reconnectAfter (seconds) is a floor under the
// next delay; the jitter goes on top of it.
//
// Browsers keep an open WebSocket when the network goes away (Chromium, and so
// Playwright's setOffline, holds its frames and delivers them once the network is back),
// so on `offline` the manager only stops sending (state "offline") and keeps the socket.
// On `online` it forgets the backoff and any stale retryAfter and probes the kept socket
// with a heartbeat: any frame within PROBE_TIMEOUT_MS and the connection resumes as it
// was (no new authentication, which the server rate-limits per IP); otherwise it is
// dropped and a new one opens at once. Where there are no such events (Node) the
// network counts as always up. Close codes 1000, 1008, 1009 and 3000 are final
// ("Connection Close Codes"); 3001 waits for retryAfter.
//
// Live tokens: with a `tokenProvider` option (an async function the app provides,
// returning a fresh JWT) the server's `auth_expiring` warning sends
// `auth_refresh {token}` on the open socket, and a close at exp (connection_error
// TOKEN_EXPIRED, 3000) or a token refused as expired reconnects once with a fresh token
// instead of being final.
//
// States: idle -> connecting -> open; open -> offline (network down, or a reconnect is
// scheduled) -> connecting; any -> closed (stop(), a final close code, or
// maxReconnectAttempts spent; closed stays closed whatever the network does, until
// start()). Events: "state", "open" (the auth answer), "resumed",
// "auth_failed", "close", "reconnecting", "fatal", "send" (each message written),
// "frame" (each frame read), "message" and each server event by its type.
import { Emitter } from "./emitter.js";
import { PerformanceMonitor, type PerformanceMetrics } from "./metrics.js";
import { FINAL_CLOSE_CODES, newId } from "./util.js";
import type { ClientMessageMap, ServerEvent, ServerEventMap } from "../protocol.js";

/* eslint-disable @typescript-eslint/no-explicit-any */

const CLIENT_OFFLINE_CLOSE = 4000;
const PROBE_TIMEOUT_MS = 1000; // a kept socket must answer this soon after `online`
const MAX_QUEUED_MESSAGES = 500;
const SOCKET_OPEN = 1; // WebSocket.OPEN

/** What the manager needs of a WebSocket (the browser's, or the `ws` package's in Node). */
export interface SocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: any) => void) | null;
  onmessage: ((event: any) => void) | null;
  onclose: ((event: any) => void) | null;
  onerror: ((event: any) => void) | null;
}

export type WebSocketConstructor = new (url: string) => SocketLike;

export type ConnectionState = "idle" | "connecting" | "open" | "offline" | "closed";

/** "Authentication Response", success. */
export interface AuthSuccess {
  success: true;
  connectionId: string;
  userId: string;
  sessionId?: string;
  availableChannels?: string[];
}

/** "Authentication Response", failure (the server closes after it). */
export interface AuthFailure {
  success: false;
  error?: string;
  code?: string;
  retryAfter?: number;
}

/** A server event of one type, as the manager emits it (batches unwrapped). */
export interface EventOf<K extends keyof ServerEventMap & string> {
  id?: string;
  type: K;
  timestamp?: string;
  sessionId?: string;
  userId?: string;
  payload: ServerEventMap[K];
}

/** The payload of a client message type. */
export type PayloadOf<K extends keyof ClientMessageMap> = ClientMessageMap[K] extends { payload: infer P }
  ? P
  : unknown;

/** A message as written to the socket. */
export interface OutgoingMessage {
  id: string;
  type: string;
  timestamp: string;
  payload: unknown;
  [key: string]: unknown;
}

export interface CloseInfo {
  code: number;
  reason: string;
}

interface OwnEvents {
  state: ConnectionState;
  open: AuthSuccess;
  resumed: undefined;
  auth_failed: AuthFailure;
  close: CloseInfo;
  fatal: CloseInfo;
  reconnecting: { attempt: number; delay: number };
  send: OutgoingMessage;
  frame: { bytes: number; events: number };
  message: ServerEvent;
}

/** Every event of a manager; names known only at run time (`string`) give `unknown`. */
export type ManagerEvents = OwnEvents & { [K in keyof ServerEventMap & string]: EventOf<K> } & {
  [type: string]: unknown;
};

export interface ManagerOptions {
  /** The JSON endpoint, e.g. `ws://host/ws/chat/${sessionId}`. */
  url: string;
  token: string;
  sessionId?: string;
  channels?: string[];
  /** First reconnect delay (ms), doubled per attempt. */
  reconnectDelay?: number;
  maxReconnectDelay?: number;
  maxReconnectAttempts?: number;
  /** Up to this fraction of a reconnect delay is added at random (0: none). */
  reconnectJitter?: number;
  /** Returns a fresh JWT: `auth_expiring` and TOKEN_EXPIRED use it. */
  tokenProvider?: (() => Promise<string | null | undefined> | string | null | undefined) | null;
  /** The WebSocket constructor; default globalThis.WebSocket (Node 20: pass `ws`'s). */
  WebSocket?: WebSocketConstructor;
}

/** `window` where there is one: its online/offline events. */
interface NetworkEvents {
  addEventListener(type: "online" | "offline", listener: () => void): void;
  removeEventListener(type: "online" | "offline", listener: () => void): void;
}

function networkEvents(): NetworkEvents | null {
  const target = globalThis as Partial<NetworkEvents>;
  return typeof target.addEventListener === "function" && typeof target.removeEventListener === "function"
    ? (target as NetworkEvents)
    : null;
}

function online(): boolean {
  return (globalThis as { navigator?: { onLine?: boolean } }).navigator?.onLine !== false;
}

export class WebSocketManager extends Emitter<ManagerEvents> {
  url: string;
  token: string;
  sessionId: string | undefined;
  channels: string[];
  reconnectDelay: number;
  maxReconnectDelay: number;
  maxReconnectAttempts: number;
  reconnectJitter: number;
  tokenProvider: ManagerOptions["tokenProvider"];
  WebSocket: WebSocketConstructor;
  reconnectAttempts = 0;
  messageQueue: OutgoingMessage[] = [];
  socket: SocketLike | null = null;
  state: ConnectionState = "idle";
  userId: string | null = null;
  connectionId: string | null = null;
  /** Counters of this manager (websocket-api.md "Performance Monitoring - WebSocket"). */
  readonly monitor: PerformanceMonitor;

  private _tokenExpired = false; // the server said TOKEN_EXPIRED on this socket
  private _expiredRetry = false; // one fresh-token retry per expiry, not a loop
  private _refreshing = false;
  private _authenticated = false;
  private _retryNotBefore = 0; // Date.now() before which the server asked us not to return
  private _retryTimer: ReturnType<typeof setTimeout> | undefined = undefined;
  private _probeTimer: ReturnType<typeof setTimeout> | null = null;
  private _stopped = false;
  private readonly _online = (): void => this._networkBack();
  private readonly _offline = (): void => {
    clearTimeout(this._retryTimer);
    if (this._probeTimer !== null) clearTimeout(this._probeTimer);
    this._probeTimer = null;
    this._setState("offline"); // the socket stays: see _networkBack
  };

  constructor({
    url,
    token,
    sessionId,
    channels = [],
    reconnectDelay = 1000,
    maxReconnectDelay = 30000,
    maxReconnectAttempts = Infinity,
    reconnectJitter = 0.25,
    tokenProvider = null,
    WebSocket = (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket,
  }: ManagerOptions) {
    super();
    if (!WebSocket) throw new TypeError("no WebSocket here: pass the WebSocket option (Node: the ws package)");
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

  get isOpen(): boolean {
    return this.state === "open";
  }

  /** websocket-api.md "Client Metrics": `client.getPerformanceMetrics()`. */
  getPerformanceMetrics(): PerformanceMetrics {
    return this.monitor.getMetrics();
  }

  /** Connect (again, after stop() or a final close); one socket at a time. */
  start(): this {
    this._stopped = false;
    const network = networkEvents();
    network?.addEventListener("online", this._online);
    network?.addEventListener("offline", this._offline);
    this.connect();
    return this;
  }

  stop(): void {
    this._stopped = true;
    this._detachNetwork();
    clearTimeout(this._retryTimer);
    if (this._probeTimer !== null) clearTimeout(this._probeTimer);
    this._probeTimer = null;
    const socket = this.socket;
    this.socket = null;
    if (socket) socket.close(1000, "client closing");
    this._setState("closed");
  }

  private _detachNetwork(): void {
    const network = networkEvents();
    network?.removeEventListener("online", this._online);
    network?.removeEventListener("offline", this._offline);
  }

  /**
   * "closed" for good (a final close code, a refused fresh token, the attempts spent):
   * the network events no longer apply, so an `online` never reopens what the server
   * ended, nor does `offline` turn "closed" into "offline". Only start() opens again.
   */
  private _fatal(code: number, reason: string): void {
    this._detachNetwork();
    clearTimeout(this._retryTimer);
    this._setState("closed");
    this.emit("fatal", { code, reason });
  }

  /** `online`: no backoff; resume the kept socket if it answers at once, else a new one. */
  private _networkBack(): void {
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
    if (this._authenticated && socket.readyState === SOCKET_OPEN) {
      this._write(socket, { type: "connection_heartbeat", payload: {} }); // answered
    } // else the pending authentication answers
    if (this._probeTimer !== null) clearTimeout(this._probeTimer);
    this._probeTimer = setTimeout(() => {
      this._probeTimer = null;
      if (socket !== this.socket || this.isOpen) return;
      this._discardSocket();
      this.connect();
    }, PROBE_TIMEOUT_MS);
  }

  connect(): void {
    clearTimeout(this._retryTimer);
    if (this._stopped) return;
    if (!online()) {
      this._setState("offline");
      return; // the `online` event reconnects
    }
    if (this.socket) this._discardSocket(); // never two sockets of one manager
    this._setState("connecting");
    const socket = new this.WebSocket(this.url);
    this.socket = socket;
    this._authenticated = false;
    this._tokenExpired = false;
    socket.onopen = () => {
      if (socket !== this.socket) return;
      // "Authentication Request": the first frame (not a "send" event: it holds the token).
      socket.send(JSON.stringify({ token: this.token, sessionId: this.sessionId, channels: this.channels }));
    };
    socket.onmessage = (event: { data: unknown }) => {
      if (socket === this.socket) this._receive(event.data);
    };
    socket.onclose = (event: { code: number; reason: string }) => {
      if (socket !== this.socket) return;
      this.socket = null;
      this._closed(event.code, event.reason);
    };
    socket.onerror = () => {}; // a close event follows
  }

  /** Send an event now, or queue it until the connection is authenticated. */
  sendMessage<K extends keyof ClientMessageMap & string>(
    type: K,
    payload: PayloadOf<K>,
    extra: Record<string, unknown> = {},
  ): OutgoingMessage {
    const message: OutgoingMessage = {
      id: newId("msg"),
      type,
      timestamp: new Date().toISOString(),
      payload,
      ...extra,
    };
    if (this.isOpen && this.socket) {
      this._write(this.socket, message);
    } else {
      this.messageQueue.push(message);
      if (this.messageQueue.length > MAX_QUEUED_MESSAGES) this.messageQueue.shift();
    }
    return message;
  }

  /** Send only when connected (presence-like events that are stale later). */
  sendIfOpen<K extends keyof ClientMessageMap & string>(type: K, payload: PayloadOf<K>): void {
    if (this.isOpen) this.sendMessage(type, payload);
  }

  private _write(socket: SocketLike, message: { type: string; payload: unknown; [key: string]: unknown }): void {
    socket.send(JSON.stringify(message));
    this.emit("send", message as OutgoingMessage);
  }

  private _flushMessageQueue(): void {
    while (this.messageQueue.length > 0 && this.isOpen && this.socket) {
      this._write(this.socket, this.messageQueue.shift() as OutgoingMessage);
    }
  }

  private _receive(raw: unknown): void {
    const text = typeof raw === "string" ? raw : String(raw);
    let message: any;
    try {
      message = JSON.parse(text);
    } catch {
      return;
    }
    if (message === null || typeof message !== "object") return;
    if (this._probeTimer !== null) {
      // The kept socket answered after `online`: it lived through the outage.
      clearTimeout(this._probeTimer);
      this._probeTimer = null;
      if (this._authenticated) {
        this._setState("open");
        this.emit("resumed", undefined);
        this._flushMessageQueue();
      }
    }
    if (!this._authenticated && typeof message.success === "boolean") {
      this.emit("frame", { bytes: text.length, events: 0 });
      if (message.success) {
        const answer = message as AuthSuccess;
        this._authenticated = true;
        this._expiredRetry = false;
        this.reconnectAttempts = 0;
        this.userId = answer.userId;
        this.connectionId = answer.connectionId;
        this._setState("open");
        this.emit("open", answer);
        this._flushMessageQueue();
      } else {
        const answer = message as AuthFailure;
        this._tokenExpired = answer.code === "TOKEN_EXPIRED";
        this._retryAfter(answer.retryAfter);
        this.emit("auth_failed", answer); // the server closes (3000 or 3001)
      }
      return;
    }
    const events: any[] = message.type === "batch" ? message.payload?.messages || [] : [message];
    this.emit("frame", { bytes: text.length, events: events.length });
    for (const event of events) {
      if (event.type === "connection_heartbeat" && this.isOpen && this.socket) {
        // The echo carries the server's serverTime: the server measures latency from it
        // and does not answer it (an empty heartbeat would be answered: an endless loop).
        const echo = { serverTime: event.payload?.serverTime };
        this._write(this.socket, { type: "connection_heartbeat", payload: echo });
      } else if (event.type === "auth_expiring") {
        void this._refreshToken(this.socket);
      } else if (event.type === "connection_close" || event.type === "connection_error") {
        if (event.payload?.errorCode === "TOKEN_EXPIRED") this._tokenExpired = true;
        this._retryAfter(event.payload?.reconnectAfter || event.payload?.retryAfter);
      } else if (event.type === "error" && event.payload?.retryAfter) {
        this._retryAfter(event.payload.retryAfter);
      }
      this.emit("message", event as ServerEvent);
      this.emit(event.type as string, event);
    }
  }

  /** `auth_expiring`: a fresh token from the app, sent as `auth_refresh` (once at a time). */
  private async _refreshToken(socket: SocketLike | null): Promise<void> {
    if (!this.tokenProvider || this._refreshing) return;
    this._refreshing = true;
    try {
      const token = await this._freshToken();
      if (token && socket && socket === this.socket && this.isOpen) {
        const message = { id: newId("refresh"), type: "auth_refresh", timestamp: new Date().toISOString() };
        socket.send(JSON.stringify({ ...message, payload: { token } })); // no "send" event: a token
      }
    } finally {
      this._refreshing = false;
    }
  }

  /** A token from `tokenProvider`, kept for every later connection; null if none. */
  private async _freshToken(): Promise<string | null> {
    try {
      const token = await this.tokenProvider?.();
      if (typeof token === "string" && token) {
        this.token = token;
        return token;
      }
      console.warn("tokenProvider returned no token");
    } catch (error) {
      console.warn("tokenProvider failed", (error as { name?: string } | null)?.name);
    }
    return null;
  }

  /** The server's retryAfter (seconds), as a deadline: a stale one expires by itself. */
  private _retryAfter(seconds: unknown): void {
    const ms = Number(seconds) > 0 ? Number(seconds) * 1000 : 0;
    this._retryNotBefore = ms ? Date.now() + ms : 0;
  }

  /** Forget the current socket (and a pending retry) without reporting a close. */
  private _discardSocket(): void {
    clearTimeout(this._retryTimer);
    const socket = this.socket;
    this.socket = null;
    if (socket) socket.close(CLIENT_OFFLINE_CLOSE, "reconnecting");
  }

  private _closed(code: number, reason: string): void {
    this._authenticated = false;
    const probing = this._probeTimer !== null;
    if (this._probeTimer !== null) clearTimeout(this._probeTimer);
    this._probeTimer = null;
    this.emit("close", { code, reason });
    if (this._stopped) return this._setState("closed");
    if (!online()) return this._setState("offline");
    if (code === 3000 && this._tokenExpired && this.tokenProvider && !this._expiredRetry) {
      this._expiredRetry = true;
      this._setState("connecting");
      void this._freshToken().then((token) => {
        if (this._stopped || this.socket) return;
        if (token) return this.connect();
        this._fatal(code, reason);
      });
      return;
    }
    if (FINAL_CLOSE_CODES.has(code)) {
      this._fatal(code, reason);
      return;
    }
    if (probing && this._retryNotBefore <= Date.now()) {
      this.connect(); // the kept socket died while the network was away: no backoff
      return;
    }
    this._scheduleReconnect();
  }

  /** The delay before reconnect attempt `attempt` (1, 2, ...): backoff or floor, plus jitter. */
  reconnectDelayFor(attempt: number, floorMs = 0): number {
    const backoff = Math.min(this.maxReconnectDelay, this.reconnectDelay * Math.pow(2, attempt - 1));
    const base = Math.max(backoff, floorMs);
    return Math.round(base * (1 + this.reconnectJitter * Math.random()));
  }

  private _scheduleReconnect(): void {
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

  private _setState(state: ConnectionState): void {
    if (state === this.state) return;
    this.state = state;
    this.emit("state", state);
  }
}
