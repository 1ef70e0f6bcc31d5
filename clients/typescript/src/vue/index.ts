// @tripsage/sync-client/vue: useWebSocketCollaboration, websocket-api.md "Client
// Integration / Vue.js Integration / Composition API Hook", on TripSync.
//
// Theory of operation
// -------------------
// The composable returns refs at once and connects in onMounted (at once when called
// outside a component: then call `disconnect()` yourself); onUnmounted stops the
// connection it opened. A TripView (framework-neutral, shared with the React hooks)
// rebuilds one immutable (frozen) snapshot per event; every ref is a shallowRef set from
// it, so Vue re-renders only what changed, and edits go through sendOptimisticUpdate,
// which queues them durably. The refs are typed read-only: setting one changes nothing. A reactive tripId (ref or
// getter) reconnects to the new trip. vue is a peer dependency; the core never imports it.
import {
  getCurrentInstance,
  inject,
  onMounted,
  provide,
  onUnmounted,
  shallowRef,
  toValue,
  watch,
  type App,
  type InjectionKey,
  type MaybeRefOrGetter,
  type Plugin,
  type Ref,
  type ShallowRef,
} from "vue";
import type { TripSync, WebSocketManager } from "../index.js";
import type { ConnectionError, ConnectionState } from "../view/connection.js";
import {
  attachTrip,
  initialTrip,
  TripView,
  type Collaborator,
  type OptimisticUpdate,
  type PendingConflict,
  type TripOptions,
  type TripSnapshot,
} from "../view/trip.js";

export type { Collaborator, OptimisticUpdate, PendingConflict, TripOptions, TripSnapshot };

export interface WebSocketCollaboration {
  isConnected: Readonly<Ref<boolean>>;
  connectionState: Readonly<Ref<ConnectionState>>;
  /** STATUS: "Synced", "Syncing", "Offline", "Conflict", "Not saved". */
  status: Readonly<Ref<string>>;
  version: Readonly<Ref<number>>;
  /** What the page shows: each field's newest queued value, else the server's. */
  fields: Readonly<Ref<Readonly<Record<string, unknown>>>>;
  activeCollaborators: Readonly<Ref<readonly Collaborator[]>>;
  /** field -> userId of another user editing it. */
  editingFields: Readonly<Ref<Readonly<Record<string, string>>>>;
  optimisticUpdates: Readonly<Ref<Readonly<Record<string, OptimisticUpdate>>>>;
  conflicts: Readonly<Ref<readonly PendingConflict[]>>;
  permissionLevel: Readonly<Ref<string | null>>;
  error: Readonly<Ref<ConnectionError | null>>;
  sendOptimisticUpdate: (fieldName: string, value: unknown) => void;
  startEditing: (fieldName: string) => void;
  stopEditing: (fieldName: string) => void;
  resolveConflict: (conflictId: string, choice: { chosenOptionId?: string; customValue?: unknown }) => void;
  /** The TripSync and manager of the current connection (null before mount). */
  trip: Readonly<ShallowRef<TripSync | null>>;
  manager: Readonly<ShallowRef<WebSocketManager | null>>;
  /** Stop now (done on unmount when called in a component's setup). */
  disconnect: () => void;
}

/** Where provideTripSage / TripSagePlugin keep the connection settings. */
export const TRIPSAGE_OPTIONS: InjectionKey<TripOptions> = Symbol("tripsage options");

/** The settings for every useWebSocketCollaboration below this component (setup only). */
export function provideTripSage(options: TripOptions): void {
  provide(TRIPSAGE_OPTIONS, { ...inject(TRIPSAGE_OPTIONS, {}), ...options });
}

/** `app.use(TripSagePlugin, {url, token})`: the settings for the whole app. */
export const TripSagePlugin: Plugin<[TripOptions]> = {
  install(app: App, options: TripOptions) {
    app.provide(TRIPSAGE_OPTIONS, options);
  },
};

/**
 * `options` default to those provided (provideTripSage, TripSagePlugin), so that the
 * spec's `useWebSocketCollaboration(tripId)` works as written inside such an app.
 */
export function useWebSocketCollaboration(
  tripId: MaybeRefOrGetter<string>,
  given?: TripOptions,
): WebSocketCollaboration {
  const provided = getCurrentInstance() ? inject(TRIPSAGE_OPTIONS, {}) : {};
  const options: TripOptions = { ...provided, ...given };
  const first = initialTrip(toValue(tripId));
  const state = {
    isConnected: shallowRef(first.isConnected),
    connectionState: shallowRef(first.connectionState),
    status: shallowRef(first.status),
    version: shallowRef(first.version),
    fields: shallowRef(first.fields),
    activeCollaborators: shallowRef(first.activeCollaborators),
    editingFields: shallowRef(first.editingFields),
    optimisticUpdates: shallowRef(first.optimisticUpdates),
    conflicts: shallowRef(first.conflicts),
    permissionLevel: shallowRef(first.permissionLevel),
    error: shallowRef(first.error),
  };
  const trip = shallowRef<TripSync | null>(null);
  const manager = shallowRef<WebSocketManager | null>(null);
  const waiting: Array<(trip: TripSync) => void> = [];
  let current: { view: TripView; close: () => void; stop: () => void } | null = null;

  const show = (s: TripSnapshot) => {
    for (const key of Object.keys(state) as Array<keyof typeof state>) {
      (state[key] as ShallowRef<unknown>).value = s[key];
    }
  };

  const disconnect = () => {
    if (!current) return;
    current.stop();
    current.view.dispose();
    current.close();
    current = null;
    trip.value = null;
    manager.value = null;
  };

  const connect = () => {
    disconnect();
    const attached = attachTrip(toValue(tripId), options);
    const view = new TripView(attached.trip, attached.manager);
    current = { view, close: attached.close, stop: view.subscribe(() => show(view.getSnapshot())) };
    trip.value = attached.trip;
    manager.value = attached.manager;
    show(view.getSnapshot());
    for (const action of waiting.splice(0)) action(attached.trip);
  };

  const run = (action: (t: TripSync) => void) => {
    if (trip.value) action(trip.value);
    else waiting.push(action);
  };

  if (getCurrentInstance()) {
    onMounted(connect);
    onUnmounted(disconnect);
  } else {
    connect();
  }
  watch(
    () => toValue(tripId),
    () => {
      if (current) connect();
    },
  );

  return {
    isConnected: state.isConnected,
    connectionState: state.connectionState,
    status: state.status,
    version: state.version,
    fields: state.fields,
    activeCollaborators: state.activeCollaborators,
    editingFields: state.editingFields,
    optimisticUpdates: state.optimisticUpdates,
    conflicts: state.conflicts,
    permissionLevel: state.permissionLevel,
    error: state.error,
    sendOptimisticUpdate: (fieldName, value) => run((t) => t.edit(fieldName, value)),
    startEditing: (fieldName) => trip.value?.editingStarted(fieldName),
    stopEditing: (fieldName) => trip.value?.editingStopped(fieldName),
    resolveConflict: (conflictId, choice) => run((t) => t.resolveConflict(conflictId, choice)),
    trip,
    manager,
    disconnect,
  };
}
