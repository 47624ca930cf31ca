// The bootstrap document's only script (inlined by build.mjs). The instance wrote the
// community key and some peers into the page; this fetches the bootstrap runtime, whose
// SHA-256 is pinned here, by that hash (`GET /v1/blob/PIN`, protocol/gateway.md §3.4: any
// peer holding the community's app log answers it), or takes it from the Cache Storage of an
// earlier visit, checks the hash, and runs it. The runtime (runtime.js, published in the app
// log as peerhost-runtime.js) verifies everything from the community key down and hosts the
// app. Nothing fetched here is trusted before the hash check; no signature is needed to find
// bytes by their hash.
//
// One request per peer: a new peer every 300 ms (at once when one fails: a peer without the
// route, an old one, answers 404) until one yields the pinned bytes; the instance, which
// always has the route and the runtime, after three peers. WebRTC peers (home peers the
// instance listed by node key) are tried after the HTTP peers over a minimal data channel
// client (protocol/webrtc.md §3), signaled through the instance; the instance then waits 2 s
// more. The answer's signature is not checked here: nothing from the peer runs before the
// SHA-256 check (the runtime checks signatures when it connects again).
//
// build.mjs bundles this twice: with WITH_RTC (dist/index.html) and without
// (dist/index-nortc.html: no data channel client), which the instance serves while it lists
// no WebRTC peer (protocol/gateway.md §7).

/* global RUNTIME_SHA256, WITH_RTC */
const PIN = RUNTIME_SHA256
const PATH = '/v1/blob/' + PIN
const $ = (s) => document.querySelector(s)
const data = JSON.parse($('#peerhost-data').textContent)
const t0 = performance.now()
const fail = (e) => { throw new Error(e) }
let saved = []
let handoff = null
try { saved = JSON.parse(localStorage.getItem('peerhost.peers')).peers } catch {}
const peers = [...new Set([...data.peers, ...saved])].sort(() => Math.random() - 0.5)
// Whether `b` is the runtime.
const ok = async (b) => [...new Uint8Array(await crypto.subtle.digest('SHA-256', b))].map((x) => (x + 256).toString(16).slice(1)).join('') === PIN

// The runtime from an HTTP gateway.
const http = (base) => async () => {
  const r = await fetch(base + PATH, { signal: AbortSignal.timeout(8000) })
  return r.ok ? new Uint8Array(await r.arrayBuffer()) : fail(r.status)
}

// The runtime from a WebRTC peer over a `peerhost/1` channel (HELLO, REQUEST → RESPONSE +
// DATA), with the connection (`pc`, `dc`, the HELLO) to hand on to the runtime.
async function rtc (key) {
  const timeout = (p) => Promise.race([p, new Promise((_, no) => setTimeout(no, 8000, new Error('timeout')))])
  const pc = new RTCPeerConnection({ iceServers: data.iceServers || [] })
  const dc = pc.createDataChannel('peerhost', { protocol: 'peerhost/1' })
  // The request leaves as the channel opens; the peer's HELLO (written first) arrives before
  // its answer.
  const ready = new Promise((resolve) => { dc.onopen = resolve })
  let first
  let at = [performance.now()]
  let body
  let o = 0
  let got
  const done = new Promise((resolve, reject) => { got = { resolve, reject } })
  dc.binaryType = 'arraybuffer'
  dc.onmessage = ({ data: m }) => {
    const b = new Uint8Array(m)
    const d = new DataView(m)
    if (!b[0]) return (first = m), at.push(performance.now())
    if (d.getUint32(1, true) !== 1) return
    if (b[0] === 2) {
      if (d.getUint16(5, true) !== 200) return got.reject(new Error(d.getUint16(5, true)))
      body = new Uint8Array(d.getUint32(8, true))
    } else if (b[0] !== 3 || !body) return
    const x = b.subarray(b[0] === 2 ? 12 : 5)
    body.set(x, o)
    if ((o += x.length) >= body.length) got.resolve(body)
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
    const offer = pc.localDescription.sdp
    const r = await timeout(fetch('/v1/signal', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ peer: key, sdp: offer }) }))
    if (!r.ok) fail(r.status)
    const answer = await r.json()
    await pc.setRemoteDescription({ type: 'answer', sdp: answer.sdp })
    await timeout(ready)
    const p = new TextEncoder().encode(PATH)
    const f = new Uint8Array(5 + p.length)
    f[0] = f[1] = 1 // REQUEST, id 1
    f.set(p, 5)
    dc.send(f)
    const bytes = await timeout(done)
    // The runtime goes on over this channel (no second signaling, no second ICE), and checks
    // the answer's signature before it uses it; a channel that finished after another one
    // won is closed.
    if (handoff || !(await ok(bytes))) pc.close()
    else handoff = { key, pc, dc, hello: first, at, offer, answer: answer.sdp, signature: answer.signature }
    return bytes
  } catch (e) {
    pc.close()
    throw e
  }
}

async function runtime () {
  const c = self.caches && await caches.open('peerhost-boot')
  const hit = c && await c.match(PATH)
  const cached = hit && new Uint8Array(await hit.arrayBuffer())
  if (cached && (await ok(cached))) return { bytes: cached }
  // [url, fetch, ms before the next one starts]: HTTP peers, WebRTC peers (the instance 2 s
  // later), the instance, the other HTTP peers.
  const plan = [...peers.slice(0, 3), location.origin, ...peers.slice(3)].map((u) => [u, http(u)])
  if (WITH_RTC) {
    const keys = (data.rtcPeers || []).slice(0, 2)
    plan.splice(Math.min(3, peers.length), 0, ...keys.map((k, i) => ['rtc://' + k, () => rtc(k), i < keys.length - 1 ? 300 : 2300]))
  }
  const tries = []
  let won
  const bytes = await new Promise((win, lose) => {
    let left = plan.length
    let timer
    const next = () => {
      clearTimeout(timer)
      const [url, run, wait = 300] = plan[tries.length] || []
      if (!url || won) return
      const t = { url, started: 1 }
      tries.push(t)
      timer = setTimeout(next, wait)
      t.done = run().then(async (b) => won || ((await ok(b)) ? win(b, (won = t.won = 1)) : fail())).catch(() => {
        --left || lose(new Error('no peer has the runtime'))
        next()
      })
    }
    next()
  })
  if (c) c.put(PATH, new Response(bytes)).catch(() => {})
  return { bytes, tries }
}

runtime().then(async ({ bytes, tries }) => {
  const m = await import(URL.createObjectURL(new Blob([bytes], { type: 'text/javascript' })))
  await m.start({ data, peers, t0, tries, rtc: handoff })
}).catch((e) => {
  $('#note').textContent = 'Failed: ' + e.message
  document.body.dataset.state = 'failed'
})
