// The bootstrap document's only script (inlined by build.mjs). The instance wrote the
// community key and some peers into the page; this finds the bootstrap runtime, whose SHA-256
// is pinned here, in the community's app log on the peers (or in the Cache Storage of an
// earlier visit), checks the hash, and runs it. The runtime (runtime.js, published in the app
// log as peerhost-runtime.js) verifies everything from the community key down and hosts the
// app. Nothing fetched here is trusted before the hash check; no signature is needed to find
// bytes by their hash.
//
// Each peer is tried as a whole chain (descriptor head and last block → app log head and index
// → the runtime's blocks), a new peer every 300 ms until one chain yields the pinned bytes;
// the instance itself after three peers. WebRTC peers (home peers the instance listed by node
// key) are tried after the HTTP peers over a minimal data channel client (protocol/webrtc.md
// §3), signaled through the instance; the instance then waits 2 s more. The answer's signature
// is not checked here: nothing from the peer runs before the SHA-256 check (the runtime checks
// signatures when it connects again).
//
// build.mjs bundles this twice: with WITH_RTC (dist/index.html) and without
// (dist/index-nortc.html: no data channel client, 0.7 KB less brotli'd), which the instance
// serves while it lists no WebRTC peer (protocol/gateway.md §7).

/* global RUNTIME_SHA256, WITH_RTC */
const PIN = RUNTIME_SHA256
const $ = (s) => document.querySelector(s)
const data = JSON.parse($('#peerhost-data').textContent)
const t0 = performance.now()
const html = '<!doctype html>' + document.documentElement.outerHTML // as served, for the Service Worker
const hex = (b) => Array.from(new Uint8Array(b), (x) => x.toString(16).padStart(2, '0')).join('')
const sha = async (b) => hex(await crypto.subtle.digest('SHA-256', b))
let saved = []
let handoff = null
try { saved = JSON.parse(localStorage.getItem('peerhost.peers')).peers } catch {}
const peers = [...new Set([...data.peers, ...saved])].sort(() => Math.random() - 0.5)

// protobuf: `{field: [values]}` of one message (varints as numbers, the rest as bytes).
function pb (b) {
  const out = {}
  let i = 0
  const v = () => {
    let n = 0
    for (let m = 1; ; m *= 128) {
      if (i >= b.length) throw new Error('bad protobuf')
      const x = b[i++]
      n += (x & 127) * m
      if (x < 128) return n
    }
  }
  while (i < b.length) {
    const tag = v()
    const t = tag & 7
    const n = t === 2 ? v() : t === 1 ? 8 : 4
    ;(out[tag >> 3] ||= []).push(t ? b.subarray(i, (i += n)) : v())
  }
  return out
}
const one = (m, f) => (m[f] || [])[0]

const fail = (e) => { throw new Error(e) }
const timeout = (p) => Promise.race([p, new Promise((_, no) => setTimeout(no, 8000, new Error('timeout')))])

// An HTTP peer's `get(path, json)`.
const http = (base) => async (path, json) => {
  const r = await fetch(base + path, { signal: AbortSignal.timeout(8000) })
  if (!r.ok) fail(r.status)
  return json ? r.json() : new Uint8Array(await r.arrayBuffer())
}

// A WebRTC peer's `get(path, json)` over a `peerhost/1` channel (HELLO, REQUEST → RESPONSE +
// DATA, reassembled per id), and the connection (`pc`, `dc`, the HELLO) to close or hand on.
async function rtc (key) {
  const pc = new RTCPeerConnection({ iceServers: data.iceServers || [] })
  const dc = pc.createDataChannel('peerhost', { protocol: 'peerhost/1' })
  const waiting = new Map()
  let id = 0
  // The first request leaves as the channel opens; the peer's HELLO (written first) arrives
  // before its answer.
  const ready = new Promise((resolve) => { dc.onopen = resolve })
  let first
  let at = [performance.now()]
  let offer
  let answer
  dc.binaryType = 'arraybuffer'
  dc.onmessage = ({ data: m }) => {
    const b = new Uint8Array(m)
    const d = new DataView(m)
    if (!b[0]) return (first = m), at.push(performance.now())
    const w = waiting.get(d.getUint32(1, true))
    if (b[0] === 2) w?.start(d.getUint16(5, true), d.getUint32(8, true), b.subarray(12))
    if (b[0] === 3) w?.add(b.subarray(5))
  }
  try {
    // Our public address (the first srflx candidate) or the end of gathering, at most 1.5 s;
    // listening before gathering starts.
    const gathered = new Promise((resolve) => {
      setTimeout(resolve, 1500)
      pc.onicecandidate = (e) => (!e.candidate || / typ srflx/.test(e.candidate.candidate)) && resolve()
    })
    await pc.setLocalDescription()
    await gathered
    offer = pc.localDescription.sdp
    const r = await timeout(fetch('/v1/signal', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ peer: key, sdp: offer }) }))
    if (!r.ok) fail(r.status)
    answer = await r.json()
    await pc.setRemoteDescription({ type: 'answer', sdp: answer.sdp })
    await timeout(ready)
  } catch (e) {
    pc.close()
    throw e
  }
  const get = (path, json) => timeout(new Promise((resolve, reject) => {
    const i = ++id
    let body
    let o = 0
    const w = {
      start (status, n, x) {
        if (status !== 200) return reject(new Error(status))
        body = new Uint8Array(n)
        w.add(x)
      },
      add (x) {
        body.set(x, o)
        if ((o += x.length) < body.length) return
        waiting.delete(i)
        resolve(json ? JSON.parse(new TextDecoder().decode(body)) : body)
      }
    }
    waiting.set(i, w)
    const p = new TextEncoder().encode(path)
    const f = new Uint8Array(5 + p.length)
    f[0] = 1
    new DataView(f.buffer).setUint32(1, i, true)
    f.set(p, 5)
    dc.send(f)
  }))
  // The runtime checks the answer's signature before it uses this channel.
  // (`hello` once it came: before any answer, so by the time the chain is done.)
  return { get, pc, dc, get hello () { return first }, at, offer, answer: answer.sdp, signature: answer.signature }
}

