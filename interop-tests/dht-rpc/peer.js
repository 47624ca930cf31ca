'use strict'

// Real dht-rpc 6.27.0 nodes on 127.0.0.1, driven over stdin/stdout (one JSON object per line)
// for the live tests in interop-tests/tests/dht_rpc.rs. Every command carries an "id" that is
// echoed in its answer {"event":"done","id":...,...} (or {"event":"error","id":...,"message"}).
//
// Commands (nodes are named; addresses are {"host","port"}; ids, targets, values, tokens hex):
//   {"cmd":"testnet","size":N}            a DHT.bootstrapper + N-1 persistent, unfirewalled
//                                         nodes "t0".."t{N-1}" (hyperdht's createTestnet shape)
//   {"cmd":"node","name":X,"bootstrap":[addr],"opts":{...}}
//                                         new DHT({host:'127.0.0.1', bootstrap, ...opts}),
//                                         answered once fullyBootstrapped
//   {"cmd":"status","name":X}             nodeId, ephemeral, firewalled, nat host/port, table nodes
//   {"cmd":"findNode","name":X,"target":T}            closest replies of dht.findNode
//   {"cmd":"query","name":X,"target":T,"command":C,"value":V,"commit":bool}
//                                         dht.query(...); replies, closest, commit result
//   {"cmd":"request","name":X,"to":addr,"command":C,"target":T,"value":V,"token":K,"internal":b}
//                                         dht.request(...) (or ping when internal + command 0)
//   {"cmd":"requestLoop","name":X,"to":addr,"count":N,"ms":M,"command":C}
//                                         sequential requests, at least N and for at least M
//                                         ms; counts successes / failures
//   {"cmd":"internal","name":X,"to":addr,"command":C,"target":T,"value":V,"retries":R}
//                                         one internal-command request (PING, PING_NAT, ...)
//   {"cmd":"pingNat","name":X,"to":addr}   one PING_NAT as `_checkIfFirewalled` sends it
//   {"cmd":"checkFirewall","name":X}      `_updateNetworkState(true)` now (the firewall check)
//   {"cmd":"stored","name":X}             what command 43 commits stored on X
//   {"cmd":"exit"}
//
// Every node answers application commands like the Rust test handler does:
//   42: reply with the value reversed;   43: store the value under the target when the request
//   carries a (valid) token, reply null;  anything else: error UNKNOWN_COMMAND.
// It also reports each application request it receives as {"event":"request",...}.

const readline = require('readline')
const dgram = require('dgram')
const DHT = require('dht-rpc')

const HOST = '127.0.0.1'
const nodes = new Map()
const stores = new Map()

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n')
}

function hx(b) {
  return b ? Buffer.from(b).toString('hex') : null
}

function buf(h) {
  return h === null || h === undefined ? null : Buffer.from(h, 'hex')
}

function addr(a) {
  return { host: a.host, port: a.port }
}

function reply(m) {
  return {
    from: addr(m.from),
    fromId: hx(m.from.id),
    to: addr(m.to),
    token: hx(m.token),
    error: m.error,
    value: hx(m.value),
    closerNodes: (m.closerNodes || []).map(addr)
  }
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket('udp4')
    s.on('error', reject)
    s.bind(0, HOST, () => {
      const { port } = s.address()
      s.close(() => resolve(port))
    })
  })
}

function handle(name, dht) {
  const store = new Map()
  stores.set(name, store)
  dht.on('request', (req) => {
    out({
      event: 'request',
      name,
      command: req.command,
      from: addr(req.from),
      fromId: hx(req.from.id),
      token: hx(req.token),
      target: hx(req.target),
      value: hx(req.value)
    })
    if (req.command === 42) {
      const v = Buffer.from(req.value || Buffer.alloc(0))
      v.reverse()
      req.reply(v)
    } else if (req.command === 43) {
      if (req.token && req.target) store.set(hx(req.target), hx(req.value))
      req.reply(null)
    } else {
      req.error(DHT.ERROR_UNKNOWN_COMMAND)
    }
  })
}

async function add(name, dht) {
  nodes.set(name, dht)
  handle(name, dht)
  await dht.fullyBootstrapped()
  return status(name)
}

function status(name) {
  const dht = nodes.get(name)
  return {
    name,
    port: dht.address().port,
    serverPort: dht.io.serverSocket.address().port,
    clientPort: dht.io.clientSocket.address().port,
    nodeId: hx(dht.id),
    ephemeral: dht.ephemeral,
    firewalled: dht.firewalled,
    host: dht.host,
    natPort: dht.port,
    nodes: dht.toArray(),
    stats: dht.stats.requests
  }
}

function get(name) {
  const dht = nodes.get(name)
  if (!dht) throw new Error('no such node: ' + name)
  return dht
}

