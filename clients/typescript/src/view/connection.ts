// What a UI shows of one WebSocketManager, framework-neutral: the React and Vue bindings
// are thin shells over it (useSyncExternalStore; refs). The core knows nothing of them.
//
// Theory of operation
// -------------------
// A ConnectionView listens to a manager's events ("state", "open", "message",
// "auth_failed", "fatal", "reconnecting") and keeps one immutable snapshot, replaced on
// every change, so a binding compares snapshots by identity. `openManager` turns the
// hook options of websocket-api.md "Client Integration / Basic WebSocket Hook" ({url,
// token, reconnect, maxReconnectAttempts}) into the core's constructor options.
//
// connectionState (the spec's Jest example: "connecting" until the server accepted the
// token, then "connected"):
//
//   manager.state   connectionState
//   idle            connecting      (the binding is about to start it)
//   connecting      connecting
//   open            connected
//   offline         disconnected    (network down, or a reconnect is scheduled)
//   closed          closed          (stopped, or a final close code: see `error`)
import { WebSocketManager, type ManagerOptions, type ServerEvent } from "../index.js";
import { SnapshotStore, authFailure, finalClose, type ConnectionError } from "./store.js";

export type ConnectionState = "connecting" | "connected" | "disconnected" | "closed";

/** A server event as the manager emits it (batches already unwrapped), by `type`. */
export type ServerMessage = ServerEvent;

export type { ConnectionError };

/** The core's options (url, token, sessionId, channels, reconnect delays, tokenProvider,
 * WebSocket: Node 20 passes the `ws` package's) plus the spec hook's `reconnect`. */
export interface ConnectionOptions extends ManagerOptions {
  /** false: never reconnect (maxReconnectAttempts 0). Default true. */
  reconnect?: boolean;
}

export interface ConnectionSnapshot {
  connectionState: ConnectionState;
  isConnected: boolean;
  /** The newest server event (one per render at most: use onMessage to see every one). */
  lastMessage: ServerMessage | null;
  error: ConnectionError | null;
  userId: string | null;
  connectionId: string | null;
  /** The attempt number of the pending reconnect, 0 while connected. */
  reconnectAttempt: number;
}

export const INITIAL_CONNECTION: ConnectionSnapshot = Object.freeze({
  connectionState: "connecting",
  isConnected: false,
  lastMessage: null,
  error: null,
  userId: null,
  connectionId: null,
  reconnectAttempt: 0,
});

const STATES: Readonly<Record<string, ConnectionState>> = {
  idle: "connecting",
  connecting: "connecting",
  open: "connected",
  offline: "disconnected",
  closed: "closed",
};

/** connectionState of a manager now (the table above). */
export function connectionStateOf(manager: WebSocketManager): ConnectionState {
  return STATES[manager.state] ?? "connecting";
}

/** A manager (not started) for the hook options. */
export function openManager(options: ConnectionOptions): WebSocketManager {
  const { reconnect = true, ...rest } = options;
  const config: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(rest)) if (value !== undefined) config[key] = value;
  if (!reconnect) config.maxReconnectAttempts = 0;
  return new WebSocketManager(config as unknown as ManagerOptions); // url, token: required above
}

/** The changing part of a connection, one immutable snapshot at a time. */
export class ConnectionView extends SnapshotStore<ConnectionSnapshot> {
  readonly manager: WebSocketManager;

  constructor(manager: WebSocketManager, onMessage?: (message: ServerMessage) => void) {
    super();
    this.manager = manager;
    this.snapshot = { ...INITIAL_CONNECTION, ...this.#fromManager() };
    const on = (type: string, handler: (data: any) => void) => this.teardown.push(manager.on(type, handler));
    on("state", () => this.#update({}));
    on("open", () => this.#update({ error: null, reconnectAttempt: 0 }));
    on("reconnecting", (r: { attempt: number }) => this.#update({ reconnectAttempt: r.attempt }));
    on("auth_failed", (m) => this.#update({ error: authFailure(m) }));
    on("fatal", (f) => this.#update({ error: this.snapshot.error ?? finalClose(f) }));
    on("message", (message: ServerMessage) => {
      onMessage?.(message);
      this.#update({ lastMessage: message });
    });
  }

  #fromManager(): Pick<ConnectionSnapshot, "connectionState" | "isConnected" | "userId" | "connectionId"> {
    const m = this.manager;
    return {
      connectionState: connectionStateOf(m),
      isConnected: m.isOpen,
      userId: m.userId ?? null,
      connectionId: m.connectionId ?? null,
    };
  }

  #update(change: Partial<ConnectionSnapshot>): void {
    this.publish({ ...this.snapshot, ...change, ...this.#fromManager() });
  }
}
