// The test page's script for the WebRTC browser tests (bundled by rtc-lib.js with web/'s
// esbuild, served by the instance): the web/ loader over the WebRTC transport
// (web/boot/transport-rtc.js) or over HTTP, with every head and range verified as on the real
// page. Offers go through the instance's signaling (web/boot/signal.js: `POST /v1/signal`, the
// answer used only if the peer's node key signed it). The peers and ICE servers are the ones
// the instance wrote into the document's data block (its healthy WebRTC peers), unless the
// harness names others. The harness drives it with page.evaluate.

import { Loader } from '../../web/src/loader.js'
import { FRAME, RtcTransport, decodeFrame, encodeFrame, raceOpen, rtcFetch } from '../../web/boot/transport-rtc.js'
import { instanceSignal } from '../../web/boot/signal.js'
import { decodePost } from '../../web/src/feed.js'

const td = new TextDecoder()

/** The document's data block, as the instance wrote it. */
window.peerhostData = () => JSON.parse(document.getElementById('peerhost-data').textContent)

const iceOf = (opts) => opts.iceServers || (window.peerhostData() || {}).iceServers || []
/** The node key to connect to: `opts.peer`, else the first WebRTC peer the instance lists. */
const peerOf = (opts) => {
  const k = opts.peer || ((window.peerhostData() || {}).rtcPeers || [])[0]
  if (!k) throw new Error('the instance lists no WebRTC peer')
  return k
}

/**
 * A lying relay between the page and the instance (for tests of the answer's signature):
 * 'fingerprint' swaps the answer's DTLS fingerprint, 'signature' flips a bit of the signature.
 */
const lyingFetch = (mode) => async (url, init) => {
  const res = await fetch(url, init)
  const body = await res.json()
  if (mode === 'fingerprint') body.sdp = body.sdp.replace(/(a=fingerprint:sha-256 )([0-9A-F]{2})/, (_, a, b) => a + (b === 'AA' ? 'AB' : 'AA'))
  if (mode === 'signature') body.signature = body.signature.slice(0, 10) + (body.signature[10] === '0' ? '1' : '0') + body.signature.slice(11)
  return new Response(JSON.stringify(body), { status: res.status, headers: { 'content-type': 'application/json' } })
}

/** An RtcTransport to `opts.peer` (or the instance's first listed one), not opened yet. */
function makeTransport (opts) {
  const fetchFn = opts.lie ? lyingFetch(opts.lie) : undefined
  return new RtcTransport({
    signal: instanceSignal({ peer: peerOf(opts), fetchFn }),
    iceServers: iceOf(opts),
    connectTimeoutMs: opts.connectTimeoutMs || 15000,
    gatherMs: opts.gatherMs || 1500,
    // `trickle: false`: the whole offer after gathering (the bench's comparison).
    trickle: opts.trickle !== false
  })
}

function transportFor (opts) {
  const make = () => makeTransport(opts)
  return (opts.parallel || 1) > 1 ? raceOpen(opts.parallel, make) : make().open()
}

/**
 * `rtcRun`'s connection when the page asks at once (`opts.early`, one connection per peer):
 * every transport opens while the loader already asks for the head (the first request rides
 * with the channel's opening). Resolves to {map, opened}: `opened` settles when every open()
 * has, with the time to the first open and the failures.
 */
function openEarly (keys, opts, t0) {
  const ts = keys.map((k) => makeTransport({ ...opts, peer: k }))
  const map = new Map(ts.map((t, i) => [nameOf(keys[i]), t]))
  let connectMs = null
  const opened = Promise.allSettled(ts.map((t) => t.open().then((x) => {
    connectMs ??= performance.now() - t0
    return x
  }))).then((rs) => {
    const failures = []
    rs.forEach((r, i) => { if (r.status === 'rejected') failures.push({ peer: keys[i], error: String(r.reason && r.reason.message) }) })
    return { connectMs, failures }
  })
  return { map, opened }
}

const nameOf = (key) => key.slice(0, 16)

/**
 * Connect (rtc) and load the latest `n` posts of `key`, verified; render them. `opts.peers`:
 * several WebRTC peers by node key, opened in parallel (those that connect join the peer set);
 * else `opts.peer` (or the instance's first listed one). With `httpUrl`, an HTTP gateway too.
 */
