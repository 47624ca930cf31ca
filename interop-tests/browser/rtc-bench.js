'use strict'
// WebRTC loopback benchmark (BENCHMARKS.md, issue 11): the product (`peerhost serve` as the
// instance: https, --stun, the test page as its bootstrap page; `peerhost mirror KEY
// --register URL` as the home peer, no --http) and Chromium in one network namespace (one
// veth interface: Chromium gathers nothing on lo; mDNS stays on).
//
//   sudo node interop-tests/browser/rtc-bench.js [RUNS]
//   sudo node interop-tests/browser/rtc-bench.js bulk [ROUNDS]   # only the MB/s rows
//   sudo node interop-tests/browser/rtc-bench.js setup [RUNS]    # only setup and first post
//
// Knobs (environment, for experiments): RTC_BENCH_LOGS=1 (print the daemons' last log lines,
// e.g. with PEERHOST_LOG=warn,peerhost_gateway::signal=debug,peerhost_webrtc::home=debug: the
// relay's and the home peer's time per offer; RTC_STDERR_KEEP=BYTES keeps more), RTC_BULK_PARALLEL (ranges in flight, 4),
// RTC_BULK_CHUNK (blocks per range, 64), RTC_PAGE_HASH=wasm (the page verifies with hash-wasm's
// BLAKE2b instead of web/'s: see blake2b-wasm-shim.js), PEERHOST_BIN (another build),
// PEERHOST_RTC_WINDOW / PEERHOST_RTC_MAX_MESSAGE (the mirror's send window and largest message,
// bytes: read by `peerhost mirror`, for the MB/s experiments).
//
// - setup: from `new RTCPeerConnection` to the peer's HELLO (offer, signaling through the
//   instance's relay and the peer's long-poll, the signature checked, ICE, DTLS, SCTP, channel
//   open);
// - where the setup goes: the median of each phase (srflx candidate, offer sent, answer back,
//   ICE connected, DTLS connected, channel open, HELLO, first answer), ms from the start;
// - time to the first post (latest 20, verified) over WebRTC only from the mirror (connect,
//   then ask; and asking while connecting: the first request leaves with the channel's
//   opening) vs over the instance's HTTP gateway (the same store), each in a fresh page
//   (median of RUNS);
// - MB/s of verified blocks over one channel (32 MiB in 64 KiB blocks; the web/ loader with
//   4 ranges in flight, every block checked against the signed head), and the same over HTTP;
// - one `peerhost mirror` holding 100 browsers' connections: its RSS (the offers paced by the
//   relay's default per-client rate).

const fs = require('node:fs')
const lib = require('./rtc-lib.js')

const NS = 'phr-rtcb'
const IP = '10.99.1.1'
const BULK_ONLY = process.argv[2] === 'bulk'
const SETUP_ONLY = process.argv[2] === 'setup'
const RUNS = Number(process.argv[BULK_ONLY || SETUP_ONLY ? 3 : 2] || (BULK_ONLY ? 3 : 5))
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
      let name = comm
      if (/chrom/i.test(comm)) {
        // Which Chromium process: the renderer (the page's main thread, and its WebRTC
        // threads: SCTP, DTLS), the network service (the UDP socket), the browser, the GPU.
        let type = 'browser'
        try {
          const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8')
          const m = /--type=([a-z-]+)/.exec(cmd)
          if (m) type = m[1] === 'utility' && /network/i.test(cmd) ? 'network' : m[1]
        } catch {}
        name = `chromium ${type}`
      }
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
async function bulk (browser, url, ready, rounds) {
  const opts = (mode) => ({ mode, key: ready.bulk, count: 512, httpUrl: url, parallel: PARALLEL, chunk: CHUNK })
  console.log(`bulk: ${lib.PEERHOST} mirror; ${PARALLEL} ranges of ${CHUNK} blocks in flight; ` +
    `page BLAKE2b: ${process.env.RTC_PAGE_HASH === 'wasm' ? 'hash-wasm (bench only)' : 'web/ (boot/blake2b-wasm.js once compiled, else @noble/hashes)'}`)
  for (const mode of ['rtc', 'http']) {
    const p = await lib.openPage(browser, url)
    await p.page.evaluate((o) => window.rtcRun(o), { mode, key: ready.posts, peer: ready.key, n: 1, httpUrl: url })
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
        const g = r.gaps
          ? `; longest pause ${r.gaps.maxGapMs.toFixed(0)} ms, ${r.gaps.stalls} over 100 ms; main thread: ` +
            `${r.gaps.handleMs.toFixed(0)} ms handling messages, ${r.gaps.longTasks} long tasks ${r.gaps.longMs.toFixed(0)} ms, of ${r.gaps.wallMs.toFixed(0)} ms`
          : ''
        console.log(`  ${r.mbps.toFixed(1)} MB/s: CPU ${fmtCpu(r.cpu)}; ${r.datagrams} datagrams in, ${r.rcvbufErrors} dropped (UDP receive buffer)${g}`)
      }
    }
    await p.close()
  }
}

