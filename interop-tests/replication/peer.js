'use strict'

// A live hypercore 11 / corestore 7 peer for interop-tests/tests/replication.rs, driven by JSON
// commands on stdin; it prints one JSON event per line on stdout.
//
//   node replication/peer.js [--store]
//
// Without --store the peer holds plain Hypercores (one per `create`/`open`); with --store one
// Corestore 7 holds them (`store.get({ name })` / `store.get({ key })`) and every connection is
// replicated with `store.replicate(stream)`, the way corestore multiplexes many cores.
// Transport: loopback TCP wrapped in @hyperswarm/secret-stream (`new NoiseSecretStream(isInitiator,
// socket)`), then `core.replicate(stream)` / `store.replicate(stream)`.
//
// Commands ({"cmd": ...}):
//   create {name, compat, blocks, size}  a writable core with `blocks` blocks of block(i, size)
//   open {name, key}                     a (sparse) reader of `key`
//   append {name, blocks, size, salt}    append `blocks` more blocks (block(i, size, salt))
//   truncate {name, length}              truncate (a new fork)
//   listen                               accept TCP connections; event {port}
//   connect {port}                       connect as the secret-stream initiator
//   download {name, start, end}          core.download({start, end}).done()
//   get {name, index}                    core.get(index); checks the content
//   update {name}                        core.update({ wait: true }); event {length}
//   wait {name, length, fork}            wait until core.length >= length and core.fork >= fork
//   check {name, start, end, size}       every block in start..end is held and equals block(i)
//   peers {name, count}                  wait until the core has `count` peers (default 1)
//   info {name}                          {length, fork, contiguousLength}
//   close                                close everything and exit
//
// Block contents are block(i, size, salt): `size` bytes of ((i + salt) & 255) with i as u32le in
// front (the same function is in the Rust test); `get` and `check` take the same `salt`.

const net = require('net')
const os = require('os')
const fs = require('fs')
const path = require('path')
const readline = require('readline')
const b4a = require('b4a')
const Hypercore = require('hypercore')
const Corestore = require('corestore')
const NoiseSecretStream = require('@hyperswarm/secret-stream')

const useStore = process.argv.includes('--store')
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'peerhost-repl-js-'))
const store = useStore ? new Corestore(path.join(dir, 'store')) : null
const cores = new Map()
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

function block (i, size = 16, salt = 0) {
  const b = b4a.alloc(size, (i + salt) & 255)
  if (size >= 4) b.writeUInt32LE(i >>> 0, 0)
  return b
}

function core (name) {
  const c = cores.get(name)
  if (!c) throw new Error('no core ' + name)
  return c
}

function replicate (isInitiator, socket) {
  socket.setNoDelay(true)
  const s = new NoiseSecretStream(isInitiator, socket)
  s.on('error', (err) => out({ event: 'stream-error', message: err.message, code: err.code }))
  s.on('close', () => out({ event: 'stream-close' }))
  streams.push(s)
  if (store) store.replicate(s)
  else for (const c of cores.values()) c.replicate(s)
}

async function append (c, blocks, size, salt) {
  const batch = []
  for (let i = 0; i < blocks; i++) {
    batch.push(block(c.length + batch.length, size, salt))
    if (batch.length === 1000) {
      await c.append(batch)
      batch.length = 0
    }
  }
  if (batch.length) await c.append(batch)
}

async function run (m) {
  switch (m.cmd) {
    case 'create': {
      const c = store
        ? store.get({ name: m.name })
        : new Hypercore(path.join(dir, 'core-' + n++), { compat: !!m.compat })
      await c.ready()
      await append(c, m.blocks || 0, m.size)
      cores.set(m.name, c)
      c.on('verification-error', (err) => out({ event: 'verification-error', name: m.name, message: err.message }))
      return { key: b4a.toString(c.key, 'hex'), length: c.length, discoveryKey: b4a.toString(c.discoveryKey, 'hex') }
    }
    case 'open': {
      const key = b4a.from(m.key, 'hex')
      const c = store ? store.get({ key }) : new Hypercore(path.join(dir, 'core-' + n++), key)
      await c.ready()
      cores.set(m.name, c)
      c.on('verification-error', (err) => out({ event: 'verification-error', name: m.name, message: err.message }))
      // Streams that are already up: attach the new core too.
      if (!store) for (const s of streams) c.replicate(s)
      return { length: c.length }
    }
    case 'append': {
      const c = core(m.name)
      await append(c, m.blocks, m.size, m.salt)
      return { length: c.length, fork: c.fork }
    }
    case 'truncate': {
      const c = core(m.name)
      await c.truncate(m.length)
      return { length: c.length, fork: c.fork }
    }
    case 'listen': {
      server = net.createServer((socket) => replicate(false, socket))
      await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
      return { port: server.address().port }
    }
    case 'connect': {
      const socket = net.connect(m.port, '127.0.0.1')
      replicate(true, socket)
      return {}
    }
    case 'download': {
      const c = core(m.name)
      await c.download({ start: m.start, end: m.end }).done()
      return { length: c.length }
    }
    case 'get': {
      const c = core(m.name)
      const v = await c.get(m.index, { timeout: 60000 })
      if (!b4a.equals(v, block(m.index, m.size, m.salt))) throw new Error('bad content of block ' + m.index)
      return { index: m.index, bytes: v.byteLength }
    }
    case 'update': {
      const c = core(m.name)
      const updated = await c.update({ wait: true })
      return { updated, length: c.length, fork: c.fork }
    }
    case 'wait': {
      const c = core(m.name)
      const fork = m.fork || 0
      while (c.length < m.length || c.fork < fork) await new Promise((resolve) => setTimeout(resolve, 5))
      return { length: c.length, fork: c.fork }
    }
    case 'check': {
      const c = core(m.name)
      for (let i = m.start; i < m.end; i++) {
        if (!(await c.has(i))) throw new Error('block ' + i + ' is missing')
        const v = await c.get(i, { wait: false })
        if (!v || !b4a.equals(v, block(i, m.size, m.salt))) throw new Error('bad content of block ' + i)
      }
      return { checked: m.end - m.start }
    }
    case 'peers': {
      const c = core(m.name)
      while (c.peers.length < (m.count || 1)) await new Promise((resolve) => c.once('peer-add', resolve))
      return { peers: c.peers.length }
    }
    case 'info': {
      const c = core(m.name)
      return { length: c.length, fork: c.fork, contiguousLength: c.contiguousLength }
    }
    case 'close': {
      for (const s of streams) s.destroy()
      if (server) server.close()
      for (const c of cores.values()) await c.close()
      if (store) await store.close()
      fs.rmSync(dir, { recursive: true, force: true })
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
      out({ event: m.cmd, id: m.id, ok: false, message: err.message })
    }
  })
})
if (store) store.ready().then(() => out({ event: 'ready' }), fail)
else out({ event: 'ready' })
