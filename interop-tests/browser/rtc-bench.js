'use strict'
// WebRTC loopback benchmark (BENCHMARKS.md, issue 11): Chromium and the test peer in one
// network namespace (one veth interface: Chromium gathers nothing on lo; mDNS stays on).
//
//   sudo node interop-tests/browser/rtc-bench.js [RUNS]
//   sudo node interop-tests/browser/rtc-bench.js bulk [ROUNDS]   # only the MB/s rows
//
// Knobs (environment, for experiments): RTC_PEER_ARGS (more `rtc_peer serve` flags, e.g.
// "--window 65536 --max-message 16384"), RTC_BULK_PARALLEL (ranges in flight, 4),
// RTC_BULK_CHUNK (blocks per range, 64), RTC_PAGE_HASH=wasm (the page verifies with a
// WebAssembly BLAKE2b instead of @noble/hashes': what the verified rows would be with a fast
// hash; see blake2b-wasm-shim.js), RTC_PEER_BIN (another rtc_peer build, e.g. for a before/after).
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
const BULK_ONLY = process.argv[2] === 'bulk'
const RUNS = Number(process.argv[BULK_ONLY ? 3 : 2] || (BULK_ONLY ? 3 : 5))
const PEER_ARGS = (process.env.RTC_PEER_ARGS || '').split(/\s+/).filter(Boolean)
const PARALLEL = Number(process.env.RTC_BULK_PARALLEL || 4)
const CHUNK = Number(process.env.RTC_BULK_CHUNK || 64)

/** CPU seconds (user + system) the processes of namespace `ns` used so far, by command. */
function cpuOf (ns) {
  const hz = 100
  const out = {}
  let pids = []
  try { pids = lib.sh('ip', ['netns', 'pids', ns]).split(/\s+/).filter(Boolean) } catch {}
  for (const pid of pids) {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
      const close = stat.lastIndexOf(')')
      const comm = stat.slice(stat.indexOf('(') + 1, close)
      const f = stat.slice(close + 2).split(' ')
      const name = /chrom/i.test(comm) ? 'chromium' : comm
      out[name] = (out[name] || 0) + (Number(f[11]) + Number(f[12])) / hz
    } catch {}
  }
  return out
}

/** UDP counters of namespace `ns` (/proc/net/snmp): InDatagrams, RcvbufErrors, … */
function udpOf (ns) {
  const text = lib.sh('ip', ['netns', 'exec', ns, 'cat', '/proc/net/snmp'])
  const lines = text.split('\n').filter((l) => l.startsWith('Udp:'))
  const keys = lines[0].split(/\s+/).slice(1)
  const vals = lines[1].split(/\s+/).slice(1).map(Number)
  return Object.fromEntries(keys.map((k, i) => [k, vals[i]]))
}

const diff = (a, b) => Object.fromEntries(Object.keys(b).map((k) => [k, +(b[k] - (a[k] || 0)).toFixed(2)]))

/** One bulk transfer (`fn`: rtcBulk or rtcRawBulk) with the CPU and UDP counters around it. */
async function measured (p, fn, opts) {
  const cpu0 = cpuOf(NS)
  const udp0 = udpOf(NS)
  const r = await p.page.evaluate(([f, o]) => window[f](o), [fn, opts])
  r.cpu = diff(cpu0, cpuOf(NS))
  const udp = diff(udp0, udpOf(NS))
  r.rcvbufErrors = udp.RcvbufErrors
  r.datagrams = udp.InDatagrams
  return r
}

const fmtCpu = (c) => Object.entries(c).filter(([, v]) => v > 0).map(([k, v]) => `${k} ${v.toFixed(2)} s`).join(', ')

/** The MB/s rows: verified blocks, then transfer only, `rounds` each, over one data channel and
 * over HTTP; best and every run, with the CPU time of the peer and of Chromium, and the
 * datagrams Chromium's UDP receive buffer dropped. */