async function main () {
  const tmp = lib.tmpdir('peerhost-rtc-bench-')
  const store = lib.makeStore(tmp, { posts: 50, bulk: 512, blockSize: 65536 })
  lib.makeNetns(NS, IP)
  // https://, as a real instance (WebCrypto needs a secure context).
  const tls = lib.makeCert(tmp, [IP])
  const page = require('node:path').join(tmp, 'page')
  fs.mkdirSync(page)
  await lib.bundlePage(page)
  let browser
  let instance
  let home
  try {
    instance = await lib.startServe(NS, IP, tmp, store, { tls, page })
    const url = instance.url
    home = lib.startHome(NS, tmp, store, instance, { tls, mirrors: [store.bulk] })
    await home.ready
    const w = await lib.waitHomeListed(home)
    const ready = { key: w.node, posts: store.posts, bulk: store.bulk }
    console.log(`load: ${fs.readFileSync('/proc/loadavg', 'utf8').trim()}; ${lib.PEERHOST}`)
    browser = await lib.launch(NS, tmp, [lib.trustFlag(tls)])
    if (BULK_ONLY) {
      await bulk(browser, url, ready, RUNS)
      return
    }
    // Three ways to the latest 20 posts, in turn, each in a fresh page: over WebRTC only
    // (connect, then ask), over WebRTC asking while it connects (the first request rides with
    // the channel's opening: `early`), over HTTP from the instance.
    // Plus, for comparison, asking while connecting with the whole offer sent after gathering
    // (no trickle: the page waits for its server-reflexive candidate, as before).
    const rtc = []
    const early = []
    const whole = []
    const http = []
    for (let i = 0; i < RUNS; i++) {
      for (const [mode, into, extra] of [['rtc', rtc, {}], ['rtc', early, { early: true }], ['rtc', whole, { early: true, trickle: false }], ['http', http, { httpUrl: url }]]) {
        const p = await lib.openPage(browser, url)
        const r = await p.page.evaluate((o) => window.rtcRun(o), { mode, key: ready.posts, peer: ready.key, n: 20, ...extra })
        if (r.titles.length !== 20) throw new Error('wrong posts')
        if (mode === 'rtc' && r.peers.some((x) => !x.url.startsWith('rtc://'))) throw new Error('an HTTP peer in a WebRTC run')
        into.push(r)
        await p.close()
      }
    }
    const med = (xs) => lib.median(xs).toFixed(0)
    console.log(`setup (new RTCPeerConnection → HELLO): median ${med(rtc.map((r) => r.connectMs))} ms ` +
      `(offer ready ${med(rtc.map((r) => r.stats.offerMs))} ms, answer back ${med(rtc.map((r) => r.stats.answerMs))} ms); ` +
      `runs ${rtc.map((r) => r.connectMs.toFixed(0)).join(', ')}`)
    // Where the setup goes: each phase's median, ms from `new RTCPeerConnection`.
    const phases = ['srflxMs', 'offerMs', 'answerMs', 'iceMs', 'dtlsMs', 'openMs', 'helloMs', 'firstMs']
    console.log('phases (median ms from new RTCPeerConnection): ' + phases.map((k) => {
      const xs = rtc.map((r) => r.stats[k]).filter((x) => x !== null && x !== undefined)
      return `${k.replace(/Ms$/, '')} ${xs.length ? med(xs) : '–'}`
    }).join(', ') + `; first post ${med(rtc.map((r) => r.firstPostMs))}`)
    const fr = lib.median(rtc.map((r) => r.firstPostMs))
    const fe = lib.median(early.map((r) => r.firstPostMs))
    const fh = lib.median(http.map((r) => r.firstPostMs))
    const fw = lib.median(whole.map((r) => r.firstPostMs))
    const runs = (xs) => xs.map((r) => r.firstPostMs.toFixed(0)).join(', ')
    const within = (xs) => xs.filter((r) => r.firstPostMs <= 1.5 * fh).length
    console.log(`first post (latest 20, verified): WebRTC ${fr.toFixed(0)} ms (${(fr / fh).toFixed(2)}x), ` +
      `WebRTC asking while connecting ${fe.toFixed(0)} ms (${(fe / fh).toFixed(2)}x; ${within(early)} of ${early.length} runs within 1.5x of the HTTP median), ` +
      `the same with the whole offer ${fw.toFixed(0)} ms (${(fw / fh).toFixed(2)}x), HTTP ${fh.toFixed(0)} ms; ` +
      `runs WebRTC ${runs(rtc)}; early ${runs(early)}; whole offer ${runs(whole)}; HTTP ${runs(http)}`)
    for (const [what, xs] of [['asking while connecting', early], ['asking while connecting, whole offer', whole]]) {
      console.log(`phases, ${what}: ` + phases.map((k) => {
        const ys = xs.map((r) => r.stats[k]).filter((x) => x !== null && x !== undefined)
        return `${k.replace(/Ms$/, '')} ${ys.length ? med(ys) : '–'}`
      }).join(', '))
    }

    if (SETUP_ONLY) return
    await bulk(browser, url, ready, 3)

    await lib.sleep(11_000) // the relay's per-client offer bucket refills (16, at 2/s)
    const before = home.rssKb()
    const pages = []
    for (let i = 0; i < 4; i++) {
      // Traffic on the connections already held: opening 25 takes ~12 s (the relay's pace),
      // and an idle connection is closed after 60 s.
      for (const q of pages) await q.page.evaluate((x) => window.rtcManyPing(x), `/v1/logs/${ready.posts}/head`)
      const p = await lib.openPage(browser, url)
      pages.push(p)
      const r = await p.page.evaluate((o) => window.rtcMany(o), { peer: ready.key, n: 25, path: `/v1/logs/${ready.posts}/head`, paced: true })
      if (r.ok !== 25) throw new Error(`only ${r.ok} of 25`)
    }
    await lib.sleep(400)
    const held = home.status().webrtc[0]
    console.log(`100 browsers' connections: ${held.connections} open (${held.channels} channels), peerhost mirror RSS ${(home.rssKb() / 1024).toFixed(1)} MiB (${(before / 1024).toFixed(1)} MiB before)`)
    for (const p of pages) await p.close()
  } finally {
    // RTC_BENCH_LOGS=1 (with PEERHOST_LOG=…=debug): the daemons' last log lines.
    if (process.env.RTC_BENCH_LOGS) for (const c of [instance, home]) if (c) console.log(`--- ${c.name}:\n${c.stderr}`)
    if (browser) await browser.close()
    for (const c of [home, instance]) if (c) c.stop()
    await lib.sleep(500)
    lib.removeNetns(NS)
    fs.rmSync(tmp, { recursive: true, force: true })
  }
}

main().catch((e) => { console.error(e); lib.removeNetns(NS); process.exit(1) })
