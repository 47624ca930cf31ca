'use strict'

// Wire vectors from the REAL dht-rpc 6.27.0 encoder and decoder (lib/io.js), for the hex
// snapshot tests in crates/dht-rpc/src/messages.rs and the live check in
// interop-tests/tests/dht_rpc.rs (which runs this script and compares every vector with the
// Rust encoder).
//
// Nothing is re-implemented here: requests are built by IO#createRequest + Request#send,
// replies by feeding the request bytes to IO#onmessage and calling Request#reply / #error,
// and decoding goes through IO#onmessage as well. The sockets are stand-ins that record what
// dht-rpc hands to `trySend`. Secrets and ids are fixed so the output is deterministic.
//
// Output: one JSON object on stdout:
//   { versions, ids: [{host, port, id}], tokens: [{host, secret, token}], nat: "...",
//     encoded: [{name, hex, to}], decoded: [{name, hex, result}] }

const IO = require('dht-rpc/lib/io')
const peer = require('dht-rpc/lib/peer')
const Table = require('kademlia-routing-table')
const sodium = require('sodium-universal')

function hx(b) {
  return b === null || b === undefined ? null : Buffer.from(b).toString('hex')
}

function fill(n, byte) {
  return Buffer.alloc(n, byte)
}

class FakeSocket {
  constructor(port) {
    this.port = port
    this.sent = []
  }

  trySend(buf, port, host) {
    this.sent.push({ buf: Buffer.from(buf), port, host })
  }

  address() {
    return { host: '127.0.0.1', port: this.port }
  }

  on() {}
}

const fakeUdx = { watchNetworkInterfaces: () => ({ on() {}, destroy() {} }) }

function makeIO({ tableId = fill(32, 0xaa), ephemeral = true, firewalled = true, onrequest } = {}) {
  const table = new Table(tableId)
  const io = new IO(table, fakeUdx, { firewalled, onrequest: onrequest || (() => {}) })
  io.serverSocket = new FakeSocket(49737)
  io.clientSocket = new FakeSocket(50000)
  io.ephemeral = ephemeral
  io._tid = 0x1234
  // Fixed secrets: [0] = 0x01.., [1] = 0x02..
  io._secrets = [fill(32, 0x01), fill(32, 0x02)]
  return io
}

const encoded = []
const decoded = []

function lastSent(io) {
  const all = [...io.serverSocket.sent, ...io.clientSocket.sent]
  return all[all.length - 1]
}

function request(name, ioOpts, to, token, internal, command, target, value) {
  const io = makeIO(ioOpts)
  const req = io.createRequest({ id: null, ...to }, token, internal, command, target, value, null)
  req.send(true)
  if (req._timeout) clearTimeout(req._timeout)
  const sent = lastSent(io)
  encoded.push({ name, hex: hx(sent.buf), to: `${sent.host}:${sent.port}` })
  return sent.buf
}

const TO = { host: '10.1.2.3', port: 49737 }

request('ping', {}, TO, null, true, 0, null, null)
request('ping_nat', {}, TO, null, true, 1, null, Buffer.from([0x49, 0xc2]))
request('find_node', {}, TO, null, true, 2, fill(32, 0x11), null)
request('find_node_persistent', { ephemeral: false, firewalled: false }, TO, null, true, 2, fill(32, 0x11), null)
request('down_hint', {}, TO, null, true, 3, null, Buffer.from([1, 2, 3, 4, 0x39, 0x30]))
request('user_full', {}, TO, fill(32, 0x22), false, 42, fill(32, 0x33), Buffer.from('hello'))
request('user_empty_value', {}, TO, null, false, 300, null, Buffer.alloc(0))
request('user_big_command', {}, TO, null, false, 70000, null, null)

