// The WebRTC transport: a data channel to a peerhost node (a home peer behind NAT) carrying
// the gateway's requests and answers, framed as protocol/webrtc.md §3 says. It gives the
// loader what the HTTP transport gives it: the same paths, the same bodies (head JSON, PHR1
// range proofs, the log list), the same status codes. Nothing here verifies: the loader
// does, as for HTTP.
//
// - RtcTransport: one RTCPeerConnection + one `peerhost/1` data channel. open() makes the
//   offer, waits (briefly) for ICE gathering, hands the offer to a signaling function and
//   applies its answer, then waits for the channel and the peer's HELLO. request(path) sends
//   a REQUEST and resolves with {status, contentType, body}; at most HELLO.max_inflight in
//   flight (more wait here), a timeout CANCELs. fetch(url) wraps request() as a fetch-like
//   Response for the loader (`rtc://NAME/v1/...` URLs; see rtcFetch).
// - raceOpen(n, make): n transports opened at once, the first that connects wins (a browser
//   behind a symmetric NAT gets one mapping per RTCPeerConnection: n of them give a home
//   peer's birthday search n targets).
// - Frame codec: encodeFrame / decodeFrame, the same byte layouts as crates/webrtc/src/frame.rs.

export const SUBPROTOCOL = 'peerhost/1'
export const VERSION = 1
export const MAX_PATH = 1024
export const MAX_BODY = 16 * 1024 * 1024
export const MAX_REASON = 200
/** Candidates one connection trickles at most (the peer takes 8). */
export const MAX_TRICKLE = 8

export const FRAME = { HELLO: 0, REQUEST: 1, RESPONSE: 2, DATA: 3, CANCEL: 4, GOAWAY: 5 }
export const CONTENT_TYPES = ['application/json', 'application/vnd.peerhost.range-proof']
export const GOAWAY = { NORMAL: 0, PROTOCOL: 1, FLOOD: 2, TOO_LARGE: 3, IDLE: 4, LIMIT: 5, SHUTDOWN: 6 }

const enc = new TextEncoder()
const dec = new TextDecoder('utf-8', { fatal: true })

/** A message that is not a valid frame, or a frame that breaks the protocol. */
export class FrameError extends Error {
  constructor (message) {
    super(message)
    this.name = 'FrameError'
  }
}

/** Why a request over a data channel failed: kind 'network' (closed, timed out, GOAWAY). */
export class RtcError extends Error {
  constructor (message, { code = null, cause } = {}) {
    super(message)
    this.name = 'RtcError'
    this.code = code
    if (cause) this.cause = cause
  }
}

/** Encode one frame (an object with `type` and its fields) as a Uint8Array. */
export function encodeFrame (f) {
  switch (f.type) {
    case FRAME.HELLO: {
      const b = new Uint8Array(10)
      const v = new DataView(b.buffer)
      b[0] = FRAME.HELLO
      b[1] = f.version
      v.setUint32(2, f.maxMessage, true)
      v.setUint16(6, f.maxInflight, true)
      v.setUint16(8, f.maxRequest, true)
      return b
    }
    case FRAME.REQUEST: {
      const path = enc.encode(f.path)
      if (path.length === 0 || path.length > MAX_PATH) throw new FrameError('path length out of bounds')
      const b = new Uint8Array(5 + path.length)
      b[0] = FRAME.REQUEST
      new DataView(b.buffer).setUint32(1, f.id, true)
      b.set(path, 5)
      return b
    }
    case FRAME.RESPONSE: {
      const body = f.body || new Uint8Array(0)
      const b = new Uint8Array(12 + body.length)
      const v = new DataView(b.buffer)
      b[0] = FRAME.RESPONSE
      v.setUint32(1, f.id, true)
      v.setUint16(5, f.status, true)
      b[7] = f.contentType
      v.setUint32(8, f.bodyLen, true)
      b.set(body, 12)
      return b
    }
    case FRAME.DATA: {
      const b = new Uint8Array(5 + f.body.length)
      b[0] = FRAME.DATA
      new DataView(b.buffer).setUint32(1, f.id, true)
      b.set(f.body, 5)
      return b
    }
    case FRAME.CANCEL: {
      const b = new Uint8Array(5)
      b[0] = FRAME.CANCEL
      new DataView(b.buffer).setUint32(1, f.id, true)
      return b
    }
    case FRAME.GOAWAY: {
      const reason = enc.encode(f.reason || '').slice(0, MAX_REASON)
      const b = new Uint8Array(3 + reason.length)
      b[0] = FRAME.GOAWAY
      new DataView(b.buffer).setUint16(1, f.code, true)
      b.set(reason, 3)
      return b
    }
    default:
      throw new FrameError(`unknown frame type ${f.type}`)
  }
}

