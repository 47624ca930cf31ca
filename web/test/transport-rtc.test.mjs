// The peerhost/1 framing and the WebRTC transport's request logic, in Node (no WebRTC here):
// the byte layouts are the ones crates/webrtc/src/frame.rs snapshots; the transport runs
// against a fake RTCPeerConnection whose data channel is served by a small in-test peer that
// follows protocol/webrtc.md §3–§4. Real Chromium against the real peer:
// interop-tests/browser/rtc.test.js.

import test from 'node:test'
import assert from 'node:assert/strict'
import {
  FRAME, GOAWAY, FrameError, RtcError, Reassembler, RtcTransport, decodeFrame, encodeFrame,
  raceOpen, rtcFetch, ufragOf, usableCandidate
} from '../boot/transport-rtc.js'

const hex = (s) => Uint8Array.from(s.replace(/ /g, '').match(/../g).map((b) => parseInt(b, 16)))
const te = new TextEncoder()

test('frames: the same bytes as the Rust snapshots', () => {
  const cases = [
    [{ type: FRAME.HELLO, version: 1, maxMessage: 65536, maxInflight: 16, maxRequest: 2048 }, '0001000001001000 0008'],
    [{ type: FRAME.REQUEST, id: 7, path: '/v1/logs' }, '0107000000 2f76312f6c6f6773'],
    [{ type: FRAME.RESPONSE, id: 7, status: 200, contentType: 1, bodyLen: 5, body: te.encode('PH') }, '0207000000 c800 01 05000000 5048'],
    [{ type: FRAME.DATA, id: 7, body: te.encode('R1!') }, '0307000000 523121'],
    [{ type: FRAME.CANCEL, id: 0x01020304 }, '0404030201'],
    [{ type: FRAME.GOAWAY, code: GOAWAY.FLOOD, reason: 'flood' }, '050200 666c6f6f64']
  ]
  for (const [frame, h] of cases) {
    assert.deepEqual(encodeFrame(frame), hex(h))
    const back = decodeFrame(hex(h))
    for (const [k, v] of Object.entries(frame)) assert.deepEqual(back[k], v, `${h} ${k}`)
  }
})

test('frames: malformed messages are refused', () => {
  for (const bad of [
    '', '09', '0101000000', '0101000000ff', '01010000', '0301000000', '040100000000', '00010000',
    '0201000000c8000001000000 0909', '0201000000c8000000000002'
  ]) {
    assert.throws(() => decodeFrame(bad ? hex(bad) : new Uint8Array(0)), FrameError, bad)
  }
  assert.throws(() => encodeFrame({ type: FRAME.REQUEST, id: 1, path: 'x'.repeat(1025) }), FrameError)
})

test('reassembler: chunked bodies, stale answers, protocol violations', () => {
  // HELLO comes first: an answer before it breaks the protocol.
  assert.throws(() => new Reassembler().take(encodeFrame({ type: FRAME.RESPONSE, id: 1, status: 200, contentType: 0, bodyLen: 1, body: te.encode('x') }), () => true), /before HELLO/)
  assert.throws(() => new Reassembler().take(encodeFrame({ type: FRAME.DATA, id: 1, body: te.encode('x') }), () => true), /before HELLO/)
  const r = new Reassembler()
  const inflight = new Set([1, 2])
  const has = (id) => inflight.has(id)
  assert.equal(r.take(encodeFrame({ type: FRAME.HELLO, version: 1, maxMessage: 100, maxInflight: 4, maxRequest: 2048 }), has).kind, 'hello')
  assert.equal(r.take(encodeFrame({ type: FRAME.RESPONSE, id: 1, status: 200, contentType: 1, bodyLen: 6, body: te.encode('ab') }), has).kind, 'partial')
  assert.equal(r.take(encodeFrame({ type: FRAME.DATA, id: 1, body: te.encode('cd') }), has).kind, 'partial')
  const done = r.take(encodeFrame({ type: FRAME.DATA, id: 1, body: te.encode('ef') }), has)
  assert.equal(done.kind, 'answer')
  assert.equal(new TextDecoder().decode(done.body), 'abcdef')
  assert.equal(done.contentType, 'application/vnd.peerhost.range-proof')
  // An answer to a request we no longer wait for.
  assert.equal(r.take(encodeFrame({ type: FRAME.RESPONSE, id: 9, status: 200, contentType: 0, bodyLen: 1, body: te.encode('x') }), has).kind, 'stale')
  assert.throws(() => r.take(encodeFrame({ type: FRAME.DATA, id: 2, body: te.encode('x') }), has), FrameError)
  r.take(encodeFrame({ type: FRAME.RESPONSE, id: 2, status: 200, contentType: 0, bodyLen: 2, body: te.encode('x') }), has)
  assert.throws(() => r.take(encodeFrame({ type: FRAME.DATA, id: 2, body: te.encode('yz') }), has), FrameError)
  assert.throws(() => r.take(encodeFrame({ type: FRAME.HELLO, version: 1, maxMessage: 1, maxInflight: 1, maxRequest: 1 }), has), FrameError)
  assert.throws(() => r.take(encodeFrame({ type: FRAME.REQUEST, id: 3, path: '/x' }), has), FrameError)
})