// Replies: feed a request to onmessage (real decode), then reply with the real encoder.
function reply(name, ioOpts, tableNodes, reqBytes, from, answer) {
  let got = null
  const io = makeIO({ ...ioOpts, onrequest: (req) => (got = req) })
  for (const n of tableNodes) io.table.add({ id: peer.id(n.host, n.port), host: n.host, port: n.port })
  io.onmessage(io.serverSocket, reqBytes, from)
  if (got === null) throw new Error('request not delivered: ' + name)
  answer(got)
  const sent = lastSent(io)
  encoded.push({ name, hex: hx(sent.buf), to: `${sent.host}:${sent.port}` })
}

const FROM = { host: '192.168.0.7', port: 40000 }
const NODES = [
  { host: '1.2.3.4', port: 1000 },
  { host: '5.6.7.8', port: 2000 },
  { host: '9.9.9.9', port: 49737 }
]

const findNodeReq = request('tmp', {}, TO, null, true, 2, fill(32, 0x11), null)
const userReq = request('tmp', {}, TO, null, false, 42, fill(32, 0x33), Buffer.from('hello'))
const pingReq = request('tmp', {}, TO, null, true, 0, null, null)
encoded.splice(encoded.length - 3, 3)

reply('reply_ping', {}, [], pingReq, FROM, (r) => r.sendReply(0, null, false, false))
reply('reply_find_node', { ephemeral: false, firewalled: false }, NODES, findNodeReq, FROM, (r) =>
  r.sendReply(0, null, false, true)
)
reply('reply_user_value_token', {}, NODES, userReq, FROM, (r) =>
  r.reply(Buffer.from('world'), { closerNodes: false })
)
reply('reply_user_full', { ephemeral: false, firewalled: false }, NODES, userReq, FROM, (r) =>
  r.reply(Buffer.from('world'))
)
reply('reply_unknown_command', { ephemeral: false, firewalled: false }, NODES, userReq, FROM, (r) =>
  r.sendReply(1, null, false, r.target !== null)
)
reply('reply_error_with_token', {}, [], pingReq, FROM, (r) => r.error(2, { token: true }))
reply('reply_big_error', {}, [], pingReq, FROM, (r) => r.error(1000, {}))
reply('reply_to_other', {}, [], userReq, FROM, (r) =>
  r.reply(Buffer.alloc(0), { to: { host: '8.8.4.4', port: 53 }, token: false, closerNodes: false })
)

// Decoding: what the real IO#onmessage accepts, and what it makes of it.
function decode(name, hex) {
  const buf = Buffer.from(hex, 'hex')
  let result = null
  const io = makeIO({
    onrequest: (req) => {
      result = {
        type: 'request',
        tid: req.tid,
        to: `${req.to.host}:${req.to.port}`,
        fromId: hx(req.from.id),
        token: hx(req.token),
        internal: req.internal,
        command: req.command,
        target: hx(req.target),
        value: hx(req.value)
      }
    }
  })
  // Responses are decoded by the same onmessage; catch them through an in-flight request
  // whose tid matches.
  if (buf[0] === 0x13 && buf.length >= 4) {
    const tid = buf[2] | (buf[3] << 8)
    io._tid = tid
    const req = io.createRequest({ id: null, host: '1.1.1.1', port: 1 }, null, true, 0, null, null)
    req.onresponse = (res) => {
      result = {
        type: 'response',
        tid: res.tid,
        to: `${res.to.host}:${res.to.port}`,
        fromId: hx(res.from.id),
        token: hx(res.token),
        closerNodes: res.closerNodes && res.closerNodes.map((n) => `${n.host}:${n.port}`),
        error: res.error,
        value: hx(res.value)
      }
    }
  }
  io.onmessage(io.serverSocket, buf, FROM)
  decoded.push({ name, hex, result })
}

