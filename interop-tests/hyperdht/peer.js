'use strict'

// The JS side of interop-tests/tests/hyperdht.rs: real hyperdht 6.34.0 nodes on 127.0.0.1,
// driven by JSON commands on stdin, one per line; every answer is one JSON line on stdout.
//
// Commands (each may carry an `id`, echoed in its answer `{event: 'result' | 'error', id}`):
//   {cmd:'testnet', size}                      createTestnet(size) on 127.0.0.1
//                                              → {bootstrap: [{host, port}], nodes: [{host, port}]}
//   {cmd:'node', name, bootstrap, opts}        new HyperDHT({bootstrap, host:'127.0.0.1', ...opts})
//                                              → {host, port, firewalled, ephemeral}
//   {cmd:'immutablePut', node, value}          → {hash}
//   {cmd:'immutableGet', node, hash}           → {value | null}
//   {cmd:'mutablePut', node, seed, value, seq} → {publicKey, seq}
//   {cmd:'mutableGet', node, publicKey, seq}   → {value, seq | null}
//   {cmd:'announce', node, topic, seed, relayAddresses}
//   {cmd:'unannounce', node, topic, seed}
//   {cmd:'lookup', node, topic}                → {peers: [{publicKey, relayAddresses}]}
//   {cmd:'findPeer', node, publicKey}          → {found: n}
//   {cmd:'listen', node, seed}                 a server echoing every message reversed
//                                              → {publicKey}; later {event:'connection', remotePublicKey}
//   {cmd:'connect', node, publicKey, seed, messages:[hex]}
//                                              sends each message, waits for as many replies
//                                              → {replies: [hex], remotePublicKey}
//   {cmd:'request', node, to:{host,port}, command, target, value}
//                                              a raw dht-rpc request → {error, value}
//   {cmd:'exit'}
//
// Values and keys are hex. Seeds are 32-byte hex strings (deterministic key pairs).

const createTestnet = require('hyperdht/testnet')
const HyperDHT = require('hyperdht')
const readline = require('readline')

const nodes = new Map()
let testnet = null

const hx = (b) => (b ? Buffer.from(b).toString('hex') : null)
const bin = (h) => Buffer.from(h, 'hex')
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n')
const addr = (a) => ({ host: a.host, port: a.port })

function node(name) {
  const n = nodes.get(name)
  if (!n) throw new Error('no node ' + name)
  return n
}

const handlers = {
  async testnet({ size }) {
    testnet = await createTestnet(size, { host: '127.0.0.1' })
    testnet.nodes.forEach((n, i) => nodes.set('t' + i, n))
    return {
      bootstrap: testnet.bootstrap.map(addr),
      nodes: testnet.nodes.map((n) => addr(n.address()))
    }
  },

  async node({ name, bootstrap, opts = {} }) {
    const n = new HyperDHT({ bootstrap, host: '127.0.0.1', ...opts })
    await n.fullyBootstrapped()
    nodes.set(name, n)
    return { ...addr(n.address()), firewalled: n.firewalled, ephemeral: n.ephemeral }
  },

  async immutablePut({ node: name, value }) {
    const r = await node(name).immutablePut(bin(value))
    return { hash: hx(r.hash) }
  },

  async immutableGet({ node: name, hash }) {
    const r = await node(name).immutableGet(bin(hash))
    return { value: r ? hx(r.value) : null, from: r ? addr(r.from) : null }
  },

  async mutablePut({ node: name, seed, value, seq }) {
    const keyPair = HyperDHT.keyPair(bin(seed))
    const r = await node(name).mutablePut(keyPair, bin(value), { seq })
    return { publicKey: hx(r.publicKey), seq: r.seq }
  },

  async mutableGet({ node: name, publicKey, seq = 0 }) {
    const r = await node(name).mutableGet(bin(publicKey), { seq })
    return r ? { value: hx(r.value), seq: r.seq, from: addr(r.from) } : { value: null }
  },

  async announce({ node: name, topic, seed, relayAddresses = [] }) {
    const keyPair = HyperDHT.keyPair(bin(seed))
    await node(name).announce(bin(topic), keyPair, relayAddresses).finished()
    return { publicKey: hx(keyPair.publicKey) }
  },

  async unannounce({ node: name, topic, seed }) {
    const keyPair = HyperDHT.keyPair(bin(seed))
    await node(name).unannounce(bin(topic), keyPair)
    return {}
  },

  async lookup({ node: name, topic }) {
    const peers = []
    for await (const r of node(name).lookup(bin(topic))) {
      for (const p of r.peers) {
        peers.push({ publicKey: hx(p.publicKey), relayAddresses: p.relayAddresses.map(addr) })
      }
    }
    return { peers }
  },

  async findPeer({ node: name, publicKey }) {
    let found = 0
    for await (const r of node(name).findPeer(bin(publicKey))) if (r.peer) found++
    return { found }
  },

  async listen({ node: name, seed }) {
    const keyPair = HyperDHT.keyPair(bin(seed))
    const server = node(name).createServer((socket) => {
      out({ event: 'connection', remotePublicKey: hx(socket.remotePublicKey) })
      socket.on('data', (data) => socket.write(Buffer.from(data).reverse()))
      socket.on('error', (err) => out({ event: 'socket-error', message: err.message }))
      socket.on('end', () => socket.end())
    })
    await server.listen(keyPair)
    return { publicKey: hx(keyPair.publicKey) }
  },

  async connect({ node: name, publicKey, seed, messages }) {
    const keyPair = HyperDHT.keyPair(bin(seed))
    const socket = node(name).connect(bin(publicKey), { keyPair })
    const replies = []
    await new Promise((resolve, reject) => {
      socket.on('error', reject)
      socket.on('open', () => {
        for (const m of messages) socket.write(bin(m))
        if (messages.length === 0) resolve()
      })
      socket.on('data', (data) => {
        replies.push(hx(data))
        if (replies.length === messages.length) resolve()
      })
    })
    const remotePublicKey = hx(socket.remotePublicKey)
    socket.end()
    return { replies, remotePublicKey }
  },

  async request({ node: name, to, command, target, value }) {
    try {
      const r = await node(name).request(
        { command, target: target ? bin(target) : null, value: value ? bin(value) : null },
        to
      )
      return { error: r.error, value: hx(r.value) }
    } catch (err) {
      return { failed: err.code || err.message }
    }
  }
}

const rl = readline.createInterface({ input: process.stdin })
rl.on('line', async (line) => {
  let msg
  try {
    msg = JSON.parse(line)
  } catch {
    return
  }
  if (msg.cmd === 'exit') {
    for (const n of nodes.values()) await n.destroy({ force: true }).catch(() => {})
    process.exit(0)
  }
  const h = handlers[msg.cmd]
  if (!h) return out({ event: 'error', id: msg.id, message: 'unknown command ' + msg.cmd })
  try {
    out({ event: 'result', id: msg.id, cmd: msg.cmd, ...(await h(msg)) })
  } catch (err) {
    out({ event: 'error', id: msg.id, cmd: msg.cmd, message: err.message, code: err.code || null })
  }
})
rl.on('close', async () => {
  for (const n of nodes.values()) await n.destroy({ force: true }).catch(() => {})
  process.exit(0)
})
