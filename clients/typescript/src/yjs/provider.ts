// YjsProvider: a Y.Doc synced with a trip over `WS /ws/yjs/{tripId}?token=JWT` (README
// "Yjs peers (y-websocket)"), the optional Yjs mode of the client.
//
// Theory of operation
// -------------------
// The frames are y-websocket's (y-protocols): a varuint message type, then
//   0 sync       sync step 1 / step 2 / update (y-protocols/sync)
//   1 awareness  an awareness update (y-protocols/awareness)
//   2 auth       "permission denied" + reason (y-protocols/auth): a viewer's edit, a
//                schema violation, storage unavailable, the token expired
//   3 query      the peer asks for every awareness state we know
// On open we send sync step 1 and our awareness state; the server's step 2 makes the
// provider `synced` (emitted once per connection). Local document and awareness changes
// go out as they happen; those that arrive are applied with this provider as origin, so
// they are not echoed back. The trip is the root Y.Map `trip` (`provider.trip`).
//
// Reconnection: every close reconnects with capped exponential backoff (100 ms, 200 ms
// ... maxBackoffMs), except 4400-4499 (the server's refusals, which resending cannot
// fix): those end the provider with `closed`. One exception: 4401 (bad or expired
// token) with a `tokenProvider` reconnects at once with a fresh token, once per
// successful sync (a token refused right away again is final). Remote awareness states
// are dropped when the socket closes (the server drops ours); `destroy()` also tells the
// others we left, before it closes.
import * as decoding from "lib0/decoding";
import * as encoding from "lib0/encoding";
import * as auth from "y-protocols/auth";
import * as awarenessProtocol from "y-protocols/awareness";
import * as syncProtocol from "y-protocols/sync";
import type * as Y from "yjs";
import { Emitter } from "../index.js";

export const MESSAGE_SYNC = 0;
export const MESSAGE_AWARENESS = 1;
export const MESSAGE_AUTH = 2;
export const MESSAGE_QUERY_AWARENESS = 3;

const RECONNECT_BASE_DELAY_MS = 100;
const MAX_BACKOFF_MS = 2500;
const CLOSE_UNAUTHORIZED = 4401;
const CLIENT_CLOSE = 1000;

/** The WebSocket surface the provider uses: the browser's, or the `ws` package's. */
export interface BinarySocket {
  binaryType: string;
  readyState: number;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
}

export type BinarySocketConstructor = new (url: string) => BinarySocket;

export type ProviderStatus = "connecting" | "connected" | "disconnected";

export interface YjsProviderEvents {
  status: { status: ProviderStatus };
  /** The server's sync step 2 arrived (true), or the socket closed (false). */
  sync: boolean;
  /** An auth "permission denied" message: the reason, worded by the server. */
  denied: { reason: string };
  "connection-close": { code: number; reason: string };
  /** Final: a 4400-4499 refusal, or destroy() (code 1000); no reconnect after it. */
  closed: { code: number; reason: string };
}

export interface YjsProviderOptions {
  /** The server's Yjs endpoint, e.g. `ws://localhost:8000/ws/yjs` (the trip id is appended). */
  url: string;
  tripId: string;
  token: string;
  /** A fresh JWT after a 4401 close (token expired). */
  tokenProvider?: () => Promise<string> | string;
  /** Default globalThis.WebSocket (Node 20: the `ws` package's). */
  WebSocket?: BinarySocketConstructor;
  /** Share an awareness instance; default a new one for `doc`. */
  awareness?: awarenessProtocol.Awareness;
  /** false: call connect() yourself. Default true. */
  connect?: boolean;
  maxBackoffMs?: number;
}

export class YjsProvider extends Emitter<YjsProviderEvents> {
  readonly doc: Y.Doc;
  readonly awareness: awarenessProtocol.Awareness;
  readonly tripId: string;
  url: string;
  token: string;
  status: ProviderStatus = "disconnected";
  synced = false;
  socket: BinarySocket | null = null;
  #WebSocket: BinarySocketConstructor;
  #tokenProvider: YjsProviderOptions["tokenProvider"];
  #maxBackoffMs: number;
  #ownsAwareness: boolean;
  #shouldConnect = false;
  #attempts = 0;
  #ended: Error | null = null; // why the provider ended for good, once it has
  #refreshed = false; // a fresh token was fetched and has not synced yet
  #timer: ReturnType<typeof setTimeout> | undefined;
  #onDocUpdate: (update: Uint8Array, origin: unknown) => void;
  #onAwarenessUpdate: (change: AwarenessChange, origin: unknown) => void;