/** Decode one message (Uint8Array or ArrayBuffer) into a frame object; throws FrameError. */
export function decodeFrame (msg) {
  const b = msg instanceof Uint8Array ? msg : new Uint8Array(msg)
  if (b.length === 0) throw new FrameError('empty message')
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength)
  const need = (n) => { if (b.length < n) throw new FrameError('frame truncated') }
  const exact = (n) => { need(n); if (b.length > n) throw new FrameError('trailing bytes after a frame') }
  switch (b[0]) {
    case FRAME.HELLO:
      exact(10)
      return { type: FRAME.HELLO, version: b[1], maxMessage: v.getUint32(2, true), maxInflight: v.getUint16(6, true), maxRequest: v.getUint16(8, true) }
    case FRAME.REQUEST: {
      need(5)
      const raw = b.subarray(5)
      if (raw.length === 0 || raw.length > MAX_PATH) throw new FrameError('path length out of bounds')
      let path
      try { path = dec.decode(raw) } catch { throw new FrameError('path is not UTF-8') }
      return { type: FRAME.REQUEST, id: v.getUint32(1, true), path }
    }
    case FRAME.RESPONSE: {
      need(12)
      const bodyLen = v.getUint32(8, true)
      const body = b.subarray(12)
      if (bodyLen > MAX_BODY || body.length > bodyLen) throw new FrameError('body length out of bounds')
      return { type: FRAME.RESPONSE, id: v.getUint32(1, true), status: v.getUint16(5, true), contentType: b[7], bodyLen, body }
    }
    case FRAME.DATA: {
      need(5)
      const body = b.subarray(5)
      if (body.length === 0) throw new FrameError('empty DATA frame')
      return { type: FRAME.DATA, id: v.getUint32(1, true), body }
    }
    case FRAME.CANCEL:
      exact(5)
      return { type: FRAME.CANCEL, id: v.getUint32(1, true) }
    case FRAME.GOAWAY: {
      need(3)
      const raw = b.subarray(3)
      if (raw.length > MAX_REASON) throw new FrameError('reason too long')
      let reason
      try { reason = dec.decode(raw) } catch { throw new FrameError('reason is not UTF-8') }
      return { type: FRAME.GOAWAY, code: v.getUint16(1, true), reason }
    }
    default:
      throw new FrameError(`unknown frame type ${b[0]}`)
  }
}

/**
 * A client's view of one channel's answers: feed it the peer's messages; it calls back with
 * each complete answer. Bounds: answers only for requests in flight, bodies within what was
 * announced and within MAX_BODY.
 */
export class Reassembler {
  constructor () {
    this.partial = new Map() // id -> {status, contentType, body: Uint8Array, filled}
    this.hello = null
  }

  /**
   * One message from the peer: returns {kind: 'hello'|'answer'|'goaway'|'partial'|'stale',
   * ...}. `inflight(id)` says whether the id is awaited (answers to cancelled ids are
   * 'stale'). Throws FrameError on a protocol violation.
   */
  take (msg, inflight) {
    const f = decodeFrame(msg)
    switch (f.type) {
      case FRAME.HELLO:
        if (this.hello) throw new FrameError('second HELLO')
        if (f.version !== VERSION) throw new FrameError(`peer speaks version ${f.version}`)
        this.hello = f
        return { kind: 'hello', hello: f }
      case FRAME.RESPONSE: {
        if (!this.hello) throw new FrameError('RESPONSE before HELLO')
        if (this.partial.has(f.id)) throw new FrameError(`second RESPONSE for ${f.id}`)
        const body = new Uint8Array(f.bodyLen)
        body.set(f.body, 0)
        const p = { id: f.id, status: f.status, contentType: CONTENT_TYPES[f.contentType] || 'application/octet-stream', body, filled: f.body.length }
        return this._progress(p, inflight)
      }
      case FRAME.DATA: {
        if (!this.hello) throw new FrameError('DATA before HELLO')
        const p = this.partial.get(f.id)
        if (!p) {
          if (!inflight(f.id)) return { kind: 'stale', id: f.id }
          throw new FrameError(`DATA for ${f.id} without a RESPONSE`)
        }
        if (p.filled + f.body.length > p.body.length) throw new FrameError(`DATA past the body of ${f.id}`)
        p.body.set(f.body, p.filled)
        p.filled += f.body.length
        return this._progress(p, inflight)
      }
      case FRAME.GOAWAY:
        return { kind: 'goaway', code: f.code, reason: f.reason }
      default:
        throw new FrameError(`a peer does not send frame type ${f.type}`)
    }
  }

