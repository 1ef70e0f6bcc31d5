// A stock Yjs peer (yjs + y-websocket + ws) driven by tests/api/test_yjs.py over stdin/stdout.
//
//   node peer.mjs <ws://host:port/ws/yjs> <tripId> <token> [name]
//
// Commands, one JSON object a line on stdin:
//   {"cmd": "set", "key": k, "value": v}            trip.set(k, v)
//   {"cmd": "delete", "key": k}                     trip.delete(k)
//   {"cmd": "insertText", "index": i, "text": s}    trip.get('notes').insert(i, s)
//   {"cmd": "push", "key": k, "value": v}           trip.get(k).push([v])
//   {"cmd": "newText", "key": k}                    trip.set(k, new Y.Text('x')) (off-schema)
//   {"cmd": "awareness", "state": {...}}            awareness.setLocalState(state)
//   {"cmd": "disconnect"} / {"cmd": "connect"}      provider.disconnect() / provider.connect()
//   {"cmd": "token", "token": t}                    params.token = t, then connect() (after 4401)
//   {"cmd": "state"}                                prints a "doc" event now
//   {"cmd": "exit"}
// Events, one JSON object a line on stdout: status, sync, closed (code, reason), denied
// (reason: y-websocket's console warning for an auth "permission denied" message), terminal
// (the provider gave up reconnecting),
// doc (trip: the Y.Map 'trip' as JSON, after every change), awareness (states: clientID -> state).
// No adapter: the provider is used exactly as an application would use it.
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'
import { createInterface } from 'node:readline'

const [url, tripId, token] = process.argv.slice(2)
const out = (event) => process.stdout.write(JSON.stringify(event) + '\n')

const warn = console.warn
console.warn = (...args) => {
  const text = args.join(' ')
  if (text.startsWith('Permission denied')) out({ event: 'denied', reason: text.split('\n').slice(1).join('\n') })
  else warn(...args)
}

const doc = new Y.Doc()
const trip = doc.getMap('trip')
const provider = new WebsocketProvider(url, tripId, doc, {
  params: { token }, WebSocketPolyfill: WebSocket, disableBc: true, maxBackoffTime: 500
})
provider.awareness.setLocalState(null)

const emitDoc = () => out({ event: 'doc', trip: trip.toJSON(), clientID: doc.clientID })
provider.on('status', ({ status }) => out({ event: 'status', status }))
provider.on('sync', (synced) => { out({ event: 'sync', synced }); emitDoc() })
provider.on('connection-close', (e) => { if (e) out({ event: 'closed', code: e.code, reason: e.reason }) })
// y-websocket's own word that it stopped reconnecting (close codes 4400-4499)
provider.on('closed', (e) => out({ event: 'terminal', code: e.code, reason: e.reason }))
doc.on('update', emitDoc)
provider.awareness.on('change', () => {
  const states = {}
  provider.awareness.getStates().forEach((state, id) => { if (id !== doc.clientID) states[id] = state })
  out({ event: 'awareness', states })
})

createInterface({ input: process.stdin }).on('line', (line) => {
  const c = JSON.parse(line)
  switch (c.cmd) {
    case 'set': trip.set(c.key, c.value); break
    case 'delete': trip.delete(c.key); break
    case 'insertText': trip.get('notes').insert(c.index, c.text); break
    case 'push': trip.get(c.key).push([c.value]); break
    case 'newText': trip.set(c.key, new Y.Text('x')); break
    case 'awareness': provider.awareness.setLocalState(c.state); break
    case 'disconnect': provider.disconnect(); break
    case 'connect': provider.connect(); break
    case 'token': provider.params.token = c.token; provider.connect(); break
    case 'state': emitDoc(); break
    case 'exit': provider.destroy(); setTimeout(() => process.exit(0), 50); break
    default: out({ event: 'error', message: `unknown command ${c.cmd}` })
  }
})