// One peer's chain over its `get`; blocks come out of PHR1 bodies unverified.
async function chain (get) {
  const blocks = async (key, s, e, head) => {
    const out = []
    while (s < e) {
      const b = await get(`/v1/logs/${key}/blocks?start=${s}&end=${e}&length=${head.length}&fork=${head.fork}`)
      const d = new DataView(b.buffer)
      let o = 40 + 48 * d.getUint32(36, true)
      const end = d.getUint32(28, true)
      for (; s < end; s++, o += d.getUint32(o - 4, true)) out.push(b.subarray((o += 4), o + d.getUint32(o - 4, true)))
    }
    return out
  }
  const lastEntry = async (key, kind) => {
    const head = await get(`/v1/logs/${key}/head`, 1)
    const [b] = await blocks(key, head.length - 1, head.length, head)
    return [pb(one(pb(b), kind)), head]
  }
  const [d] = await lastEntry(data.community, 2)
  const assets = hex(one(d, 6))
  const [index, head] = await lastEntry(assets, 7)
  for (const f of (index[1] || []).map(pb)) {
    if (hex(one(f, 4)) === PIN) {
      const bytes = new Uint8Array(one(f, 3))
      let o = 0
      for (const c of await blocks(assets, one(f, 5) || 0, (one(f, 5) || 0) + one(f, 6), head)) {
        const x = one(pb(one(pb(c), 8)), 1) || []
        bytes.set(x, o)
        o += x.length
      }
      if ((await sha(bytes)) === PIN) return bytes
    }
  }
  throw new Error('no runtime')
}

async function runtime () {
  const c = self.caches && await caches.open('peerhost-boot')
  const hit = c && await c.match('/_peerhost/runtime/' + PIN)
  const cached = hit && new Uint8Array(await hit.arrayBuffer())
  if (cached && (await sha(cached)) === PIN) return { bytes: cached }
  // [url, start ms, chain]: HTTP peers, WebRTC peers, the instance (2 s later when WebRTC
  // peers are being tried), the other HTTP peers.
  const keys = WITH_RTC ? (data.rtcPeers || []).slice(0, 2) : []
  const h = (base) => () => chain(http(base))
  const plan = [...peers.slice(0, 3).map((u) => [u, h(u)]),
    ...(!WITH_RTC ? [] : keys.map((k) => ['rtc://' + k, async () => {
      const c = await rtc(k)
      try {
        const b = await chain(c.get)
        // The runtime goes on over this channel (no second signaling, no second ICE); a
        // channel that finished after another one won is closed.
        if (won || handoff) c.pc.close()
        else handoff = { key: k, ...c }
        return b
      } catch (e) {
        c.pc.close()
        throw e
      }
    }])),
    [location.origin, h(location.origin), keys.length ? 2000 : 0],
    ...peers.slice(3).map((u) => [u, h(u)])]
  const tries = []
  let won = false
  const bytes = await new Promise((win, lose) => {
    let left = plan.length
    let at = 0
    plan.forEach(([url, run, extra = 0], i) => {
      const t = { url, started: false }
      at = i && at + 300 + extra
      t.done = new Promise((settled) => setTimeout(() => {
        if (won) return settled()
        t.started = true
        run().then((b) => win(b, (won = t.won = true)), () => --left || lose(new Error('no peer has the bootstrap runtime ' + PIN))).finally(settled)
      }, at))
      tries.push(t)
    })
  })
  if (c) c.put('/_peerhost/runtime/' + PIN, new Response(bytes)).catch(() => {})
  return { bytes, tries }
}

runtime().then(async ({ bytes, tries }) => {
  const m = await import(URL.createObjectURL(new Blob([bytes], { type: 'text/javascript' })))
  await m.start({ data, peers, t0, tries, html, rtc: handoff })
}).catch((e) => {
  $('#note').textContent = 'Failed: ' + e.message
  document.body.dataset.state = 'failed'
})
