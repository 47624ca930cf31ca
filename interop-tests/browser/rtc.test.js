'use strict'
// WebRTC data channels with real Chromium, signaled through the instance (issue 11): the
// instance (src/bin/rtc_peer.rs `instance`: the gateway with its signaling relay and health
// checks, a STUN server, the test page) and home peers (`rtc_peer serve --instance URL`: no
// HTTP gateway, no inbound port; an outbound long-poll signed with the node key), Debian's
// Chromium through playwright-core, all in a network namespace with one veth interface
// (Chromium gathers nothing on loopback). Chromium's mDNS host candidates stay ON: the offer
// names the browser only by a .local name and a server-reflexive address (from the instance's
// STUN server), and the peer connects through the peer-reflexive address it learns.
//
// 1. the latest 20 posts over WebRTC from a home peer the instance listed (its data block),
//    every head and range verified; Chromium's network log shows the instance served the page,
//    its script and the signaling, and no log data (the same posts over HTTP for comparison);
// 2. an answer whose signature does not verify against the peer's key (swapped on the way
//    by a lying relay) is refused by the page, and no connection is made;
// 3. a signaling flood from one page is bounded: 429 past the per-client burst, the peer sees
//    only the admitted offers, the relay still answers afterwards;
// 4. hostile channels: garbage, a text message, an oversized message, 10 000 requests in a
//    window of 16 (all answered), a flood of 10 000 at once (429s, GOAWAY FLOOD, closed);
// 5. 100 browsers' connections held at once, under 100 MB RSS;
// 6. a listed peer that starts serving tampered blocks is demoted by the page like an HTTP
//    mirror (the posts come from an honest WebRTC peer beside it), and the instance's health
//    check delists it (gone from /v1/bootstrap, BAD_PROOF in the contributions).
//
// Needs root (ip netns), target/release/rtc_peer (cargo build --release -p
// peerhost-interop-tests --bin rtc_peer), web/node_modules (npm ci in web/), /usr/bin/chromium.
// Times are printed (BENCHMARKS.md has the numbers: node interop-tests/browser/rtc-bench.js).

const test = require('node:test')
const assert = require('node:assert')
const fs = require('node:fs')
const lib = require('./rtc-lib.js')

const NS = 'phr-rtc'
const IP = '10.99.0.1'

let tmp, tls, instance, inst, peer, ready, browser

// The relay's offer limits raised for this instance (100 connections from one page in test 5);
// test 3 runs against a second instance with the defaults.
const RELAXED = ['--signal-rate', '200', '--signal-burst', '400', '--per-client', '128', '--per-peer', '128']

test.before(async () => {
  for (const f of [lib.RTC_PEER, lib.CHROMIUM]) {
    if (!fs.existsSync(f)) throw new Error(`${f} is missing (see the header of this file)`)
  }
  tmp = lib.tmpdir('peerhost-rtc-')
  lib.makeNetns(NS, IP)
  // https://, as a real instance: the page is a secure context (WebCrypto) and fetches
  // nothing over plain HTTP; the home peer's long-poll is https too.
  tls = lib.makeCert(tmp, [IP])
  instance = await lib.startInstance(NS, IP, tmp, ['--stun', `${IP}:3478`, '--posts', '50',
    '--check-every', '500', '--check-timeout', '3000', ...RELAXED], { tls })
  inst = await instance.ready
  assert.match(inst.url, /^https:/)
  peer = lib.startPeer(NS, ['--instance', inst.url, '--trust', tls.cert, '--posts', '50', '--key-seed', '1'])
  ready = await peer.ready
  assert.strictEqual(ready.posts, inst.posts, 'the same generated logs')
  assert.strictEqual(ready.http, null, 'the home peer has no HTTP gateway')
  await lib.waitListed(peer)
  browser = await lib.launch(NS, tmp, [lib.trustFlag(tls)])
})

test.after(async () => {
  if (browser) await browser.close()
  for (const c of [peer, instance]) if (c) c.stop()
  await lib.sleep(300)
  lib.removeNetns(NS)
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true })
})

const latest20 = () => Array.from({ length: 20 }, (_, i) => `Post ${50 - i}: notes on hypercore, part ${50 - i}`)

