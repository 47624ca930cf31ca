'use strict'

// Wire and signature vectors from the REAL hyperdht 6.34.0 encoders (lib/messages.js) and
// signers (lib/persistent.js, lib/secure-payload.js, lib/crypto.js), for the hex snapshot tests
// in crates/hyperdht/src/{messages,crypto}.rs and the live check in
// interop-tests/tests/hyperdht_vectors.rs (which runs this script and compares every vector with
// the Rust encoder, decoder and signer).
//
// Inputs are fixed (keys from fixed seeds, byte-filled buffers), so the output is deterministic
// except for the `secure` entries, whose nonce is random by design (the Rust side decrypts them).
//
// Output: one JSON object on stdout:
//   { versions, ns: {NAME: hex}, encoded: [{name, hex}], decoded: [{name, hex, result}],
//     signed: [{name, ...}], secure: [{secret, plain, box}] }

const c = require('compact-encoding')
const sodium = require('sodium-universal')
const m = require('hyperdht/lib/messages')
const { NS } = require('hyperdht/lib/constants')
const Persistent = require('hyperdht/lib/persistent')
const SecurePayload = require('hyperdht/lib/secure-payload')
const { createKeyPair, hash } = require('hyperdht/lib/crypto')

const hx = (b) => (b === null || b === undefined ? null : Buffer.from(b).toString('hex'))
const fill = (n, byte) => Buffer.alloc(n, byte)

// Buffers become hex strings so the decoded values compare as JSON.
function plain(v) {
  if (v === null || v === undefined) return null
  if (Buffer.isBuffer(v) || v instanceof Uint8Array) return hx(v)
  if (Array.isArray(v)) return v.map(plain)
  if (typeof v === 'object') {
    const o = {}
    for (const k of Object.keys(v)) o[k] = plain(v[k])
    return o
  }
  return v
}

const encoded = []
function enc(name, encoding, value) {
  encoded.push({ name, hex: hx(c.encode(encoding, value)) })
}

const decoded = []
function dec(name, encoding, hex) {
  let result
  try {
    result = plain(c.decode(encoding, Buffer.from(hex, 'hex')))
  } catch (err) {
    result = { error: err.message }
  }
  decoded.push({ name, hex, result })
}

const a = (host, port) => ({ host, port })
const pk = fill(32, 0xaa)
const relays3 = [a('1.2.3.4', 49737), a('10.0.0.1', 1), a('255.255.255.255', 65535)]

// --- peer / lookup
enc('peer/no-relays', m.peer, { publicKey: pk, relayAddresses: [] })
enc('peer/one-relay', m.peer, { publicKey: pk, relayAddresses: [a('1.2.3.4', 49737)] })
enc('peer/three-relays', m.peer, { publicKey: pk, relayAddresses: relays3 })
const rec1 = c.encode(m.peer, { publicKey: pk, relayAddresses: [] })
const rec2 = c.encode(m.peer, { publicKey: fill(32, 0xbb), relayAddresses: [a('127.0.0.1', 4000)] })
enc('lookup/one', m.lookupRawReply, { peers: [rec1], bump: 0 })
enc('lookup/two-bump', m.lookupRawReply, { peers: [rec1, rec2], bump: 1700000000000 })

// --- announce
const sig = fill(64, 0xcc)
const peer0 = { publicKey: pk, relayAddresses: [] }
enc('announce/peer-sig', m.announce, { peer: peer0, refresh: null, signature: sig, bump: 0 })
enc('announce/peer-sig-bump', m.announce, { peer: peer0, refresh: null, signature: sig, bump: 1000 })
enc('announce/refresh-only', m.announce, { peer: null, refresh: fill(32, 0xdd), signature: null, bump: 0 })
enc('announce/all', m.announce, {
  peer: { publicKey: pk, relayAddresses: [a('9.9.9.9', 3000)] },
  refresh: fill(32, 0xdd),
  signature: sig,
  bump: 70000
})
enc('announce/empty', m.announce, { peer: null, refresh: null, signature: null, bump: 0 })

