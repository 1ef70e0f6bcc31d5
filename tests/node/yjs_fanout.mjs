// The Yjs fan-out load for bench/cluster.py: light y-websocket clients of one trip, spread
// over the servers' URLs (client i on urls[i % n]); `writers` of them edit, every client
// receives. A writer's edit is one transaction setting one key of the root map `trip`;
// it sends the next once every other client has received the previous one (closed loop:
// the servers are kept busy, never flooded), `edits` times.
//
//   node yjs_fanout.mjs      then on stdin, one JSON line per step:
//   {"urls": [...], "trip": id, "tokens": [...], "writers": W, "edits": M, "oneEntry": bool}
//   -> prints "ready" once every client has synced;
//   "go"    -> runs, prints {"start": ms, "end": ms, "deliveries": n, "latencies": [ms...]}
//              (a latency: from an edit to the last client receiving it);
//   "close" -> closes every socket and exits.
// Clients are "light": they answer the sync protocol and find the keys in what they are
// sent without keeping a document, so that the load generator costs little per delivery.
// Used by hand (bench); numbers go in notes, never in tests.
import { createInterface } from 'node:readline'
import * as Y from 'yjs'
import * as encoding from 'lib0/encoding'
import * as decoding from 'lib0/decoding'
import WebSocket from 'ws'

const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]()
const next = async () => (await lines.next()).value
const now = () => performance.timeOrigin + performance.now()
const KEY = /w\d+e\d+/g

const plan = JSON.parse(await next())
const pending = new Map() // key -> {sent, left, done}
let deliveries = 0

function message (write) {
  const e = encoding.createEncoder()
  write(e)
  return encoding.toUint8Array(e)
}

class Light {
  constructor (index, url, token) {
    this.index = index
    this.doc = new Y.Doc() // only this client's own edits
    this.map = this.doc.getMap('trip')
    this.ws = new WebSocket(`${url}/${plan.trip}?token=${encodeURIComponent(token)}`, { perMessageDeflate: false })
    this.ws.binaryType = 'nodebuffer'
    this.synced = new Promise((resolve) => { this.onSynced = resolve })
    this.ws.on('open', () => this.ws.send(message((e) => {
      encoding.writeVarUint(e, 0)
      encoding.writeVarUint(e, 0)
      encoding.writeVarUint8Array(e, Y.encodeStateVector(this.doc))
    })))
    this.ws.on('message', (data) => this.received(data))
    this.doc.on('update', (update) => this.ws.send(message((e) => {
      encoding.writeVarUint(e, 0)
      encoding.writeVarUint(e, 2)
      encoding.writeVarUint8Array(e, update)
    })))
  }

  received (data) {
    const d = decoding.createDecoder(data)
    if (decoding.readVarUint(d) !== 0) return // awareness and the rest: not counted
    const step = decoding.readVarUint(d)
    if (step === 0) { // the server asks for what we have
      const vector = decoding.readVarUint8Array(d)
      this.ws.send(message((e) => {
        encoding.writeVarUint(e, 0)
        encoding.writeVarUint(e, 1)
        encoding.writeVarUint8Array(e, Y.encodeStateAsUpdate(this.doc, vector))
      }))
      return
    }
    if (step === 1) this.onSynced()
    const seen = now()
    for (const key of data.latin1Slice(d.pos, data.length).match(KEY) || []) {
      const edit = pending.get(key)
      if (edit === undefined) continue
      deliveries++
      if (--edit.left === 0) {
        pending.delete(key)
        edit.done(seen - edit.sent)
      }
    }
  }

  async write (writer, edits, latencies) {
    for (let i = 0; i < edits; i++) {
      const key = `w${writer}e${i}`
      const delivered = new Promise((resolve) => {
        pending.set(key, { sent: now(), left: clients.length - 1, done: resolve })
      })
      this.map.set(key, i)
      latencies.push(await delivered)
    }
  }
}

// Writers on the first server alone (plan.oneEntry), or spread like everyone else.
const urlOf = (i) => plan.urls[plan.oneEntry && i < plan.writers ? 0 : i % plan.urls.length]
const clients = plan.tokens.map((token, i) => new Light(i, urlOf(i), token))
await Promise.all(clients.map((c) => c.synced))
console.log('ready')
if ((await next()) !== 'go') process.exit(1)
const latencies = []
const start = now()
await Promise.all(clients.slice(0, plan.writers).map((c, w) => c.write(w, plan.edits, latencies)))
const end = now()
console.log(JSON.stringify({ start, end, deliveries, latencies }))
await next() // "close"
for (const client of clients) client.ws.close()
process.exit(0)
