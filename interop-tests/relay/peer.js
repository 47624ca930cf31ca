'use strict'

// The JS side of interop-tests/tests/blind_relay.rs: blind-relay 1.6.1 with udx-native and
// @hyperswarm/secret-stream on 127.0.0.1. The relay's control connections are TCP carrying a
// Noise XX secret stream (protomux runs on any framed stream; hyperdht uses its own
// connections instead, which changes nothing in blind-relay).
//
//   node relay/peer.js relay
//       a blind-relay Server: control on TCP, relay streams on one UDX socket.
//       prints {"event":"ready","tcp":P,"udp":Q}, then {"event":"pair",...} per matched side.
//   node relay/peer.js clients TCP UDP BLOCKS
//       two clients (two control connections, two UDX sockets) pair through the relay at
//       127.0.0.1 (TCP control, UDP relay socket); then a writer core of BLOCKS blocks
//       replicates to a reader core over a secret stream on the relayed UDX streams; the reader
//       checks every block. Prints {"event":"done","blocks":N,"bytes":B,"ms":T}.
//
// Block i is "relay-plaintext-block-<i>:" followed by filler letters (the Rust test looks for
// these bytes in what the relay forwarded).

const net = require('net')
const os = require('os')
const fs = require('fs')
const path = require('path')
const b4a = require('b4a')
const UDX = require('udx-native')
const NoiseSecretStream = require('@hyperswarm/secret-stream')
const Hypercore = require('hypercore')
const BlindRelay = require('blind-relay')

const out = (o) => process.stdout.write(JSON.stringify(o) + '\n')
process.on('SIGTERM', () => process.exit(0))
process.on('unhandledRejection', (err) => {
  out({ event: 'failed', error: String((err && err.stack) || err) })
  process.exit(1)
})

function block (i) {
  const head = `relay-plaintext-block-${String(i).padStart(5, '0')}:`
  let body = ''
  for (let j = 0; body.length < 2048 - head.length; j++) body += String.fromCharCode(97 + ((i + j) % 26))
  return b4a.from(head + body)
}

function relay () {
  const udx = new UDX()
  const socket = udx.createSocket()
  socket.bind(0, '127.0.0.1')
  let nextId = 1
  const server = new BlindRelay.Server({
    createStream: (opts) => udx.createStream(nextId++, opts)
  })
  const tcp = net.createServer((conn) => {
    const stream = new NoiseSecretStream(false, conn)
    stream.on('error', () => {})
    stream.once('open', () => {
      const session = server.accept(stream, { id: stream.remotePublicKey })
      session.on('error', () => {})
      session.on('pair', (isInitiator, token, relayStream, remoteId) => {
        out({ event: 'pair', isInitiator, token: b4a.toString(token, 'hex'), relayId: relayStream.id, remoteId })
      })
    })
  })
  tcp.listen(0, '127.0.0.1', () => {
    out({ event: 'ready', tcp: tcp.address().port, udp: socket.address().port })
  })
}

async function control (port) {
  const conn = net.connect(port, '127.0.0.1')
  const stream = new NoiseSecretStream(true, conn)
  stream.on('error', () => {})
  await new Promise((resolve) => stream.once('open', resolve))
  return stream
}

// Pair `raw` through the relay; resolves once it is connected to the relay stream.
async function pairThrough (ctrl, isInitiator, token, udx, socket, raw, udpPort) {
  const client = BlindRelay.Client.from(ctrl, { id: ctrl.publicKey })
  const request = client.pair(isInitiator, token, raw)
  const remoteId = await new Promise((resolve, reject) => {
    request.on('data', resolve)
    request.on('error', reject)
  })
  raw.connect(socket, remoteId, udpPort, '127.0.0.1')
  // A relay stream learns its peer's address from the first packet it gets: send one now, so
  // the other side's first packets (here the XX initiator's) are not dropped meanwhile.
  raw.trySend(b4a.alloc(0))
  return remoteId
}

async function clients (tcpPort, udpPort, blocks) {
  const n = Number(blocks)
  const udx = new UDX()
  const sockA = udx.createSocket()
  const sockB = udx.createSocket()
  sockA.bind(0, '127.0.0.1')
  sockB.bind(0, '127.0.0.1')
  const rawA = udx.createStream(1000)
  const rawB = udx.createStream(2000)
  const token = BlindRelay.token()
  const [ctrlA, ctrlB] = await Promise.all([control(Number(tcpPort)), control(Number(tcpPort))])
  await Promise.all([
    pairThrough(ctrlA, true, token, udx, sockA, rawA, Number(udpPort)),
    pairThrough(ctrlB, false, token, udx, sockB, rawB, Number(udpPort))
  ])

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'peerhost-relay-js-'))
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }))
  const writer = new Hypercore(path.join(dir, 'w'))
  await writer.ready()
  const batch = []
  for (let i = 0; i < n; i++) batch.push(block(i))
  await writer.append(batch)
  const reader = new Hypercore(path.join(dir, 'r'), writer.key)
  await reader.ready()

  const started = Date.now()
  const ssA = new NoiseSecretStream(true, rawA)
  const ssB = new NoiseSecretStream(false, rawB)
  ssA.on('error', () => {})
  ssB.on('error', () => {})
  writer.replicate(ssA)
  reader.replicate(ssB)
  await reader.update({ wait: true })
  if (reader.length !== n) throw new Error(`reader sees ${reader.length} blocks, expected ${n}`)
  await reader.download({ start: 0, end: n }).done()
  let bytes = 0
  for (let i = 0; i < n; i++) {
    const got = await reader.get(i)
    if (!b4a.equals(got, block(i))) throw new Error(`block ${i} differs`)
    bytes += got.byteLength
  }
  out({ event: 'done', blocks: n, bytes, ms: Date.now() - started })
  process.exit(0)
}

const [mode, ...args] = process.argv.slice(2)
if (mode === 'relay') relay()
else if (mode === 'clients') clients(...args)
else {
  console.error('usage: relay/peer.js relay | clients TCP UDP BLOCKS')
  process.exit(2)
}
