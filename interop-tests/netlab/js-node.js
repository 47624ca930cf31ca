#!/usr/bin/env node
// js-node.js - the JS peers of the NAT lab (tests/nat_matrix.rs): hyperdht 6.34, hyperswarm
// 4.17, blind-relay 1.6 and hypercore 11 from interop-tests/node_modules. Every role prints
// JSON lines on stdout; the first is {"event":"ready", ...}.
//
//   js-node.js dht IP,IP,... PORT
//       a DHT of persistent nodes, one per IP, all on PORT; the first IP is the bootstrap.
//   js-node.js relay BOOTSTRAP SEED
//       a blind relay: a hyperdht server (key pair from SEED) whose every connection is
//       accepted by blind-relay's Server, splicing paired UDX streams ({id: remotePublicKey},
//       as hyperdht's own relaying test does). Prints its public key, then stats on SIGUSR2.
//   js-node.js server BOOTSTRAP SEED BLOCKS RELAY_KEY
//       writes a hypercore of BLOCKS blocks (block(i) below), joins its discovery key as a
//       hyperswarm server and replicates with whoever connects. Ready once announced:
//       {key, publicKey}. Then one {"event":"connection", path, remote} per connection.
//   js-node.js client BOOTSTRAP SERVER_KEY CORE_KEY BLOCKS RELAY_KEY
//       joins the core's discovery key as a hyperswarm client, replicates, downloads and checks
//       every block, prints {"event":"done", connectMs, totalMs, path, pathAtEnd, blocks} and
//       exits 0 (or {"event":"failed", error} and exits 1).
//
// BOOTSTRAP is HOST:PORT[,HOST:PORT...]. Relay policy (both peers): hyperswarm's relayThrough
// as a function that relays only when hyperswarm forces it, i.e. after a holepunch failed
// (HOLEPUNCH_ABORTED, HOLEPUNCH_DOUBLE_RANDOMIZED_NATS, CANNOT_HOLEPUNCH,
// REMOTE_NOT_HOLEPUNCHABLE): a fallback, so every cell first tries to connect directly.
// RELAY_POLICY=default uses hyperswarm's own rule instead (relay whenever our NAT randomizes).
'use strict'

const fs = require('fs')
const os = require('os')
const path = require('path')
const b4a = require('b4a')
const HyperDHT = require('hyperdht')
const Hyperswarm = require('hyperswarm')
const Hypercore = require('hypercore')
const BlindRelay = require('blind-relay')

const out = (o) => process.stdout.write(JSON.stringify(o) + '\n')
const hx = (b) => b4a.toString(b, 'hex')
const bin = (h) => b4a.from(h, 'hex')
const seedPair = (seed) => HyperDHT.keyPair(bin(seed))
const RELAY_HOST = process.env.RELAY_HOST || '198.51.100.20'

process.on('SIGTERM', () => process.exit(0))
process.on('unhandledRejection', (err) => {
  out({ event: 'failed', error: String((err && err.stack) || err) })
  process.exit(1)
})

function bootstrapList (s) {
  return s.split(',').map((hp) => {
    const [host, port] = hp.split(':')
    return { host, port: Number(port) }
  })
}

// Block i: recognisable text (the relay test looks for it in the relay's bytes) plus filler.
function block (i) {
  const head = `peerhost-netlab-block-${String(i).padStart(6, '0')}:`
  return b4a.from(head + 'x'.repeat(1024 - head.length))
}

function relayFunction (relayKey) {
  const key = bin(relayKey)
  if (process.env.RELAY_POLICY === 'default') return key
  return (force) => (force ? key : null)
}

function pathOf (conn) {
  const raw = conn.rawStream
  if (!raw || !raw.remoteHost) return 'unknown'
  if (raw.remoteHost === RELAY_HOST) return 'relayed'
  return /^(10|192\.168)\./.test(raw.remoteHost) ? 'lan' : 'direct'
}

function tmpdir (name) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `peerhost-netlab-${name}-`))
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }))
  return dir
}

async function dht (ips, port) {
  const hosts = ips.split(',')
  const nodes = []
  const bootstrap = [{ host: hosts[0], port: Number(port) }]
  for (const [i, host] of hosts.entries()) {
    const node = new HyperDHT({
      ephemeral: false,
      firewalled: false,
      bootstrap: i === 0 ? [] : bootstrap,
      host,
      port: Number(port)
    })
    await node.fullyBootstrapped()
    nodes.push(node)
  }
  out({ event: 'ready', bootstrap: hosts.map((h) => `${h}:${port}`) })
}

