// The browser's side of signaling through the instance (web/boot/signal.js): the offer is
// POSTed to /v1/signal, and the answer is used only when the peer's node key signed
// (SHA-256(offer), SHA-256(answer)). A relay that swaps the answer, the signature or the peer
// is refused; the instance's errors come through with their codes. (Rust-signed answers are
// checked by real Chromium in interop-tests/browser/rtc.test.js.)

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash, generateKeyPairSync, sign } from 'node:crypto'

import { ANSWER_CONTEXT, answerSignable, instanceSignal } from '../boot/signal.js'

const { publicKey, privateKey } = generateKeyPairSync('ed25519')
const peer = publicKey.export({ format: 'der', type: 'spki' }).subarray(12).toString('hex')
const other = generateKeyPairSync('ed25519').privateKey
const OFFER = 'v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\na=fingerprint:sha-256 AA:BB\r\n'
const ANSWER = 'v=0\r\no=- 3 4 IN IP4 0.0.0.0\r\na=fingerprint:sha-256 CC:DD\r\n'

const sha = (s) => createHash('sha256').update(s).digest()
const signed = (key, offer, answer) => sign(null, Buffer.concat([Buffer.from(ANSWER_CONTEXT), Buffer.from([0]), sha(offer), sha(answer)]), key).toString('hex')

/** A fetch that answers /v1/signal with `reply(body)` and records the requests. */
function relay (reply) {
  const seen = []
  const fetchFn = async (url, init) => {
    const body = JSON.parse(init.body)
    seen.push({ url, init, body })
    const [status, json] = reply(body)
    return new Response(JSON.stringify(json), { status, headers: { 'content-type': 'application/json' } })
  }
  return { seen, fetchFn }
}

test('the signable bytes: context, a zero byte, SHA-256 of the offer and of the answer', async () => {
  const m = await answerSignable(OFFER, ANSWER)
  assert.equal(m.length, ANSWER_CONTEXT.length + 1 + 64)
  assert.equal(Buffer.from(m.subarray(0, ANSWER_CONTEXT.length)).toString(), 'peerhost/webrtc-answer/v1')
  assert.equal(m[ANSWER_CONTEXT.length], 0)
  assert.deepEqual(Buffer.from(m.subarray(-64)), Buffer.concat([sha(OFFER), sha(ANSWER)]))
})

test('a signed answer is returned; the offer goes to /v1/signal as {peer, sdp}', async () => {
  const r = relay((b) => [200, { peer: b.peer, sdp: ANSWER, signature: signed(privateKey, b.sdp, ANSWER) }])
  const answer = await instanceSignal({ peer, base: 'https://inst.example', fetchFn: r.fetchFn })(OFFER)
  assert.equal(answer, ANSWER)
  assert.equal(r.seen[0].url, 'https://inst.example/v1/signal')
  assert.equal(r.seen[0].init.method, 'POST')
  assert.deepEqual(r.seen[0].body, { peer, sdp: OFFER })
})

test('a swapped answer, another key\'s signature, another offer\'s or another peer are refused', async () => {
  const cases = {
    'answer swapped': (b) => ({ peer, sdp: ANSWER.replace('CC', 'EE'), signature: signed(privateKey, b.sdp, ANSWER) }),
    'signed by another key': (b) => ({ peer, sdp: ANSWER, signature: signed(other, b.sdp, ANSWER) }),
    'signed for another offer': () => ({ peer, sdp: ANSWER, signature: signed(privateKey, OFFER + 'x', ANSWER) }),
    'a flipped bit': (b) => {
      const s = Buffer.from(signed(privateKey, b.sdp, ANSWER), 'hex')
      s[5] ^= 1
      return { peer, sdp: ANSWER, signature: s.toString('hex') }
    }
  }
  for (const [name, make] of Object.entries(cases)) {
    const r = relay((b) => [200, make(b)])
    await assert.rejects(instanceSignal({ peer, fetchFn: r.fetchFn })(OFFER), (e) => e.code === 'BAD_SIGNATURE', name)
  }
  const wrongPeer = relay((b) => [200, { peer: 'ab'.repeat(32), sdp: ANSWER, signature: signed(privateKey, b.sdp, ANSWER) }])
  await assert.rejects(instanceSignal({ peer, fetchFn: wrongPeer.fetchFn })(OFFER), (e) => e.code === 'BAD_ANSWER')
  const noSig = relay(() => [200, { peer, sdp: ANSWER }])
  await assert.rejects(instanceSignal({ peer, fetchFn: noSig.fetchFn })(OFFER), (e) => e.code === 'BAD_ANSWER')
})

test('the instance\'s errors keep their codes; a bad key is refused before any request', async () => {
  for (const [status, code] of [[404, 'UNKNOWN_PEER'], [429, 'TOO_MANY_REQUESTS'], [504, 'PEER_TIMEOUT'], [502, 'BAD_ANSWER']]) {
    const r = relay(() => [status, { error: code, message: 'm' }])
    await assert.rejects(instanceSignal({ peer, fetchFn: r.fetchFn })(OFFER), (e) => e.code === code)
  }
  const down = async () => { throw new TypeError('Failed to fetch') }
  await assert.rejects(instanceSignal({ peer, fetchFn: down })(OFFER), (e) => e.code === 'UNREACHABLE')
  assert.throws(() => instanceSignal({ peer: 'abc' }), (e) => e.code === 'BAD_KEY')
})

test('trickle: the offer says so, candidates go to /v1/signal/candidate, NO_TRICKLE comes through', async () => {
  const r = relay((b) => (b.candidate
    ? [200, { ok: true }]
    : [200, { peer: b.peer, sdp: ANSWER, signature: signed(privateKey, b.sdp, ANSWER) }]))
  const signal = instanceSignal({ peer, base: 'https://inst.example', fetchFn: r.fetchFn })
  assert.equal(await signal(OFFER, { trickle: true }), ANSWER)
  assert.deepEqual(r.seen[0].body, { peer, sdp: OFFER, trickle: true })
  const line = 'candidate:1 1 udp 1677729535 203.0.113.7 40001 typ srflx raddr 0.0.0.0 rport 0'
  await signal.trickle('AbC1', line)
  assert.equal(r.seen[1].url, 'https://inst.example/v1/signal/candidate')
  assert.deepEqual(r.seen[1].body, { peer, ufrag: 'AbC1', candidate: line })
  const old = relay(() => [409, { error: 'NO_TRICKLE', message: 'm' }])
  const s2 = instanceSignal({ peer, fetchFn: old.fetchFn })
  await assert.rejects(s2(OFFER, { trickle: true }), (e) => e.code === 'NO_TRICKLE')
  await assert.rejects(s2.trickle('AbC1', line), (e) => e.code === 'NO_TRICKLE')
})