/**
 * A fake RTCPeerConnection whose data channel is answered by `serve(path) → {status, body}`
 * with the peer's rules: HELLO first, at most `maxInflight` requests in flight (429 past it),
 * answers chunked at `maxMessage` bytes. `hooks` can change what the peer sends.
 */
function fakePeer ({ serve, maxInflight = 4, maxMessage = 64, delayMs = 1, hooks = {} }) {
  const log = { offers: 0, requests: [], cancels: [], maxSeen: 0, goaways: [] }
  class FakeChannel {
    constructor () { this.readyState = 'connecting'; this.inflight = new Set() }
    send (bytes) {
      const f = decodeFrame(bytes)
      if (f.type === FRAME.REQUEST) {
        log.requests.push(f.path)
        this.inflight.add(f.id)
        log.maxSeen = Math.max(log.maxSeen, this.inflight.size)
        if (this.inflight.size > maxInflight) {
          this.inflight.delete(f.id)
          return this._answer(f.id, 429, te.encode('{"error":"TOO_MANY_REQUESTS"}'))
        }
        const r = serve(f.path)
        if (r === null) return // never answered
        setTimeout(() => this._answer(f.id, r.status, r.body), delayMs)
      } else if (f.type === FRAME.CANCEL) {
        log.cancels.push(f.id)
        this.inflight.delete(f.id)
      } else if (f.type === FRAME.GOAWAY) {
        log.goaways.push(f.code)
      }
    }
    _answer (id, status, body) {
      if (hooks.answer) return hooks.answer(this, id, status, body)
      const first = body.subarray(0, maxMessage - 12)
      this._emit(encodeFrame({ type: FRAME.RESPONSE, id, status, contentType: 0, bodyLen: body.length, body: first }))
      for (let o = first.length; o < body.length; o += maxMessage - 5) {
        this._emit(encodeFrame({ type: FRAME.DATA, id, body: body.subarray(o, o + maxMessage - 5) }))
      }
      this.inflight.delete(id)
    }
    _emit (bytes) {
      const copy = bytes.slice().buffer
      queueMicrotask(() => this.onmessage && this.onmessage({ data: copy }))
    }
    close () { if (this.readyState !== 'closed') { this.readyState = 'closed'; this.onclose && this.onclose() } }
  }
  class FakePC {
    constructor () { this.iceGatheringState = 'new'; this.connectionState = 'new'; this.listeners = {} }
    createDataChannel (label, opts) {
      assert.equal(opts.protocol, 'peerhost/1')
      this.dc = new FakeChannel()
      return this.dc
    }
    async createOffer () { return { type: 'offer', sdp: 'v=0 fake offer' } }
    async setLocalDescription (d) {
      this.localDescription = d
      setTimeout(() => { this.iceGatheringState = 'complete'; (this.listeners.icegatheringstatechange || []).forEach((f) => f()) }, 2)
    }
    addEventListener (name, f) { (this.listeners[name] = this.listeners[name] || []).push(f) }
    async setRemoteDescription (d) {
      assert.equal(d.sdp, 'v=0 fake answer')
      if (hooks.noConnect) return
      setTimeout(() => {
        this.dc.readyState = 'open'
        this.dc.onopen && this.dc.onopen()
        this.dc._emit(hooks.hello || encodeFrame({ type: FRAME.HELLO, version: 1, maxMessage, maxInflight, maxRequest: 2048 }))
      }, 2)
    }
    close () { this.connectionState = 'closed'; this.dc && this.dc.close() }
  }
  const signal = async (sdp) => { log.offers++; assert.equal(sdp, 'v=0 fake offer'); return 'v=0 fake answer' }
  return { RTCPeerConnection: FakePC, signal, log }
}