  _progress (p, inflight) {
    if (p.filled === p.body.length) {
      this.partial.delete(p.id)
      if (!inflight(p.id)) return { kind: 'stale', id: p.id }
      return { kind: 'answer', id: p.id, status: p.status, contentType: p.contentType, body: p.body }
    }
    this.partial.set(p.id, p)
    return { kind: 'partial', id: p.id }
  }

  /** Forget a cancelled request's partial body. */
  drop (id) {
    this.partial.delete(id)
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** The ICE ufrag of an SDP (`a=ice-ufrag:`), or null. */
export function ufragOf (sdp) {
  const m = /^a=ice-ufrag:([A-Za-z0-9+/]{4,256})\r?$/m.exec(sdp)
  return m ? m[1] : null
}

/** Whether a candidate line (`candidate:…`) is one a peer can use: UDP, an IP address. */
export function usableCandidate (c) {
  const f = String(c).split(/\s+/)
  if (f.length < 8 || !/^candidate:/.test(f[0]) || f[2].toLowerCase() !== 'udp') return false
  return /^[0-9.]+$/.test(f[4]) || (f[4].includes(':') && /^[0-9a-fA-F:.]+$/.test(f[4]))
}

function withTimeout (promise, ms, what) {
  let timer
  return Promise.race([
    promise,
    new Promise((resolve, reject) => { timer = setTimeout(() => reject(new RtcError(`${what}: no answer in ${ms} ms`)), ms) })
  ]).finally(() => clearTimeout(timer))
}

/**
 * One peer over one data channel. `opts`: `signal(offerSdp) → Promise<answerSdp>` (how the
 * offer reaches the peer: the instance's signaling relay, or a test harness), `iceServers`
 * (e.g. the instance's STUN), `RTCPeerConnection` (injectable), `timeoutMs` per request
 * (8000), `connectTimeoutMs` (15000), `gatherMs`: how long to wait for ICE gathering before
 * sending the offer with the candidates gathered so far (1500), `now`.
 */
export class RtcTransport {
  constructor (opts = {}) {
    if (typeof opts.signal !== 'function') throw new TypeError('RtcTransport needs a signal(offer) function')
    this.opts = { timeoutMs: 8000, connectTimeoutMs: 15000, gatherMs: 1500, iceServers: [], ...opts }
    this.RTCPeerConnection = opts.RTCPeerConnection || globalThis.RTCPeerConnection
    this.now = opts.now || (() => (globalThis.performance ? performance.now() : Date.now()))
    this.pc = null
    this.dc = null
    this.nextId = 1
    this.waiting = new Map() // id -> {resolve, reject, timer, t0}
    this.queue = [] // requests not sent yet: over max_inflight
    this.asm = new Reassembler()
    this.closed = null // RtcError once closed
    this.counters = { requests: 0, answers: 0, bodyBytes: 0, messages: 0, messageBytes: 0, cancelled: 0, timeouts: 0 }
    // Phase times (performance.now()): the first server-reflexive candidate, the offer sent,
    // the answer back, ICE connected, DTLS connected (connectionState), the channel open,
    // the HELLO, the first answer to a request.
    this.times = { start: null, srflx: null, offer: null, answer: null, ice: null, dtls: null, open: null, hello: null, first: null }
  }

  /** Open the connection: offer, signal, answer, channel open, HELLO. Resolves to `this`. */
  async open () {
    this.times.start = this.now()
    const pc = new this.RTCPeerConnection({ iceServers: this.opts.iceServers })
    this.pc = pc
    const dc = pc.createDataChannel('peerhost', { protocol: SUBPROTOCOL, ordered: true })
    dc.binaryType = 'arraybuffer'
    this.dc = dc
    const ready = new Promise((resolve, reject) => {
      this._ready = { resolve, reject }
    })
    // The first request goes out with the channel's opening, before the HELLO arrives (the
    // peer writes HELLO first, so it precedes every answer): one round trip less to the first
    // answer for a caller that asked before open() resolved.
    dc.onopen = () => { this.times.open = this.now(); this._pump() }
    dc.onmessage = (ev) => this._message(ev.data)
    dc.onclose = () => this._close(new RtcError('data channel closed'))
    dc.onerror = (ev) => this._close(new RtcError(`data channel error: ${ev && ev.error ? ev.error.message : 'unknown'}`))
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === 'connected' && this.times.dtls === null) this.times.dtls = this.now()
      if (pc.connectionState === 'failed' || pc.connectionState === 'closed') this._close(new RtcError(`peer connection ${pc.connectionState}`))
    }
    pc.oniceconnectionstatechange = () => {
      if ((pc.iceConnectionState === 'connected' || pc.iceConnectionState === 'completed') && this.times.ice === null) this.times.ice = this.now()
    }
    // Trickle (protocol/webrtc.md §2.1): with a signal function that can relay candidates
    // (`signal.trickle`), the offer leaves at once, without waiting for our public address,
    // and the candidates follow one by one; a peer that takes only whole offers is asked again
    // with one (`NO_TRICKLE`).
    const trickle = this.opts.trickle !== false && typeof this.opts.signal.trickle === 'function'
    const relay = trickle ? this._relayCandidates() : null
    const connect = (async () => {
      const offer = await pc.createOffer()
      await pc.setLocalDescription(offer)
      let answer
      const ufrag = ufragOf(pc.localDescription.sdp)
      if (trickle && ufrag) {
        relay.start(ufrag)
        this.times.offer = this.now()
        try {
          answer = await this.opts.signal(pc.localDescription.sdp, { trickle: true })
        } catch (e) {
          if (!e || e.code !== 'NO_TRICKLE') throw e
          relay.stop()
          await this._gathered()
          this.times.offer = this.now()
          answer = await this.opts.signal(pc.localDescription.sdp)
        }
      } else {
        if (relay) relay.stop()
        await this._gathered()
        this.times.offer = this.now()
        answer = await this.opts.signal(pc.localDescription.sdp)
      }
      this.times.answer = this.now()
      await pc.setRemoteDescription({ type: 'answer', sdp: answer })
      await ready
      if (relay) relay.stop()
    })()
    try {
      await withTimeout(connect, this.opts.connectTimeoutMs, 'WebRTC connect')
    } catch (e) {
      this._close(e instanceof RtcError ? e : new RtcError(`WebRTC connect failed: ${e.message}`, { cause: e }))
      throw this.closed
    }
    return this
  }

