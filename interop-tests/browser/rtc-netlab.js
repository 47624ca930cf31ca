'use strict'
// The NAT lab with real browsers (issue 11), all of it the product: Chromium behind nat2
// (phr-peer2), the home peer behind nat1 (phr-peer1: `peerhost mirror KEY --register URL`, no
// --http, as shipped), the instance on the public side (phr-inst: `peerhost serve` with
// --tls-cert/--tls-key, --stun and --bootstrap-page web/dist: the page, STUN, the signaling
// relay the home peer long-polls through its NAT, the health checks). No HTTP gateway anywhere
// but the instance. For each of the 4 × 4 NAT type pairs, a fresh page of the real bootstrap
// (over a community made by `peerhost`) loads the runtime and the latest 20 posts from the
// home peer over WebRTC (one RTCPeerConnection), or falls back to the instance and says so;
// where that fails, the test page (a second `peerhost serve` on phr-inst with the test page as
// its bootstrap page) tries again with RACE RTCPeerConnections at once (§2.2 of
// protocol/webrtc.md; the home peer's birthday search is on in both passes, as the daemon
// runs it). Chromium's mDNS stays on.
//
//   sudo node interop-tests/browser/rtc-netlab.js [CELLS] [--race N] [--no-birthday-pass]
//
// CELLS: comma-separated PEER:BROWSER NAT pairs (full|restricted|port|symmetric), default
// all 16. Writes target/netlab/rtc-matrix.json and rtc-matrix.md. The lab's namespaces use
// the prefix "phr-" (NETLAB_PREFIX) so the NAT matrix of other tests can run beside it.
// Needs root, target/release/peerhost (PEERHOST_BIN), web/dist and web/app/dist (npm run
// build in web/), web/node_modules, openssl, /usr/bin/chromium.

const fs = require('node:fs')
const path = require('node:path')
const { execFileSync } = require('node:child_process')
const lib = require('./rtc-lib.js')
const boot = require('./lib.js')

const PREFIX = 'phr-'
const NETLAB = path.join(lib.ROOT, 'interop-tests', 'netlab', 'netlab.sh')
const TYPES = ['full', 'restricted', 'port', 'symmetric']
const INST = '198.51.100.30'
const OUT = path.join(process.env.CARGO_TARGET_DIR || path.join(lib.ROOT, 'target'), 'netlab')

function netlab (...args) {
  return execFileSync('bash', [NETLAB, ...args], { encoding: 'utf8', env: { ...process.env, NETLAB_PREFIX: PREFIX }, stdio: ['ignore', 'pipe', 'pipe'] })
}

const argv = process.argv.slice(2)
const race = Number((argv[argv.indexOf('--race') + 1]) || 0) || 8
const cells = (argv.find((a) => a.includes(':')) || TYPES.flatMap((p) => TYPES.map((b) => `${p}:${b}`)).join(','))
  .split(',').map((c) => c.split(':'))
const secondPass = !argv.includes('--no-birthday-pass')

/**
 * Plain ICE with the real bootstrap page (web/dist): a home peer over a copy of the community's
 * store, listed by the instance; a fresh page loads the document, whose inline script fetches
 * the runtime over WebRTC and whose runtime reads the posts over WebRTC (or, where no channel
 * opens, falls back to the instance and says so). Bytes from the peer: Chromium's getStats on
 * the connection the document opened and the runtime took over (the runtime, the app, the
 * posts); connect: from that connection's start to the peer's HELLO;
 * bytes from the instance: Chromium's network log (document, Service Worker, signaling, and
 * whatever it served on a fallback).
 */
/** A home peer behind nat1: `peerhost mirror` over a fresh copy of the community's store,
 * registered with `instance`; resolves once listed (or not, in 20 s). */
async function homePeer (tmp, store, instance, tls, row) {
  const home = lib.startHome(`${PREFIX}peer1`, tmp, store, instance, { tls, name: `home-${++homes}` })
  await home.ready
  try {
    const w = await lib.waitHomeListed(home, { ms: 20_000 })
    row.listed = true
    row.peerKey = w.node
  } catch (e) {
    row.listed = false
    row.listError = String(e.message).slice(0, 200)
  }
  return home
}
let homes = 0

