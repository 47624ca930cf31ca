// WebRTC peers in the bootstrap's peer set (web/boot/rtc.js): `joinAll` opens them at once and
// adds each to the loader when its channel is open; it resolves at the first join, when all
// failed (each named in a warning), or after `waitMs`; a peer's `get` answers like an HTTP
// peer's (status, parsed JSON or bytes). The channel itself runs in Chromium
// (interop-tests/browser/rtc-boot.test.js).

import { test } from 'node:test'
import assert from 'node:assert/strict'

import { joinAll, rtcPeer } from '../boot/rtc.js'
import { Loader } from '../boot/loader.js'

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** A stand-in peer whose connect() settles after `ms` (rejects with `error`). */
function fake (key, ms, error = null) {
  return {
    url: `rtc://${key}`,
    kind: 'webrtc',
    key,
    connect: () => sleep(ms).then(() => { if (error) throw new Error(error) }),
    get: async () => ({ status: 404, body: null })
  }
}

const logger = () => {
  const warnings = []
  return { warnings, warn: (m) => warnings.push(m) }
}

test('joinAll: resolves at the first open channel; later ones join as they open; failures are named', async () => {
  const loader = new Loader({ log: logger() })
  const log = logger()
  const t0 = Date.now()
  await joinAll(loader, [fake('a'.repeat(64), 30), fake('b'.repeat(64), 120), fake('c'.repeat(64), 10, 'PEER_TIMEOUT')], { waitMs: 5000, log })
  const waited = Date.now() - t0
  assert.ok(waited >= 25 && waited < 110, `resolved at the first join (${waited} ms)`)
  assert.deepEqual(loader.list().map((p) => p.url), [`rtc://${'a'.repeat(64)}`])
  await sleep(150)
  assert.deepEqual(loader.list().map((p) => [p.url, p.kind]), [[`rtc://${'a'.repeat(64)}`, 'webrtc'], [`rtc://${'b'.repeat(64)}`, 'webrtc']])
  assert.equal(log.warnings.length, 1)
  assert.match(log.warnings[0], /WebRTC peer cccccccc… not reachable \(PEER_TIMEOUT\)/)
})

test('joinAll: all failing resolves at once; none answering resolves after waitMs', async () => {
  const loader = new Loader({ log: logger() })
  let t0 = Date.now()
  await joinAll(loader, [fake('d'.repeat(64), 10, 'x'), fake('e'.repeat(64), 20, 'y')], { waitMs: 5000, log: logger() })
  assert.ok(Date.now() - t0 < 500, 'no wait when every peer failed')
  assert.equal(loader.list().length, 0)
  t0 = Date.now()
  await joinAll(loader, [fake('f'.repeat(64), 1000)], { waitMs: 80, log: logger() })
  const waited = Date.now() - t0
  assert.ok(waited >= 75 && waited < 1000, `gave up after waitMs (${waited} ms)`)
})

test('rtcPeer: the loader\'s peer shape; a bad node key is refused before any connection', async () => {
  const p = rtcPeer('ab'.repeat(32), { iceServers: [{ urls: ['stun:198.51.100.1:3478'] }] })
  assert.equal(p.url, `rtc://${'ab'.repeat(32)}`)
  assert.equal(p.kind, 'webrtc')
  assert.equal(typeof p.get, 'function')
  assert.equal(p.stats(), null, 'no connection yet')
  assert.throws(() => rtcPeer('nothex').connect(), (e) => e.code === 'BAD_KEY')
})

test('rtcPeer adopts the document\'s open channel only when the answer is signed by its key', async () => {
  const { createHash, generateKeyPairSync, sign } = await import('node:crypto')
  const { publicKey, privateKey } = generateKeyPairSync('ed25519')
  const key = publicKey.export({ format: 'der', type: 'spki' }).subarray(12).toString('hex')
  const offer = 'v=0\r\na=offer\r\n'
  const answer = 'v=0\r\na=fingerprint:sha-256 AA\r\n'
  const sha = (x) => createHash('sha256').update(x).digest()
  const signature = sign(null, Buffer.concat([Buffer.from('peerhost/webrtc-answer/v1'), Buffer.from([0]), sha(offer), sha(answer)]), privateKey).toString('hex')
  // HELLO v1, max_message 65536, max_inflight 16, max_request 2048.
  const hello = Uint8Array.from([0, 1, 0, 0, 1, 0, 16, 0, 0, 8]).buffer
  const channel = () => {
    const sent = []
    const pc = { closed: 0, close () { this.closed++ }, getStats: async () => new Map() }
    const dc = { readyState: 'open', sent, send: (f) => sent.push(new Uint8Array(f)), close () {} }
    return { pc, dc }
  }

  const good = channel()
  const p = rtcPeer(key, { adopt: { ...good, hello, offer, answer, signature } })
  const t = await p.connect()
  assert.equal(good.pc.closed, 0, 'adopted, not closed')
  assert.equal(t.dc, good.dc)
  // A request goes out on the adopted channel; its answer comes back through it.
  const got = p.get(`/v1/logs/${'a'.repeat(64)}/head`, 'json')
  await sleep(10)
  assert.equal(good.dc.sent.length, 1)
  const id = new DataView(good.dc.sent[0].buffer).getUint32(1, true)
  const body = new TextEncoder().encode('{"length":3}')
  const res = new Uint8Array(12 + body.length)
  const v = new DataView(res.buffer)
  res[0] = 2
  v.setUint32(1, id, true)
  v.setUint16(5, 200, true)
  res[7] = 0
  v.setUint32(8, body.length, true)
  res.set(body, 12)
  good.dc.onmessage({ data: res.buffer })
  assert.deepEqual(await got, { status: 200, body: { length: 3 } })

  for (const bad of [{ signature: signature.replace(/^./, (c) => (c === '0' ? '1' : '0')) }, { answer: answer + 'x' }, { signature: 'zz' }]) {
    const c = channel()
    const q = rtcPeer(key, { adopt: { ...c, hello, offer, answer, signature, ...bad } })
    // Refused: the document's channel is closed and a new one is opened (no RTCPeerConnection
    // in Node: that fails here).
    await assert.rejects(q.connect())
    assert.equal(c.pc.closed, 1, `closed for ${JSON.stringify(bad)}`)
    assert.equal(c.dc.sent.length, 0)
  }
})
