'use strict'
// The browser bootstrap, measured (BENCHMARKS.md, "The browser"): one instance with a
// text-only community (50 posts, the default app web/app/dist), then 1, 3 and 10 mirrors
// registered with it. For each count, RUNS first visits in fresh browser contexts, each
// followed by a repeat visit in the same context (its Service Worker and cached blocks): time
// from navigation to the first post on screen, and the bytes from the instance and from the
// peers as Chromium's network log counted them (bodies as sent; headers apart).
//
//   node interop-tests/browser/bench.js [RUNS]     (needs what e2e.test.js needs)

const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const lib = require('./lib.js')

const RUNS = Number(process.argv[2] || 5)
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

async function visit (chrome, instance, mirrors, context) {
  const p = await lib.countingPage(chrome.browser, context)
  const got = await lib.loadPage(p, instance.url)
  if (got.titles.length !== 20) throw new Error(`${got.titles.length} posts on screen`)
  await lib.sleep(600) // the Service Worker installs; late hedged answers land
  const bytes = await p.bytes()
  p.stop()
  const inst = bytes.get(instance.url) || { body: 0, headers: 0 }
  let peers = 0
  let served = 0
  for (const m of mirrors) {
    const b = (bytes.get(m.url) || { body: 0 }).body
    peers += b
    if (b > 0) served++
  }
  return { p, firstPostMs: got.firstPostMs, inst: inst.body, instHeaders: inst.headers, peers, served }
}

async function main () {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'peerhost-bench-'))
  const community = lib.makeCommunity(dir, { posts: 50 })
  const instance = await lib.startInstance(community.storage)
  const mirrors = []
  const chrome = await lib.launch()
  const rows = []
  try {
    for (const n of [1, 3, 10]) {
      while (mirrors.length < n) mirrors.push(await lib.startMirror(dir, mirrors.length + 1, community.key, instance))
      await lib.waitPeers(instance, mirrors.map((m) => m.url))
      const first = []
      const repeat = []
      for (let r = 0; r < RUNS; r++) {
        const a = await visit(chrome, instance, mirrors)
        const b = await visit(chrome, instance, mirrors, a.p.context)
        first.push(a)
        repeat.push(b)
        await a.p.context.close()
      }
      const row = (xs) => ({
        firstPostMs: median(xs.map((x) => x.firstPostMs)),
        inst: median(xs.map((x) => x.inst)),
        instHeaders: median(xs.map((x) => x.instHeaders)),
        peers: median(xs.map((x) => x.peers)),
        share: median(xs.map((x) => (x.peers + x.inst ? x.peers / (x.peers + x.inst) : 1))),
        served: median(xs.map((x) => x.served))
      })
      rows.push({ n, first: row(first), repeat: row(repeat) })
      console.error(JSON.stringify(rows[rows.length - 1]))
    }
  } finally {
    await chrome.close()
    for (const m of mirrors) lib.stop(m)
    lib.stop(instance)
    fs.rmSync(dir, { recursive: true, force: true })
  }
  console.log('| peers | visit | first post on screen | from the instance (bodies + headers) | from the peers | share from peers | peers that served |')
  console.log('|---:|---|---:|---:|---:|---:|---:|')
  for (const { n, first, repeat } of rows) {
    for (const [name, r] of [['first', first], ['repeat', repeat]]) {
      console.log(`| ${n} | ${name} | ${r.firstPostMs.toFixed(0)} ms | ${r.inst} + ${r.instHeaders} B | ${r.peers} B | ${(r.share * 100).toFixed(1)}% | ${r.served} |`)
    }
  }
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
