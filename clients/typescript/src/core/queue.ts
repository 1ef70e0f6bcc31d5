// UpdateQueue: the optimistic updates not yet answered, kept in a StorageAdapter under
// one key (a JSON list, in the order they were made), so a reload, even offline, loses
// nothing. Each entry keeps its original updateId, expectedVersion and clientTimestamp,
// so a re-send is idempotent on the server ("Optimistic Updates": one outcome per
// updateId) and concurrency is judged from what the user had seen.
//
// Every call reads the storage afresh: another tab of the same user (localStorage) may
// have answered or added an entry meanwhile.
import type { StorageAdapter } from "./storage.js";

/** One optimistic update, as queued (and re-sent after a reconnect). */
export interface QueueEntry {
  updateId: string;
  tripId: string;
  fieldName: string;
  optimisticValue: unknown;
  previousValue: unknown;
  /** The trip version the edit started from; null while chained behind another. */
  expectedVersion: number | null;
  clientTimestamp: string;
  /** Put on the wire at least once (a re-send keeps the updateId). */
  sent: boolean;
  /** Waits for the outcome of an earlier update of the same field, then is rebased. */
  chained: boolean;
  /** canRetry rollbacks so far (each retry has a new updateId). */
  retries?: number;
  /** Date.now() before which a retry is not sent. */
  retryAt?: number;
  /** Retries rebased on the server's value. */
  rebases?: number;
}

export class UpdateQueue {
  storage: StorageAdapter;
  key: string;

  constructor(storage: StorageAdapter, key: string) {
    this.storage = storage;
    this.key = key;
  }

  all(): QueueEntry[] {
    try {
      const list: unknown = JSON.parse(this.storage.getItem(this.key) || "[]");
      return Array.isArray(list) ? (list as QueueEntry[]) : [];
    } catch {
      return [];
    }
  }

  get(updateId: string): QueueEntry | null {
    return this.all().find((e) => e.updateId === updateId) || null;
  }

  put(entry: QueueEntry): void {
    const list = this.all();
    const i = list.findIndex((e) => e.updateId === entry.updateId);
    if (i >= 0) list[i] = entry;
    else list.push(entry);
    this._save(list);
  }

  /** Put `entry` in the place of `updateId` (a retry keeps the queue's order). */
  replace(updateId: string, entry: QueueEntry): void {
    const list = this.all();
    const i = list.findIndex((e) => e.updateId === updateId);
    if (i >= 0) list[i] = entry;
    else list.push(entry);
    this._save(list);
  }

  remove(updateId: string): QueueEntry | null {
    const list = this.all();
    const entry = list.find((e) => e.updateId === updateId) || null;
    this._save(list.filter((e) => e.updateId !== updateId));
    return entry;
  }

  private _save(list: QueueEntry[]): void {
    if (list.length) this.storage.setItem(this.key, JSON.stringify(list));
    else this.storage.removeItem(this.key);
  }
}
