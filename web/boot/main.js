// The bootstrap runtime: the part of the bootstrap that the document (inline.js) fetches from
// the peers by the SHA-256 pinned in it (web/README.md, "The bootstrap"). It trusts the
// community key the instance wrote into the page, and nothing else:
// 1. the descriptor log's head, verified against the community key, and its last descriptor:
//    the keys of the posts, comments and assets (app) logs;
// 2. the app log (the descriptor's, or the one a reader chose: #app=KEY or settings), its
//    head verified against that key, its last asset index, then each file as the app asks:
//    blocks verified against the head, reassembled, SHA-256 checked against the index;
// 3. the app in a sandboxed iframe (opaque origin, its own CSP, no network), given a
//    MessagePort that answers the data API (protocol/app-api.md) with verified data only.
// Where WebCrypto lacks Ed25519, the fallback engine is fetched from the peers (the
// community's app log) and checked against the SHA-256 pinned here before it runs.
// Peers: the HTTP gateways and the WebRTC peers (home peers by node key, `rtcPeers`, signaled
// through the instance) the instance listed, in one peer set: opened at once, each joins when
// its channel is open; verified, scored, hedged and banned alike. When none works, the
// instance's own gateway, and the page says so; the header names the sources that served.

/* global SHIM, APP_CSP, NOBLE_SHA256, SHELL */
import { Loader, blockCache, httpPeer } from './loader.js'
import { joinAll, rtcPeer } from './rtc.js'
import { fail, hex, setUnsigned, useEngine, webcryptoWorks } from './verify.js'
import { assetIndex, chunk, descriptor } from './proto.js'
import { Bee } from './bee.js'

const $ = (s) => document.querySelector(s)
const store = (k, v) => { try { return v === undefined ? localStorage.getItem(k) : v === null ? localStorage.removeItem(k) : localStorage.setItem(k, v) } catch {} }
const note = (t) => { $('#note').textContent = t }
const KEY = /^[0-9a-f]{64}$/

let data, state, loader, html
let saved = { t: 0, peers: [] }
let showSources = () => {}

/** Run the bootstrap: `data` ({community, peers}), `peers` (the page's and stored ones),
 * `tries` (the document's requests: peers that have not answered yet count as busy). */
export function start (ctx) {
  // The document as served, for the Service Worker (nothing changed it yet); then the header
  // (boot/shell.html, by build.mjs): the document carries only `#note`.
  html = ctx.html || '<!doctype html>' + document.documentElement.outerHTML
  $('#note').insertAdjacentHTML('beforebegin', SHELL[0])
  $('#note').insertAdjacentHTML('afterend', SHELL[1])
  data = ctx.data
  state = window.peerhost = { community: data.community, t0: ctx.t0 }
  try { saved = JSON.parse(store('peerhost.peers')) || saved } catch {}
  loader = state.loader = new Loader({
  peers: ctx.peers.map((u) => httpPeer(u)),
  instance: httpPeer(location.origin, 'instance'),
  cache: self.caches ? blockCache(caches) : null,
  onFallback: () => {
    state.fallback = true
    note('⚠ Reading from the instance: no peer answered in time.')
    refreshPeers()
  },
  onBad: reportBad
})
  // A peer still silent on the document's request counts as stalled until it answers.
  // WebRTC peers (at most 4 opened at once), signaled through this instance.
  // The document's channel to the peer that served the runtime is taken over, not reopened.
  const rtc = (data.rtcPeers || []).slice(0, 4).map((k) => rtcPeer(k, { iceServers: data.iceServers || [], adopt: ctx.rtc && ctx.rtc.key === k ? ctx.rtc : null }))
  // With no HTTP peer, wait (up to 5 s) for the first to connect; not when the runtime itself
  // had to come from the instance (the peers were tried, and were too slow).
  const viaInstance = (ctx.tries || []).some((t) => t.won && t.url === location.origin)
  state.rtc = rtc.length ? joinAll(loader, rtc, { waitMs: ctx.peers.length || viaInstance ? 0 : 5000 }) : null
  for (const { url, started, done } of ctx.tries || []) {
    const p = started && loader.peers.find((p) => p.url === url)
    if (p) {
      const t = ctx.t0 - 10_000
      p.busy.add(t)
      done.then(() => p.busy.delete(t))
    }
  }
  $('#back').onclick = () => {
    store('peerhost.app', null)
    location.replace('/')
  }
  $('form').onsubmit = (e) => {
    e.preventDefault()
    const k = e.target.app.value.trim().toLowerCase()
    if (KEY.test(k) || !k) store('peerhost.app', k || null)
    location.replace('/')
  }
  // The hash is the app's route (`#/post/ID`, sent to it as `route` events) and the app
  // choice (`app=KEY`): only a change of the latter reloads the page.
  const app0 = appOf(location.hash)
  onhashchange = () => {
    if (appOf(location.hash) !== app0) location.reload()
    else routed(routeOf(location.hash))
  }
  sources()
  return (state.rtc || Promise.resolve()).then(main).catch((e) => {
    note('Failed: ' + e.message)
    document.body.dataset.state = 'failed'
  })
}

