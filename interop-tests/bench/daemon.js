// Many communities on one node with JS corestore 7 + hyperswarm 4: the counterpart of
// crates/daemon/examples/daemon_bench.rs, run by scripts/bench-daemon.sh on the same testnet.
// JSON lines, the same events as the Rust side.
//
//   node bench/daemon.js prepare DIR COMMUNITIES POSTS
//   node bench/daemon.js run DIR BOOTSTRAP SETTLE_S
//
// `prepare` writes COMMUNITIES x 4 named cores into a corestore at DIR (a descriptor core of
// one block, a posts core of POSTS small blocks, two empty cores; named cores, so writable: JS
// cannot write a replica without a peer), their keys to DIR.keys and their discovery keys to
// DIR.topics. `run`, in a fresh process, opens the corestore, gets every core by key and waits
// until all are ready, starts a hyperswarm on the testnet that replicates the store on every
// connection, and joins every core's discovery key as a server (the descriptor's also as a
// client, as the Rust daemon looks a community's topic up): "ready" once every core is open and
// every topic joined, "announced" once every topic's discovery has flushed (its first
// announce), "idle" SETTLE_S later (RSS, descriptors, files); then serves until killed.
'use strict'
const fs = require('fs')
const path = require('path')
const b4a = require('b4a')
const Corestore = require('corestore')
const HyperDHT = require('hyperdht')
const Hyperswarm = require('hyperswarm')

const processStart = process.hrtime.bigint()
const HOST = '127.0.0.1'
const out = (o) => console.log(JSON.stringify(o))
const hex = (b) => b4a.toString(b, 'hex')
const ms = (t) => Math.round(Number(process.hrtime.bigint() - t) / 1e6)
const rss = () => process.memoryUsage().rss
const peakRss = () => process.resourceUsage().maxRSS * 1024
const fds = () => fs.readdirSync('/proc/self/fd').length
process.on('SIGTERM', () => process.exit(0))
process.on('SIGINT', () => process.exit(0))

function tally (dir) {
  let files = 0
  let dirs = 0
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    if (e.isDirectory()) {
      dirs++
      const t = tally(path.join(dir, e.name))
      files += t.files
      dirs += t.dirs
    } else {
      files++
    }
  }
  return { files, dirs }
}

async function prepare (dir, communities, posts) {
  const t0 = process.hrtime.bigint()
  const store = new Corestore(dir)
  await store.ready()
  const keys = new Array(communities * 4)
  const topics = new Array(communities * 4)
  let next = 0
  async function worker () {
    while (next < communities) {
      const c = next++
      const parts = ['descriptor', 'posts', 'comments', 'assets']
      for (let p = 0; p < 4; p++) {
        const core = store.get({ name: `c${c}.${parts[p]}` })
        await core.ready()
        if (p === 0) await core.append(b4a.from(JSON.stringify({ name: `c${c}`, title: `Community ${c}` })))
        if (p === 1) {
          const blocks = []
          for (let i = 0; i < posts; i++) {
            blocks.push(b4a.from(JSON.stringify({ title: `Post ${i} of community ${c}`, body: `A short post, number ${i}, in community ${c}.` })))
          }
          if (blocks.length) await core.append(blocks)
        }
        keys[c * 4 + p] = hex(core.key)
        topics[c * 4 + p] = hex(core.discoveryKey)
        await core.close()
      }
    }
  }
  await Promise.all(Array.from({ length: 32 }, worker))
  await store.close()
  fs.writeFileSync(dir + '.keys', keys.join('\n') + '\n')
  fs.writeFileSync(dir + '.topics', topics.join('\n') + '\n')
  out({ event: 'prepared', communities, logs: communities * 4, ms: ms(t0) })
}

function bootstrapList (s) {
  return s.split(',').map((a) => {
    const [host, port] = a.split(':')
    return { host, port: Number(port) }
  })
}

async function run (dir, bootstrap, settle) {
  const keys = fs.readFileSync(dir + '.keys', 'utf8').trim().split('\n')
  const t0 = process.hrtime.bigint()
  const store = new Corestore(dir)
  await store.ready()
  const cores = keys.map((k) => store.get({ key: b4a.from(k, 'hex') }))
  await Promise.all(cores.map((c) => c.ready()))
  const dht = new HyperDHT({ bootstrap: bootstrapList(bootstrap), host: HOST })
  const swarm = new Hyperswarm({ dht })
  swarm.on('connection', (conn) => {
    conn.on('error', () => {})
    store.replicate(conn)
  })
  const discoveries = cores.map((c, i) =>
    swarm.join(c.discoveryKey, { server: true, client: i % 4 === 0 }))
  await swarm.listen()
  out({
    event: 'ready',
    ms: ms(processStart),
    start_ms: ms(t0),
    rss: rss(),
    fds: fds(),
    public_key: hex(swarm.keyPair.publicKey)
  })
  const started = process.hrtime.bigint()
  let done = 0
  await Promise.all(discoveries.map((d) => d.flushed().then(() => {
    done++
    if (done % 5000 === 0) console.error(JSON.stringify({ event: 'progress', announced: done, ms: ms(started) }))
  })))
  out({ event: 'announced', topics: keys.length, ms: ms(started), rss: rss(), peak_rss: peakRss() })
  await new Promise((resolve) => setTimeout(resolve, settle * 1000))
  const t = tally(dir)
  out({
    event: 'idle',
    rss: rss(),
    peak_rss: peakRss(),
    // V8's heap and the buffers outside it (RocksDB's own memory is in neither).
    heap: process.memoryUsage().heapUsed + process.memoryUsage().external,
    fds: fds(),
    files: t.files,
    dirs: t.dirs,
    logs: keys.length,
    announced: done
  })
}

const [mode, ...args] = process.argv.slice(2)
const main = {
  prepare: () => prepare(args[0], Number(args[1]), Number(args[2])),
  run: () => run(args[0], args[1], Number(args[2]))
}[mode]
if (!main) {
  console.error('usage: node bench/daemon.js prepare DIR COMMUNITIES POSTS | run DIR BOOTSTRAP SETTLE_S')
  process.exit(2)
}
main().catch((e) => {
  console.error(e)
  process.exit(1)
})
