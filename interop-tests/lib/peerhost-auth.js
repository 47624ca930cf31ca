// Signed requests and key challenges of the peerhost gateway (protocol/gateway.md §7.1), in
// plain Node (node:crypto Ed25519, BLAKE2b-256 from sodium-universal): a second implementation
// of the scheme, written from the spec, that the Rust instance must accept.
'use strict'

const crypto = require('crypto')
const sodium = require('sodium-universal')

const CONTEXT = 'peerhost/signed-request/v1'
const CHALLENGE_CONTEXT = 'peerhost/gateway-challenge/v1'

/** A fresh Ed25519 key pair: `{ publicKey: Buffer(32), privateKey: KeyObject }`. */
function keyPair () {
  const { publicKey, privateKey } = crypto.generateKeyPairSync('ed25519')
  return { publicKey: publicKey.export({ format: 'der', type: 'spki' }).subarray(-32), privateKey }
}

function blake2b256 (buf) {
  const out = Buffer.alloc(32)
  sodium.crypto_generichash(out, buf)
  return out
}

/** The bytes a request signature covers. */
function signable (origin, method, path, body, ts, nonce) {
  const t = Buffer.alloc(8)
  t.writeBigUInt64LE(BigInt(ts))
  const head = Buffer.from(`${CONTEXT}\0${origin.toLowerCase()}\0${method}\0${path}\0`)
  return Buffer.concat([head, t, nonce, blake2b256(body)])
}

/** The `Authorization` header value for a request to `origin` (`http://host:port`). */
function authorization (kp, origin, method, path, body) {
  const ts = Date.now()
  const nonce = crypto.randomBytes(16)
  const sig = crypto.sign(null, signable(origin, method, path, body, ts, nonce), kp.privateKey)
  return `Peerhost-Ed25519 key=${kp.publicKey.toString('hex')}, ts=${ts}, ` +
    `nonce=${nonce.toString('hex')}, sig=${sig.toString('hex')}`
}

/** POST `body` (an object, sent as JSON) to `base + path`, signed with `kp`. */
async function postSigned (kp, base, path, body) {
  const bytes = Buffer.from(JSON.stringify(body))
  return fetch(base + path, {
    method: 'POST',
    body: bytes,
    headers: {
      'content-type': 'application/json',
      authorization: authorization(kp, new URL(base).origin, 'POST', path, bytes)
    }
  })
}

/** The answer to `GET /v1/identity?challenge=HEX` asked at `origin` (`http://` + Host). */
function answerChallenge (kp, origin, challengeHex) {
  const msg = Buffer.concat([
    Buffer.from(`${CHALLENGE_CONTEXT}\0${origin.toLowerCase()}\0`),
    Buffer.from(challengeHex, 'hex')
  ])
  return {
    key: kp.publicKey.toString('hex'),
    signature: crypto.sign(null, msg, kp.privateKey).toString('hex')
  }
}

module.exports = { keyPair, signable, authorization, postSigned, answerChallenge }
