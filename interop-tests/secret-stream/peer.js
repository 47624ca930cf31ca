'use strict'

// A live @hyperswarm/secret-stream peer for interop-tests/tests/secret_stream.rs.
//
//   node secret-stream/peer.js <initiator|responder> <listen|connect PORT> [options]
//
//   --seed HEX         32-byte seed of our static key pair (default 0x4a * 32)
//   --keep-alive MS    stream.setKeepAlive(MS) (default 100)
//   --timeout MS       stream.setTimeout(MS) (default 5000)
//   --pattern P        secret-stream's own handshake pattern (opts.pattern, default XX)
//   --remote-key HEX   opts.remotePublicKey (the responder's key, for an IK initiator)
//   --ik HEX           run hyperdht's NoiseWrap IK handshake first, over stdin/stdout, then start
//                      the stream from its result ({ handshake }) as hyperdht does; HEX is the
//                      remote static key (required for the initiator, ignored for the responder)
//
// Stdout: one JSON object per line ({"event": ...}). Stdin (only with --ik): one hex line, the
// peer's IK message.
//
// The exchange: each side sends the messages in SIZES (body(n, k) from common.js; the empty one
// is a keep-alive on the wire) and checks the remote's arrive in order. A side is done once it
// has every message and has seen at least two empty frames from the remote (so at least one
// came from the remote's keep-alive timer). JS then ends its side; the process exits when the
// stream closes.

const net = require('net')
const readline = require('readline')
const b4a = require('b4a')
const NoiseSecretStream = require('@hyperswarm/secret-stream')
const NoiseWrap = require('hyperdht/lib/noise-wrap')
const curve = require('noise-curve-ed')
const c = require('compact-encoding')
const m = require('hyperdht/lib/messages')
const { hex, body } = require('./common')

const SIZES = [1, 1000, 0, 65535, 1048576, 16777198]

const args = process.argv.slice(2)
const role = args[0]
const mode = args[1]
let i = mode === 'connect' ? 3 : 2
const port = mode === 'connect' ? Number(args[2]) : 0
const opts = { seed: '4a'.repeat(32), keepAlive: 100, timeout: 5000, ik: null, pattern: null, remoteKey: null }
for (; i < args.length; i += 2) {
  const [k, v] = [args[i], args[i + 1]]
  if (k === '--seed') opts.seed = v
  else if (k === '--keep-alive') opts.keepAlive = Number(v)
  else if (k === '--timeout') opts.timeout = Number(v)
  else if (k === '--ik') opts.ik = v
  else if (k === '--pattern') opts.pattern = v
  else if (k === '--remote-key') opts.remoteKey = v
  else throw new Error('unknown option ' + k)
}
if (role !== 'initiator' && role !== 'responder') throw new Error('role?')
if (mode !== 'listen' && mode !== 'connect') throw new Error('mode?')
const isInitiator = role === 'initiator'
const keyPair = curve.generateKeyPair(b4a.from(opts.seed, 'hex'))

const out = (o) => process.stdout.write(JSON.stringify(o) + '\n')
const fail = (msg) => {
  out({ event: 'error', message: String(msg) })
  process.exit(1)
}
setTimeout(() => fail('overall timeout'), 60000).unref()

const lines = readline.createInterface({ input: process.stdin })
const nextLine = () => new Promise((resolve) => lines.once('line', resolve))

