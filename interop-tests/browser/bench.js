'use strict'
// The browser bootstrap, measured (BENCHMARKS.md, "The browser (issue 7)"): one instance with a
// community (50 posts, a ~600 KB banner and a style sheet in its web app), then 1, 3 and 10
// mirrors registered with it. For each count, RUNS cold page loads in fresh browser contexts:
// time from navigation to the first post on screen, and the bytes (response bodies as sent)
// from the instance and from the peers, as Chromium counted them.
//
//   node interop-tests/browser/bench.js [RUNS]     (needs what e2e.test.js needs)

const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const lib = require('./lib.js')

const RUNS = Number(process.argv[2] || 5)
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

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
      const full = []
      const inst = []
      const peers = []
      const used = []
      for (let r = 0; r < RUNS; r++) {
        const p = await lib.countingPage(chrome.browser)
        const t0 = Date.now()
        const got = await lib.loadPage(p, instance.url)
        await p.page.waitForSelector('body[data-assets="loaded"]', { timeout: 60_000 })
        full.push(Date.now() - t0)
        if (got.titles.length !== 20) throw new Error(`${got.titles.length} posts on screen`)
        const bytes = await p.bytes()
        let fromPeers = 0
        let served = 0
        for (const m of mirrors) {
          const b = (bytes.get(m.url) || { body: 0 }).body
          fromPeers += b
          if (b > 0) served++
        }
        first.push(got.firstPostMs)
        inst.push((bytes.get(instance.url) || { body: 0 }).body)
        peers.push(fromPeers)
        used.push(served)
        await p.context.close()
      }
      const row = {
        peers: n,
        firstPostMs: median(first),
        allLoadedMs: median(full),
        instanceBytes: median(inst),
        peerBytes: median(peers),
        share: median(peers.map((b, i) => b / (b + inst[i]))),
        peersUsed: median(used)
      }
      rows.push(row)
      console.error(JSON.stringify(row))
    }
  } finally {
    await chrome.close()
    for (const m of mirrors) lib.stop(m)
    lib.stop(instance)
    fs.rmSync(dir, { recursive: true, force: true })
  }
  console.log(`| peers | first post on screen | everything loaded | from the instance | from the peers | share from peers | peers that served |`)
  console.log('|---:|---:|---:|---:|---:|---:|---:|')
  for (const r of rows) {
    console.log(`| ${r.peers} | ${r.firstPostMs.toFixed(0)} ms | ${r.allLoadedMs} ms | ${r.instanceBytes} B | ${r.peerBytes} B | ${(r.share * 100).toFixed(1)}% | ${r.peersUsed} |`)
  }
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