async function attemptBoot ({ browser, instance, tls, tmp, store, titles, peerNat, browserNat }) {
  netlab('nat', 'nat1', peerNat)
  netlab('nat', 'nat2', browserNat)
  const bootUrl = instance.url
  const row = { page: 'bootstrap', peerNat, browserNat, parallel: 1, connected: false }
  const peer = await homePeer(tmp, store, instance, tls, row)
  const context = await browser.newContext({ ignoreHTTPSErrors: true })
  const page = await context.newPage()
  const log = []
  context.on('requestfinished', (req) => {
    if (!/^https?:/.test(req.url())) return
    log.push(req.response().then(async (res) => (res && !res.fromServiceWorker())
      ? { path: new URL(req.url()).pathname, bytes: await req.sizes().then((z) => z.responseBodySize + z.responseHeadersSize) }
      : null).catch(() => null))
  })
  const t0 = Date.now()
  try {
    const got = await boot.loadPage({ page }, bootUrl)
    const sources = await page.evaluate(() => document.body.dataset.sources)
    row.connected = /webrtc/.test(sources) && JSON.stringify(got.titles) === JSON.stringify(titles.slice(-20).reverse())
    if (!row.connected) row.error = `sources "${sources}", ${got.titles.length} titles${got.titles.length ? `, first "${got.titles[0]}"` : ''}`
    row.fellBack = /instance/.test(sources)
    row.notice = got.note || null
    row.firstPostMs = Math.round(got.firstPostMs)
    const st = await page.evaluate(async () => {
      const p = window.peerhost.loader.peers.find((x) => x.kind === 'webrtc' && x.stats && x.stats())
      return p ? p.stats() : null
    })
    const t = (st && st.transport) || {}
    row.connectMs = st && st.helloMs !== null ? Math.round(st.helloMs) : null
    row.bytesFromPeer = t.bytesReceived
    row.bytesToPeer = t.bytesSent
    row.localType = t.local && t.local.type
    row.remoteType = t.remote && t.remote.type
  } catch (e) {
    row.error = String(e.message || e).slice(0, 200)
    row.failMs = Date.now() - t0
  }
  const reqs = (await Promise.all(log)).filter(Boolean)
  row.bytesFromInstance = reqs.reduce((a, r) => a + r.bytes, 0)
  row.instancePaths = [...new Set(reqs.map((r) => r.path.replace(/[0-9a-f]{64}/, 'KEY')))]
  await context.close()
  await stopHome(peer, row)
  return row
}

/** Stop a home peer (SIGTERM: it deregisters) and note its public addresses. */
async function stopHome (home, row) {
  try { row.peerPublic = (home.status().webrtc[0] || {}).public } catch {}
  home.stop()
  await lib.waitFor('the home peer to exit', () => home.child.exitCode !== null || home.child.signalCode !== null, 5000).catch(() => {})
  fs.rmSync(home.storage, { recursive: true, force: true })
}

async function attempt ({ browser, instance, tls, tmp, store, peerNat, browserNat, parallel }) {
  netlab('nat', 'nat1', peerNat)
  netlab('nat', 'nat2', browserNat)
  const pageUrl = instance.url
  const row = { page: 'test', peerNat, browserNat, birthday: true, parallel, connected: false }
  // The instance's STUN server comes to the peer with its first poll.
  const peer = await homePeer(tmp, store, instance, tls, row)
  const p = await lib.openPage(browser, pageUrl)
  const t0 = Date.now()
  try {
    const got = await p.page.evaluate((o) => window.rtcRun(o), {
      mode: 'rtc', key: store.posts, n: 20, peer: row.peerKey, parallel, connectTimeoutMs: 25_000
    })
    row.connected = got.titles.length === 20 && got.titles[0] === 'Post 50: notes on hypercore, part 50'
    row.connectMs = Math.round(got.connectMs)
    row.firstPostMs = Math.round(got.firstPostMs)
    const t = got.stats.transport || {}
    row.bytesFromPeer = t.bytesReceived
    row.bytesToPeer = t.bytesSent
    row.localType = t.local && t.local.type
    row.remoteType = t.remote && t.remote.type
  } catch (e) {
    row.error = String(e.message || e).slice(0, 200)
    row.failMs = Date.now() - t0
  }
  // Bytes from the instance: the page's own requests (page, script, signaling), as Chromium
  // counted them; and whether any log data came from it (it must not).
  row.bytesFromInstance = await p.httpBytes()
  row.instancePaths = [...new Set((await p.requests()).map((r) => r.path))]
  await p.close()
  await stopHome(peer, row)
  return row
}