test('transport: asked while it opens, the first request leaves with the channel, the rest after HELLO', async () => {
  let helloAt = null
  const peer = fakePeer({
    serve: serveLen,
    maxInflight: 2,
    hooks: {
      // The peer's HELLO: count what was already sent when it left.
      get hello () { helloAt = peer.log.requests.length; return encodeFrame({ type: FRAME.HELLO, version: 1, maxMessage: 64, maxInflight: 2, maxRequest: 2048 }) }
    }
  })
  const t = new RtcTransport({ RTCPeerConnection: peer.RTCPeerConnection, signal: peer.signal })
  const asked = [t.request('/len/10'), t.request('/len/200'), t.request('/len/3')]
  assert.equal(peer.log.requests.length, 0, 'nothing is sent before the channel exists')
  await t.open()
  const got = await Promise.all(asked)
  assert.equal(helloAt, 1, 'one request was out with the channel\'s opening, before the HELLO')
  assert.deepEqual(got.map((r) => r.body.length), [10, 200, 3])
  assert.equal(peer.log.maxSeen, 2)
  t.close()
  // A connection that fails takes its queued requests with it.
  const dead = fakePeer({ serve: serveLen, hooks: { noConnect: true } })
  const d = new RtcTransport({ RTCPeerConnection: dead.RTCPeerConnection, signal: dead.signal, connectTimeoutMs: 50 })
  const waiting = d.request('/len/1')
  await assert.rejects(d.open(), /connect/)
  await assert.rejects(waiting, RtcError)
  assert.equal(dead.log.requests.length, 0)
})

const serveLen = (path) => {
  const m = /^\/len\/(\d+)$/.exec(path)
  if (!m) return { status: 404, body: te.encode('{"error":"NOT_FOUND"}') }
  return { status: 200, body: Uint8Array.from({ length: Number(m[1]) }, (_, i) => i % 251) }
}

test('transport: requests are answered, chunked bodies reassembled, in-flight limit kept', async () => {
  const peer = fakePeer({ serve: serveLen, maxInflight: 3, maxMessage: 50 })
  const t = await new RtcTransport({ RTCPeerConnection: peer.RTCPeerConnection, signal: peer.signal }).open()
  const sizes = [0, 1, 37, 38, 500, 5000, 12, 99, 1000, 3]
  const got = await Promise.all(sizes.map((n) => t.request(`/len/${n}`)))
  got.forEach((r, i) => {
    assert.equal(r.status, 200)
    assert.deepEqual(r.body, serveLen(`/len/${sizes[i]}`).body)
  })
  assert.equal(peer.log.maxSeen, 3, 'never more than HELLO.max_inflight in flight')
  assert.equal((await t.request('/nope')).status, 404)
  const s = await t.stats()
  assert.equal(s.requests, 11)
  assert.equal(s.answers, 11)
  assert.ok(s.helloMs !== null && s.helloMs >= 0)
  t.close()
  assert.deepEqual(peer.log.goaways, [GOAWAY.NORMAL])
  await assert.rejects(t.request('/len/1'), RtcError)
})

test('transport: the loader reads rtc:// URLs through rtcFetch like HTTP', async () => {
  const peer = fakePeer({ serve: (p) => (p === '/v1/logs' ? { status: 200, body: te.encode('{"logs":[],"truncated":false}') } : serveLen(p)) })
  const t = await new RtcTransport({ RTCPeerConnection: peer.RTCPeerConnection, signal: peer.signal }).open()
  const fetch = rtcFetch(new Map([['home', t]]), async () => { throw new Error('not HTTP') })
  const res = await fetch('rtc://home/v1/logs')
  assert.equal(res.status, 200)
  assert.deepEqual(await res.json(), { logs: [], truncated: false })
  const bin = await fetch('rtc://home/len/300')
  assert.equal(new Uint8Array(await bin.arrayBuffer()).length, 300)
  await assert.rejects(fetch('rtc://other/v1/logs'), RtcError)
  await assert.rejects(fetch('https://x.example/'), /not HTTP/)
  t.close()
})

test('transport: a timeout cancels the request and frees its slot', async () => {
  const peer = fakePeer({ serve: (p) => (p === '/hang' ? null : serveLen(p)), maxInflight: 1 })
  const t = await new RtcTransport({ RTCPeerConnection: peer.RTCPeerConnection, signal: peer.signal, timeoutMs: 30 }).open()
  await assert.rejects(t.request('/hang'), /no answer in 30 ms/)
  assert.deepEqual(peer.log.cancels, [1])
  assert.equal((await t.request('/len/5')).status, 200)
  const ctrl = new AbortController()
  const p = t.request('/hang', { signal: ctrl.signal, timeoutMs: 5000 })
  ctrl.abort()
  await assert.rejects(p, /aborted/)
  assert.equal(peer.log.cancels.length, 2)
  t.close()
})

