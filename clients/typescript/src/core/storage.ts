// Where the client keeps what must outlive the page: the offline queue of optimistic
// updates (UpdateQueue) and the last known state of each trip (TripSync).
//
// Theory of operation
// -------------------
// The core reads and writes synchronously (an edit is queued before `edit()` returns,
// and the page reads `value()` at once), so every adapter has the Web Storage shape:
// getItem / setItem / removeItem on strings.
//
// - localStorage (the browser default, as the page always had): durable at once.
// - MemoryStorage: the fallback where neither exists (Node), and for tests.
// - IndexedDBStorage: reads the whole object store into memory once (`open()` is async),
//   then answers from memory and writes behind: every change made in one turn of the
//   event loop goes into one readwrite transaction, in order. `flush()` resolves once
//   every change made so far is committed; a reload after that loses nothing. A tab
//   closed within the same turn as an edit may lose that edit (IndexedDB has no
//   synchronous write); localStorage has no such window, hence stays the default.
//   Each tab keeps its own copy in memory, so two tabs of one user on one trip would
//   overwrite each other's queue: IndexedDB is for one tab (or a worker) per user and
//   trip. localStorage is shared by the tabs and the queue reads it afresh on every
//   call, so several tabs are safe there.
//
// `openStorage(kind)` chooses one by name; "auto" is localStorage, else IndexedDB,
// else memory.

/** The Web Storage subset the client uses. `localStorage` is one. */
export interface StorageAdapter {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

export type StorageKind = "auto" | "memory" | "localStorage" | "indexedDB";

/** Kept in this object only: gone with the process (or page). */
export class MemoryStorage implements StorageAdapter {
  readonly #items = new Map<string, string>();

  getItem(key: string): string | null {
    return this.#items.get(key) ?? null;
  }

  setItem(key: string, value: string): void {
    this.#items.set(key, String(value));
  }

  removeItem(key: string): void {
    this.#items.delete(key);
  }

  get length(): number {
    return this.#items.size;
  }
}

export interface IndexedDBOptions {
  /** Database name (default "tripsage-sync"). */
  name?: string;
  /** Object store name (default "kv"). */
  store?: string;
  /** The IDBFactory (default globalThis.indexedDB; tests pass fake-indexeddb's). */
  indexedDB?: IDBFactory;
}

const IDB_VERSION = 1;

function request<T>(req: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

/** Memory in front, IndexedDB behind: see the header. Make one with `IndexedDBStorage.open()`. */
export class IndexedDBStorage implements StorageAdapter {
  readonly #db: IDBDatabase;
  readonly #store: string;
  readonly #items: Map<string, string>;
  /** Changes not yet in a transaction: key -> value, null for a removal. */
  #pending = new Map<string, string | null>();
  #scheduled = false;
  #written: Promise<void> = Promise.resolve();
  /** The first failed write, reported by the next flush(). */
  #failure: unknown = null;

  private constructor(db: IDBDatabase, store: string, items: Map<string, string>) {
    this.#db = db;
    this.#store = store;
    this.#items = items;
  }

  static async open(options: IndexedDBOptions = {}): Promise<IndexedDBStorage> {
    const factory = options.indexedDB ?? globalThis.indexedDB;
    if (!factory) throw new Error("no IndexedDB here: pass options.indexedDB");
    const name = options.name ?? "tripsage-sync";
    const store = options.store ?? "kv";
    const opening = factory.open(name, IDB_VERSION);
    opening.onupgradeneeded = () => {
      if (!opening.result.objectStoreNames.contains(store)) opening.result.createObjectStore(store);
    };
    const db = await request(opening);
    const tx = db.transaction(store, "readonly");
    const objects = tx.objectStore(store);
    const [keys, values] = await Promise.all([request(objects.getAllKeys()), request(objects.getAll())]);
    const items = new Map<string, string>();
    keys.forEach((key, i) => {
      const value: unknown = values[i];
      if (typeof key === "string" && typeof value === "string") items.set(key, value);
    });
    return new IndexedDBStorage(db, store, items);
  }

  getItem(key: string): string | null {
    return this.#items.get(key) ?? null;
  }

  setItem(key: string, value: string): void {
    this.#items.set(key, String(value));
    this.#change(key, String(value));
  }

  removeItem(key: string): void {
    this.#items.delete(key);
    this.#change(key, null);
  }

  /** Resolves once every change made so far is committed; rejects if one failed. */
  async flush(): Promise<void> {
    if (this.#pending.size > 0) this.#write();
    await this.#written;
    if (this.#failure !== null) {
      const failure = this.#failure;
      this.#failure = null;
      throw failure;
    }
  }

  /** Flush, then close the database (the adapter is unusable after). */
  async close(): Promise<void> {
    try {
      await this.flush();
    } finally {
      this.#db.close();
    }
  }

  #change(key: string, value: string | null): void {
    this.#pending.set(key, value);
    if (this.#scheduled) return;
    this.#scheduled = true;
    queueMicrotask(() => this.#write());
  }

  /** One transaction for the changes pending, after the previous one (order kept). */
  #write(): void {
    this.#scheduled = false;
    if (this.#pending.size === 0) return;
    const changes = this.#pending;
    this.#pending = new Map();
    const previous = this.#written;
    this.#written = previous.then(
      () =>
        new Promise<void>((resolve) => {
          const tx = this.#db.transaction(this.#store, "readwrite");
          const objects = tx.objectStore(this.#store);
          for (const [key, value] of changes) {
            if (value === null) objects.delete(key);
            else objects.put(value, key);
          }
          tx.oncomplete = () => resolve();
          tx.onerror = tx.onabort = () => {
            this.#failure ??= tx.error ?? new Error("IndexedDB write failed");
            console.warn("IndexedDB write failed", tx.error?.name);
            resolve();
          };
        }),
    );
  }
}

const shared = new MemoryStorage();

/** localStorage where there is one (and it works: Safari's private mode may throw). */
function browserStorage(): StorageAdapter | null {
  try {
    const storage = (globalThis as { localStorage?: StorageAdapter }).localStorage;
    return storage ?? null;
  } catch {
    return null;
  }
}

/**
 * The synchronous default: localStorage in browsers (what the page always used), else one
 * MemoryStorage shared by the process (Node: the queue lives as long as the process).
 */
export function defaultStorage(): StorageAdapter {
  return browserStorage() ?? shared;
}

/** A storage by name. "auto": localStorage, else IndexedDB, else memory. */
export async function openStorage(
  kind: StorageKind = "auto",
  options: IndexedDBOptions = {},
): Promise<StorageAdapter> {
  switch (kind) {
    case "memory":
      return new MemoryStorage();
    case "localStorage": {
      const storage = browserStorage();
      if (!storage) throw new Error("no localStorage here");
      return storage;
    }
    case "indexedDB":
      return IndexedDBStorage.open(options);
    case "auto": {
      const storage = browserStorage();
      if (storage) return storage;
      if (options.indexedDB ?? globalThis.indexedDB) return IndexedDBStorage.open(options);
      return new MemoryStorage();
    }
    default: {
      const never: never = kind;
      throw new Error(`unknown storage kind ${String(never)}`);
    }
  }
}
