// A stock y-websocket peer that makes N small transactions as fast as it can
// (one update message each), then waits until the server has sent everything back.
//
//   node burst.mjs <ws://host:port/ws/yjs> <tripId> <token> <N>
//
// Prints {transactions, seconds, closes} when all is sent, then {closes} and exits on a
// line on stdin.
// Used by hand (bench) for issue 10 item 13: a busy writer must never be cut.
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'

const [url, tripId, token, n] = process.argv.slice(2)
const count = Number(n)
const doc = new Y.Doc()
const trip = doc.getMap('trip')
const provider = new WebsocketProvider(url, tripId, doc, {
  params: { token }, WebSocketPolyfill: WebSocket, disableBc: true,
})
provider.awareness.setLocalState(null)
const closes = []
provider.on('connection-close', (e) => { if (e) closes.push({ code: e.code, reason: e.reason }) })
await new Promise((resolve) => provider.once('sync', resolve))
const started = Date.now()
for (let i = 0; i < count; i++) {
  trip.set(`k${i % 50}`, i)
  if (i % 500 === 0) await new Promise((resolve) => setImmediate(resolve))
}
// Report once everything left this process, then stay connected until stdin says so:
// closing with unread input would reset the connection and lose what is still in flight.
while (provider.ws && provider.ws.bufferedAmount > 0) await new Promise((r) => setTimeout(r, 50))
const seconds = (Date.now() - started) / 1000
process.stdout.write(JSON.stringify({ transactions: count, seconds, closes }) + '\n')
process.stdin.once('data', () => {
  process.stdout.write(JSON.stringify({ closes }) + '\n')
  provider.destroy()
  process.exit(0)
})
