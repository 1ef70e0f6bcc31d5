// Shared by the binding tests: a jsdom page as the globals the hooks expect (window,
// document, navigator, localStorage), trips made over HTTP, a raw JSON peer (the `ws`
// package, no code of this package: the second user), and `Signal`, which awaits a
// condition on each change it is told of, with a timeout (never a sleep).
import { JSDOM } from "jsdom";
import WebSocket from "ws";

/** Make a jsdom page the global browser environment; returns it. */
export function installDom() {
  const dom = new JSDOM("<!doctype html><html><body><div id=root></div></body></html>", {
    url: "http://localhost/",
  });
  const { window } = dom;
  Object.assign(globalThis, {
    window,
    document: window.document,
    localStorage: window.localStorage,
    HTMLElement: window.HTMLElement,
    SVGElement: window.SVGElement,
    Element: window.Element,
    Node: window.Node,
    MutationObserver: window.MutationObserver,
  });
  // Node 20 has no global navigator: the manager reads navigator.onLine.
  if (!("navigator" in globalThis)) {
    Object.defineProperty(globalThis, "navigator", { value: window.navigator, configurable: true });
  }
  return dom;
}

/** Wakes waiters when told something changed; `until` resolves once `check()` is truthy. */
export class Signal {
  #waiters = new Set();

  notify() {
    for (const waiter of [...this.#waiters]) waiter();
  }

  until(check, { timeoutMs = 5000, what = "condition" } = {}) {
    return new Promise((resolve, reject) => {
      const test = () => {
        let value;
        try {
          value = check();
        } catch (error) {
          done();
          reject(error);
          return;
        }
        if (value) {
          done();
          resolve(value);
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.#waiters.delete(test);
      };
      this.#waiters.add(test);
      test();
    });
  }
}

/** POST /api/trips as `owner`, then share it: {userId: permissionLevel}. */
export async function createTrip(server, owner, tripId, fields, share = {}) {
  const headers = { Authorization: `Bearer ${server.token(owner)}`, "Content-Type": "application/json" };
  const made = await fetch(`${server.http}/api/trips`, {
    method: "POST",
    headers,
    body: JSON.stringify({ tripId, fields }),
  });
  if (made.status !== 201) throw new Error(`POST /api/trips: ${made.status} ${await made.text()}`);
  for (const [userId, permissionLevel] of Object.entries(share)) {
    const put = await fetch(`${server.http}/api/trips/${tripId}/collaborators/${userId}`, {
      method: "PUT",
      headers,
      body: JSON.stringify({ permissionLevel }),
    });
    if (put.status !== 200) throw new Error(`PUT collaborator ${userId}: ${put.status}`);
  }
  return tripId;
}

/** A second user speaking raw JSON frames; `next(predicate)` awaits a matching event. */
export async function jsonPeer(server, userId, { name } = {}) {
  const socket = new WebSocket(`${server.ws}/ws/chat/peer-${userId}`);
  const events = [];
  const signal = new Signal();
  socket.on("message", (data) => {
    const message = JSON.parse(String(data));
    const list = message.type === "batch" ? message.payload.messages : [message];
    for (const event of list) {
      if (event.type === "connection_heartbeat") {
        socket.send(JSON.stringify({ type: "connection_heartbeat", payload: { serverTime: event.payload?.serverTime } }));
      }
      events.push(event);
    }
    signal.notify();
  });
  await new Promise((ok, fail) => {
    socket.once("open", ok);
    socket.once("error", fail);
  });
  socket.send(JSON.stringify({ token: server.token(userId, { name }), sessionId: `peer-${userId}` }));
  const taken = new Set();
  const peer = {
    events,
    /** The first event not taken yet (received or to come) matching `predicate`. */
    async next(predicate, what = "event") {
      const found = await signal.until(
        () => events.find((e) => !taken.has(e) && predicate(e)),
        { what: `${userId}: ${what}` },
      );
      taken.add(found);
      return found;
    },
    send(type, payload) {
      socket.send(JSON.stringify({ id: `${userId}-${events.length}-${Math.random()}`, type, payload }));
    },
    close() {
      socket.close(1000);
    },
  };
  await peer.next((m) => m.success === true, "authentication");
  return peer;
}