window.rtcRun = async (opts) => {
  const t0 = performance.now()
  let loader
  let transport = null
  let connectMs = null
  const failures = []
  let early = null
  if (opts.mode === 'rtc' && opts.early) {
    const keys = opts.peers || [peerOf(opts)]
    early = openEarly(keys, opts, t0)
    transport = early.map.get(nameOf(keys[0]))
    window.transport = transport
    window.transports = early.map
    const peers = [...early.map.keys()].map((n) => `rtc://${n}`)
    if (opts.httpUrl) peers.push(opts.httpUrl)
    loader = new Loader({ peers, fetch: rtcFetch(early.map), headPeers: peers.length, random: opts.pickFirst ? () => 0 : undefined })
  } else if (opts.mode === 'rtc') {
    const keys = opts.peers || [peerOf(opts)]
    const opened = await Promise.allSettled(keys.map((k) => transportFor({ ...opts, peer: k })))
    const map = new Map()
    opened.forEach((r, i) => {
      if (r.status === 'fulfilled') map.set(nameOf(keys[i]), r.value)
      else failures.push({ peer: keys[i], error: String(r.reason && r.reason.message) })
    })
    if (map.size === 0) throw new Error(`no WebRTC peer connected: ${JSON.stringify(failures)}`)
    connectMs = performance.now() - t0
    transport = map.get(nameOf(keys[0])) || [...map.values()][0]
    window.transport = transport
    window.transports = map
    // With `httpUrl` too: a mixed peer set, the WebRTC peers and an HTTP gateway side by side.
    const peers = [...map.keys()].map((n) => `rtc://${n}`)
    if (opts.httpUrl) peers.push(opts.httpUrl)
    // `pickFirst`: always the first usable peer, for tests that need it asked.
    const random = opts.pickFirst ? () => 0 : undefined
    loader = new Loader({ peers, fetch: rtcFetch(map), headPeers: peers.length, random })
  } else {
    loader = new Loader({ peers: [opts.httpUrl] })
  }
  window.loader = loader
  const { head, blocks } = await loader.latest(opts.key, opts.n || 20)
  // A community's posts log (`peerhost post`: protobuf entries), or JSON posts (rtc_peer's
  // generated store).
  const posts = blocks.map((b) => decodePost(b.value) || JSON.parse(td.decode(b.value)))
  const main = document.querySelector('#posts')
  main.textContent = ''
  for (const p of posts) {
    const a = document.createElement('article')
    const h = document.createElement('h2')
    h.textContent = p.title
    a.append(h)
    main.append(a)
  }
  const firstPostMs = performance.now() - t0
  if (early) {
    const o = await early.opened
    connectMs = o.connectMs
    failures.push(...o.failures)
  }
  document.body.dataset.state = 'loaded'
  return {
    firstPostMs,
    connectMs,
    failures,
    length: head.length,
    titles: posts.map((p) => p.title),
    stats: transport ? await transport.stats() : null,
    peers: loader.peers.list()
  }
}

/** Open one transport to `peer` and report how it failed (or `ok`). */
window.rtcTry = async (opts) => {
  try {
    const t = await transportFor(opts)
    t.close()
    return { ok: true }
  } catch (e) {
    return { ok: false, code: e.code || null, error: String(e.message || e) }
  }
}

/** `count` offers at once straight to `POST /v1/signal` (a flood): the statuses. */
window.rtcSignalFlood = async ({ peer, count, sdp }) => {
  const t0 = performance.now()
  const rs = await Promise.all(Array.from({ length: count }, () =>
    fetch('/v1/signal', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ peer, sdp }) })
      .then(async (r) => ({ status: r.status, body: await r.json().catch(() => null) }))
      .catch((e) => ({ status: 0, body: String(e) }))))
  const statuses = {}
  const codes = {}
  for (const r of rs) {
    statuses[r.status] = (statuses[r.status] || 0) + 1
    const c = r.body && r.body.error
    if (c) codes[c] = (codes[c] || 0) + 1
  }
  return { statuses, codes, ms: performance.now() - t0 }
}

