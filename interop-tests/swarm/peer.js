'use strict'

// The JS side of interop-tests/tests/swarm.rs: real hyperswarm 4.17.2 swarms (each on its own
// hyperdht 6.34.0 node on 127.0.0.1), driven by JSON commands on stdin, one per line; every
// answer is one JSON line on stdout.
//
// Commands (each may carry an `id`, echoed in its answer `{event: 'result' | 'error', id}`):
//   {cmd:'testnet', size, bootstrap?}         createTestnet(size) on 127.0.0.1, optionally
//                                             bootstrapped from `bootstrap`
//                                             → {bootstrap: [{host, port}]}
//   {cmd:'swarm', name, seed, bootstrap, dht}  new Hyperswarm({dht: new HyperDHT({bootstrap,
//                                             host: '127.0.0.1', ...dht}), keyPair(seed)})
//                                             → {publicKey, firewalled}
//   {cmd:'join', name, topic, server, client} swarm.join(topic, {server, client})
//   {cmd:'flush', name}                       await swarm.flush() → {flushed}
//   {cmd:'send', name, remotePublicKey, data} write `data` on the open connection to that key
//   {cmd:'status', name}                      → {connections: [{remotePublicKey, handshakeHash,
//                                             initiator}], attempted}
//   {cmd:'listen', name}                      await swarm.listen()
//   {cmd:'joinPeer', name, publicKey}         swarm.joinPeer(publicKey)
//   {cmd:'leave', name, topic}                await swarm.leave(topic)
//   {cmd:'lookup', name, topic}               → {peers: [publicKey]} (a DHT lookup)
//   {cmd:'destroy', name}                     await swarm.destroy()
//   {cmd:'exit'}
//
// Events: {event:'connection', name, remotePublicKey, client, initiator, handshakeHash},
// {event:'data', name, remotePublicKey, data}, {event:'close', name, remotePublicKey,
// handshakeHash}. Every swarm answers a message starting with "ping" with "pong" + the rest;
// other messages are reported as 'data' events. Keys and data are hex; seeds are 32-byte hex.

const createTestnet = require('hyperdht/testnet')
const HyperDHT = require('hyperdht')
const Hyperswarm = require('hyperswarm')
const readline = require('readline')

const swarms = new Map()
const testnets = []

const hx = (b) => (b ? Buffer.from(b).toString('hex') : null)
const bin = (h) => Buffer.from(h, 'hex')
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n')
const addr = (a) => ({ host: a.host, port: a.port })
const PING = Buffer.from('ping')

function swarm(name) {
  const s = swarms.get(name)
  if (!s) throw new Error('no swarm ' + name)
  return s
}

const handlers = {
  async testnet({ size, bootstrap }) {
    const t = await createTestnet(size, { host: '127.0.0.1', bootstrap })
    testnets.push(t)
    return { bootstrap: t.bootstrap.map(addr) }
  },

  async swarm({ name, seed, bootstrap, dht = {} }) {
    const node = new HyperDHT({ bootstrap, host: '127.0.0.1', ...dht })
    await node.fullyBootstrapped()
    const s = new Hyperswarm({ dht: node, keyPair: HyperDHT.keyPair(bin(seed)) })
    s.on('connection', (conn, info) => {
      const remotePublicKey = hx(conn.remotePublicKey)
      const handshakeHash = hx(conn.handshakeHash)
      out({
        event: 'connection',
        name,
        remotePublicKey,
        client: info.client,
        initiator: conn.isInitiator,
        handshakeHash
      })
      conn.on('data', (data) => {
        if (data.length >= 4 && data.subarray(0, 4).equals(PING)) {
          conn.write(Buffer.concat([Buffer.from('pong'), data.subarray(4)]))
        } else {
          out({ event: 'data', name, remotePublicKey, data: hx(data) })
        }
      })
      conn.on('error', () => {})
      conn.on('close', () => out({ event: 'close', name, remotePublicKey, handshakeHash }))
    })
    swarms.set(name, s)
    return { publicKey: hx(s.keyPair.publicKey), firewalled: node.firewalled }
  },

  async join({ name, topic, server = true, client = true }) {
    swarm(name).join(bin(topic), { server, client })
    return {}
  },

  async flush({ name }) {
    return { flushed: await swarm(name).flush() }
  },

  async send({ name, remotePublicKey, data }) {
    for (const conn of swarm(name).connections) {
      if (hx(conn.remotePublicKey) === remotePublicKey) {
        conn.write(bin(data))
        return { sent: true }
      }
    }
    return { sent: false }
  },

  async status({ name }) {
    const connections = [...swarm(name).connections].map((c) => ({
      remotePublicKey: hx(c.remotePublicKey),
      handshakeHash: hx(c.handshakeHash),
      initiator: c.isInitiator
    }))
    return { connections, attempted: swarm(name).stats.connects.client.attempted }
  },

  async listen({ name }) {
    await swarm(name).listen()
    return {}
  },

  async joinPeer({ name, publicKey }) {
    swarm(name).joinPeer(bin(publicKey))
    return {}
  },

  async leave({ name, topic }) {
    await swarm(name).leave(bin(topic))
    return {}
  },

  async lookup({ name, topic }) {
    const peers = []
    for await (const r of swarm(name).dht.lookup(bin(topic))) {
      for (const p of r.peers) peers.push(hx(p.publicKey))
    }
    return { peers }
  },

  async destroy({ name }) {
    await swarm(name).destroy()
    swarms.delete(name)
    return {}
  }
}

async function shutdown() {
  for (const s of swarms.values()) await s.destroy({ force: true }).catch(() => {})
  for (const t of testnets) await t.destroy().catch(() => {})
  process.exit(0)
}

const rl = readline.createInterface({ input: process.stdin })
rl.on('line', async (line) => {
  let msg
  try {
    msg = JSON.parse(line)
  } catch {
    return
  }
  if (msg.cmd === 'exit') return shutdown()
  const h = handlers[msg.cmd]
  if (!h) return out({ event: 'error', id: msg.id, message: 'unknown command ' + msg.cmd })
  try {
    out({ event: 'result', id: msg.id, cmd: msg.cmd, ...(await h(msg)) })
  } catch (err) {
    out({ event: 'error', id: msg.id, cmd: msg.cmd, message: err.message, code: err.code || null })
  }
})
rl.on('close', shutdown)
