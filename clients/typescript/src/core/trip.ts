// TripSync: one trip's state, websocket-api.md "Real-time Collaboration", "Optimistic
// Updates", "Conflict Resolution".
//
// Theory of operation
// -------------------
// On every (re)connection it joins (collaboration_session_start); when it already knew
// a version it asks for what it missed (sync_request {tripId, sinceVersion}:
// trip_update_broadcast replays or a trip_snapshot, then sync_complete) before
// re-sending the queue. Each field keeps the version of its last change, so live and
// replayed changes may arrive in any order. At most one update per field is in flight;
// later edits of that field wait and are rebased on its outcome.
//
// One outcome per edit: an entry leaves the UpdateQueue at its first outcome
// (confirmed, rejected, or a final rollback), and only an outcome that removed an entry
// is reported ("outcome"); the server answers a re-sent updateId with the outcome it
// stored, which then finds no entry and is not reported again.
//
// A rollback the server marks `canRetry` (rate_limited, server_error, ...) is retried
// under a fresh updateId (the server keeps the rollback as the old id's outcome) after a
// capped, jittered backoff of at least its `retryAfter` ms, for as long as it takes: a
// transient refusal never drops an edit. When the reason says our base was wrong, the
// retry is rebased on the server's value, a few times at most.
//
// An edit made before the trip was loaded says so: expectedVersion 0 and previousValue
// null, which the server treats as concurrent with everything.
import { Emitter } from "./emitter.js";
import type { EventOf, WebSocketManager } from "./manager.js";
import { UpdateQueue, type QueueEntry } from "./queue.js";
import { defaultStorage, type StorageAdapter } from "./storage.js";
import { STATUS, newId, type Status } from "./util.js";
import type { ServerEventMap } from "../protocol.js";

const EDITORS = new Set(["editor", "owner"]);
// Retrying a rollback the server marks canRetry: 250 ms, 500 ms, 1 s ... at most 15 s
// apart, never sooner than the server's retryAfter, plus up to a quarter more at random
// so that a queue of refused edits does not return as one burst.
const RETRY_BASE_DELAY_MS = 250;
const RETRY_MAX_DELAY_MS = 15000;
// Rollback reasons that say the update's base was wrong (not the value): the retry
// starts from the server's value (rollbackToValue) at our version, at most MAX_REBASES
// times (a base that keeps failing is not transient).
const MAX_REBASES = 3;
// At most this many updates on the wire at once, and none while the server's rate limit
// asks us to wait: a long offline queue never earns the close for "ten refusals in a
// row" (README "Rate limits").
const MAX_INFLIGHT_UPDATES = 8;
const REBASE_REASONS = new Set(["invalid_expected_version", "stale_previous_value", "history_unavailable"]);
// Fields the server merges as text (README "Trips"): a rebase keeps others' text.
const TEXT_FIELDS = new Set(["notes"]);

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a ?? null) === JSON.stringify(b ?? null);
}

/**
 * Our change `base -> ours` carried over onto `theirs` (the server's value now), for a
 * retry after the server refused our base. Scalars: ours wins (the server's
 * last-write-wins still orders it). Lists: the items we added are appended and those we
 * removed are removed, the rest is theirs. Text: the one span we changed is replaced
 * where its context is found in theirs, else our inserted text is appended on a line of
 * its own.
 */
export function rebaseValue(field: string, base: unknown, ours: unknown, theirs: unknown): unknown {
  if (sameJson(base, theirs)) return ours;
  if (Array.isArray(ours) && Array.isArray(theirs)) {
    const before = Array.isArray(base) ? base.map((v) => JSON.stringify(v)) : [];
    const after = ours.map((v) => JSON.stringify(v));
    const removed = [...before];
    const added: string[] = [];
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
    return [...result, ...added].map((v) => JSON.parse(v) as unknown);
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
    )
      end++;
    const removed = old.slice(start, old.length - end);
    const inserted = ours.slice(start, ours.length - end);
    const prefix = old.slice(0, start);
    const suffix = old.slice(old.length - end);
    let at = -1;
    if (old && theirs.startsWith(prefix) && theirs.slice(start).startsWith(removed)) at = start;
    else if (
      old &&
      theirs.endsWith(suffix) &&
      theirs.length - end - removed.length >= 0 &&
      theirs.slice(0, theirs.length - end).endsWith(removed)
    )
      at = theirs.length - end - removed.length;
    if (at >= 0) return theirs.slice(0, at) + inserted + theirs.slice(at + removed.length);
    if (!inserted) return theirs;
    return theirs && !theirs.endsWith("\n") ? `${theirs}\n${inserted}` : theirs + inserted;
  }
  return ours;
}

