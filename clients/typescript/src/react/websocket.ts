// useWebSocket: websocket-api.md "Client Integration / Basic WebSocket Hook".
//
// The hook owns one WebSocketManager per (url, token, session, channels, reconnect
// settings): made and started in an effect, stopped by its cleanup, so React
// StrictMode's mount-unmount-mount leaves exactly one connection. The state is a
// ConnectionView snapshot read through useSyncExternalStore (no torn reads). Callbacks
// (onMessage, tokenProvider) are read through refs: changing them never reconnects.
import { useTripSageOptions } from "./provider.js";
import { useCallback, useEffect, useMemo, useRef, useState, useSyncExternalStore } from "react";
import type { ClientMessageType, PayloadOf, WebSocketManager } from "../index.js";
import {
  ConnectionView,
  INITIAL_CONNECTION,
  openManager,
  type ConnectionOptions,
  type ConnectionSnapshot,
  type ServerMessage,
} from "../view/connection.js";

interface HookOptions {
  /** Every server event, in order (lastMessage may skip some between two renders). */
  onMessage?: (message: ServerMessage) => void;
  /** false: no connection (yet). Default true. */
  enabled?: boolean;
}

/** {url, token, ...} opens a connection; {manager} uses that one and never stops it. */
export type UseWebSocketOptions = HookOptions &
  (ConnectionOptions | (Partial<ConnectionOptions> & { manager: WebSocketManager }));

/** A client event: {type, payload, ...extra} (id and timestamp are added). */
export interface OutgoingMessage {
  type: string;
  payload?: unknown;
  [key: string]: unknown;
}

export interface UseWebSocketResult extends ConnectionSnapshot {
  /** Send now, or queue until the server accepted the token. */
  sendMessage: (message: OutgoingMessage | string, payload?: unknown) => void;
  /** The manager, once the effect made it (null in the first render and on the server). */
  manager: WebSocketManager | null;
}

const noSubscription = () => () => {};
const initial = () => INITIAL_CONNECTION;

/** Settings default to a <TripSageProvider>'s (`useWebSocket({onMessage})` under one). */
export function useWebSocket(
  urlOrOptions: string | UseWebSocketOptions | Partial<UseWebSocketOptions> = {},
  more: HookOptions & Partial<ConnectionOptions> = {},
): UseWebSocketResult {
  const options = useTripSageOptions(
    typeof urlOrOptions === "string" ? { ...more, url: urlOrOptions } : { ...urlOrOptions, ...more },
  ) as HookOptions & Partial<ConnectionOptions> & { manager?: WebSocketManager };
  const latest = useRef(options);
  latest.current = options;
  const pending = useRef<OutgoingMessage[]>([]);
  const [view, setView] = useState<ConnectionView | null>(null);
  const { enabled = true, manager: given } = options;
  const key = JSON.stringify([
    options.url,
    options.token,
    options.sessionId,
    options.channels,
    options.reconnect,
    options.maxReconnectAttempts,
    options.reconnectDelay,
    options.maxReconnectDelay,
  ]);

  useEffect(() => {
    if (!enabled) return;
    const { onMessage: _onMessage, manager: _manager, enabled: _enabled, tokenProvider, ...connection } = latest.current;
    const manager =
      given ??
      openManager({
        ...(connection as ConnectionOptions),
        ...(tokenProvider ? { tokenProvider: () => latest.current.tokenProvider!() } : {}),
      });
    const next = new ConnectionView(manager, (message) => latest.current.onMessage?.(message));
    setView(next);
    if (!given) manager.start();
    for (const message of pending.current.splice(0)) send(manager, message);
    return () => {
      next.dispose();
      if (!given) manager.stop();
    };
  }, [key, given, enabled]);

  const snapshot = useSyncExternalStore(
    view?.subscribe ?? noSubscription,
    view?.getSnapshot ?? initial,
    initial,
  );

  const sendMessage = useCallback(
    (message: OutgoingMessage | string, payload?: unknown) => {
      const outgoing = typeof message === "string" ? { type: message, payload } : message;
      if (view) send(view.manager, outgoing);
      else pending.current.push(outgoing);
    },
    [view],
  );

  return useMemo(
    () => ({ ...snapshot, sendMessage, manager: view?.manager ?? null }),
    [snapshot, sendMessage, view],
  );
}

/** The spec's untyped {type, payload}: the server validates it (INVALID_MESSAGE_FORMAT). */
function send(manager: WebSocketManager, message: OutgoingMessage): void {
  const { type, payload = {}, ...extra } = message;
  manager.sendMessage(type as ClientMessageType, payload as PayloadOf<ClientMessageType>, extra);
}
