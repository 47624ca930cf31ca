'use strict'
// WebRTC loopback benchmark (BENCHMARKS.md, issue 11): Chromium and the test peer in one
// network namespace (one veth interface: Chromium gathers nothing on lo; mDNS stays on).
//
//   sudo node interop-tests/browser/rtc-bench.js [RUNS]
//
// - setup: from `new RTCPeerConnection` to the peer's HELLO (offer, signaling through the
//   instance's relay and the peer's long-poll, the signature checked, ICE, DTLS, SCTP, channel
//   open), and the peer's own ICE+DTLS time;
// - time to the first post (latest 20, verified) over WebRTC vs over the HTTP gateway of the
//   same process and store, each in a fresh page (median of RUNS);
// - MB/s of verified blocks over one channel (32 MiB in 64 KiB blocks; the web/ loader with
//   4 ranges in flight, every block checked against the signed head), and the same over HTTP;
// - one peer holding 100 browsers' connections: its RSS.

const fs = require('node:fs')
const lib = require('./rtc-lib.js')

const NS = 'phr-rtcb'
const IP = '10.99.1.1'
const RUNS = Number(process.argv[2] || 5)

async function main () {
  const tmp = lib.tmpdir('peerhost-rtc-bench-')
  lib.makeNetns(NS, IP)
  const logs = ['--posts', '50', '--bulk', '512', '--block-size', '65536']
  // The relay's offer limits raised: one page opens 25 connections at once below.
  const tls = lib.makeCert(tmp, [IP]) // https://, as a real instance (WebCrypto needs it)
  const instance = await lib.startInstance(NS, IP, tmp, ['--stun', `${IP}:3478`, '--check-every', '1000', ...logs,
    '--signal-rate', '200', '--signal-burst', '400', '--per-client', '128', '--per-peer', '128'], { tls })
  let browser
  let peer
  try {
    const url = (await instance.ready).url
    peer = lib.startPeer(NS, ['--instance', url, '--trust', tls.cert, '--http', `${IP}:0`, ...logs])
    const ready = await peer.ready
    await lib.waitListed(peer)
    const o = { key: ready.posts, peer: ready.key, httpUrl: ready.http }
    browser = await lib.launch(NS, tmp, [lib.trustFlag(tls)])
    const rtc = []
    const http = []
    for (let i = 0; i < RUNS; i++) {
      for (const mode of ['rtc', 'http']) {
        const p = await lib.openPage(browser, url)
        const r = await p.page.evaluate((x) => window.rtcRun(x), { ...o, mode, n: 20 })
        if (r.titles.length !== 20) throw new Error('wrong posts')
        ;(mode === 'rtc' ? rtc : http).push(r)
        await p.close()
      }
    }
    const st = await peer.request({ op: 'status' })
    const peerConnect = st.peers.map((x) => x.connectMs).filter((x) => x !== null)
    const med = (xs) => lib.median(xs).toFixed(0)
    console.log(`setup (new RTCPeerConnection → HELLO): median ${med(rtc.map((r) => r.connectMs))} ms ` +
      `(offer ready ${med(rtc.map((r) => r.stats.offerMs))} ms, answer back ${med(rtc.map((r) => r.stats.answerMs))} ms); ` +
      `peer ICE+DTLS ${med(peerConnect)} ms`)
    const fr = lib.median(rtc.map((r) => r.firstPostMs))
    const fh = lib.median(http.map((r) => r.firstPostMs))
    console.log(`first post (latest 20, verified): WebRTC ${fr.toFixed(0)} ms, HTTP ${fh.toFixed(0)} ms: ${(fr / fh).toFixed(2)}x`)

    for (const mode of ['rtc', 'http']) {
      const p = await lib.openPage(browser, url)
      await p.page.evaluate((x) => window.rtcRun(x), { ...o, mode, n: 1 })
      const runs = []
      for (let i = 0; i < 3; i++) {
        runs.push(await p.page.evaluate((o) => window.rtcBulk(o), { mode, key: ready.bulk, count: 512, httpUrl: ready.http }))
      }
      const best = runs.reduce((a, b) => (a.mbps > b.mbps ? a : b))
      const raw = []
      for (let i = 0; i < 3; i++) {
        raw.push(await p.page.evaluate((o) => window.rtcRawBulk(o), { mode, key: ready.bulk, count: 512, httpUrl: ready.http }))
      }
      const s = mode === 'rtc' ? await p.page.evaluate(() => window.rtcStats()) : null
      console.log(`verified blocks, ${mode === 'rtc' ? 'one data channel' : 'HTTP'}: ${runs.map((r) => r.mbps.toFixed(1)).join(', ')} MB/s ` +
        `(best ${best.mbps.toFixed(1)} MB/s, ${(best.bytes / 1e6).toFixed(1)} MB in ${best.ms.toFixed(0)} ms)` +
        (s && s.transport ? `; Chromium received ${(s.transport.bytesReceived / 1e6).toFixed(1)} MB on the pair` : ''))
      console.log(`transfer only (no verification), ${mode}: ${raw.map((r) => r.mbps.toFixed(1)).join(', ')} MB/s`)
      await p.close()
    }

    const before = (await peer.request({ op: 'status' })).rssKb
    const pages = []
    for (let i = 0; i < 4; i++) {
      const p = await lib.openPage(browser, url)
      pages.push(p)
      const r = await p.page.evaluate((x) => window.rtcMany(x), { peer: ready.key, n: 25, path: `/v1/logs/${ready.posts}/head` })
      if (r.ok !== 25) throw new Error(`only ${r.ok} of 25`)
    }
    const held = await peer.request({ op: 'status' })
    const open = held.peers.filter((x) => !x.closed && x.channels > 0).length
    console.log(`100 browsers' connections: ${open} open, peer RSS ${(held.rssKb / 1024).toFixed(1)} MiB (${(before / 1024).toFixed(1)} MiB before)`)
    for (const p of pages) await p.close()
  } finally {
    if (browser) await browser.close()
    for (const c of [peer, instance]) if (c) c.stop()
    await lib.sleep(300)
    lib.removeNetns(NS)
    fs.rmSync(tmp, { recursive: true, force: true })
  }
}

main().catch((e) => { console.error(e); lib.removeNetns(NS); process.exit(1) })