test('the latest 20 posts over WebRTC from a listed home peer; the instance serves only the page and the signaling', async () => {
  const offers = []
  const p = await lib.openPage(browser, inst.url, { onOffer: (sdp) => offers.push(sdp) })
  try {
    // The instance listed the peer and its STUN server in the document's data block.
    const data = await p.page.evaluate(() => window.peerhostData())
    assert.deepStrictEqual(data.rtcPeers, [ready.key])
    assert.deepStrictEqual(data.iceServers, [{ urls: [`stun:${inst.stun}`] }])
    const got = await p.page.evaluate((o) => window.rtcRun(o), { mode: 'rtc', key: ready.posts, n: 20 })
    assert.deepStrictEqual(got.titles, latest20())
    // Chromium hid its host address: the offer has an mDNS name and our STUN's srflx, no host IP.
    const kinds = lib.candidateTypes(offers[0])
    assert.ok(kinds.mdns >= 1, `no mDNS candidate in the offer: ${JSON.stringify(kinds)}`)
    assert.ok(!kinds.host, `the offer shows a host IP: ${JSON.stringify(kinds)}`)
    const t = got.stats.transport
    assert.ok(t && t.bytesReceived > 4000, 'getStats shows the bytes')
    // Chromium's network log: the page, its script, one offer; no log data from the instance.
    const reqs = await p.requests()
    const paths = reqs.map((r) => `${r.method} ${r.path} ${r.status}`).sort()
    assert.deepStrictEqual(paths, ['GET / 200', 'GET /rtc-page.bundle.js 200', 'POST /v1/signal 200'])
    assert.ok(reqs.every((r) => r.origin === inst.url), 'only the instance was fetched')
    const st = await peer.request({ op: 'status' })
    const me = st.peers[st.peers.length - 1]
    assert.ok(me.connectMs !== null)
    assert.ok(me.answered >= 2, 'head and range answered')
    assert.ok(st.home.answered >= 1 && st.home.checks >= 1, `offers and checks answered: ${JSON.stringify(st.home)}`)
    const signalBytes = reqs.find((r) => r.path === '/v1/signal').bytes
    console.log(`# rtc: connected in ${got.connectMs.toFixed(0)} ms through the instance's signaling (peer: ICE+DTLS ${me.connectMs} ms), ` +
      `first post after ${got.firstPostMs.toFixed(0)} ms; Chromium received ${t.bytesReceived} B from the peer ` +
      `(local ${t.local.type}, remote ${t.remote.type}); offer candidates ${JSON.stringify(kinds)}; ` +
      `from the instance: ${await p.httpBytes()} B (signaling answer ${signalBytes} B)`)

    // The same posts over HTTP, from the instance's own gateway.
    const h = await lib.openPage(browser, inst.url)
    const http = await h.page.evaluate((o) => window.rtcRun(o), { mode: 'http', httpUrl: inst.url, key: ready.posts, n: 20 })
    assert.deepStrictEqual(http.titles, got.titles)
    console.log(`# http: first post after ${http.firstPostMs.toFixed(0)} ms`)
    await h.close()
  } finally {
    await p.close()
  }
})

test('an answer whose signature does not verify against the peer key is refused', async () => {
  const p = await lib.openPage(browser, inst.url)
  try {
    const before = (await peer.request({ op: 'status' })).peers.filter((x) => x.connectMs !== null).length
    // A lying relay on the way (in the page, between it and the instance): the answer's DTLS
    // fingerprint swapped with the signature kept, or the signature changed.
    const swapped = await p.page.evaluate((o) => window.rtcTry(o), { peer: ready.key, lie: 'fingerprint', connectTimeoutMs: 8000 })
    assert.strictEqual(swapped.ok, false)
    assert.match(swapped.error, /BAD_SIGNATURE/)
    const forged = await p.page.evaluate((o) => window.rtcTry(o), { peer: ready.key, lie: 'signature', connectTimeoutMs: 8000 })
    assert.strictEqual(forged.ok, false)
    assert.match(forged.error, /BAD_SIGNATURE/)
    // The honest path still works from the same page.
    const honest = await p.page.evaluate((o) => window.rtcTry(o), { peer: ready.key, connectTimeoutMs: 8000 })
    assert.strictEqual(honest.ok, true, JSON.stringify(honest))
    await lib.sleep(500)
    const after = (await peer.request({ op: 'status' })).peers.filter((x) => x.connectMs !== null).length
    assert.strictEqual(after, before + 1, 'only the honest answer led to a DTLS connection')
    console.log(`# refused: ${swapped.error}`)
  } finally {
    await p.close()
  }
})