async function ikHandshake () {
  // hyperdht lib/noise-wrap.js: IK, prologue NS.PEER_HANDSHAKE, noisePayload payloads.
  const payload = {
    error: 0,
    firewall: 1,
    holepunch: null,
    addresses4: [{ host: '10.0.0.' + (isInitiator ? 1 : 2), port: 4000 }],
    addresses6: [],
    udx: { reusableSocket: false, id: isInitiator ? 11 : 22, seq: 0 },
    secretStream: {},
    relayThrough: null
  }
  const wrap = new NoiseWrap(keyPair, isInitiator ? b4a.from(opts.ik, 'hex') : null)
  let remotePayload
  if (isInitiator) {
    out({ event: 'ik-message', message: hex(wrap.send(payload)) })
    remotePayload = wrap.recv(b4a.from(await nextLine(), 'hex'))
  } else {
    remotePayload = wrap.recv(b4a.from(await nextLine(), 'hex'))
    out({ event: 'ik-message', message: hex(wrap.send(payload)) })
  }
  const f = wrap.final()
  out({
    event: 'ik',
    payload: hex(c.encode(m.noisePayload, payload)),
    remotePayload: hex(c.encode(m.noisePayload, remotePayload)),
    remoteUdxId: remotePayload.udx && remotePayload.udx.id,
    tx: hex(f.tx),
    rx: hex(f.rx),
    hash: hex(f.hash),
    remotePublicKey: hex(f.remotePublicKey),
    remoteId: hex(f.remoteId),
    holepunchSecret: hex(f.holepunchSecret)
  })
  return f
}

function run (socket, handshake) {
  const streamOpts = handshake ? { handshake } : { keyPair }
  if (opts.pattern) streamOpts.pattern = opts.pattern
  if (opts.remoteKey) streamOpts.remotePublicKey = b4a.from(opts.remoteKey, 'hex')
  const stream = new NoiseSecretStream(isInitiator, socket, streamOpts)
  stream.setKeepAlive(opts.keepAlive)
  stream.setTimeout(opts.timeout)

  // Tap the raw socket to count empty frames (body = tag + MAC = 17 bytes) from the remote:
  // with keep-alive on, secret-stream swallows them before 'data'.
  let emptyFrames = 0
  let need = 3
  let header = true
  let pending = b4a.alloc(0)
  socket.on('data', (chunk) => {
    pending = b4a.concat([pending, chunk])
    while (pending.byteLength >= need) {
      if (header) {
        need = pending[0] | (pending[1] << 8) | (pending[2] << 16)
        pending = pending.subarray(3)
        header = false
      } else {
        if (need === 17) emptyFrames++
        pending = pending.subarray(need)
        need = 3
        header = true
      }
    }
  })

  const expect = SIZES.map((n, k) => [n, k]).filter(([n]) => n > 0)
  let received = 0
  let ended = false

  stream.on('connect', () => {
    out({
      event: 'handshake',
      isInitiator,
      publicKey: hex(stream.publicKey),
      remotePublicKey: hex(stream.remotePublicKey),
      handshakeHash: hex(stream.handshakeHash)
    })
  })

  SIZES.forEach((n, k) => stream.write(body(n, k)))

  const check = () => {
    if (ended || received < expect.length || emptyFrames < 2) return
    ended = true
    out({ event: 'done', received, emptyFrames })
    stream.end()
  }
  const timer = setInterval(check, 20)

  stream.on('data', (data) => {
    const next = expect[received]
    if (!next) return fail('unexpected message of ' + data.byteLength + ' bytes')
    const [n, k] = next
    if (!b4a.equals(data, body(n, k))) return fail('message ' + k + ' differs (' + data.byteLength + ' bytes, want ' + n + ')')
    received++
    out({ event: 'message', index: k, len: n })
  })
  stream.on('end', () => out({ event: 'end' }))
  stream.on('error', (err) => fail(err.message))
  stream.on('close', () => {
    clearInterval(timer)
    if (!ended) return fail('closed before done (received ' + received + ', emptyFrames ' + emptyFrames + ')')
    out({ event: 'close' })
    process.exit(0)
  })
}

async function main () {
  const handshake = opts.ik !== null ? await ikHandshake() : null
  if (mode === 'listen') {
    const server = net.createServer((socket) => {
      server.close()
      run(socket, handshake)
    })
    server.listen(0, '127.0.0.1', () => out({ event: 'listening', port: server.address().port }))
  } else {
    const socket = net.connect(port, '127.0.0.1')
    run(socket, handshake)
  }
}

main().catch(fail)
