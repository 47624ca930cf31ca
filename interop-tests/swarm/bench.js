'use strict'

// The JS side of swarm/bench.sh: hyperswarm 4 + hyperdht 6 + hypercore 11 on a loopback
// testnet. The Rust side is crates/node/examples/swarm_bench.rs, with the same modes and the
// same JSON lines.
//
//   node swarm/bench.js testnet NODES               createTestnet(NODES) on 127.0.0.1; prints
//                                                   {"bootstrap": "HOST:PORT"}, runs until killed
//   node swarm/bench.js prepare DIR BLOCKS SIZE     a core of BLOCKS blocks of SIZE bytes in DIR;
//                                                   prints {"key"}
//   node swarm/bench.js writer DIR BOOTSTRAP        serve the core in DIR on a swarm: join its
//                                                   discovery key as a server, flush; prints
//                                                   {"key", "topic"}, serves until killed
//   node swarm/bench.js lookup BOOTSTRAP TOPIC N    a fresh DHT node, bootstrapped, looks TOPIC
//                                                   up N times one after another; prints
//                                                   {"ms": [...], "first_ms": [...], "peers",
//                                                   "replies"} (the last lookup's answers that
//                                                   held records)
//   node swarm/bench.js reader BOOTSTRAP KEY TRIES [all]
//                                                   TRIES times: a fresh swarm (DHT node
//                                                   bootstrapped first), join the key's
//                                                   discovery key as a client, download block 0
//                                                   (or, with `all`, every block); one line per
//                                                   try: {"connection_ms", "channel_ms",
//                                                   "first_block_ms", "done_ms", "blocks",
//                                                   "bytes", "peak_rss"}, times from the join call
//
// Every DHT node binds 127.0.0.1 and keeps hyperdht's defaults otherwise (so a new node is
// firewalled and ephemeral until it has sampled its NAT, as in a real deployment); with
// BENCH_UNFIREWALLED=1 the writer's and readers' nodes start with `firewalled: false`.

const os = require('os')
const fs = require('fs')
const path = require('path')
const b4a = require('b4a')
const Hypercore = require('hypercore')
const HyperDHT = require('hyperdht')
const Hyperswarm = require('hyperswarm')
const createTestnet = require('hyperdht/testnet')

const [mode, ...args] = process.argv.slice(2)
const HOST = '127.0.0.1'
const DHT_OPTS = process.env.BENCH_UNFIREWALLED === '1' ? { firewalled: false } : {}
const tmp = []
process.on('exit', () => {
  for (const d of tmp) fs.rmSync(d, { recursive: true, force: true })
})
process.on('SIGTERM', () => process.exit(0))
process.on('SIGINT', () => process.exit(0))

const out = (o) => console.log(JSON.stringify(o))
const hex = (b) => b4a.toString(b, 'hex')
const now = () => Number(process.hrtime.bigint()) / 1e6
const peakRss = () => process.resourceUsage().maxRSS * 1024

function bootstrapList (s) {
  return s.split(',').map((a) => {
    const [host, port] = a.split(':')
    return { host, port: Number(port) }
  })
}

function block (i, size) {
  const buf = b4a.alloc(size, i & 255)
  buf.writeUInt32LE(i >>> 0, 0)
  return buf
}

async function testnet (nodes) {
  const t = await createTestnet(Number(nodes), { host: HOST })
  out({ bootstrap: t.bootstrap.map((b) => `${b.host}:${b.port}`).join(',') })
}

async function prepare (dir, blocksArg, sizeArg) {
  const blocks = Number(blocksArg)
  const size = Number(sizeArg)
  const core = new Hypercore(dir)
  await core.ready()
  for (let i = 0; i < blocks; i += 100) {
    const batch = []
    for (let j = i; j < Math.min(blocks, i + 100); j++) batch.push(block(j, size))
    await core.append(batch)
  }
  out({ key: hex(core.key) })
  await core.close()
}

async function writer (dir, bootstrap) {
  const core = new Hypercore(dir)
  await core.ready()
  const dht = new HyperDHT({ bootstrap: bootstrapList(bootstrap), host: HOST, ...DHT_OPTS })
  const swarm = new Hyperswarm({ dht })
  swarm.on('connection', (conn) => {
    conn.on('error', () => {})
    core.replicate(conn)
  })
  swarm.join(core.discoveryKey, { server: true, client: false })
  await swarm.flush()
  out({ key: hex(core.key), topic: hex(core.discoveryKey) })
}

async function lookup (bootstrap, topic, n) {
  const dht = new HyperDHT({ bootstrap: bootstrapList(bootstrap), host: HOST })
  await dht.fullyBootstrapped()
  const ms = []
  const firstMs = []
  let peers = 0
  let replies = 0
  for (let i = 0; i < Number(n); i++) {
    const start = now()
    let first = null
    const found = new Set()
    replies = 0
    for await (const r of dht.lookup(b4a.from(topic, 'hex'))) {
      replies++
      for (const p of r.peers) found.add(hex(p.publicKey))
      if (first === null && found.size > 0) first = now() - start
    }
    ms.push(now() - start)
    firstMs.push(first)
    peers = found.size
  }
  out({ ms, first_ms: firstMs, peers, replies })
  await dht.destroy()
}

async function readerTry (bootstrap, key, all) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'peerhost-swarm-bench-js-'))
  tmp.push(dir)
  const core = new Hypercore(dir, b4a.from(key, 'hex'))
  await core.ready()
  const dht = new HyperDHT({ bootstrap: bootstrapList(bootstrap), host: HOST, ...DHT_OPTS })
  await dht.fullyBootstrapped()
  const swarm = new Hyperswarm({ dht })
  const t = {}
  let start = 0
  swarm.on('connection', (conn) => {
    if (t.connection_ms === undefined) t.connection_ms = now() - start
    conn.on('error', () => {})
    core.replicate(conn)
  })
  const channel = new Promise((resolve) => core.once('peer-add', resolve))
  core.once('download', () => { t.first_block_ms = now() - start })
  start = now()
  swarm.join(core.discoveryKey, { server: false, client: true })
  await channel
  t.channel_ms = now() - start
  if (all) {
    await core.update({ wait: true })
    await core.download({ start: 0, end: core.length }).done()
  } else {
    await core.get(0)
  }
  t.done_ms = now() - start
  t.blocks = all ? core.length : 1
  t.bytes = all ? core.byteLength : (await core.get(0)).length
  t.peak_rss = peakRss()
  out(t)
  await swarm.destroy()
  await core.close()
}

async function reader (bootstrap, key, tries, all) {
  for (let i = 0; i < Number(tries); i++) await readerTry(bootstrap, key, all === 'all')
  process.exit(0)
}

const modes = { testnet, prepare, writer, lookup, reader }
if (!modes[mode]) throw new Error('mode: ' + Object.keys(modes).join(' | '))
modes[mode](...args).catch((err) => {
  console.error(err)
  process.exit(1)
})
