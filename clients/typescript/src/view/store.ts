// The shape both views share: one immutable snapshot at a time, listeners told of each
// new one (React's useSyncExternalStore and Vue's refs read it), and the teardown of
// what the view listens to.

/** Why the connection is down: a refused token or a final close. Cleared on the next open. */
export interface ConnectionError {
  code: string | number;
  message: string;
  retryAfter?: number;
}

/** The error of a refused authentication answer (the manager's "auth_failed"). */
export function authFailure(m: { code?: string; error?: string; retryAfter?: number }): ConnectionError {
  return { code: m.code ?? "AUTH_FAILED", message: m.error ?? "authentication failed", retryAfter: m.retryAfter };
}

/** The error of a final close (the manager's "fatal"). */
export function finalClose(f: { code: number; reason: string }): ConnectionError {
  return { code: f.code, message: f.reason || "connection closed" };
}

export class SnapshotStore<S> {
  protected snapshot!: S;
  /** What dispose() undoes: the view's listeners on the manager or trip. */
  protected readonly teardown: Array<() => void> = [];
  readonly #listeners = new Set<() => void>();

  getSnapshot = (): S => this.snapshot;

  subscribe = (listener: () => void): (() => void) => {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  };

  /** Stop listening (the manager and trip are not stopped: their owner does that). */
  dispose(): void {
    for (const off of this.teardown.splice(0)) off();
    this.#listeners.clear();
  }

  /** Make `next` the snapshot and tell every listener. */
  protected publish(next: S): void {
    this.snapshot = next;
    for (const listener of [...this.#listeners]) listener();
  }
}
