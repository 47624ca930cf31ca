'use strict'
// WebRTC loopback benchmark (BENCHMARKS.md, issue 11): Chromium and the test peer in one
// network namespace (one veth interface: Chromium gathers nothing on lo; mDNS stays on).
//
//   sudo node interop-tests/browser/rtc-bench.js [RUNS]
//
// - setup: from `new RTCPeerConnection` to the peer's HELLO (offer, signaling through the
//   harness, ICE, DTLS, SCTP, channel open), and the peer's own ICE+DTLS time;
// - time to the first post (latest 20, verified) over WebRTC vs over the HTTP gateway of the
//   same process and store, each in a fresh page (median of RUNS);
// - MB/s of verified blocks over one channel (32 MiB in 64 KiB blocks; the web/ loader with
//   4 ranges in flight, every block checked against the signed head), and the same over HTTP;
// - one peer holding 100 browsers' connections: its RSS.

const fs = require('node:fs')
const lib = require('./rtc-lib.js')

const NS = 'phr-rtcb'
const IP = '10.99.1.1'
const ICE = [{ urls: `stun:${IP}:3478` }]
const RUNS = Number(process.argv[2] || 5)

async function main () {
  const tmp = lib.tmpdir('peerhost-rtc-bench-')
  lib.makeNetns(NS, IP)
  const stun = lib.startStun(NS, `${IP}:3478`)
  const peer = lib.startPeer(NS, ['--bind', `${IP}:0`, '--stun', `${IP}:3478`, '--http', `${IP}:0`, '--posts', '50', '--bulk', '512', '--block-size', '65536'])
  const page = await lib.startPage(NS, IP, tmp)
  let browser
  try {
    await stun.ready
    const ready = await peer.ready
    const url = (await page.ready).url
    browser = await lib.launch(NS, tmp)
    const rtc = []
    const http = []
    for (let i = 0; i < RUNS; i++) {
      for (const mode of ['rtc', 'http']) {
        const p = await lib.openPage(browser, url, peer)
        const r = await p.page.evaluate((o) => window.rtcRun(o), { mode, key: ready.posts, n: 20, iceServers: ICE, httpUrl: ready.http })
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
      const p = await lib.openPage(browser, url, peer)
      await p.page.evaluate((o) => window.rtcRun(o), { mode, key: ready.posts, n: 1, iceServers: ICE, httpUrl: ready.http })
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
      const p = await lib.openPage(browser, url, peer)
      pages.push(p)
      const r = await p.page.evaluate((o) => window.rtcMany(o), { iceServers: ICE, n: 25, path: `/v1/logs/${ready.posts}/head` })
      if (r.ok !== 25) throw new Error(`only ${r.ok} of 25`)
    }
    const held = await peer.request({ op: 'status' })
    const open = held.peers.filter((x) => !x.closed && x.channels > 0).length
    console.log(`100 browsers' connections: ${open} open, peer RSS ${(held.rssKb / 1024).toFixed(1)} MiB (${(before / 1024).toFixed(1)} MiB before)`)
    for (const p of pages) await p.close()
  } finally {
    if (browser) await browser.close()
    for (const c of [peer, page, stun]) c.stop()
    await lib.sleep(300)
    lib.removeNetns(NS)
    fs.rmSync(tmp, { recursive: true, force: true })
  }
}

main().catch((e) => { console.error(e); lib.removeNetns(NS); process.exit(1) })