// The header says which sources served this page (bytes of verified answers, by kind), and
// body[data-sources] lists them (e.g. "webrtc", "webrtc http", "instance").
function sources () {
  const el = document.createElement('span')
  el.id = 'sources'
  $('header').insertBefore(el, $('#note'))
  const names = { webrtc: 'WebRTC', http: 'HTTP', instance: 'the instance' }
  const tick = () => {
    const by = {}
    for (const p of loader.list()) if (p.bytes) by[p.kind] = [(by[p.kind] || [0])[0] + p.bytes, ((by[p.kind] || [])[1] || 0) + 1]
    const kinds = Object.keys(by).sort()
    document.body.dataset.sources = kinds.join(' ')
    el.textContent = kinds.length ? 'from ' + kinds.map((k) => `${k === 'instance' ? names[k] : `${by[k][1]} ${names[k] || k} peer${by[k][1] > 1 ? 's' : ''}`} (${Math.round(by[k][0] / 1024)} KiB)`).join(', ') : ''
  }
  setInterval(tick, 500)
  showSources = tick
}

// A peer caught serving data that does not verify is reported to the instance (protocol/
// gateway.md §7.4), which checks it itself and delists it for every reader if the check
// fails: HTTP peers only (the instance's own gateway is not reported), once per peer per page
// load, at most 8 per load; no credentials, the answer ignored.
const reported = new Set()
function reportBad (url, reason, path, peer) {
  const m = /^\/v1\/logs\/([0-9a-f]{64})\/(head|blocks\?start=(\d+)&end=(\d+))/.exec(path || '')
  if (!peer || peer.kind !== 'http' || peer.last || !m || reported.has(url) || reported.size >= 8) return
  reported.add(url)
  const start = m[3] ? +m[3] : 0
  const report = { peer: url, log: m[1], start, end: m[4] ? +m[4] : start, code: String(reason).split(':')[0].slice(0, 40) }
  state.reports = (state.reports || 0) + 1
  fetch('/v1/bad-peer', { method: 'POST', credentials: 'omit', keepalive: true, headers: { 'content-type': 'application/json' }, body: JSON.stringify(report) }).catch(() => {})
}

function refreshPeers () {
  fetch('/v1/peers').then((r) => r.json()).then(({ peers }) => {
    peers.forEach((u) => loader.add(httpPeer(u)))
    store('peerhost.peers', JSON.stringify({ t: Date.now(), peers }))
  }).catch(() => {})
}

// The last block of `key` that `decode` accepts (of the last 16), with the head.
async function last (key, decode) {
  const head = await loader.head(key)
  for (let i = head.length; i-- > Math.max(0, head.length - 16);) {
    const v = decode((await loader.range(head, i, i + 1))[0], i)
    if (v) return { head, v }
  }
  fail('NOT_FOUND', `no entry found in log ${key}`)
}
const community = () => last(data.community, descriptor)
// The current app: the last asset index whose files all lie before it.
const app = (key) => last(key, (b, i) => {
  const files = assetIndex(b)
  return files && files.every((f) => f.start + f.blocks <= i) && files
})

