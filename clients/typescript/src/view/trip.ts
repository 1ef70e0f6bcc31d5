// What a UI shows of one trip, framework-neutral: TripSync's state as one immutable
// snapshot (websocket-api.md "Real-time Collaboration Hook", "Collaboration Presence
// Component"), plus the field locks others hold.
//
// Theory of operation
// -------------------
// TripSync does the protocol (join, resume, optimistic queue, retries, conflicts); a
// TripView only listens to it and to the manager's trip_field_editing_start/_stop and
// rebuilds its snapshot after each event. `optimisticUpdates` follows the spec's
// shape {value, status, updateId}: an edit is "pending" while TripSync queues it, then
// keeps its outcome ("confirmed", "rejected", "rolled_back") until the field is
// edited again.
//
// One TripSync per (manager, trip): on a connection shared by several components
// `attachTrip` hands out the same TripSync to each and counts them (one join, one
// queue); the last one gone destroys it and leaves the trip.
import { STATUS, TripSync, WebSocketManager, tokenClaims, type TripSyncOptions } from "../index.js";
import { SnapshotStore, authFailure, finalClose } from "./store.js";
import {
  connectionStateOf,
  openManager,
  type ConnectionError,
  type ConnectionOptions,
  type ConnectionState,
} from "./connection.js";
import type {
  ConflictResolutionRequiredPayload,
  TripFieldEditingStartPayload,
  TripFieldEditingStopPayload,
} from "../protocol.js";

/** One entry of trip_collaborator_presence's activeCollaborators (sync/presence.py). */
export interface Collaborator {
  userId: string;
  userName?: string;
  avatarUrl?: string | null;
  lastSeen?: string;
  currentField?: string | null;
  isActive?: boolean;
  permissionLevel?: string;
  connections?: number;
}

/** trip_field_editing_start as the server sends it. */
export type FieldLock = TripFieldEditingStartPayload;

export type UpdateStatus = "pending" | "confirmed" | "rejected" | "rolled_back";

export interface OptimisticUpdate {
  value: unknown;
  status: UpdateStatus;
  updateId: string;
  /** The server's words for a refusal ("Your change to ... could not be saved: ..."). */
  message?: string;
}

/** conflict_resolution_required: a manual field waits for a choice. */
export type PendingConflict = ConflictResolutionRequiredPayload;

export interface TripSnapshot {
  tripId: string;
  /** STATUS: "Synced", "Syncing", "Offline", "Conflict", "Not saved". */
  status: string;
  isConnected: boolean;
  connectionState: ConnectionState;
  joined: boolean;
  version: number;
  /** What the page shows: each field's newest queued value, else the server's. */
  fields: Readonly<Record<string, unknown>>;
  permissionLevel: string | null;
  canEdit: boolean;
  activeCollaborators: readonly Collaborator[];
  /** field -> userId of another user editing it (advisory locks). */
  editingFields: Readonly<Record<string, string>>;
  /** field -> the lock itself, for its userName and expiresAt. */
  fieldLocks: Readonly<Record<string, FieldLock>>;
  optimisticUpdates: Readonly<Record<string, OptimisticUpdate>>;
  conflicts: readonly PendingConflict[];
  /** The join was refused (PERMISSION_DENIED), or the connection's: else null. */
  error: ConnectionError | null;
}

export interface TripOptions extends Partial<ConnectionOptions> {
  /** Share this connection instead of opening one (then url and token are not needed). */
  manager?: WebSocketManager;
  /** Keys the cached state and queue; default: the token's `sub`. */
  userId?: string;
  /** Where TripSync keeps the queue; default localStorage. */
  storage?: TripSyncOptions["storage"];
}

interface SharedTrip {
  trip: TripSync;
  users: number;
}

const shared = new WeakMap<WebSocketManager, Map<string, SharedTrip>>();

/**
 * The manager and TripSync for a trip; `close()` drops the TripSync and stops the
 * manager if it was opened here. On a shared manager the TripSync is shared too, counted:
 * the last `close()` destroys it and leaves the trip (trip_collaboration_leave), the
 * connection stays.
 */
export function attachTrip(
  tripId: string,
  options: TripOptions,
): { manager: WebSocketManager; trip: TripSync; close: () => void } {
  const userId = options.userId ?? (options.token ? tokenClaims(options.token)?.sub : undefined);
  const make = (manager: WebSocketManager): TripSync => {
    const config: Record<string, unknown> = { manager, tripId, userId: userId ?? manager.userId ?? "anonymous" };
    if (options.storage !== undefined) config.storage = options.storage;
    return new TripSync(config as unknown as TripSyncOptions);
  };
  if (options.manager) {
    const manager = options.manager;
    let trips = shared.get(manager);
    if (!trips) shared.set(manager, (trips = new Map()));
    let entry = trips.get(tripId);
    if (!entry) {
      entry = { trip: make(manager), users: 0 };
      trips.set(tripId, entry); // on an open manager, TripSync joins at once
    }
    entry.users++;
    const held = entry;
    let closed = false;
    const close = () => {
      if (closed) return;
      closed = true;
      if (--held.users > 0) return;
      trips.delete(tripId);
      held.trip.destroy();
      manager.sendIfOpen("trip_collaboration_leave", { tripId });
    };
    return { manager, trip: held.trip, close };
  }
  if (!options.url || !options.token) throw new TypeError("useTripCollaboration needs {url, token} or {manager}");
  const manager = openManager(options as ConnectionOptions);
  const trip = make(manager);
  manager.start();
  return {
    manager,
    trip,
    close: () => {
      trip.destroy();
      manager.stop();
    },
  };
}