/** A real offer SDP from this browser (for floods: the peer must parse each). */
window.rtcOffer = async (iceServers = []) => {
  const pc = new RTCPeerConnection({ iceServers })
  pc.createDataChannel('x')
  await pc.setLocalDescription(await pc.createOffer())
  const sdp = pc.localDescription.sdp
  pc.close()
  return sdp
}

/** Watch the open transport's messages: `stop()` → the longest pause between two messages
 * (ms) and how many pauses were over 100 ms (an SCTP retransmission timeout shows as one). */
function watchGaps () {
  const t = window.transport
  const dc = t && t.dc
  if (!dc) return () => null
  let last = performance.now()
  let maxGap = 0
  let stalls = 0
  // Where the page's main thread goes: the transport's message handling (decode, reassemble)
  // and tasks over 50 ms (Chromium's long tasks: a range verified in one go shows as one).
  let handleMs = 0
  const own = Object.prototype.hasOwnProperty.call(t, '_message')
  const inner = t._message
  t._message = function (data) {
    const t0 = performance.now()
    inner.call(this, data)
    handleMs += performance.now() - t0
  }
  let longMs = 0
  let longTasks = 0
  let obs = null
  try {
    obs = new PerformanceObserver((list) => { for (const e of list.getEntries()) { longMs += e.duration; longTasks++ } })
    obs.observe({ type: 'longtask' })
  } catch {}
  const t0 = performance.now()
  const on = () => {
    const t = performance.now()
    if (t - last > maxGap) maxGap = t - last
    if (t - last > 100) stalls++
    last = t
  }
  dc.addEventListener('message', on)
  return () => {
    dc.removeEventListener('message', on)
    if (own) t._message = inner
    else delete t._message
    if (obs) { for (const e of obs.takeRecords()) { longMs += e.duration; longTasks++ } obs.disconnect() }
    return { maxGapMs: maxGap, stalls, handleMs, longMs, longTasks, wallMs: performance.now() - t0 }
  }
}

/** Blocks 0..count of `key`, verified, over the transport already open (or HTTP): MB/s. */
window.rtcBulk = async (opts) => {
  const loader = opts.mode === 'rtc'
    ? new Loader({ peers: ['rtc://home'], fetch: rtcFetch(new Map([['home', window.transport]])), parallel: opts.parallel || 4, chunk: opts.chunk || 64 })
    : new Loader({ peers: [opts.httpUrl], parallel: opts.parallel || 4, chunk: opts.chunk || 64 })
  const head = await loader.head(opts.key)
  const stop = opts.mode === 'rtc' ? watchGaps() : () => null
  const t0 = performance.now()
  const blocks = await loader.range(opts.key, head, 0, opts.count)
  const ms = performance.now() - t0
  let bytes = 0
  for (const b of blocks) bytes += b.length
  return { ms, bytes, blocks: blocks.length, mbps: bytes / 1e6 / (ms / 1000), gaps: stop() }
}

/**
 * Transfer only, no verification: blocks 0..count of `key` in ranges of `chunk`, `parallel`
 * in flight, over the open transport or HTTP fetch (what the transport itself carries).
 */
window.rtcRawBulk = async ({ mode, key, count, chunk = 64, parallel = 4, httpUrl }) => {
  const get = mode === 'rtc'
    ? async (path) => (await window.transport.request(path, { timeoutMs: 30000 })).body
    : async (path) => new Uint8Array(await (await fetch(httpUrl + path)).arrayBuffer())
  let next = 0
  let bytes = 0
  const stop = mode === 'rtc' ? watchGaps() : () => null
  const t0 = performance.now()
  const worker = async () => {
    while (next < count) {
      const start = next
      const end = Math.min(count, next + chunk)
      next = end
      let at = start
      while (at < end) {
        const body = await get(`/v1/logs/${key}/blocks?start=${at}&end=${end}`)
        bytes += body.length
        // PHR1: the served end is at byte offset 28 (u64 LE, below 2^32 here).
        at = new DataView(body.buffer, body.byteOffset).getUint32(28, true)
      }
    }
  }
  await Promise.all(Array.from({ length: parallel }, worker))
  const ms = performance.now() - t0
  return { ms, bytes, mbps: bytes / 1e6 / (ms / 1000), gaps: stop() }
}

