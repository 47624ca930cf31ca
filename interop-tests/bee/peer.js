'use strict'

// A live hyperbee 2.x peer for interop-tests/tests/bee.rs, driven by JSON commands on stdin; it
// prints one JSON event per line on stdout. Nothing here knows peerhost: a plain Hypercore 11
// with a default Hyperbee on it (the replication extension on, as any JS app has it).
//
//   node bee/peer.js
//
// Transport: loopback TCP wrapped in @hyperswarm/secret-stream, then `core.replicate(stream)`.
//
// Commands ({"cmd": ...}, answered by {"event": cmd, "id", "ok", ...}):
//   create {name, n}                 a writable core and the bee workload(n) on it; {key, length}
//   open {name, key}                 a sparse replica of `key` with a Hyperbee over it
//   listen                           accept TCP connections; {port}
//   connect {port}                   connect as the secret-stream initiator
//   query {name, length, gets, ranges, keys?}
//                                    wait for `length` blocks to be known, then bee.get each key
//                                    and walk each range; {length, gets, ranges, held} (with
//                                    `keys`, a walk lists the hex keys of its entries, not seqs)
//   close                            close everything and exit
//
// workload(n), the same function as in the Rust test: keys "post/NNNNNN" for i < n, values
// "value of post i" repeated (i % 4 + 1) times; the first half put in batches of 100, the rest
// one put at a time; then every key with i % 7 == 3 deleted, one delete at a time.
// Answers: a get is "SEQ KEYHEX VALUEHEX" or null, a walk the seqs of its entries, in order.

const net = require('net')
const os = require('os')
const fs = require('fs')
const path = require('path')
const readline = require('readline')
const b4a = require('b4a')
const Hypercore = require('hypercore')
const Hyperbee = require('hyperbee')
const NoiseSecretStream = require('@hyperswarm/secret-stream')

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'peerhost-bee-js-'))
process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }))
process.on('SIGTERM', () => process.exit(0))
const bees = new Map()
const streams = []
let server = null
let n = 0

const out = (o) => process.stdout.write(JSON.stringify(o) + '\n')
const fail = (msg) => {
  out({ event: 'error', message: String(msg && msg.stack ? msg.stack : msg) })
  process.exit(1)
}
process.on('unhandledRejection', fail)
setTimeout(() => fail('overall timeout'), 300000).unref()

function key(i) {
  return b4a.from('post/' + String(i).padStart(6, '0'))
}

function value(i) {
  return b4a.from(('value of post ' + i + ';').repeat((i % 4) + 1))
}

async function workload(bee, count) {
  const half = Math.floor(count / 2)
  for (let i = 0; i < half; i += 100) {
    const b = bee.batch()
    for (let j = i; j < Math.min(i + 100, half); j++) await b.put(key(j), value(j))
    await b.flush()
  }
  for (let i = half; i < count; i++) await bee.put(key(i), value(i))
  for (let i = 3; i < count; i += 7) await bee.del(key(i))
}

function bee(name) {
  const b = bees.get(name)
  if (!b) throw new Error('no bee ' + name)
  return b
}

function replicate(isInitiator, socket) {
  socket.setNoDelay(true)
  const s = new NoiseSecretStream(isInitiator, socket)
  s.on('error', (err) => out({ event: 'stream-error', message: err.message, code: err.code }))
  streams.push(s)
  for (const b of bees.values()) b.core.replicate(s)
}

function hx(b) {
  return b4a.toString(b, 'hex')
}

function rangeOpts(r) {
  const o = {}
  for (const k of ['gt', 'gte', 'lt', 'lte']) if (r[k] !== undefined && r[k] !== null) o[k] = b4a.from(r[k], 'hex')
  if (r.reverse) o.reverse = true
  if (r.limit !== undefined && r.limit !== null) o.limit = r.limit
  return o
}

async function run(m) {
  switch (m.cmd) {
    case 'create': {
      const core = new Hypercore(path.join(dir, 'core-' + n++))
      const b = new Hyperbee(core)
      await b.ready()
      await workload(b, m.n)
      bees.set(m.name, b)
      return { key: hx(core.key), length: core.length }
    }
    case 'open': {
      const core = new Hypercore(path.join(dir, 'core-' + n++), b4a.from(m.key, 'hex'))
      const b = new Hyperbee(core)
      await b.ready()
      bees.set(m.name, b)
      for (const s of streams) core.replicate(s)
      return {}
    }
    case 'listen': {
      server = net.createServer((socket) => replicate(false, socket))
      await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
      return { port: server.address().port }
    }
    case 'connect': {
      replicate(true, net.connect(m.port, '127.0.0.1'))
      return {}
    }
    case 'query': {
      const b = bee(m.name)
      while (b.core.length < m.length) await b.core.update({ wait: true })
      const gets = []
      for (const k of m.gets) {
        const e = await b.get(b4a.from(k, 'hex'))
        gets.push(e ? e.seq + ' ' + hx(e.key) + ' ' + (e.value === null ? '-' : hx(e.value)) : null)
      }
      const ranges = []
      for (const r of m.ranges) {
        const seqs = []
        for await (const e of b.createReadStream(rangeOpts(r))) seqs.push(m.keys ? hx(e.key) : e.seq)
        ranges.push(seqs.join(' '))
      }
      let held = 0
      for (let i = 0; i < b.core.length; i++) if (await b.core.has(i)) held++
      return { length: b.core.length, gets, ranges, held }
    }
    case 'close': {
      for (const s of streams) s.destroy()
      if (server) server.close()
      for (const b of bees.values()) await b.close()
      out({ event: 'close', id: m.id, ok: true })
      process.exit(0)
    }
    default:
      throw new Error('unknown command ' + m.cmd)
  }
}

// Commands run one after the other, in order.
let chain = Promise.resolve()
readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const m = JSON.parse(line)
  chain = chain.then(async () => {
    try {
      out({ event: m.cmd, id: m.id, ok: true, ...(await run(m)) })
    } catch (err) {
      out({ event: m.cmd, id: m.id, ok: false, message: err.stack || err.message })
    }
  })
})
out({ event: 'ready' })