const commands = {
  async testnet({ size }) {
    const port = await freePort()
    const first = DHT.bootstrapper(port, HOST, { host: HOST })
    const bootstrap = [{ host: HOST, port }]
    const list = [await add('t0', first)]
    for (let i = 1; i < size; i++) {
      const dht = new DHT({ bootstrap, ephemeral: false, firewalled: false, host: HOST })
      list.push(await add('t' + i, dht))
    }
    return { bootstrap, nodes: list }
  },

  async node({ name, bootstrap, opts }) {
    const dht = new DHT({ host: HOST, bootstrap, ...(opts || {}) })
    return add(name, dht)
  },

  async status({ name }) {
    get(name)
    return status(name)
  },

  async findNode({ name, target }) {
    const q = get(name).findNode(buf(target))
    let replies = 0
    for await (const m of q) {
      if (m.error === 0) replies++
    }
    return { replies, closest: q.closestReplies.map(reply) }
  },

  async query({ name, target, command, value, commit }) {
    const q = get(name).query(
      { target: buf(target), command, value: buf(value) },
      { commit: !!commit }
    )
    const replies = []
    let error = null
    try {
      for await (const m of q) replies.push(reply(m))
    } catch (e) {
      error = e.message
    }
    return { replies, closest: q.closestReplies.map(reply), error }
  },

  async request({ name, to, command, target, value, token, internal }) {
    const dht = get(name)
    try {
      const m =
        internal && command === 0
          ? await dht.ping(to)
          : await dht.request(
              { command, target: buf(target), value: buf(value), token: buf(token) },
              to
            )
      return { reply: reply(m) }
    } catch (e) {
      return { failed: e.code || e.message }
    }
  },

  async requestLoop({ name, to, count, ms, command }) {
    const dht = get(name)
    const start = Date.now()
    let ok = 0
    let failed = 0
    let maxRtt = 0
    for (let i = 0; i < count || Date.now() - start < (ms || 0); i++) {
      const value = Buffer.from('n' + i)
      try {
        const m = await dht.request({ command, value }, to)
        const want = Buffer.from(value).reverse()
        if (m.error === 0 && Buffer.from(m.value || []).equals(want)) ok++
        else failed++
        maxRtt = Math.max(maxRtt, m.rtt)
      } catch {
        failed++
      }
    }
    return { ok, failed, maxRtt }
  },

  // One internal-command request as IO#createRequest builds it (retries default 3).
  async internal({ name, to, command, target, value, retries }) {
    const dht = get(name)
    return new Promise((resolve) => {
      const req = dht.io.createRequest(
        { id: null, host: to.host, port: to.port },
        null,
        true,
        command,
        buf(target),
        buf(value),
        null
      )
      if (typeof retries === 'number') req.retries = retries
      req.onresponse = (m) => resolve({ reply: { ...reply(m), rtt: m.rtt } })
      req.onerror = (e) => resolve({ failed: e.code || e.message })
      req.send()
    })
  },

  // What `_checkIfFirewalled` does, against one node: PING_NAT with our server socket's port,
  // and whether the reply came in on the server socket.
  async pingNat({ name, to }) {
    const dht = get(name)
    const port = dht.io.serverSocket.address().port
    const value = Buffer.alloc(2)
    value.writeUInt16LE(port)
    const hosts = new Set()
    const onmessage = (_, { host }) => hosts.add(host)
    dht.io.serverSocket.on('message', onmessage)
    try {
      const m = await new Promise((resolve, reject) => {
        dht._request(to, false, true, 1, null, value, null, resolve, reject)
      })
      return { reply: reply(m), onServerSocket: hosts.has(m.from.host), serverPort: port }
    } catch (e) {
      return { failed: e.code || e.message }
    } finally {
      dht.io.serverSocket.removeListener('message', onmessage)
    }
  },

  // The firewall half of the adaptive switch JS runs after ~20 minutes of uptime
  // (`_updateNetworkState(true)`): PING_NAT to the latest nodes and the bootstrap nodes.
  async checkFirewall({ name }) {
    const dht = get(name)
    const updated = await dht._updateNetworkState(true)
    return { updated, ...status(name) }
  },

  async stored({ name }) {
    get(name)
    return { stored: Object.fromEntries(stores.get(name)) }
  },

  async exit() {
    for (const dht of nodes.values()) await dht.destroy()
    out({ event: 'bye' })
    process.exit(0)
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
  const fn = commands[msg.cmd]
  if (!fn) {
    out({ event: 'error', id: msg.id, message: 'unknown command ' + msg.cmd })
    return
  }
  try {
    const res = await fn(msg)
    out({ event: 'done', id: msg.id, cmd: msg.cmd, ...res })
  } catch (e) {
    out({ event: 'error', id: msg.id, message: e.stack || String(e) })
  }
})
rl.on('close', async () => {
  for (const dht of nodes.values()) await dht.destroy()
  process.exit(0)
})

out({ event: 'ready' })