  /**
   * Take over a connection opened elsewhere (the bootstrap document's minimal client): `pc`,
   * its open `peerhost/1` channel `dc`, and the HELLO message it received (`hello`, an
   * ArrayBuffer). No request of the earlier owner may still be in flight. `at`: when that
   * connection started and got its HELLO (`performance.now()`), for stats(). Returns `this`.
   */
  adopt (pc, dc, hello, at = []) {
    this.times.start = at[0] ?? this.now()
    this.pc = pc
    this.dc = dc
    dc.binaryType = 'arraybuffer'
    dc.onmessage = (ev) => this._message(ev.data)
    dc.onclose = () => this._close(new RtcError('data channel closed'))
    dc.onerror = (ev) => this._close(new RtcError(`data channel error: ${ev && ev.error ? ev.error.message : 'unknown'}`))
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === 'failed' || pc.connectionState === 'closed') this._close(new RtcError(`peer connection ${pc.connectionState}`))
    }
    if (dc.readyState !== 'open') {
      this._close(new RtcError('the adopted data channel is not open'))
      throw this.closed
    }
    this._message(hello)
    if (at[1] !== undefined) this.times.hello = at[1]
    if (!this.asm.hello) {
      this._close(new RtcError('the adopted channel had no HELLO'))
      throw this.closed
    }
    return this
  }

  /**
   * Wait until the offer carries what the peer needs: our public address (the first
   * server-reflexive candidate), or, without STUN servers, the first candidate; or gathering
   * completes; at most `gatherMs`. (Chromium completes gathering ~100 ms after its srflx
   * candidate; the peer needs no more: it learns the address our checks come from.)
   */
  _gathered () {
    const pc = this.pc
    if (pc.iceGatheringState === 'complete') return Promise.resolve()
    const wantSrflx = (this.opts.iceServers || []).length > 0
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, this.opts.gatherMs)
      const done = () => { clearTimeout(timer); resolve() }
      pc.addEventListener('icegatheringstatechange', () => {
        if (pc.iceGatheringState === 'complete') done()
      })
      pc.addEventListener('icecandidate', (ev) => {
        const c = ev.candidate && ev.candidate.candidate
        if (!c) return done()
        if (this.times.srflx === null && / typ srflx/.test(c)) this.times.srflx = this.now()
        if (!wantSrflx || / typ (srflx|relay)/.test(c)) done()
      })
    })
  }

  /**
   * Relay this connection's candidates that the peer can use (UDP, an IP address: the
   * server-reflexive one from the STUN server, a host address where the browser shows one;
   * not mDNS names) through `signal.trickle(ufrag, candidate)` as they come, at most
   * MAX_TRICKLE; `start(ufrag)` once the offer is set, `stop()` to send no more.
   */
  _relayCandidates () {
    const pc = this.pc
    const seen = []
    let ufrag = null
    let sent = 0
    let stopped = false
    const send = (c) => {
      if (stopped || sent >= MAX_TRICKLE) return
      sent++
      Promise.resolve(this.opts.signal.trickle(ufrag, c)).catch(() => {})
    }
    const onCandidate = (ev) => {
      const c = ev.candidate && ev.candidate.candidate
      if (!c) return
      if (this.times.srflx === null && / typ srflx/.test(c)) this.times.srflx = this.now()
      if (!usableCandidate(c)) return
      if (ufrag === null) seen.push(c)
      else send(c)
    }
    pc.addEventListener('icecandidate', onCandidate)
    return {
      start (u) {
        ufrag = u
        for (const c of seen.splice(0)) send(c)
      },
      stop () {
        stopped = true
        pc.removeEventListener('icecandidate', onCandidate)
      }
    }
  }

  _message (data) {
    if (this.closed) return
    this.counters.messages++
    this.counters.messageBytes += data.byteLength || 0
    let r
    try {
      r = this.asm.take(data, (id) => this.waiting.has(id))
    } catch (e) {
      this._goaway(GOAWAY.PROTOCOL, e.message)
      this._close(new RtcError(`peer broke the protocol: ${e.message}`, { code: GOAWAY.PROTOCOL, cause: e }))
      return
    }
    if (r.kind === 'hello') {
      this.times.hello = this.now()
      if (this._ready) this._ready.resolve()
      this._pump()
    } else if (r.kind === 'answer') {
      const w = this.waiting.get(r.id)
      this.waiting.delete(r.id)
      clearTimeout(w.timer)
      this.counters.answers++
      if (this.times.first === null) this.times.first = this.now()
      this.counters.bodyBytes += r.body.length
      w.resolve({ status: r.status, contentType: r.contentType, body: r.body, ms: this.now() - w.t0 })
      this._pump()
    } else if (r.kind === 'goaway') {
      this._close(new RtcError(`peer closed the channel (GOAWAY ${r.code}${r.reason ? ': ' + r.reason : ''})`, { code: r.code }))
    }
  }

  _goaway (code, reason) {
    try { this.dc.send(encodeFrame({ type: FRAME.GOAWAY, code, reason })) } catch {}
  }

  _close (err) {
    if (this.closed) return
    this.closed = err
    if (this._ready) this._ready.reject(err)
    for (const w of this.waiting.values()) { clearTimeout(w.timer); w.reject(err) }
    this.waiting.clear()
    for (const q of this.queue) q.reject(err)
    this.queue = []
    try { this.dc && this.dc.close() } catch {}
    try { this.pc && this.pc.close() } catch {}
  }

  /** Close: GOAWAY then close the connection. */
  close () {
    if (!this.closed && this.dc && this.dc.readyState === 'open') this._goaway(GOAWAY.NORMAL, '')
    this._close(new RtcError('closed'))
  }

  get maxInflight () {
    return this.asm.hello ? Math.max(1, this.asm.hello.maxInflight) : 1
  }

  /** Requests that may be in flight now: HELLO's window; one before the HELLO, once the
   * channel is open; none before. */
  get _window () {
    if (this.asm.hello) return this.maxInflight
    return this.dc && this.dc.readyState === 'open' ? 1 : 0
  }

  _pump () {
    while (!this.closed && this.queue.length > 0 && this.waiting.size < this._window) {
      const q = this.queue.shift()
      const id = this.nextId
      this.nextId = (this.nextId + 1) >>> 0 || 1
      const t0 = this.now()
      const timer = setTimeout(() => {
        if (!this.waiting.has(id)) return
        this.waiting.delete(id)
        this.asm.drop(id)
        this.counters.timeouts++
        try { this.dc.send(encodeFrame({ type: FRAME.CANCEL, id })) } catch {}
        q.reject(new RtcError(`request ${q.path}: no answer in ${q.timeoutMs} ms`))
        this._pump()
      }, q.timeoutMs)
      this.waiting.set(id, { resolve: q.resolve, reject: q.reject, timer, t0 })
      this.counters.requests++
      try {
        this.dc.send(encodeFrame({ type: FRAME.REQUEST, id, path: q.path }))
      } catch (e) {
        this._close(new RtcError(`send failed: ${e.message}`, { cause: e }))
      }
      if (q.signal) {
        q.signal.addEventListener('abort', () => {
          const w = this.waiting.get(id)
          if (!w) return
          this.waiting.delete(id)
          clearTimeout(w.timer)
          this.asm.drop(id)
          this.counters.cancelled++
          try { this.dc.send(encodeFrame({ type: FRAME.CANCEL, id })) } catch {}
          w.reject(new RtcError('aborted'))
          this._pump()
        }, { once: true })
      }
    }
  }

  /**
   * Ask for `path` (a gateway path: `/v1/logs/KEY/head`, `/v1/logs/KEY/blocks?…`,
   * `/v1/logs`): resolves with `{status, contentType, body: Uint8Array, ms}`. May be called
   * while open() runs: the request waits for the channel (the first one is sent as it opens,
   * the rest after the HELLO), and fails if the connection does.
   */
  request (path, { signal = null, timeoutMs = this.opts.timeoutMs } = {}) {
    if (this.closed) return Promise.reject(this.closed)
    if (enc.encode(path).length > MAX_PATH) return Promise.reject(new FrameError('path too long'))
    if (signal && signal.aborted) return Promise.reject(new RtcError('aborted'))
    return new Promise((resolve, reject) => {
      this.queue.push({ path, resolve, reject, timeoutMs, signal })
      this._pump()
    })
  }

  /** The signed head JSON of `key` (hex), unverified; throws on a non-200. */
  async head (key) {
    return jsonOf(await this.request(`/v1/logs/${key}/head`))
  }

  /** A PHR1 range proof body, unverified: blocks `start..end` against the head (`length`, `fork`). */
  async range (key, start, end, length, fork) {
    const q = length === undefined ? '' : `&length=${length}&fork=${fork}`
    const r = await this.request(`/v1/logs/${key}/blocks?start=${start}&end=${end}${q}`)
    if (r.status !== 200) throw new RtcError(`HTTP ${r.status} on the data channel: ${new TextDecoder().decode(r.body)}`)
    return r.body
  }

  /** The log list `{logs, truncated}`. */
  async logs () {
    return jsonOf(await this.request('/v1/logs'))
  }

  /** A fetch-like call for the loader: `url` is `rtc://NAME/v1/...`; `init.signal` aborts. */
  async fetch (url, init = {}) {
    const r = await this.request(splitRtcUrl(url).path, { signal: init.signal })
    return responseOf(r)
  }

  /** Counters, phase times (ms from open()), and Chromium's own byte counts (getStats). */
  async stats () {
    const t = this.times
    const rel = (x) => (x === null || t.start === null ? null : x - t.start)
    const out = {
      ...this.counters,
      inflight: this.waiting.size,
      queued: this.queue.length,
      srflxMs: rel(t.srflx),
      offerMs: rel(t.offer),
      answerMs: rel(t.answer),
      iceMs: rel(t.ice),
      dtlsMs: rel(t.dtls),
      openMs: rel(t.open),
      helloMs: rel(t.hello),
      firstMs: rel(t.first),
      closed: this.closed ? this.closed.message : null,
      transport: null
    }
    if (this.pc && this.pc.getStats) {
      try {
        const report = await this.pc.getStats()
        let pair = null
        const byId = new Map()
        report.forEach((s) => {
          byId.set(s.id, s)
          if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') pair = s
        })
        if (pair) {
          const local = byId.get(pair.localCandidateId) || {}
          const remote = byId.get(pair.remoteCandidateId) || {}
          out.transport = {
            bytesReceived: pair.bytesReceived,
            bytesSent: pair.bytesSent,
            rttMs: pair.currentRoundTripTime === undefined ? null : pair.currentRoundTripTime * 1000,
            local: { type: local.candidateType, address: local.address, port: local.port },
            remote: { type: remote.candidateType, address: remote.address, port: remote.port }
          }
        }
      } catch {}
    }
    return out
  }
}