const OUTCOME_STATUS: Readonly<Record<string, UpdateStatus>> = {
  confirmed: "confirmed",
  rejected: "rejected",
  rollback: "rolled_back",
};

/** One trip's changing state, one immutable snapshot at a time. */
export class TripView extends SnapshotStore<TripSnapshot> {
  readonly trip: TripSync;
  readonly manager: WebSocketManager;
  #outcomes = new Map<string, OptimisticUpdate>(); // field -> its last edit's outcome
  #locks = new Map<string, FieldLock>(); // field -> another user's lock
  #connectionError: ConnectionError | null = null; // auth_failed, fatal; cleared on open

  constructor(trip: TripSync, manager: WebSocketManager) {
    super();
    this.trip = trip;
    this.manager = manager;
    const refresh = () => this.#refresh();
    for (const type of ["fields", "status", "presence", "permission", "conflict", "conflict_resolved", "retrying", "denied"]) {
      this.teardown.push(trip.on(type, refresh));
    }
    this.teardown.push(
      trip.on("outcome", (o: { kind: string; field: string; entry: { updateId: string; optimisticValue: unknown }; payload: any }) => {
        this.#outcomes.set(o.field, {
          value: o.kind === "confirmed" ? o.payload?.confirmedValue ?? o.entry.optimisticValue : o.entry.optimisticValue,
          status: OUTCOME_STATUS[o.kind] ?? "rejected",
          updateId: o.entry.updateId,
          ...(o.kind === "confirmed" || !o.payload?.message ? {} : { message: String(o.payload.message) }),
        });
        this.#refresh();
      }),
      manager.on("trip_field_editing_start", (event: { payload?: TripFieldEditingStartPayload }) => {
        const p = event.payload;
        if (!p || p.tripId !== trip.tripId || p.userId === this.#ownUserId()) return;
        this.#locks.set(p.fieldName.replace(/^trip\./, ""), p);
        this.#refresh();
      }),
      manager.on("trip_field_editing_stop", (event: { payload?: TripFieldEditingStopPayload }) => {
        const p = event.payload;
        if (!p || p.tripId !== trip.tripId) return;
        const field = p.fieldName.replace(/^trip\./, "");
        if (this.#locks.get(field)?.userId === p.userId) this.#locks.delete(field);
        this.#refresh();
      }),
      manager.on("trip_collaborator_presence", () => {
        // A lock of someone who left goes with them (the server also sends the stop).
        if (this.#pruneLocks()) this.#refresh();
      }),
      manager.on("state", refresh),
      manager.on("open", () => {
        this.#connectionError = null;
        this.#refresh();
      }),
      manager.on("auth_failed", (m) => {
        this.#connectionError = authFailure(m);
        this.#refresh();
      }),
      manager.on("fatal", (f) => {
        this.#connectionError ??= finalClose(f);
        this.#refresh();
      }),
    );
    this.snapshot = this.#build();
  }

  #ownUserId(): string | null {
    return this.manager.userId ?? this.trip.userId ?? null;
  }

  #pruneLocks(): boolean {
    const present = new Set(this.trip.collaborators.map((c: Collaborator) => c.userId));
    let changed = false;
    for (const [field, lock] of this.#locks) {
      if (!present.has(lock.userId)) changed = this.#locks.delete(field) || changed;
    }
    return changed;
  }

  #refresh(): void {
    this.publish(this.#build());
  }

  #build(): TripSnapshot {
    const trip = this.trip;
    const queued = trip.queue.all() as Array<{ fieldName: string; optimisticValue: unknown; updateId: string }>;
    const names = new Set<string>([...trip.fieldNames(), ...queued.map((e) => e.fieldName)]);
    const fields: Record<string, unknown> = {};
    for (const name of names) fields[name] = trip.value(name);
    const updates: Record<string, OptimisticUpdate> = Object.fromEntries(this.#outcomes);
    for (const entry of queued) {
      updates[entry.fieldName] = { value: entry.optimisticValue, status: "pending", updateId: entry.updateId };
    }
    const editing: Record<string, string> = {};
    for (const [field, lock] of this.#locks) editing[field] = lock.userId;
    const denied = trip.error as { code?: string; message?: string } | null;
    const error = denied
      ? { code: denied.code ?? "PERMISSION_DENIED", message: denied.message ?? "" }
      : this.#connectionError;
    return Object.freeze({
      tripId: trip.tripId,
      status: trip.status,
      isConnected: this.manager.isOpen,
      connectionState: connectionStateOf(this.manager),
      joined: trip.joined,
      version: trip.version,
      fields: Object.freeze(fields),
      permissionLevel: trip.permissionLevel ?? null,
      canEdit: trip.canEdit,
      activeCollaborators: Object.freeze([...(trip.collaborators as Collaborator[])]),
      editingFields: Object.freeze(editing),
      fieldLocks: Object.freeze(Object.fromEntries(this.#locks)),
      optimisticUpdates: Object.freeze(updates),
      conflicts: Object.freeze([...(trip.conflicts.values() as Iterable<PendingConflict>)]),
      error,
    });
  }
}

/** A snapshot before any connection: what the first render shows. */
export function initialTrip(tripId: string): TripSnapshot {
  return Object.freeze({
    tripId,
    status: STATUS.OFFLINE,
    isConnected: false,
    connectionState: "connecting",
    joined: false,
    version: 0,
    fields: Object.freeze({}),
    permissionLevel: null,
    canEdit: false,
    activeCollaborators: Object.freeze([]),
    editingFields: Object.freeze({}),
    fieldLocks: Object.freeze({}),
    optimisticUpdates: Object.freeze({}),
    conflicts: Object.freeze([]),
    error: null,
  });
}