export type OutcomeKind = "confirmed" | "rejected" | "rollback";

/** The fields of the outcome payloads TripSync reads ("Optimistic Update Flow"). */
export interface OutcomePayload {
  updateId: string;
  fieldName?: string;
  confirmedValue?: unknown;
  serverVersion?: number;
  currentServerValue?: unknown;
  currentServerVersion?: number;
  conflictId?: string | null;
  rollbackReason?: string;
  rollbackToValue?: unknown;
  canRetry?: boolean;
  retryAfter?: number | null;
  [key: string]: unknown;
}

export interface FieldsChange {
  names: string[];
  local?: boolean;
  updatedBy?: unknown;
  replayed?: boolean;
}

export interface Outcome {
  kind: OutcomeKind;
  field: string;
  entry: QueueEntry;
  payload: OutcomePayload;
}

export interface Unsaved {
  kind: OutcomeKind;
  payload: OutcomePayload;
}

/** A collaborator as trip_collaborator_presence lists them. */
export interface Collaborator {
  userId: string;
  [key: string]: unknown;
}

export interface TripEvents {
  fields: FieldsChange;
  status: Status;
  presence: Collaborator[];
  editing: unknown;
  notice: { kind: string; payload: unknown };
  conflict: unknown;
  conflict_resolved: unknown;
  outcome: Outcome;
  retrying: { field: string; attempt: number; delay: number; payload: OutcomePayload };
  permission: string | null;
  denied: unknown;
  [type: string]: unknown;
}

export interface TripSyncOptions {
  manager: WebSocketManager;
  tripId: string;
  userId: string;
  /** Where the queue and the trip's last state live (default: localStorage, else memory). */
  storage?: StorageAdapter;
}

interface CachedTrip {
  version?: number;
  fields?: Record<string, unknown>;
  fieldVersions?: Record<string, number>;
  permissionLevel?: string | null;
  manualFields?: string[];
}

export class TripSync extends Emitter<TripEvents> {
  manager: WebSocketManager;
  tripId: string;
  userId: string;
  storage: StorageAdapter;
  stateKey: string;
  queue: UpdateQueue;
  version: number;
  server: Record<string, unknown>;
  fieldVersions: Record<string, number>;
  permissionLevel: string | null;
  manualFields: string[];
  joined = false;
  syncing = false;
  resuming = false;
  inflight = new Set<string>();
  collaborators: Collaborator[] = [];
  conflicts = new Map<string, unknown>();
  awaitingResolution = new Map<string, string>(); // conflictId -> field: our edit joined a manual conflict
  unsaved = new Map<string, Unsaved>(); // field -> our edit was rolled back or rejected
  error: unknown = null;
  private _retryTimer: ReturnType<typeof setTimeout> | undefined = undefined;
  private _pausedUntil = 0; // Date.now() until which the rate limit holds our updates
  private _joinMessageId: string | null = null;
  private _joinTimer: ReturnType<typeof setTimeout> | undefined = undefined;
  private readonly _unsubscribe: Array<() => void> = [];