/** Raw requests on the open transport: `count` requests of `path`, `window` in flight. */
window.rtcHammer = async ({ path, count, window: win }) => {
  const t = window.transport
  let next = 0
  let ok = 0
  const statuses = {}
  const t0 = performance.now()
  const worker = async () => {
    while (next < count) {
      next++
      const r = await t.request(path)
      statuses[r.status] = (statuses[r.status] || 0) + 1
      if (r.status === 200) ok++
    }
  }
  await Promise.all(Array.from({ length: win }, worker))
  return { ok, statuses, ms: performance.now() - t0 }
}

/** Chromium's own byte counts for the open transport. */
window.rtcStats = async () => (window.transport ? window.transport.stats() : null)

/**
 * A hostile client: open a transport, then send raw messages past it (`hex` strings, or
 * `{requests: N, path}` for N REQUEST frames at once, no window) and tally what comes back
 * until the channel closes or `waitMs` passes.
 */
window.rtcRaw = async ({ iceServers, peer, sends, waitMs = 5000, binary = true }) => {
  const t = await transportFor({ iceServers, peer })
  const seen = { statuses: {}, goaway: null, messages: 0 }
  t.dc.addEventListener('message', (ev) => {
    seen.messages++
    try {
      const f = decodeFrame(ev.data)
      if (f.type === FRAME.RESPONSE) seen.statuses[f.status] = (seen.statuses[f.status] || 0) + 1
      if (f.type === FRAME.GOAWAY) seen.goaway = f.code
    } catch {}
  })
  const hex = (h) => Uint8Array.from(h.match(/../g).map((b) => parseInt(b, 16)))
  for (const s of sends) {
    if (typeof s === 'string') {
      t.dc.send(binary ? hex(s) : s)
    } else if (s.requests) {
      for (let i = 0; i < s.requests; i++) t.dc.send(encodeFrame({ type: FRAME.REQUEST, id: 1000 + i, path: s.path }))
    } else if (s.bytes) {
      t.dc.send(new Uint8Array(s.bytes).fill(1))
    }
  }
  const t0 = performance.now()
  while (!t.closed && t.dc.readyState === 'open' && performance.now() - t0 < waitMs) {
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  const closed = t.closed ? t.closed.message : (t.dc.readyState === 'open' ? null : t.dc.readyState)
  const pcState = t.pc.connectionState
  t.close()
  return { ...seen, closed, pcState, closedMs: performance.now() - t0 }
}

/**
 * Open `n` transports (at once, or with `paced` one after another, each offer retried while
 * the instance's relay answers 429: its per-client offer rate) and ask each for `path`: the
 * peer holds them all.
 */
window.rtcMany = async ({ iceServers, peer, n, path, paced = false }) => {
  const t0 = performance.now()
  let ts = []
  if (paced) {
    for (let i = 0; i < n; i++) {
      for (let tries = 0; ; tries++) {
        try {
          ts.push(await transportFor({ iceServers, peer, connectTimeoutMs: 30000 }))
          break
        } catch (e) {
          if (!/429|MANY|RATE|LIMIT|BUSY|FULL/i.test(`${e.code} ${e.message}`) || tries > 200) throw e
          await new Promise((resolve) => setTimeout(resolve, 250))
        }
      }
    }
  } else {
    ts = await Promise.all(Array.from({ length: n }, () => transportFor({ iceServers, peer, connectTimeoutMs: 30000 })))
  }
  const openMs = performance.now() - t0
  const rs = await Promise.all(ts.map((t) => t.request(path)))
  window.many = ts
  return { opened: ts.length, ok: rs.filter((r) => r.status === 200).length, openMs }
}

/** Ask `path` on every transport rtcMany holds (traffic, so the peer's 60 s idle timeout does
 * not close them while other pages open theirs): how many answered 200. */
window.rtcManyPing = async (path) => (await Promise.all((window.many || []).map((t) => t.request(path)))).filter((r) => r.status === 200).length

window.rtcManyClose = () => { for (const t of window.many || []) t.close(); window.many = [] }
