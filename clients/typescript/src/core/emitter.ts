// A minimal typed event emitter: `on` returns its own unsubscribe; a listener that throws
// is logged and does not stop the others (one broken view never breaks the sync).

/* eslint-disable @typescript-eslint/no-explicit-any */
type Listener = (data: any) => void;

/**
 * Events maps an event name to the value its listeners get. An event map with an index
 * signature (`[type: string]: unknown`) also accepts names known only at run time.
 */
export class Emitter<Events extends object = Record<string, unknown>> {
  #listeners = new Map<PropertyKey, Listener[]>();

  on<K extends keyof Events & string>(type: K, callback: (data: Events[K]) => void): () => void {
    let list = this.#listeners.get(type);
    if (!list) this.#listeners.set(type, (list = []));
    list.push(callback);
    return () => this.off(type, callback);
  }

  off<K extends keyof Events & string>(type: K, callback: (data: Events[K]) => void): void {
    const list = this.#listeners.get(type) || [];
    const i = list.indexOf(callback);
    if (i >= 0) list.splice(i, 1);
  }

  emit<K extends keyof Events & string>(type: K, data: Events[K]): void {
    for (const callback of [...(this.#listeners.get(type) || [])]) {
      try {
        callback(data);
      } catch (error) {
        console.error(`listener of ${type} failed`, error);
      }
    }
  }
}
