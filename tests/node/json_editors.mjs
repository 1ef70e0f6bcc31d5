// A cheap load generator for the benchmarks (bench/trip_updates.py, bench/cluster.py
// with --node): JSON editors on /ws/chat, each sending optimistic updates back to back
// (the next after the previous outcome), as bench/trip_updates.py's Python workers do,
// at a fraction of their CPU per update.
//
//   node json_editors.mjs <port>     then on stdin, one JSON line per step:
//   {"editors": [[user, trip, token], ...], "updates": N, "features": [...]}
//   -> prints "ready" once every editor has joined its trip;
//   "go"    -> runs, prints {"start": ms, "end": ms, "latencies": [ms, ...]} (epoch ms);
//   "close" -> closes every socket and exits.
// Used by hand (bench); numbers go in notes, never in tests.
import { createInterface } from 'node:readline'
import WebSocket from 'ws'

const port = Number(process.argv[2])
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]()
const next = async () => (await lines.next()).value
const now = () => performance.timeOrigin + performance.now()
const OUTCOMES = new Set([
  'optimistic_update_confirmed', 'optimistic_update_rejected', 'optimistic_update_rollback',
])

class Editor {
  constructor (user, trip, token, features) {
    this.user = user
    this.trip = trip
    this.version = 1
    this.latencies = []
    this.waiting = null // [types, resolve]
    this.token = token
    this.features = features
  }

  received (message) {
    if (message.type === 'batch') {
      for (const inner of message.payload.messages) this.received(inner)
      return
    }
    if (message.type === 'trip_update_broadcast') {
      this.version = Math.max(this.version, message.payload.version)
    }
    if (this.waiting && this.waiting[0].has(message.type)) {
      const [, resolve] = this.waiting
      this.waiting = null
      resolve(message)
    }
  }

  recv (...types) {
    return new Promise((resolve) => { this.waiting = [new Set(types), resolve] })
  }

  async join () {
    this.ws = new WebSocket(`ws://127.0.0.1:${port}/ws/chat/bench-${this.user}`, { perMessageDeflate: false })
    this.ws.on('message', (data) => this.received(JSON.parse(data)))
    const established = this.recv('connection_established')
    await new Promise((resolve, reject) => {
      this.ws.once('open', resolve)
      this.ws.once('error', reject)
    })
    this.ws.send(JSON.stringify({ token: this.token, features: this.features }))
    await established
    const started = this.recv('collaboration_session_started')
    this.ws.send(JSON.stringify({ type: 'collaboration_session_start', payload: { tripId: this.trip } }))
    await started
  }

  async run (updates) {
    for (let i = 0; i < updates; i++) {
      const sent = now()
      const outcome = this.recv(...OUTCOMES)
      this.ws.send(JSON.stringify({
        type: 'optimistic_update_start',
        payload: {
          updateId: `${this.user}-${i}`,
          tripId: this.trip,
          fieldName: `f_${this.user}`,
          optimisticValue: i,
          expectedVersion: this.version,
          clientTimestamp: new Date().toISOString(),
        },
      }))
      const answer = await outcome
      if (answer.type !== 'optimistic_update_confirmed') {
        console.error(`unexpected outcome: ${JSON.stringify(answer)}`)
        process.exit(1)
      }
      this.latencies.push(now() - sent)
      this.version = Math.max(this.version, answer.payload.serverVersion)
    }
  }
}

const plan = JSON.parse(await next())
const editors = plan.editors.map(([user, trip, token]) => new Editor(user, trip, token, plan.features || []))
for (const editor of editors) await editor.join()
console.log('ready')
if ((await next()) !== 'go') process.exit(1)
const start = now()
await Promise.all(editors.map((editor) => editor.run(plan.updates)))
const end = now()
console.log(JSON.stringify({ start, end, latencies: editors.flatMap((e) => e.latencies) }))
await next() // "close"
for (const editor of editors) editor.ws.close()
process.exit(0)