async function fileBytes (head, f) {
  const blocks = await loader.range(head, f.start, f.start + f.blocks)
  const bytes = new Uint8Array(f.size)
  let o = 0
  for (const b of blocks) {
    const c = chunk(b) || fail('INVALID_FILE', `${f.path}: not a chunk`)
    if (o + c.length > f.size) fail('INVALID_FILE', `${f.path}: longer than its size`)
    bytes.set(c, o)
    o += c.length
  }
  if (o !== f.size || hex(new Uint8Array(await crypto.subtle.digest('SHA-256', bytes))) !== hex(f.sha256 || [])) {
    fail('INVALID_FILE', `${f.path}: does not match its SHA-256`)
  }
  return bytes
}

// Without WebCrypto Ed25519: find the file with the pinned hash in the community's app log
// (heads unsigned for this one search, nothing cached), check it, and use it.
async function fallbackEngine () {
  const cache = loader.cache
  loader.cache = null
  setUnsigned(true)
  try {
    const { v: d } = await community()
    const { head, v: files } = await app(d.assets)
    const f = files.find((f) => hex(f.sha256 || []) === NOBLE_SHA256) || fail('NOT_FOUND', 'no Ed25519 fallback in the app log')
    const url = URL.createObjectURL(new Blob([await fileBytes(head, f)], { type: 'text/javascript' }))
    useEngine((await import(url)).verify)
  } finally {
    setUnsigned(false)
    loader.heads.clear()
    loader.cache = cache
  }
}