async function relay (bootstrap, seed) {
  // The relay host has a public address: say so instead of waiting for dht-rpc to find out
  // (a relay that believes it is firewalled waits for holepunches that symmetric NATs cannot do).
  const node = new HyperDHT({
    bootstrap: bootstrapList(bootstrap),
    host: RELAY_HOST,
    port: 49737,
    firewalled: false
  })
  const server = new BlindRelay.Server({
    createStream: (opts) => node.createRawStream({ ...opts, framed: true })
  })
  const dhtServer = node.createServer({ holepunch: false, shareLocalAddress: false }, (socket) => {
    const session = server.accept(socket, { id: socket.remotePublicKey })
    session.on('error', () => {})
    socket.on('error', () => {})
  })
  await dhtServer.listen(seedPair(seed))
  await node.fullyBootstrapped()
  out({ event: 'ready', publicKey: hx(dhtServer.publicKey), firewalled: node.firewalled })
  process.on('SIGUSR2', () => out({ event: 'stats', stats: server.stats }))
}

async function server (bootstrap, seed, blocks, relayKey) {
  const core = new Hypercore(tmpdir('server'))
  await core.ready()
  const batch = []
  for (let i = 0; i < Number(blocks); i++) batch.push(block(i))
  await core.append(batch)

  const swarm = new Hyperswarm({
    keyPair: seedPair(seed),
    bootstrap: bootstrapList(bootstrap),
    relayThrough: relayFunction(relayKey)
  })
  swarm.on('connection', (conn) => {
    conn.on('error', () => {})
    core.replicate(conn)
    out({ event: 'connection', path: pathOf(conn), remote: `${conn.rawStream.remoteHost}:${conn.rawStream.remotePort}` })
  })
  const discovery = swarm.join(core.discoveryKey, { server: true, client: false })
  await discovery.flushed()
  out({
    event: 'ready',
    key: hx(core.key),
    publicKey: hx(swarm.keyPair.publicKey),
    firewall: swarm.dht.firewalled,
    randomized: swarm.dht.randomized
  })
}

async function client (bootstrap, serverKey, coreKey, blocks, relayKey) {
  const started = Date.now()
  const core = new Hypercore(tmpdir('client'), bin(coreKey))
  await core.ready()
  const swarm = new Hyperswarm({
    bootstrap: bootstrapList(bootstrap),
    relayThrough: relayFunction(relayKey)
  })
  const errors = []
  const connected = new Promise((resolve) => {
    swarm.on('connection', (conn) => {
      conn.on('error', () => {})
      if (hx(conn.remotePublicKey) !== serverKey) return conn.destroy()
      core.replicate(conn)
      resolve(conn)
    })
  })
  // Hyperswarm swallows connect errors; record them for the report.
  const origConnect = swarm.dht.connect.bind(swarm.dht)
  let dialMs = null // when hyperswarm first dialed (bootstrap and lookup before it)
  swarm.dht.connect = (...args) => {
    if (dialMs === null) dialMs = Date.now() - started
    const s = origConnect(...args)
    s.on('error', (err) => errors.push(err.code || err.message))
    return s
  }
  swarm.join(core.discoveryKey, { server: false, client: true })
  const conn = await connected
  const connectMs = Date.now() - started
  const path = pathOf(conn)

  const n = Number(blocks)
  await core.update({ wait: true })
  if (core.length !== n) throw new Error(`server core has ${core.length} blocks, expected ${n}`)
  await core.download({ start: 0, end: n }).done()
  for (let i = 0; i < n; i++) {
    const got = await core.get(i)
    if (!b4a.equals(got, block(i))) throw new Error(`block ${i} differs`)
  }
  out({
    event: 'done',
    connectMs,
    dialMs,
    totalMs: Date.now() - started,
    path,
    pathAtEnd: pathOf(conn),
    blocks: n,
    errors,
    firewall: swarm.dht.firewalled,
    randomized: swarm.dht.randomized
  })
  process.exit(0)
}

const [role, ...args] = process.argv.slice(2)
const roles = { dht, relay, server, client }
if (!roles[role]) {
  console.error('usage: js-node.js dht|relay|server|client ARGS (see the header)')
  process.exit(2)
}
roles[role](...args)