test('a signaling flood is bounded per client; the relay answers afterwards', async () => {
  // A second instance with the relay's default limits (2 offers/s, burst 16, 8 waiting per
  // client, 16 per peer), and a home peer of its own.
  const dir = lib.tmpdir('peerhost-rtc-flood-')
  const inst2 = await lib.startInstance(NS, IP, dir, ['--posts', '50', '--check-every', '500', '--stun', `${IP}:3479`], { tls })
  const i2 = await inst2.ready
  const peer2 = lib.startPeer(NS, ['--instance', i2.url, '--trust', tls.cert, '--posts', '50', '--key-seed', '3'])
  try {
    const r2 = await peer2.ready
    await lib.waitListed(peer2)
    const p = await lib.openPage(browser, i2.url)
    const sdp = await p.page.evaluate(() => window.rtcOffer([]))
    const flood = await p.page.evaluate((o) => window.rtcSignalFlood(o), { peer: r2.key, count: 500, sdp })
    console.log(`# signaling flood of 500 offers: ${JSON.stringify(flood.statuses)} ${JSON.stringify(flood.codes)} in ${flood.ms.toFixed(0)} ms`)
    // Admitted: the burst (16) and 2 per second while the flood lasts; the rest 429.
    const admitted = 500 - (flood.statuses[429] || 0)
    const bound = 16 + 2 * Math.ceil(flood.ms / 1000) + 1
    assert.ok(admitted <= bound, `at most ${bound} offers admitted: ${JSON.stringify(flood.statuses)}`)
    assert.ok((flood.statuses[429] || 0) >= 500 - bound, `the rest refused with 429: ${JSON.stringify(flood.statuses)}`)
    const st = await peer2.request({ op: 'status' })
    assert.ok(st.home.answered + st.home.refused <= bound, `the peer saw only admitted offers: ${JSON.stringify(st.home)}`)
    // Unknown peers are refused without reaching anyone.
    const unknown = await p.page.evaluate((o) => window.rtcSignalFlood(o), { peer: 'ab'.repeat(32), count: 1, sdp })
    assert.ok(unknown.statuses[404] === 1 || unknown.statuses[429] === 1, JSON.stringify(unknown))
    // After the burst refills, an honest page connects through the same relay.
    await lib.sleep(3000)
    const got = await p.page.evaluate((o) => window.rtcRun(o), { mode: 'rtc', key: r2.posts, n: 20, peer: r2.key })
    assert.deepStrictEqual(got.titles, latest20())
    await p.close()
  } finally {
    peer2.stop()
    inst2.stop()
    await lib.sleep(200)
    fs.rmSync(dir, { recursive: true, force: true })
  }
})

test('hostile: garbage, text, oversized, and a flood close the connection; a window of 16 is served', async () => {
  const p = await lib.openPage(browser, inst.url)
  const raw = (o) => p.page.evaluate((x) => window.rtcRaw(x), { peer: ready.key, ...o })
  try {
    const before = (await peer.request({ op: 'status' })).rssKb
    // An unknown frame type, a request with a non-UTF-8 path, a text message, 3000 bytes.
    for (const [sends, binary] of [[['09'], true], [['0101000000ff'], true], [['GET /v1/logs'], false], [[{ bytes: 3000 }], true]]) {
      const r = await raw({ sends, binary })
      assert.ok(r.goaway === 1 || r.goaway === 3, `GOAWAY for ${JSON.stringify(sends)}: ${JSON.stringify(r)}`)
      assert.ok(r.closed, `closed after ${JSON.stringify(sends)}`)
    }
    // 10 000 requests on one channel, at most 16 in flight: every one answered.
    const open = await p.page.evaluate((o) => window.rtcRun(o), { mode: 'rtc', key: ready.posts, n: 1 })
    assert.strictEqual(open.titles.length, 1)
    const ham = await p.page.evaluate((o) => window.rtcHammer(o), { path: `/v1/logs/${ready.posts}/head`, count: 10_000, window: 16 })
    assert.deepStrictEqual(ham.statuses, { 200: 10_000 })
    console.log(`# 10 000 heads in a window of 16: ${ham.ms.toFixed(0)} ms (${(10_000 / ham.ms * 1000).toFixed(0)}/s)`)
    // A flood: 10 000 requests at once for the largest ranges.
    const flood = await raw({ sends: [{ requests: 10_000, path: `/v1/logs/${ready.posts}/blocks?start=0&end=50` }], waitMs: 15_000 })
    assert.strictEqual(flood.goaway, 2, `GOAWAY FLOOD: ${JSON.stringify(flood)}`)
    // The peer refuses with 429s before its GOAWAY, but the page does not always see them
    // before the channel closes ({"200":3} then GOAWAY, seen 1 run in 4): not asserted.
    // Slots freed by answers admit a few more between refusals; the 64th refusal in a row ends it.
    assert.ok((flood.statuses[200] || 0) <= 64, `the flood was cut short: ${JSON.stringify(flood.statuses)}`)
    assert.ok(flood.closed)
    await lib.sleep(500)
    const st = await peer.request({ op: 'status' })
    const closed = st.peers.filter((x) => x.closed && /Flood|Protocol|TooLarge/.test(x.closed))
    assert.ok(closed.length >= 5, `the peer closed the hostile connections: ${JSON.stringify(st.peers.map((x) => x.closed))}`)
    const grew = st.rssKb - before
    console.log(`# hostile: flood ${JSON.stringify(flood.statuses)} then GOAWAY ${flood.goaway} in ${flood.closedMs.toFixed(0)} ms; peer RSS ${before} → ${st.rssKb} KiB`)
    assert.ok(grew < 64 * 1024, `peer RSS grew by ${grew} KiB`)
  } finally {
    await p.close()
  }
})