  constructor({ manager, tripId, userId, storage = defaultStorage() }: TripSyncOptions) {
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

    const subscribe = (off: () => void): void => {
      this._unsubscribe.push(off);
    };
    const on = <K extends keyof ServerEventMap & string>(
      type: K,
      handler: (p: ServerEventMap[K], event: EventOf<K>) => void,
    ): void =>
      subscribe(
        manager.on(type, (data) => {
          const event = data as EventOf<K>;
          const p = (event.payload || {}) as ServerEventMap[K];
          const trip = (p as { tripId?: unknown }).tripId;
          if (trip === undefined || trip === tripId) handler(p, event);
        }),
      );
    subscribe(manager.on("open", () => this._onOpen()));
    subscribe(manager.on("resumed", () => this._flush())); // the same connection: still joined
    subscribe(manager.on("state", () => this._status()));
    on("collaboration_session_started", (p) => this._onSessionStarted(p));
    on("trip_update_broadcast", (p) => this._onChange(p));
    on("trip_snapshot", (p) => this._onSnapshot(p));
    on("sync_complete", (p) => this._onSyncComplete(p));
    on("optimistic_update_confirmed", (p) => this._onOutcome("confirmed", p));
    on("optimistic_update_rejected", (p) => this._onOutcome("rejected", p));
    on("optimistic_update_rollback", (p) => this._onOutcome("rollback", p));
    on("trip_collaborator_presence", (p) => {
      this.collaborators = (p.activeCollaborators || []) as Collaborator[];
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
    subscribe(manager.on("error", (event) => this._onError((event as EventOf<"error">).payload || {})));
    // It joins on each "open"; made on a manager that is open already, it joins now.
    if (manager.isOpen) this._onOpen();
  }

  /** Stop listening to the manager and drop the timers (the queue stays in storage). */
  destroy(): void {
    for (const off of this._unsubscribe.splice(0)) off();
    clearTimeout(this._retryTimer);
    clearTimeout(this._joinTimer);
  }

  // -- reading ------------------------------------------------------------------

  get canEdit(): boolean {
    return this.permissionLevel !== null && EDITORS.has(this.permissionLevel);
  }

  get loaded(): boolean {
    return this.version > 0;
  }

  /** What the page shows: the newest queued value of the field, else the server's. */
  value(field: string): unknown {
    const entries = this.queue.all().filter((e) => e.fieldName === field);
    const last = entries[entries.length - 1];
    if (last) return last.optimisticValue;
    return this.server[field] ?? null;
  }

  serverValue(field: string): unknown {
    return this.server[field] ?? null;
  }

  fieldNames(): string[] {
    return Object.keys(this.server);
  }

  isPending(field: string): boolean {
    return this.queue.all().some((e) => e.fieldName === field);
  }

  get pendingCount(): number {
    return this.queue.all().length;
  }

  /** "Synced" only when every edit of ours has landed and no conflict waits. */
  get status(): Status {
    if (!this.manager.isOpen) return STATUS.OFFLINE;
    if (this.conflicts.size > 0 || this.awaitingResolution.size > 0) return STATUS.CONFLICT;
    if (this.unsaved.size > 0) return STATUS.NOT_SAVED;
    if (!this.joined || this.syncing || this.pendingCount > 0) return STATUS.SYNCING;
    return STATUS.SYNCED;
  }

  /** The user has read why an edit was not saved. */
  dismissUnsaved(): void {
    this.unsaved.clear();
    this._status();
  }

  // -- writing ------------------------------------------------------------------

  /**
   * An optimistic edit: shown at once, queued durably, sent when connected. `base`
   * ({value, version}) is what the edit started from (the page captures it at the first
   * keystroke); by default the field's current server value.
   */
  edit(field: string, value: unknown, base: { value: unknown; version: number | null } | null = null): void {
    const entries = this.queue.all().filter((e) => e.fieldName === field);
    const last = entries[entries.length - 1];
    if (last && !last.sent) {
      // Not on the wire yet: one update carries the newest value. Only the field's last
      // entry may take it: a retry waiting for its backoff can have a chained edit
      // behind it, which would land after it and put the older value back.
      last.optimisticValue = value;
      last.clientTimestamp = new Date().toISOString();
      this.queue.put(last);
    } else {
      const behind = last !== undefined; // an update of this field is in flight
      const start = last
        ? { value: last.optimisticValue, version: null }
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

  editingStarted(field: string): void {
    if (this.joined && this.canEdit) {
      this.manager.sendIfOpen("trip_field_editing_start", {
        tripId: this.tripId,
        fieldName: field,
        fieldPath: `trip.${field}`,
      });
    }
  }

  editingStopped(field: string): void {
    if (this.joined && this.canEdit) {
      this.manager.sendIfOpen("trip_field_editing_stop", { tripId: this.tripId, fieldName: field });
    }
  }

  resolveConflict(conflictId: string, choice: object): void {
    const payload = { conflictId, ...choice };
    this.manager.sendMessage("conflict_resolution_submit", payload);
  }

  // -- the protocol ---------------------------------------------------------------

  private _onOpen(): void {
    this.joined = false;
    this.syncing = false;
    this.inflight.clear();
    this.resuming = this.loaded;
    this._join();
    this._status();
  }

  private _join(): void {
    const message = this.manager.sendMessage("collaboration_session_start", {
      tripId: this.tripId,
      features: ["real_time_editing", "typing_indicators"],
    });
    this._joinMessageId = message.id;
  }

  private _onSessionStarted(p: ServerEventMap["collaboration_session_started"]): void {
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

  private _applyFields(fields: Record<string, unknown>, version: number): void {
    const names: string[] = [];
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

  private _onChange(p: ServerEventMap["trip_update_broadcast"]): void {
    const names: string[] = [];
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

  private _onSnapshot(p: ServerEventMap["trip_snapshot"]): void {
    if (p.reason === "unknown_version") {
      // We were ahead of the server (its data was restored): start from its copy.
      this.version = 0;
      this.fieldVersions = {};
    }
    this._applyFields(p.fields || {}, p.version);
  }

  private _onSyncComplete(p: ServerEventMap["sync_complete"]): void {
    this.version = Math.max(this.version, p.version || 0);
    this.syncing = false;
    this.resuming = false;
    this._save();
    this._flush();
    this._status();
  }

  private _flush(): void {
    if (!this.manager.isOpen || !this.joined || this.syncing) return;
    const busy = new Set<string>();
    const now = Date.now();
    let wakeAt = now < this._pausedUntil ? this._pausedUntil : Infinity;
    for (const entry of this.queue.all()) {
      if (busy.has(entry.fieldName)) continue; // one in flight per field
      busy.add(entry.fieldName);
      if (this.inflight.has(entry.updateId)) continue;
      if (now < this._pausedUntil || this.inflight.size >= MAX_INFLIGHT_UPDATES) continue;
      if (entry.retryAt !== undefined && entry.retryAt > now) {
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

  private _onOutcome(kind: OutcomeKind, payload: unknown): void {
    const p = payload as OutcomePayload;
    this.inflight.delete(p.updateId);
    const queued = this.queue.get(p.updateId);
    const rebase = REBASE_REASONS.has(p.rollbackReason ?? "");
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
  private _retry(entry: QueueEntry, p: OutcomePayload): void {
    const retries = (entry.retries || 0) + 1;
    const backoff = Math.min(RETRY_MAX_DELAY_MS, RETRY_BASE_DELAY_MS * 2 ** Math.min(retries - 1, 16));
    const floor = Math.max(backoff, Number(p.retryAfter) || 0); // retryAfter is in ms here
    const delay = Math.round(floor * (1 + Math.random() / 4));
    if (p.rollbackReason === "rate_limited") {
      this._pausedUntil = Math.max(this._pausedUntil, Date.now() + floor);
    }
    const next: QueueEntry = { ...entry, updateId: newId("upd"), sent: false, retries, retryAt: Date.now() + delay };
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
    this._flush(); // sets the timer for the retry
  }

  private _setServer(field: string, value: unknown, version: unknown): void {
    if (typeof version !== "number") return;
    if ((this.fieldVersions[field] || 0) <= version) {
      this.server[field] = value;
      this.fieldVersions[field] = version;
    }
    this.version = Math.max(this.version, version);
  }

  private _onResolved(p: ServerEventMap["conflict_resolved"]): void {
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

  private _onPermissionChange(p: ServerEventMap["trip_permission_change"]): void {
    if (p.targetUserId !== this.userId) return;
    this.permissionLevel = p.newPermission;
    this._save();
    this.emit("permission", this.permissionLevel);
  }

  private _onError(p: Partial<ServerEventMap["error"]>): void {
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

  private _status(): void {
    this.emit("status", this.status);
  }

  private _load(): CachedTrip {
    try {
      return (JSON.parse(this.storage.getItem(this.stateKey) || "{}") as CachedTrip | null) || {};
    } catch {
      return {};
    }
  }

  private _save(): void {
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
