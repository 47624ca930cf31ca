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
// the instance itself after three peers.

/* global RUNTIME_SHA256 */
const PIN = RUNTIME_SHA256
const $ = (s) => document.querySelector(s)
const data = JSON.parse($('#peerhost-data').textContent)
const t0 = performance.now()
const html = '<!doctype html>' + document.documentElement.outerHTML // as served, for the Service Worker
const hex = (b) => Array.from(new Uint8Array(b), (x) => x.toString(16).padStart(2, '0')).join('')
const sha = async (b) => hex(await crypto.subtle.digest('SHA-256', b))
let saved = []
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

// One peer's chain. `get(path)` → Response; blocks come out of PHR1 bodies unverified.
async function chain (base) {
  const get = async (path, json) => {
    const r = await fetch(base + path, { signal: AbortSignal.timeout(8000) })
    if (!r.ok) throw new Error(r.status)
    return json ? r.json() : new Uint8Array(await r.arrayBuffer())
  }
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
  const bases = [...peers.slice(0, 3), location.origin, ...peers.slice(3)]
  const tries = []
  let won = false
  const bytes = await new Promise((win, lose) => {
    let left = bases.length
    bases.forEach((base, i) => {
      const t = { url: base, started: false }
      t.done = new Promise((settled) => setTimeout(() => {
        if (won) return settled()
        t.started = true
        chain(base).then((b) => win(b, (won = true)), () => --left || lose(new Error('no peer has the bootstrap runtime ' + PIN))).finally(settled)
      }, i * 300))
      tries.push(t)
    })
  })
  if (c) c.put('/_peerhost/runtime/' + PIN, new Response(bytes)).catch(() => {})
  return { bytes, tries }
}

runtime().then(async ({ bytes, tries }) => {
  const m = await import(URL.createObjectURL(new Blob([bytes], { type: 'text/javascript' })))
  await m.start({ data, peers, t0, tries, html })
}).catch((e) => {
  $('#note').textContent = 'Failed: ' + e.message
  document.body.dataset.state = 'failed'
})
