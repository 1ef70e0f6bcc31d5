// <TripSageProvider>: the connection settings (url, token or tokenProvider, WebSocket,
// or a shared manager) for every hook below it, so that the hooks can be called as
// websocket-api.md's examples call them: `useTripCollaboration(tripId)`,
// `<CollaborationPresence tripId={...} currentUserId={...} />`. Settings a hook is
// given win over the provider's.
import { createContext, useContext, useMemo, type ReactNode } from "react";
import type { TripOptions } from "../view/trip.js";

const TripSageContext = createContext<TripOptions>({});

export interface TripSageProviderProps extends TripOptions {
  children?: ReactNode;
}

export function TripSageProvider({ children, ...options }: TripSageProviderProps) {
  const parent = useContext(TripSageContext);
  const key = JSON.stringify([options.url, options.token, options.sessionId, options.channels, options.userId]);
  // One value per settings (functions and the manager by identity), so hooks below do
  // not reconnect on every render of the provider.
  const value = useMemo(
    () => ({ ...parent, ...options }),
    // eslint-disable-next-line react-hooks/exhaustive-deps
    [parent, key, options.manager, options.tokenProvider, options.WebSocket, options.storage],
  );
  return <TripSageContext.Provider value={value}>{children}</TripSageContext.Provider>;
}

/** The provider's settings under `given` (given wins). */
export function useTripSageOptions<T extends object>(given: T | undefined): TripOptions & T {
  const defaults = useContext(TripSageContext);
  return { ...defaults, ...(given ?? ({} as T)) };
}