  constructor(doc: Y.Doc, options: YjsProviderOptions) {
    super();
    this.doc = doc;
    this.tripId = options.tripId;
    this.url = options.url.replace(/\/+$/, "");
    this.token = options.token;
    this.awareness = options.awareness ?? new awarenessProtocol.Awareness(doc);
    this.#ownsAwareness = !options.awareness;
    this.#tokenProvider = options.tokenProvider;
    this.#maxBackoffMs = options.maxBackoffMs ?? MAX_BACKOFF_MS;
    const Impl = options.WebSocket ?? (globalThis as { WebSocket?: BinarySocketConstructor }).WebSocket;
    if (!Impl) throw new TypeError("no WebSocket: pass the WebSocket option (Node 20: the ws package)");
    this.#WebSocket = Impl;
    this.#onDocUpdate = (update, origin) => {
      if (origin === this) return;
      const encoder = encoding.createEncoder();
      encoding.writeVarUint(encoder, MESSAGE_SYNC);
      syncProtocol.writeUpdate(encoder, update);
      this.#send(encoding.toUint8Array(encoder));
    };
    this.#onAwarenessUpdate = ({ added, updated, removed }) => {
      this.#send(this.#awarenessFrame([...added, ...updated, ...removed]));
    };
    doc.on("update", this.#onDocUpdate);
    this.awareness.on("update", this.#onAwarenessUpdate);
    if (options.connect !== false) this.connect();
  }

  /** The trip: the root Y.Map `trip` (scalars, `notes` a Y.Text, lists Y.Arrays). */
  get trip(): Y.Map<unknown> {
    return this.doc.getMap("trip");
  }

  /** Resolves once synced (at once if it is). */
  /** Resolves at the first sync; rejects once the provider ends (a final close, destroy()). */
  whenSynced(): Promise<void> {
    if (this.synced) return Promise.resolve();
    if (this.#ended) return Promise.reject(this.#ended);
    return new Promise((resolve, reject) => {
      const offSync = this.on("sync", (synced) => {
        if (!synced) return;
        offSync();
        offEnd();
        resolve();
      });
      const offEnd = this.on("closed", () => {
        offSync();
        offEnd();
        reject(this.#ended);
      });
    });
  }

  connect(): void {
    this.#shouldConnect = true;
    if (this.socket) return;
    clearTimeout(this.#timer);
    const query = new URLSearchParams({ token: this.token });
    const socket = new this.#WebSocket(`${this.url}/${encodeURIComponent(this.tripId)}?${query}`);
    socket.binaryType = "arraybuffer";
    this.socket = socket;
    this.#setStatus("connecting");
    socket.onopen = () => {
      if (socket !== this.socket) return;
      this.#setStatus("connected");
      const encoder = encoding.createEncoder();
      encoding.writeVarUint(encoder, MESSAGE_SYNC);
      syncProtocol.writeSyncStep1(encoder, this.doc);
      socket.send(encoding.toUint8Array(encoder));
      if (this.awareness.getLocalState() !== null) socket.send(this.#awarenessFrame([this.doc.clientID]));
    };
    socket.onmessage = (event) => {
      if (socket !== this.socket) return;
      const reply = this.#receive(new Uint8Array(event.data as ArrayBuffer));
      if (reply) socket.send(reply);
    };
    socket.onclose = (event) => {
      if (socket !== this.socket) return;
      this.socket = null;
      this.#closed(event.code, event.reason);
    };
    socket.onerror = () => {}; // a close event follows
  }

  /** Close the socket and stay disconnected until connect(). */
  disconnect(): void {
    this.#shouldConnect = false;
    clearTimeout(this.#timer);
    const socket = this.socket;
    if (!socket) return;
    this.socket = null;
    socket.close(CLIENT_CLOSE, "client closing");
    this.#closed(CLIENT_CLOSE, "client closing");
  }

  /** Tell the others we left, disconnect, stop listening to the document (it stays usable). */
  destroy(): void {
    if (this.awareness.getLocalState() !== null) {
      // Sent by the awareness listener before the socket closes (as y-websocket does).
      awarenessProtocol.removeAwarenessStates(this.awareness, [this.doc.clientID], "destroy");
    }
    this.disconnect();
    if (!this.#ended) this.#ended = new Error("the provider was destroyed");
    this.emit("closed", { code: 1000, reason: "destroyed" });
    this.doc.off("update", this.#onDocUpdate);
    this.awareness.off("update", this.#onAwarenessUpdate);
    if (this.#ownsAwareness) this.awareness.destroy();
  }

  #receive(frame: Uint8Array): Uint8Array | null {
    const decoder = decoding.createDecoder(frame);
    const encoder = encoding.createEncoder();
    const type = decoding.readVarUint(decoder);
    switch (type) {
      case MESSAGE_SYNC: {
        encoding.writeVarUint(encoder, MESSAGE_SYNC);
        const kind = syncProtocol.readSyncMessage(decoder, encoder, this.doc, this);
        if (kind === syncProtocol.messageYjsSyncStep2 && !this.synced) {
          this.synced = true;
          this.#attempts = 0;
          this.#refreshed = false;
          this.emit("sync", true);
        }
        return encoding.length(encoder) > 1 ? encoding.toUint8Array(encoder) : null;
      }
      case MESSAGE_AWARENESS:
        awarenessProtocol.applyAwarenessUpdate(this.awareness, decoding.readVarUint8Array(decoder), this);
        return null;
      case MESSAGE_AUTH:
        auth.readAuthMessage(decoder, this.doc, (_doc, reason) => this.emit("denied", { reason }));
        return null;
      case MESSAGE_QUERY_AWARENESS:
        return this.#awarenessFrame([...this.awareness.getStates().keys()]);
      default:
        return null; // a newer server's message type: not ours to judge
    }
  }

  #awarenessFrame(clients: number[]): Uint8Array {
    const encoder = encoding.createEncoder();
    encoding.writeVarUint(encoder, MESSAGE_AWARENESS);
    encoding.writeVarUint8Array(encoder, awarenessProtocol.encodeAwarenessUpdate(this.awareness, clients));
    return encoding.toUint8Array(encoder);
  }

  #send(frame: Uint8Array): void {
    if (this.socket && this.socket.readyState === 1) this.socket.send(frame);
  }

  #closed(code: number, reason: string): void {
    const others = [...this.awareness.getStates().keys()].filter((id) => id !== this.doc.clientID);
    awarenessProtocol.removeAwarenessStates(this.awareness, others, this);
    if (this.synced) {
      this.synced = false;
      this.emit("sync", false);
    }
    this.#setStatus("disconnected");
    this.emit("connection-close", { code, reason });
    if (!this.#shouldConnect) return;
    if (code === CLOSE_UNAUTHORIZED && this.#tokenProvider && !this.#refreshed) {
      this.#refreshed = true;
      void this.#reconnectWithFreshToken(code, reason);
      return;
    }
    if (code >= 4400 && code < 4500) {
      this.#shouldConnect = false;
      this.#end(code, reason);
      return;
    }
    const delay = Math.min(this.#maxBackoffMs, RECONNECT_BASE_DELAY_MS * 2 ** this.#attempts);
    this.#attempts++;
    this.#timer = setTimeout(() => this.connect(), delay);
  }

  /** The end of the provider: no reconnect; whenSynced() rejects from now on. */
  #end(code: number, reason: string): void {
    this.#ended = new Error(`closed by the server: ${code} ${reason}`);
    this.emit("closed", { code, reason });
  }

  async #reconnectWithFreshToken(code: number, reason: string): Promise<void> {
    let token: string | null = null;
    try {
      token = (await this.#tokenProvider!()) || null;
    } catch (error) {
      console.warn("tokenProvider failed", (error as Error)?.name);
    }
    if (!this.#shouldConnect || this.socket) return;
    if (!token) {
      this.#shouldConnect = false;
      this.#end(code, reason);
      return;
    }
    this.token = token;
    this.connect();
  }

  #setStatus(status: ProviderStatus): void {
    if (status === this.status) return;
    this.status = status;
    this.emit("status", { status });
  }
}

interface AwarenessChange {
  added: number[];
  updated: number[];
  removed: number[];
}