async function jsonOf (r) {
  const text = new TextDecoder().decode(r.body)
  if (r.status !== 200) throw new RtcError(`HTTP ${r.status} on the data channel: ${text}`)
  return JSON.parse(text)
}

/** `rtc://NAME/PATH?QUERY` → {name, path}. Parsed by hand: URL() of non-special schemes
 * differs between browsers. */
export function splitRtcUrl (url) {
  const s = String(url)
  if (!s.startsWith('rtc://')) throw new RtcError(`not an rtc:// URL: ${s}`)
  const rest = s.slice(6)
  const slash = rest.indexOf('/')
  return slash < 0 ? { name: rest, path: '/' } : { name: rest.slice(0, slash), path: rest.slice(slash) }
}

/** A fetch Response look-alike over an answer (what loader.js reads of a Response). */
export function responseOf (r) {
  const body = r.body
  return {
    status: r.status,
    ok: r.status >= 200 && r.status < 300,
    headers: { get: (name) => (String(name).toLowerCase() === 'content-type' ? r.contentType : null) },
    async json () { return JSON.parse(new TextDecoder().decode(body)) },
    async text () { return new TextDecoder().decode(body) },
    async arrayBuffer () { return body.buffer.slice(body.byteOffset, body.byteOffset + body.byteLength) }
  }
}