test('transport: GOAWAY and protocol violations fail every request', async () => {
  const goaway = fakePeer({
    serve: serveLen,
    hooks: { answer: (dc) => dc._emit(encodeFrame({ type: FRAME.GOAWAY, code: GOAWAY.SHUTDOWN, reason: 'bye' })) }
  })
  const a = await new RtcTransport({ RTCPeerConnection: goaway.RTCPeerConnection, signal: goaway.signal }).open()
  const e = await a.request('/len/1').catch((x) => x)
  assert.ok(e instanceof RtcError)
  assert.equal(e.code, GOAWAY.SHUTDOWN)
  assert.match(e.message, /bye/)

  const liar = fakePeer({
    serve: serveLen,
    hooks: { answer: (dc, id) => dc._emit(encodeFrame({ type: FRAME.DATA, id, body: te.encode('x') })) }
  })
  const b = await new RtcTransport({ RTCPeerConnection: liar.RTCPeerConnection, signal: liar.signal }).open()
  await assert.rejects(b.request('/len/1'), /broke the protocol/)
  assert.deepEqual(liar.log.goaways, [GOAWAY.PROTOCOL])

  const oldPeer = fakePeer({ serve: serveLen, hooks: { hello: encodeFrame({ type: FRAME.HELLO, version: 2, maxMessage: 1, maxInflight: 1, maxRequest: 1 }) } })
  await assert.rejects(new RtcTransport({ RTCPeerConnection: oldPeer.RTCPeerConnection, signal: oldPeer.signal }).open(), /version 2/)
})

test('transport: connect timeout; raceOpen takes the first connection and closes the rest', async () => {
  const dead = fakePeer({ serve: serveLen, hooks: { noConnect: true } })
  await assert.rejects(new RtcTransport({ RTCPeerConnection: dead.RTCPeerConnection, signal: dead.signal, connectTimeoutMs: 50 }).open(), /connect/)

  const live = fakePeer({ serve: serveLen })
  const made = []
  const t = await raceOpen(4, (i) => {
    const p = i === 2 ? live : fakePeer({ serve: serveLen, hooks: { noConnect: true } })
    const x = new RtcTransport({ RTCPeerConnection: p.RTCPeerConnection, signal: p.signal, connectTimeoutMs: 200 })
    made.push(x)
    return x
  })
  assert.equal(t, made[2])
  assert.equal(t.raced, 4)
  assert.equal((await t.request('/len/3')).status, 200)
  for (const x of made) if (x !== t) assert.ok(x.closed)
  t.close()
  await assert.rejects(raceOpen(2, () => new RtcTransport({ RTCPeerConnection: dead.RTCPeerConnection, signal: dead.signal, connectTimeoutMs: 20 })), /no WebRTC connection of 2/)
})

/**
 * A fake RTCPeerConnection that gathers like Chromium behind mDNS: an mDNS host candidate at
 * once, the server-reflexive one `srflxMs` later, gathering complete after that; its channel
 * opens (with a HELLO) once an answer is set.
 */
function gatheringPeer ({ srflxMs = 30 } = {}) {
  const log = { events: [] }
  const OFFER = 'v=0\r\na=ice-ufrag:Ab+1\r\na=ice-pwd:x\r\n'
  class Channel {
    constructor () { this.readyState = 'connecting' }
    send () {}
    close () { this.readyState = 'closed' }
  }
  class PC {
    constructor () { this.iceGatheringState = 'new'; this.connectionState = 'new'; this.listeners = {} }
    createDataChannel () { this.dc = new Channel(); return this.dc }
    async createOffer () { return { type: 'offer', sdp: OFFER } }
    addEventListener (name, f) { (this.listeners[name] = this.listeners[name] || []).push(f) }
    removeEventListener (name, f) { this.listeners[name] = (this.listeners[name] || []).filter((g) => g !== f) }
    _emit (name, ev) { (this.listeners[name] || []).forEach((f) => f(ev)) }
    async setLocalDescription (d) {
      this.localDescription = d
      this.iceGatheringState = 'gathering'
      setTimeout(() => this._emit('icecandidate', { candidate: { candidate: 'candidate:1 1 udp 2113937151 3c1e8e5b.local 54321 typ host generation 0' } }), 1)
      setTimeout(() => {
        log.events.push('srflx')
        this._emit('icecandidate', { candidate: { candidate: 'candidate:2 1 udp 1677729535 203.0.113.12 40001 typ srflx raddr 0.0.0.0 rport 0 generation 0' } })
        this.localDescription = { type: 'offer', sdp: OFFER + 'a=candidate:2 1 udp 1677729535 203.0.113.12 40001 typ srflx raddr 0.0.0.0 rport 0\r\n' }
        this.iceGatheringState = 'complete'
        this._emit('icecandidate', { candidate: null })
        this._emit('icegatheringstatechange')
      }, srflxMs)
    }
    async setRemoteDescription () {
      setTimeout(() => {
        this.dc.readyState = 'open'
        this.dc.onopen && this.dc.onopen()
        const hello = encodeFrame({ type: FRAME.HELLO, version: 1, maxMessage: 64, maxInflight: 2, maxRequest: 2048 })
        this.dc.onmessage && this.dc.onmessage({ data: hello.slice().buffer })
      }, 1)
    }
    close () { this.connectionState = 'closed' }
  }
  return { PC, log }
}