async function bulk (browser, url, peer, ready, rounds) {
  const opts = (mode) => ({ mode, key: ready.bulk, count: 512, httpUrl: ready.http, parallel: PARALLEL, chunk: CHUNK })
  console.log(`bulk: ${lib.RTC_PEER}${PEER_ARGS.length ? ' ' + PEER_ARGS.join(' ') : ''}; ${PARALLEL} ranges of ${CHUNK} blocks in flight; ` +
    `page BLAKE2b: ${process.env.RTC_PAGE_HASH === 'wasm' ? 'WebAssembly (hash-wasm, bench only)' : '@noble/hashes (as web/)'}`)
  for (const mode of ['rtc', 'http']) {
    const p = await lib.openPage(browser, url)
    await p.page.evaluate((o) => window.rtcRun(o), { mode, key: ready.posts, peer: ready.key, n: 1, httpUrl: ready.http })
    for (const [fn, what] of [['rtcBulk', 'verified blocks'], ['rtcRawBulk', 'transfer only (no verification)']]) {
      const runs = []
      for (let i = 0; i < rounds; i++) runs.push(await measured(p, fn, opts(mode)))
      const best = runs.reduce((a, b) => (a.mbps > b.mbps ? a : b))
      const s = mode === 'rtc' && fn === 'rtcBulk' ? await p.page.evaluate(() => window.rtcStats()) : null
      console.log(`${what}, ${mode === 'rtc' ? 'one data channel' : 'HTTP'}: ${runs.map((r) => r.mbps.toFixed(1)).join(', ')} MB/s ` +
        `(best ${best.mbps.toFixed(1)} MB/s, ${(best.bytes / 1e6).toFixed(1)} MB in ${best.ms.toFixed(0)} ms)` +
        (s && s.transport ? `; Chromium received ${(s.transport.bytesReceived / 1e6).toFixed(1)} MB on the pair` : ''))
      if (process.env.RTC_PAGE_HASH === 'wasm' && fn === 'rtcBulk') {
        const calls = await p.page.evaluate(() => globalThis.blake2bCalls)
        console.log(`  BLAKE2b calls in the page so far: ${calls.wasm} WebAssembly, ${calls.js} JavaScript`)
      }
      for (const r of runs) {
        const g = r.gaps ? `; longest pause ${r.gaps.maxGapMs.toFixed(0)} ms, ${r.gaps.stalls} over 100 ms` : ''
        console.log(`  ${r.mbps.toFixed(1)} MB/s: CPU ${fmtCpu(r.cpu)}; ${r.datagrams} datagrams in, ${r.rcvbufErrors} dropped (UDP receive buffer)${g}`)
      }
    }
    await p.close()
  }
}

async function main () {
  const tmp = lib.tmpdir('peerhost-rtc-bench-')
  lib.makeNetns(NS, IP)
  const logs = ['--posts', '50', '--bulk', '512', '--block-size', '65536']
  // https://, as a real instance (WebCrypto needs a secure context); the relay's offer limits
  // raised: one page opens 25 connections at once below.
  const tls = lib.makeCert(tmp, [IP])
  const instance = await lib.startInstance(NS, IP, tmp, ['--stun', `${IP}:3478`, '--check-every', '1000', ...logs,
    '--signal-rate', '200', '--signal-burst', '400', '--per-client', '128', '--per-peer', '128'], { tls })
  let browser
  let peer
  try {
    const url = (await instance.ready).url
    peer = lib.startPeer(NS, ['--instance', url, '--trust', tls.cert, '--http', `${IP}:0`, ...logs, ...PEER_ARGS])
    const ready = await peer.ready
    await lib.waitListed(peer)
    browser = await lib.launch(NS, tmp, [lib.trustFlag(tls)])
    if (BULK_ONLY) {
      await bulk(browser, url, peer, ready, RUNS)
      return
    }
    const rtc = []
    const http = []
    for (let i = 0; i < RUNS; i++) {
      for (const mode of ['rtc', 'http']) {
        const p = await lib.openPage(browser, url)
        const r = await p.page.evaluate((o) => window.rtcRun(o), { mode, key: ready.posts, peer: ready.key, n: 20, httpUrl: ready.http })
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

    await bulk(browser, url, peer, ready, 3)

    const before = (await peer.request({ op: 'status' })).rssKb
    const pages = []
    for (let i = 0; i < 4; i++) {
      const p = await lib.openPage(browser, url)
      pages.push(p)
      const r = await p.page.evaluate((o) => window.rtcMany(o), { peer: ready.key, n: 25, path: `/v1/logs/${ready.posts}/head` })
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
