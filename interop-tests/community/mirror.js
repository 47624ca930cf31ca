'use strict'

// A JS mirror of a peerhost community for interop-tests/tests/community.rs: hyperswarm 4.17 +
// corestore 7.12, the way a Holepunch app mirrors cores.
//
//   node community/mirror.js HOST:PORT KEY_HEX...
//
// HOST:PORT is a DHT bootstrap node; each KEY is one log of the community (descriptor, posts,
// comments, assets). For each: `store.get({ key })`, `swarm.join(core.discoveryKey)` (server
// and client: the descriptor's discovery key is the community topic peerhost announces), every
// connection `store.replicate(conn)`, and `core.download()` of everything, kept live.
// Prints {"event":"ready","publicKey"} once joined, then {"event":"synced","lengths":[...]}
// once every core is complete (a length of 0 counts after an update found no more), and
// {"event":"peers","count"} as connections come and go. Exits on "exit" or EOF on stdin.

const os = require('os')
const fs = require('fs')
const path = require('path')
const readline = require('readline')
const Corestore = require('corestore')
const Hyperswarm = require('hyperswarm')
const HyperDHT = require('hyperdht')

const out = (o) => process.stdout.write(JSON.stringify(o) + '\n')
const fail = (e) => {
  out({ event: 'error', message: String(e && e.stack ? e.stack : e) })
  process.exit(1)
}
process.on('unhandledRejection', fail)
setTimeout(() => fail('overall timeout'), 240000).unref()

async function main () {
  const [boot, ...keys] = process.argv.slice(2)
  const [host, port] = boot.split(':')
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'peerhost-community-js-'))
  // Removed on any exit; SIGTERM (how the tests stop a peer) exits too.
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }))
  process.on('SIGTERM', () => process.exit(0))
  const store = new Corestore(dir)
  const dht = new HyperDHT({ bootstrap: [{ host, port: Number(port) }], host: '127.0.0.1' })
  const swarm = new Hyperswarm({ dht })
  let peers = 0
  swarm.on('connection', (conn) => {
    peers++
    out({ event: 'peers', count: peers })
    conn.on('close', () => { peers--; out({ event: 'peers', count: peers }) })
    conn.on('error', () => {})
    store.replicate(conn)
  })
  const cores = []
  for (const k of keys) {
    const core = store.get({ key: Buffer.from(k, 'hex') })
    await core.ready()
    core.download({ start: 0, end: -1 })
    swarm.join(core.discoveryKey, { server: true, client: true })
    cores.push(core)
  }
  out({ event: 'ready', publicKey: swarm.keyPair.publicKey.toString('hex') })

  const rl = readline.createInterface({ input: process.stdin })
  rl.on('line', async (line) => {
    if (line.includes('exit')) { await swarm.destroy(); await store.close(); process.exit(0) }
  })
  rl.on('close', async () => { await swarm.destroy(); await store.close(); process.exit(0) })

  // Synced: every core knows a head and holds all of it.
  while (true) {
    await Promise.all(cores.map((c) => c.update({ wait: true }).catch(() => {})))
    const done = cores.every((c) => c.length === c.contiguousLength) && cores.some((c) => c.length > 0)
    if (done && cores[0].length > 0 && cores[1].length > 0) break
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  out({ event: 'synced', lengths: cores.map((c) => c.length) })
}

main().catch(fail)