test('transport: with a trickling signal the offer leaves before the srflx candidate, which follows', async () => {
  const { PC, log } = gatheringPeer()
  const signal = async (sdp, opts = {}) => {
    log.events.push(opts.trickle ? 'offer (trickle)' : 'offer (whole)')
    assert.doesNotMatch(sdp, /a=candidate/, 'no candidate waited for')
    await new Promise((resolve) => setTimeout(resolve, 60))
    return 'v=0 answer'
  }
  const trickled = []
  signal.trickle = async (ufrag, c) => { trickled.push([ufrag, c]); log.events.push('candidate') }
  const t = await new RtcTransport({ RTCPeerConnection: PC, signal, iceServers: [{ urls: ['stun:x'] }] }).open()
  assert.deepEqual(log.events, ['offer (trickle)', 'srflx', 'candidate'])
  // Only what the peer can use: the srflx candidate, not the mDNS host name.
  assert.deepEqual(trickled, [['Ab+1', 'candidate:2 1 udp 1677729535 203.0.113.12 40001 typ srflx raddr 0.0.0.0 rport 0 generation 0']])
  const s = await t.stats()
  assert.ok(s.offerMs < s.srflxMs, `offer at ${s.offerMs} ms, before the srflx candidate at ${s.srflxMs} ms`)
  t.close()
})

test('transport: a peer that takes only whole offers (NO_TRICKLE) gets one after gathering', async () => {
  const { PC, log } = gatheringPeer({ srflxMs: 10 })
  const sdps = []
  const signal = async (sdp, opts = {}) => {
    sdps.push(sdp)
    log.events.push(opts.trickle ? 'offer (trickle)' : 'offer (whole)')
    if (opts.trickle) throw Object.assign(new Error('NO_TRICKLE: whole offers only'), { code: 'NO_TRICKLE' })
    return 'v=0 answer'
  }
  signal.trickle = async () => { log.events.push('candidate') }
  const t = await new RtcTransport({ RTCPeerConnection: PC, signal, iceServers: [{ urls: ['stun:x'] }] }).open()
  assert.deepEqual(log.events, ['offer (trickle)', 'srflx', 'offer (whole)'])
  assert.match(sdps[1], /typ srflx/, 'the second offer carries the candidate')
  t.close()
  // A signal function without `trickle` (a harness) gets the whole offer, as before.
  const { PC: PC2 } = gatheringPeer({ srflxMs: 5 })
  const whole = []
  const t2 = await new RtcTransport({ RTCPeerConnection: PC2, signal: async (sdp) => { whole.push(sdp); return 'v=0 answer' }, iceServers: [{ urls: ['stun:x'] }] }).open()
  assert.match(whole[0], /typ srflx/)
  t2.close()
})

test('usableCandidate and ufragOf', () => {
  assert.ok(usableCandidate('candidate:2 1 udp 1677729535 203.0.113.12 40001 typ srflx raddr 0.0.0.0 rport 0'))
  assert.ok(usableCandidate('candidate:2 1 UDP 1677729535 2001:db8::1 40001 typ host'))
  assert.ok(!usableCandidate('candidate:1 1 udp 2113937151 3c1e8e5b.local 54321 typ host'))
  assert.ok(!usableCandidate('candidate:3 1 tcp 1518280447 10.2.0.2 9 typ host tcptype active'))
  assert.ok(!usableCandidate('garbage'))
  assert.equal(ufragOf('v=0\r\na=ice-ufrag:Ab+1\r\n'), 'Ab+1')
  assert.equal(ufragOf('v=0\r\n'), null)
})
