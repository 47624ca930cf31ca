'use strict'
// The real bootstrap page (web/dist, the runtime from web/boot) with a home peer and no HTTP
// mirror (issue 11): a community made by `peerhost` (50 posts, the default app published), the
// instance (`rtc_peer instance`: the gateway over a copy of that store with the bootstrap page,
// https, STUN, the signaling relay and health checks) and a home peer (`rtc_peer serve
// --store`: a copy of the store, no HTTP gateway, the signed long-poll), Chromium in a network
// namespace. The instance lists the home peer by node key in the document; the runtime opens
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
// Needs root, target/release/rtc_peer, target/release/peerhost (PEERHOST_BIN), web/dist and
// web/app/dist (npm run build in web/), /usr/bin/chromium.

const test = require('node:test')
const assert = require('node:assert')
const fs = require('node:fs')
const path = require('node:path')
const lib = require('./lib.js')
const rtc = require('./rtc-lib.js')

const NS = 'phr-rtcboot'
const IP = '10.99.2.1'

let tmp, tls, community, instance, inst, peer, ready, browser

test.before(async () => {
  for (const f of [rtc.RTC_PEER, lib.BIN, lib.CHROMIUM, path.join(lib.PAGE, 'index.html'), path.join(lib.APP, 'peerhost-runtime.js')]) {
    if (!fs.existsSync(f)) throw new Error(`${f} is missing (see the header of this file)`)
  }
  tmp = rtc.tmpdir('peerhost-rtc-boot-')
  community = lib.makeCommunity(tmp, { posts: 50 })
  const info = path.join(tmp, 'community.json')
  fs.writeFileSync(info, JSON.stringify(community.info))
  // Each process opens (and locks) its own copy of the store.
  for (const d of ['inst-store', 'home-store']) fs.cpSync(community.storage, path.join(tmp, d), { recursive: true })
  rtc.makeNetns(NS, IP)
  tls = rtc.makeCert(tmp, [IP])
  instance = await rtc.startInstance(NS, IP, tmp, ['--page', lib.PAGE, '--store', path.join(tmp, 'inst-store'),
    '--community-json', info, '--stun', `${IP}:3478`, '--check-every', '500', '--poll-wait', '3000'], { tls, page: false })
  inst = await instance.ready
  peer = rtc.startPeer(NS, ['--instance', inst.url, '--trust', tls.cert, '--store', path.join(tmp, 'home-store'), '--key-seed', '5'])
  ready = await peer.ready
  assert.strictEqual(ready.http, null, 'the home peer has no HTTP gateway')
  await rtc.waitListed(peer)
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
    const got = await lib.loadPage(p, inst.url)
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
    assert.ok(reqs.every((r) => r.origin === inst.url), `only the instance over HTTP: ${JSON.stringify(reqs.map((r) => r.origin))}`)
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
  await rtc.sleep(200)
  const p = await page()
  try {
    const got = await lib.loadPage(p, inst.url)
    assert.deepStrictEqual(got.titles, latest20())
    assert.match(got.note, /from the instance/, `the notice: ${got.note}`)
    const sources = await p.page.evaluate(() => document.body.dataset.sources)
    assert.strictEqual(sources, 'instance')
    console.log(`# peer gone: first post ${got.firstPostMs.toFixed(0)} ms; notice "${got.note}"`)
  } finally {
    await p.context.close()
  }
})