test('one peer holds 100 browsers\' connections under 100 MB RSS', async () => {
  const pages = []
  try {
    let opened = 0
    for (let i = 0; i < 4; i++) {
      const p = await lib.openPage(browser, inst.url)
      pages.push(p)
      const r = await p.page.evaluate((o) => window.rtcMany(o), { peer: ready.key, n: 25, path: `/v1/logs/${ready.posts}/head` })
      assert.strictEqual(r.ok, 25)
      opened += r.opened
    }
    const st = await peer.request({ op: 'status' })
    const open = st.peers.filter((x) => !x.closed && x.channels > 0).length
    assert.ok(open >= 100, `${open} connections open`)
    console.log(`# ${opened} browser connections held: peer RSS ${(st.rssKb / 1024).toFixed(1)} MiB`)
    assert.ok(st.rssKb < 100 * 1024, `RSS ${st.rssKb} KiB`)
  } finally {
    for (const p of pages) await p.close()
  }
})

test('a WebRTC peer that turns to tampered blocks is demoted by the page and delisted by the health check', async () => {
  // Same seed: the same logs, keys and signatures as the honest peer. It passes its first
  // check honestly, then lies.
  const liar = lib.startPeer(NS, ['--instance', inst.url, '--trust', tls.cert, '--posts', '50', '--key-seed', '2'])
  try {
    const lr = await liar.ready
    assert.strictEqual(lr.posts, ready.posts)
    await lib.waitListed(liar)
    const p = await lib.openPage(browser, inst.url)
    const listed = await p.page.evaluate(() => fetch('/v1/bootstrap').then((r) => r.json()))
    assert.deepStrictEqual([...listed.rtcPeers].sort(), [ready.key, lr.key].sort())
    await liar.request({ op: 'lie', on: true })
    // The page: both WebRTC peers, the liar asked first.
    const got = await p.page.evaluate((o) => window.rtcRun(o), { mode: 'rtc', key: ready.posts, n: 20, peers: [lr.key, ready.key], pickFirst: true })
    assert.deepStrictEqual(got.titles, latest20())
    const bad = got.peers.find((x) => x.url === `rtc://${lr.key.slice(0, 16)}`)
    assert.ok(bad && bad.bad >= 1 && bad.bannedUntil > 0, `the lying WebRTC peer is banned: ${JSON.stringify(got.peers)}`)
    const good = got.peers.find((x) => x.url === `rtc://${ready.key.slice(0, 16)}`)
    assert.ok(good && !good.bannedUntil, `the honest one is not: ${JSON.stringify(good)}`)
    assert.ok(p.console.some((l) => l.includes(lr.key.slice(0, 16)) && /does not verify/.test(l)), `console: ${p.console.join(' | ')}`)
    // The instance's next check catches it: delisted, the reason in its contributions.
    const home = await lib.waitListed(liar, { listed: false, ms: 15_000 })
    const after = await p.page.evaluate(() => fetch('/v1/bootstrap').then((r) => r.json()))
    assert.deepStrictEqual(after.rtcPeers, [ready.key])
    const rows = (await instance.request({ op: 'contributions' })).rows
    const row = rows.find((r) => JSON.stringify(r).includes(lr.key))
    assert.ok(row && row.problem, `a problem in the contributions: ${JSON.stringify(rows)}`)
    console.log(`# tamperer demoted by the page (${p.console.find((l) => l.includes(lr.key.slice(0, 16)))}); ` +
      `delisted by the instance: ${home.problem} / ${row.problem}`)
    await p.close()
  } finally {
    liar.stop()
  }
})