const fromId = hx(peer.id(FROM.host, FROM.port))
const idHex = fromId
decode('empty', '')
decode('one_byte', '03')
decode('bad_type', '0400341201020304e803' + '00')
decode('ping', '03043412' + '0a010203' + '49c2' + '00')
decode('ping_trailing_garbage', '03043412' + '0a010203' + '49c2' + '00' + 'ffffff')
decode('truncated_to', '03043412' + '0a0102')
decode('missing_command', '03043412' + '0a010203' + '49c2')
decode('flags_varint', '03fd04003412' + '0a010203' + '49c2' + '00')
decode('flags_unknown_bits', '03e43412' + '0a010203' + '49c2' + '00')
decode('valid_id', '03053412' + '0a010203' + '49c2' + idHex + '00')
decode('wrong_id', '03053412' + '0a010203' + '49c2' + 'ee'.repeat(32) + '00')
decode('value_len_overflow', '03143412' + '0a010203' + '49c2' + '2a' + '05' + '6869')
decode('value_empty', '03143412' + '0a010203' + '49c2' + '2a' + '00')
decode('command_fd', '03003412' + '0a010203' + '49c2' + 'fd2a00')
decode('command_u64', '03003412' + '0a010203' + '49c2' + 'ff0100000001000000')
decode('command_unsafe', '03003412' + '0a010203' + '49c2' + 'ff0000000000002000')
decode('response_ok', '13003412' + 'c0a800074094')
decode('response_nodes', '13043412' + 'c0a80007' + '4094' + '02' + '01020304e803' + '05060708d007')
decode('response_nodes_empty', '13043412' + 'c0a80007' + '4094' + '00')
decode('response_nodes_truncated', '13043412' + 'c0a80007' + '4094' + '03' + '01020304e803')
decode('response_error_zero', '13083412' + 'c0a80007' + '4094' + '00')
decode('response_error_value', '13183412' + 'c0a80007' + '4094' + '07' + '03616263')
decode('response_id_token', '13033412' + 'c0a80007' + '4094' + idHex + '77'.repeat(32))

const tokens = []
{
  const io = makeIO()
  for (const host of ['127.0.0.1', '192.168.0.7', '10.1.2.3']) {
    tokens.push({ host, secret: 0, token: hx(io.token({ host }, 0)) })
    tokens.push({ host, secret: 1, token: hx(io.token({ host }, 1)) })
  }
  // Rotation as IO#_drain does it on every 10th drain.
  for (let i = 0; i < 10; i++) io._drain()
  tokens.push({ host: '127.0.0.1', secret: 0, rotated: 1, token: hx(io.token({ host: '127.0.0.1' }, 0)) })
  tokens.push({ host: '127.0.0.1', secret: 1, rotated: 1, token: hx(io.token({ host: '127.0.0.1' }, 1)) })
}

// The NAT sampler on a pseudo-random stream of samples (MINSTD; host 1.1.1.0 80% of the time,
// else 1.1.1.1-2; port 1000 70% of the time, else 1001); after each sample the sampler's
// answer as "<last octet or ->:<port>".
const nat = []
{
  const NatSampler = require('nat-sampler')
  const s = new NatSampler()
  let x = 12345
  for (let i = 0; i < 80; i++) {
    x = (x * 48271) % 2147483647
    const h = x % 10 < 8 ? 0 : (x % 10) - 7
    const p = (x >> 8) % 10 < 7 ? 1000 : 1001
    s.add('1.1.1.' + h, p)
    nat.push(`${s.host === null ? '-' : s.host.split('.')[3]}:${s.port}`)
  }
}

const ids = []
for (const a of [
  { host: '127.0.0.1', port: 49737 },
  { host: '1.2.3.4', port: 1000 },
  { host: '192.168.0.7', port: 40000 },
  { host: '0.0.0.0', port: 0 }
]) {
  ids.push({ ...a, id: hx(peer.id(a.host, a.port)) })
}

const versions = {}
for (const name of [
  'dht-rpc',
  'kademlia-routing-table',
  'nat-sampler',
  'compact-encoding',
  'sodium-universal'
]) {
  versions[name] = require(name + '/package.json').version
}

// sanity: keep sodium referenced (blake2b is what peer.id uses)
void sodium

process.stdout.write(JSON.stringify({ versions, ids, tokens, nat: nat.join(' '), encoded, decoded }, null, 1) + '\n')