/**
 * A fetch for the loader that sends `rtc://NAME/…` URLs over the transport `transports.get(NAME)`
 * and everything else to `fallback` (globalThis.fetch).
 */
export function rtcFetch (transports, fallback = globalThis.fetch && globalThis.fetch.bind(globalThis)) {
  return async (url, init) => {
    const s = String(url)
    if (!s.startsWith('rtc://')) return fallback(url, init)
    const { name } = splitRtcUrl(s)
    const t = transports.get(name)
    if (!t) throw new RtcError(`no WebRTC peer ${name}`)
    return t.fetch(s, init)
  }
}

/**
 * Open `n` transports at once (`make(i)` builds the i-th, unopened); resolves with the first
 * that opens and closes the others; rejects when all fail. `staggerMs` spaces the starts.
 */
export async function raceOpen (n, make, { staggerMs = 0 } = {}) {
  const all = []
  let winner = null
  const errors = []
  await new Promise((resolve) => {
    let pending = n
    for (let i = 0; i < n; i++) {
      const t = make(i)
      all.push(t)
      ;(async () => {
        if (staggerMs) await sleep(staggerMs * i)
        try {
          if (winner) throw new RtcError('another connection won')
          await t.open()
          if (!winner) {
            winner = t
            resolve()
          } else {
            t.close()
          }
        } catch (e) {
          errors.push(e)
        }
        if (--pending === 0) resolve()
      })()
    }
  })
  for (const t of all) if (t !== winner) t.close()
  if (!winner) {
    const err = new RtcError(`no WebRTC connection of ${n} opened (${errors.map((e) => e.message).slice(0, 3).join('; ')})`)
    err.errors = errors
    throw err
  }
  winner.raced = n
  return winner
}