// --- handshake
const noise = Buffer.from('0102', 'hex')
enc('handshake/from-client', m.handshake, { mode: 0, noise, peerAddress: null, relayAddress: null })
enc('handshake/from-server', m.handshake, { mode: 1, noise, peerAddress: a('10.0.0.1', 1234), relayAddress: null })
enc('handshake/from-relay', m.handshake, { mode: 2, noise, peerAddress: a('10.0.0.1', 1234), relayAddress: null })
enc('handshake/from-second-relay', m.handshake, {
  mode: 3,
  noise,
  peerAddress: a('10.0.0.1', 1234),
  relayAddress: a('10.0.0.2', 4321)
})
enc('handshake/reply', m.handshake, { mode: 4, noise: fill(300, 0x11), peerAddress: null, relayAddress: null })

// --- holepunch
enc('holepunch/from-client', m.holepunch, { mode: 0, id: 3, payload: Buffer.from('abcd', 'hex'), peerAddress: a('9.9.9.9', 3000) })
enc('holepunch/from-server', m.holepunch, { mode: 1, id: 0, payload: fill(60, 0x22), peerAddress: null })
enc('holepunch/reply-big-id', m.holepunch, { mode: 4, id: 300, payload: fill(2, 0x33), peerAddress: a('127.0.0.1', 80) })

const hpBase = {
  error: 0,
  firewall: 0,
  round: 0,
  connected: false,
  punching: false,
  addresses: null,
  remoteAddress: null,
  token: null,
  remoteToken: null
}
enc('holepunch-payload/empty', m.holepunchPayload, hpBase)
enc('holepunch-payload/probe', m.holepunchPayload, {
  ...hpBase,
  firewall: 2,
  round: 1,
  punching: true,
  addresses: [a('9.9.9.9', 3000)],
  token: fill(32, 0xbb)
})
enc('holepunch-payload/all', m.holepunchPayload, {
  error: 3,
  firewall: 3,
  round: 252,
  connected: true,
  punching: true,
  addresses: [a('9.9.9.9', 3000), a('8.8.8.8', 0)],
  remoteAddress: a('1.1.1.1', 1),
  token: fill(32, 0xbb),
  remoteToken: fill(32, 0xee)
})

// --- noise payload
enc('noise-payload/client', m.noisePayload, {
  error: 0,
  firewall: 0,
  holepunch: null,
  addresses4: [a('192.168.1.5', 5000)],
  addresses6: [],
  udx: { reusableSocket: false, id: 0x12345678, seq: 0 },
  secretStream: {},
  relayThrough: null
})
enc('noise-payload/server', m.noisePayload, {
  error: 0,
  firewall: 0,
  holepunch: { id: 0, relays: [{ relayAddress: a('5.6.7.8', 49737), peerAddress: a('9.9.9.9', 3000) }] },
  addresses4: [],
  addresses6: null,
  udx: { reusableSocket: true, id: 7, seq: 0 },
  secretStream: {},
  relayThrough: { publicKey: pk, token: fill(32, 0xbb) },
  relayAddresses: [a('5.6.7.8', 49737)]
})
enc('noise-payload/open-empty-relays', m.noisePayload, {
  error: 0,
  firewall: 1,
  holepunch: null,
  addresses4: [a('127.0.0.1', 49737), a('10.1.2.3', 49737)],
  addresses6: [a('::1', 5000), a('2001:db8::1', 80)],
  udx: { reusableSocket: false, id: 0xffffffff, seq: 0 },
  secretStream: {},
  relayThrough: null,
  relayAddresses: []
})
enc('noise-payload/error-only', m.noisePayload, {
  error: 2,
  firewall: 3,
  holepunch: null,
  addresses4: null,
  addresses6: null,
  udx: null,
  secretStream: null,
  relayThrough: null,
  relayAddresses: null
})

// --- mutable / immutable
enc('mutable/signable', m.mutableSignable, { seq: 5, value: Buffer.from('hi') })
enc('mutable/put-request', m.mutablePutRequest, { publicKey: pk, seq: 5, value: Buffer.from('hi'), signature: sig })
enc('mutable/get-response', m.mutableGetResponse, { seq: 70000, value: fill(1000, 0x44), signature: sig })
enc('plugin/with-value', m.pluginRequest, { plugin: 'echo', version: 1, command: 2, value: Buffer.from('hey') })
enc('plugin/no-value', m.pluginRequest, { plugin: 'ñ', version: 300, command: 0, value: null })

