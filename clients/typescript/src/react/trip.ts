// useTripCollaboration: websocket-api.md "Client Integration / Real-time Collaboration
// Hook", on TripSync (join, resume, optimistic queue, retries, conflicts) instead of the
// spec's table subscription.
//
// One TripSync per (trip, connection settings), made in an effect and dropped by its
// cleanup (the manager too, when the hook opened it). The state is a TripView snapshot
// read through useSyncExternalStore. Edits made before the effect ran (the first
// render) wait in a ref and go to TripSync as soon as it exists: none is lost.
import { useCallback, useEffect, useMemo, useRef, useState, useSyncExternalStore } from "react";
import type { TripSync, WebSocketManager } from "../index.js";
import { useTripSageOptions } from "./provider.js";
import { attachTrip, initialTrip, TripView, type TripOptions, type TripSnapshot } from "../view/trip.js";

export interface UseTripCollaborationOptions extends TripOptions {
  /** false: no connection (yet). Default true. */
  enabled?: boolean;
}

/** What the page started an edit from ({value, version}), see TripSync.edit. */
export interface EditBase {
  value: unknown;
  version: number | null;
}

export interface ConflictChoice {
  chosenOptionId?: string;
  customValue?: unknown;
}

export interface TripCollaboration extends TripSnapshot {
  /** An optimistic edit: shown at once, queued durably, sent when connected. */
  edit: (field: string, value: unknown, base?: EditBase) => void;
  /** The spec's name for `edit`. */
  handleOptimisticUpdate: (field: string, value: unknown) => void;
  /** The user focused a field: others see an advisory lock (trip_field_editing_start). */
  startEditing: (field: string) => void;
  stopEditing: (field: string) => void;
  resolveConflict: (conflictId: string, choice: ConflictChoice) => void;
  /** The user has read why an edit was not saved ("Not saved" -> "Synced"). */
  dismissUnsaved: () => void;
  trip: TripSync | null;
  manager: WebSocketManager | null;
}

type Action = (trip: TripSync) => void;

const noSubscription = () => () => {};

/** `options` default to a <TripSageProvider>'s: `useTripCollaboration(tripId)` as the spec calls it. */
export function useTripCollaboration(tripId: string, settings?: UseTripCollaborationOptions): TripCollaboration {
  const options = useTripSageOptions(settings);
  const latest = useRef(options);
  latest.current = options;
  const waiting = useRef<Action[]>([]);
  const [view, setView] = useState<TripView | null>(null);
  const { enabled = true, manager: given } = options;
  const key = JSON.stringify([
    options.url,
    options.token,
    options.userId,
    options.sessionId,
    options.channels,
    options.reconnect,
    options.maxReconnectAttempts,
  ]);

  useEffect(() => {
    if (!enabled) return;
    const { enabled: _enabled, tokenProvider, ...rest } = latest.current;
    const { manager, trip, close } = attachTrip(tripId, {
      ...rest,
      ...(tokenProvider ? { tokenProvider: () => latest.current.tokenProvider!() } : {}),
    });
    const next = new TripView(trip, manager);
    setView(next);
    for (const action of waiting.current.splice(0)) action(trip);
    return () => {
      next.dispose();
      close();
    };
  }, [tripId, key, given, enabled]);

  const initial = useMemo(() => {
    const snapshot = initialTrip(tripId);
    return () => snapshot;
  }, [tripId]);
  const snapshot = useSyncExternalStore(view?.subscribe ?? noSubscription, view?.getSnapshot ?? initial, initial);

  const run = useCallback(
    (action: Action) => {
      if (view) action(view.trip);
      else waiting.current.push(action);
    },
    [view],
  );
  const actions = useMemo(
    () => ({
      edit: (field: string, value: unknown, base?: EditBase) => run((t) => t.edit(field, value, base ?? null)),
      handleOptimisticUpdate: (field: string, value: unknown) => run((t) => t.edit(field, value)),
      startEditing: (field: string) => view?.trip.editingStarted(field),
      stopEditing: (field: string) => view?.trip.editingStopped(field),
      resolveConflict: (conflictId: string, choice: ConflictChoice) =>
        run((t) => t.resolveConflict(conflictId, choice)),
      dismissUnsaved: () => view?.trip.dismissUnsaved(),
    }),
    [run, view],
  );

  return useMemo(
    () => ({ ...snapshot, ...actions, trip: view?.trip ?? null, manager: view?.manager ?? null }),
    [snapshot, actions, view],
  );
}