async function main () {
  fs.mkdirSync(OUT, { recursive: true })
  const tmp = lib.tmpdir('peerhost-rtc-netlab-')
  netlab('up')
  let browser
  const tls = lib.makeCert(tmp, [INST]) // https://, as a real instance (WebCrypto needs it)
  // Two instances on phr-inst over copies of one community made by `peerhost`: the real
  // bootstrap page (the plain cells), and the test page (the race pass).
  const store = lib.makeStore(tmp, { posts: 50 })
  const page = path.join(tmp, 'page')
  fs.mkdirSync(page)
  await lib.bundlePage(page)
  let bootInstance, instance
  const rows = []
  try {
    bootInstance = await lib.startServe(`${PREFIX}inst`, INST, tmp, store, { tls, page: boot.PAGE, name: 'boot-instance', stunPort: 3478 })
    instance = await lib.startServe(`${PREFIX}inst`, INST, tmp, store, { tls, page, name: 'test-instance', stunPort: 3479 })
    browser = await lib.launch(`${PREFIX}peer2`, tmp, [lib.trustFlag(tls)])
    for (const [peerNat, browserNat] of cells) {
      const plain = await attemptBoot({ browser, instance: bootInstance, tls, tmp, store, titles: store.titles, peerNat, browserNat })
      console.log(JSON.stringify(plain))
      rows.push(plain)
      // RTC_NETLAB_TEST_PAGE=1: the test page in every cell too, one connection (its transport
      // trickles candidates, protocol/webrtc.md §2.1; the bootstrap page's inline client sends
      // the whole offer).
      const testPage = Boolean(process.env.RTC_NETLAB_TEST_PAGE)
      if ((!plain.connected && secondPass) || testPage) {
        const helped = await attempt({ browser, instance, tls, tmp, store, peerNat, browserNat, parallel: testPage && plain.connected ? 1 : race })
        console.log(JSON.stringify(helped))
        rows.push(helped)
      }
    }
  } finally {
    if (browser) await browser.close()
    for (const d of [instance, bootInstance]) if (d) d.stop()
    await lib.sleep(500)
    try { netlab('down') } catch {}
    fs.rmSync(tmp, { recursive: true, force: true })
  }
  fs.writeFileSync(path.join(OUT, 'rtc-matrix.json'), JSON.stringify(rows, null, 2))
  const md = ['| home peer NAT | browser NAT | plain ICE (bootstrap page) | connect ms | first post ms | bytes from peer (getStats) | bytes from instance | pair (local/remote) | with race + birthday (test page) |',
    '|---|---|---|---|---|---|---|---|---|']
  for (const [peerNat, browserNat] of cells) {
    const a = rows.find((r) => r.peerNat === peerNat && r.browserNat === browserNat && r.page === 'bootstrap')
    const b = rows.find((r) => r.peerNat === peerNat && r.browserNat === browserNat && r.page === 'test')
    const helped = !b ? '–' : b.connected ? `yes: ${b.connectMs} ms` : 'no'
    md.push(`| ${peerNat} | ${browserNat} | ${a.connected ? 'yes' : a.fellBack ? 'no: fell back to the instance, said so' : 'no'} | ${a.connectMs ?? '–'} | ${a.firstPostMs ?? '–'} | ${a.bytesFromPeer ?? (b && b.bytesFromPeer) ?? '–'} | ${a.bytesFromInstance} | ${a.localType ? `${a.localType}/${a.remoteType}` : (b && b.localType ? `${b.localType}/${b.remoteType}` : '–')} | ${helped} |`)
  }
  fs.writeFileSync(path.join(OUT, 'rtc-matrix.md'), md.join('\n') + '\n')
  console.log(md.join('\n'))
}

main().catch((e) => {
  console.error(e)
  try { netlab('down') } catch {}
  process.exit(1)
})