// --- decoding: what JS accepts and how it reads it
dec('noise-payload/version-2', m.noisePayload, '02ffffff')
dec('noise-payload/trailing', m.noisePayload, '0100000000aabbcc')
dec('noise-payload/relay-through-flags-ignored', m.noisePayload, '01200000' + '0107' + 'aa'.repeat(32) + 'bb'.repeat(32))
dec('noise-payload/udx-features', m.noisePayload, '010800000203fd2c0105')
dec('noise-payload/truncated', m.noisePayload, '011a000001c0a80105')
dec('lookup/no-bump', m.lookupRawReply, '01' + 'aa'.repeat(32) + '00')
dec('lookup/empty', m.lookupRawReply, '')
dec('handshake/unknown-mode', m.handshake, '000702abcd')
dec('handshake/trailing', m.handshake, '000002abcdffff')
dec('announce/bump-zero-flag', m.announce, '0800')
dec('announce/truncated-sig', m.announce, '04' + 'cc'.repeat(10))
dec('peer/array-too-big', m.peer, 'aa'.repeat(32) + 'fe01001000')
dec('mutable/get-response-short', m.mutableGetResponse, '0102ab')
dec('holepunch-payload/flags-high', m.holepunchPayload, 'c0010203')

// --- signatures (lib/persistent.js) with fixed key pairs
const kp = createKeyPair(fill(32, 1))
const target = fill(32, 1)
const nodeId = fill(32, 2)
const token = fill(32, 3)
const signed = []
for (const [name, ann] of [
  ['announce/no-relays', { peer: { publicKey: kp.publicKey, relayAddresses: [] }, refresh: null }],
  ['announce/relays', { peer: { publicKey: kp.publicKey, relayAddresses: relays3 }, refresh: null }],
  ['announce/refresh', { peer: { publicKey: kp.publicKey, relayAddresses: [] }, refresh: fill(32, 0xdd) }]
]) {
  signed.push({
    name,
    publicKey: hx(kp.publicKey),
    target: hx(target),
    nodeId: hx(nodeId),
    token: hx(token),
    relayAddresses: ann.peer.relayAddresses,
    refresh: hx(ann.refresh),
    announce: hx(Persistent.signAnnounce(target, token, nodeId, ann, kp)),
    unannounce: hx(Persistent.signUnannounce(target, token, nodeId, ann, kp))
  })
}
for (const [name, seq, value] of [
  ['mutable/seq-0', 0, Buffer.from('hello world')],
  ['mutable/seq-big', 1700000000, fill(1000, 0x55)],
  ['mutable/empty', 7, Buffer.alloc(0)]
]) {
  signed.push({
    name,
    publicKey: hx(kp.publicKey),
    seq,
    value: hx(value),
    signature: hx(Persistent.signMutable(seq, value, kp)),
    target: hx(hash(kp.publicKey))
  })
}
signed.push({ name: 'immutable/hello', value: hx(Buffer.from('hello')), target: hx(hash(Buffer.from('hello'))) })

// --- secure payload (random nonces; the Rust side decrypts)
const secure = []
const hsHash = fill(64, 0x77)
const secret = Buffer.alloc(32)
sodium.crypto_generichash(secret, NS.PEER_HOLEPUNCH, hsHash)
const sp = new SecurePayload(secret)
for (const p of [
  hpBase,
  { ...hpBase, firewall: 2, round: 1, punching: true, addresses: [a('9.9.9.9', 3000)], token: fill(32, 0xbb) }
]) {
  const box = sp.encrypt(p)
  secure.push({ handshakeHash: hx(hsHash), secret: hx(secret), plain: hx(c.encode(m.holepunchPayload, p)), box: hx(box) })
}

const nsOut = {}
for (const k of Object.keys(NS)) nsOut[k] = hx(NS[k])

console.log(
  JSON.stringify({
    versions: { hyperdht: require('hyperdht/package.json').version },
    ns: nsOut,
    encoded,
    decoded,
    signed,
    secure
  })
)