// The hash: the app's route, then `&app=KEY` when a reader swapped the app in.
const APP_IN_HASH = /(?:^#|&)app=([0-9a-f]{64})/
const appOf = (h) => (APP_IN_HASH.exec(h) || [])[1] || null
const routeOf = (h) => h.replace(APP_IN_HASH, '').replace(/^#/, '')
let routed = () => {}

// The community's index (a Hyperbee, protocol/bee.md) read sparsely: per log, the blocks
// decoded so far (one fork), walked by web/boot/bee.js over verified blocks (sets of them).
const bees = new Map()
const INDEX_OPTS = ['gt', 'gte', 'lt', 'lte', 'prefix']

// An entry's key and value as bytes of their own: they are views into a block (itself a view
// into a whole response), and a view crosses the port with its whole buffer.
const ownBytes = (e) => e && { seq: e.seq, key: e.key.slice(), value: e.value && e.value.slice() }

const pub = (h) => ({ key: h.key, length: h.length, fork: h.fork, byteLength: h.byteLength, treeHash: hex(h.treeHash) })

async function main () {
  state.ed25519 = 'webcrypto'
  if (!await webcryptoWorks()) {
    state.ed25519 = 'noble'
    await fallbackEngine()
  }
  const { v: d } = await community()
  state.descriptor = d
  document.title = d.title || d.name
  const chosen = (location.hash.match(/app=([0-9a-f]{64})/) || [])[1] || store('peerhost.app')
  const appKey = (state.app = KEY.test(chosen) ? chosen : d.assets)
  const own = appKey === d.assets
  $('#app').textContent = `app ${appKey.slice(0, 8)}…${appKey.slice(-4)} ${own ? "(the community's)" : '(swapped in)'}`
  $('#app').title = appKey
  $('#back').hidden = own
  const { head, v: files } = await app(appKey)
  state.files = files.map((f) => f.path)
  const got = {}
  const file = (path) => (got[path] ||= (async () => {
    const f = files.find((f) => f.path === path) || fail('NOT_FOUND', `no file ${path}`)
    return { path, type: f.type, bytes: await fileBytes(head, f) }
  })())
  const watched = new Map()
  const check = (key) => KEY.test(key) ? key : fail('BAD_ARGUMENT', 'a key is 64 lowercase hex digits')
  const api = {
    community: () => ({ key: data.community, ...d, app: appKey }),
    head: async (key) => pub(await loader.head(check(key))),
    range: async (key, start, end, length) => loader.range(length == null ? await loader.head(check(key)) : loader.known(key, length) || fail('UNKNOWN_HEAD', `no verified head of length ${length}`), start, end),
    blocks: async (key, indices, length) => {
      if (!Array.isArray(indices) || indices.length > 65536) fail('BAD_ARGUMENT', 'indices: an array of at most 65536 block numbers')
      const head = length == null ? await loader.head(check(key)) : loader.known(key, length) || fail('UNKNOWN_HEAD', `no verified head of length ${length}`)
      return loader.blocks(head, indices)
    },
    latest: async (key, n = 20) => {
      const r = await loader.latest(check(key), Math.min(n, 1024))
      return { head: pub(r.head), blocks: r.blocks }
    },
    watch: (key) => { watched.set(check(key), watched.get(key) || 0) },
    peers: () => loader.list(),
    files: () => files.map(({ path, type, size }) => ({ path, type, size })),
    file,
    'index.get': async (key, k, length) => {
      const { head, bee } = await beeAt(key, length)
      return { head: pub(head), entry: ownBytes(await bee.get(k)) }
    },
    'index.range': async (key, opts = {}, length) => {
      const { head, bee } = await beeAt(key, length)
      const o = { reverse: !!(opts && opts.reverse), limit: Math.min(Number.isSafeInteger(opts && opts.limit) && opts.limit >= 0 ? opts.limit : 1024, 1024) }
      for (const f of INDEX_OPTS) if (opts && opts[f] != null) o[f] = opts[f]
      return { head: pub(head), entries: (await bee.range(o)).map(ownBytes) }
    },
    route: () => routeOf(location.hash),
    navigate: (route) => {
      if (typeof route !== 'string' || route.length > 2048) fail('BAD_ARGUMENT', 'a route is a string of at most 2048 characters')
      const app = appOf(location.hash)
      location.hash = route.replace(/^#/, '') + (app ? '&app=' + app : '')
    },
    ready: (info = {}) => {
      state.firstPostMs ??= performance.now()
      state.ready = info
      // The sources as they stand when the page says it is loaded, not half a second later.
      showSources()
      document.body.dataset.state = info.error ? 'failed' : 'loaded'
      if (info.error) note('The app failed: ' + info.error)
    }
  }
  // A bee over the index log `key` at a head (`length`: one returned earlier; none: a new one).
  const beeAt = async (key, length) => {
    const head = length == null ? await loader.head(check(key)) : loader.known(check(key), length) || fail('UNKNOWN_HEAD', `no verified head of length ${length}`)
    let c = bees.get(key)
    if (!c || c.fork !== head.fork) bees.set(key, (c = { fork: head.fork, blocks: new Map() }))
    return { head, bee: new Bee(async (s) => (await loader.range(head, s, s + 1))[0], head.length, { blocks: c.blocks, cache: 16384, range: (s, e) => loader.range(head, s, e), set: (seqs) => loader.blocks(head, seqs) }) }
  }
  const { port1, port2 } = new MessageChannel()
  routed = (route) => port1.postMessage({ event: 'route', route })
  port1.onmessage = async ({ data: { id, op, args } }) => {
    try {
      const f = Object.hasOwn(api, op) ? api[op] : () => fail('NOT_SUPPORTED', `${op} is not in this API`)
      port1.postMessage({ id, value: await f(...(Array.isArray(args) ? args : [])) })
    } catch (e) {
      port1.postMessage({ id, error: { code: e.code || 'ERROR', message: e.message } })
    }
  }
  // New heads of watched logs, every 5 s while the page is shown.
  setInterval(() => {
    if (document.hidden) return
    for (const [key, seen] of watched) {
      loader.head(key).then((h) => {
        if (h.length > seen) {
          watched.set(key, h.length)
          if (seen) port1.postMessage({ event: 'head', key, head: pub(h) })
        }
      }, () => {})
    }
  }, 5000)
  const frame = document.createElement('iframe')
  frame.sandbox = 'allow-scripts'
  frame.srcdoc = `<!doctype html><meta http-equiv="Content-Security-Policy" content="${APP_CSP}"><script>${SHIM}</script>`
  frame.onload = () => frame.contentWindow.postMessage('peerhost', '*', [port2])
  $('main').replaceChildren(frame)
  // The Service Worker serves this document on later visits: the copy it keeps is the one
  // this page was parsed from (no second download).
  const sw = navigator.serviceWorker
  if (sw) {
    if (sw.controller && Date.now() - saved.t > 600_000) refreshPeers()
    else if (!sw.controller) {
      store('peerhost.peers', JSON.stringify({ t: Date.now(), peers: saved.peers })) // the page's are fresh
      await caches.open('peerhost-boot').then((c) => c.put('/', new Response(html, { headers: { 'content-type': 'text/html; charset=utf-8' } })))
    }
    sw.register('/sw.js', { updateViaCache: 'all' }).catch(() => {})
  }
}

