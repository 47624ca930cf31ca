'use strict'
// The real bootstrap page (web/dist, the runtime from web/boot) with a home peer and no HTTP
// mirror (issue 11), all of it the product: a community made by `peerhost` (50 posts, the
// default app published), the instance (`peerhost serve` over a copy of that store with
// --bootstrap-page web/dist, https with --tls-cert/--tls-key, --stun, the signaling relay and
// health checks) and a home peer (`peerhost mirror KEY --register URL`, no --http: a copy of
// the store, the signed long-poll; the test certificate trusted through
// PEERHOST_EXTRA_CA_CERTS), Chromium in a network namespace. The instance lists the home peer by node key in the document; the runtime opens
// a data channel to it through the instance's signaling and reads the community, the app and
// the posts over WebRTC, verified; the header says which sources served.
//
// 1. the latest 20 posts in the app, everything read from the home peer (Chromium's network
//    log: the instance served the document, the Service Worker and one signaling answer, no
//    log data: the document's inline script fetched the pinned runtime over its own small
//    data channel client, and the runtime took that channel over); a first visit costs the
//    instance at most 6 000 bytes;
// 2. the home peer gone: the page falls back to the instance and says so.
//
// Needs root, target/release/peerhost (PEERHOST_BIN), web/dist and web/app/dist (npm run
// build in web/), openssl, /usr/bin/chromium.

const test = require('node:test')
const assert = require('node:assert')
const fs = require('node:fs')
const path = require('node:path')
const lib = require('./lib.js')
const rtc = require('./rtc-lib.js')

const NS = 'phr-rtcboot'
const IP = '10.99.2.1'

let tmp, tls, community, instance, peer, browser

test.before(async () => {
  for (const f of [lib.BIN, lib.CHROMIUM, path.join(lib.PAGE, 'index.html'), path.join(lib.APP, 'peerhost-runtime.js')]) {
    if (!fs.existsSync(f)) throw new Error(`${f} is missing (see the header of this file)`)
  }
  tmp = rtc.tmpdir('peerhost-rtc-boot-')
  community = lib.makeCommunity(tmp, { posts: 50 })
  rtc.makeNetns(NS, IP)
  tls = rtc.makeCert(tmp, [IP])
  instance = await rtc.startServe(NS, IP, tmp, community, { tls, page: lib.PAGE, name: 'served' })
  peer = rtc.startHome(NS, tmp, community, instance, { tls })
  await peer.ready
  const w = await rtc.waitHomeListed(peer)
  assert.strictEqual(w.connected, true)
  browser = await rtc.launch(NS, tmp, [rtc.trustFlag(tls)])
})

test.after(async () => {
  if (browser) await browser.close()
  for (const c of [peer, instance]) if (c) c.stop()
  await rtc.sleep(300)
  rtc.removeNetns(NS)
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true })
})

/** A fresh context and page that logs every network request (method, path, bytes). */
async function page () {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 900, height: 1100 } })
  const p = await context.newPage()
  const log = []
  context.on('requestfinished', (req) => {
    if (!/^https?:/.test(req.url())) return
    log.push((async () => {
      const res = await req.response()
      if (!res || res.fromServiceWorker()) return null
      const s = await req.sizes()
      const u = new URL(req.url())
      return { method: req.method(), origin: u.origin, path: u.pathname + u.search, bytes: s.responseBodySize + s.responseHeadersSize }
    })().catch(() => null))
  })
  const consoleLines = []
  p.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`))
  return { context, page: p, console: consoleLines, requests: async () => (await Promise.all(log)).filter(Boolean) }
}

const latest20 = () => community.titles.slice(-20).reverse()

test('the real bootstrap page: the latest 20 posts from a home peer over WebRTC, no HTTP mirror', async () => {
  const p = await page()
  try {
    const got = await lib.loadPage(p, instance.url)
    assert.deepStrictEqual(got.titles, latest20())
    const sources = await p.page.evaluate(() => document.body.dataset.sources)
    const said = await p.page.textContent('#sources')
    const peers = await p.page.evaluate(() => window.peerhost.loader.list())
    const home = peers.find((x) => x.kind === 'webrtc')
    assert.ok(home && home.bytes > 4000 && !home.banned, `the home peer served: ${JSON.stringify(peers)}`)
    assert.match(sources, /webrtc/, `body[data-sources]: ${sources}`)
    assert.match(said, /1 WebRTC peer/, `the header: ${said}`)
    // Chromium's network log: only the instance was fetched over HTTP(S); it sent the
    // document, the Service Worker and the signaling (the inline script's channel for the
    // runtime, the runtime's own), no log data.
    const reqs = await p.requests()
    assert.ok(reqs.every((r) => r.origin === instance.url), `only the instance over HTTP: ${JSON.stringify(reqs.map((r) => r.origin))}`)
    const paths = [...new Set(reqs.map((r) => `${r.method} ${r.path}`))].sort()
    assert.deepStrictEqual(paths, ['GET /', 'GET /sw.js', 'POST /v1/signal'])
    // One offer: the runtime took over the document's channel (its answer's signature checked).
    assert.strictEqual(reqs.filter((r) => r.path === '/v1/signal').length, 1)
    const total = reqs.reduce((a, r) => a + r.bytes, 0)
    assert.ok(total <= 6000, `a first visit cost the instance ${total} B`)
    const byPath = reqs.map((r) => `${r.method} ${r.path.replace(/[0-9a-f]{64}/, (k) => k.slice(0, 8))} ${r.bytes}`)
    console.log(`# first post ${got.firstPostMs.toFixed(0)} ms; ${said}; from the instance ${total} B: ${byPath.join(', ')}`)
  } finally {
    await p.context.close()
  }
})

test('the home peer gone: the page falls back to the instance and says so', async () => {
  peer.child.kill('SIGKILL')
  // The instance's next health check (every second) finds it gone and delists it.
  await rtc.sleep(200)
  const p = await page()
  try {
    const got = await lib.loadPage(p, instance.url)
    assert.deepStrictEqual(got.titles, latest20())
    assert.match(got.note, /from the instance/, `the notice: ${got.note}`)
    const sources = await p.page.evaluate(() => document.body.dataset.sources)
    assert.strictEqual(sources, 'instance')
    console.log(`# peer gone: first post ${got.firstPostMs.toFixed(0)} ms; notice "${got.note}"`)
  } finally {
    await p.context.close()
  }
})
