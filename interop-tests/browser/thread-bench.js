'use strict'
// Issue 13, acceptance 2: opening a post with 300 comments in Chromium, on a community of
// 100 000 posts and 1 000 000 comments (scripts/scale-community.js), from 3 mirrors on
// loopback. Measures, per run in a fresh browser context: (a) from the community page, the
// in-app navigation to the post: time until its 300 comments are in the DOM, and the bytes
// fetched for it (Chromium's network log: response bodies as sent, per log); (b) a deep link
// `#/post/ID` on a fresh page: time to the comments and all bytes. Prints a Markdown table.
//
//   PEERHOST_BIN=... node scripts/scale-community.js /tmp/scale      # once: minutes
//   node interop-tests/browser/thread-bench.js /tmp/scale [RUNS=3]
//
// The store is used in place (the app is published into it if it has none; the instance
// writes its peerhost.toml there); the mirrors' stores go to a temporary directory, or to
// THREAD_BENCH_MIRRORS (kept: a second run, e.g. of another build's app, only catches up
// instead of replicating the whole logs again).

const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const lib = require('./lib.js')

const [store, runs = 3] = [process.argv[2], Number(process.argv[3] || 3)]
if (!store) { console.error('usage: thread-bench.js STORE [RUNS]'); process.exit(2) }
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const kb = (b) => (b / 1024).toFixed(1)

async function main () {
  const info = (n) => JSON.parse(lib.run(store, ['log', 'info', n, '--json']))
  const logs = { posts: info('scale.posts'), comments: info('scale.comments'), index: info('scale.index') }
  const key = info('scale').key
  lib.run(store, ['assets', 'publish', 'scale', lib.APP]) // the app of this build (appends only what changed)
  // The hot post: the one with the most comments in the index (scale-community.js: the middle one).
  const hot = `lemmy:scale.test/post/${1_000_000 + Math.floor(logs.posts.length / 2)}`
  const keep = process.env.THREAD_BENCH_MIRRORS
  const dir = keep || fs.mkdtempSync(path.join(os.tmpdir(), 'peerhost-thread-bench-'))
  let instance, mirrors, chrome
  try {
    instance = await lib.startInstance(store)
    const t0 = Date.now()
    mirrors = await Promise.all([1, 2, 3].map((i) => lib.startMirror(dir, i, key, instance)))
    // (The instance lists a mirror once its health check passes: after the mirror caught up.)
    const want = mirrors.map((m) => m.url).sort().join(',')
    await lib.waitFor('the instance lists the 3 mirrors', async () => (await lib.getJson(instance.url + '/v1/peers')).peers.sort().join(',') === want, 1_800_000)
    // Until every mirror holds the last block of each log (they replicate the whole logs).
    await lib.waitFor('the mirrors hold the logs', async () => {
      for (const m of mirrors) {
        for (const l of Object.values(logs)) {
          const r = await fetch(`${m.url}/v1/logs/${l.keyHex}/blocks?start=${l.length - 1}&end=${l.length}`)
          if (!r.ok) return false
          const r0 = await fetch(`${m.url}/v1/logs/${l.keyHex}/blocks?start=${Math.floor(l.length / 2)}&end=${Math.floor(l.length / 2) + 1}`)
          if (!r0.ok) return false
        }
      }
      return true
    }, 1_800_000)
    console.error(`mirrors synced in ${((Date.now() - t0) / 1000).toFixed(0)} s`)
    await lib.sleep(3000)
    chrome = await lib.launch()
    const nav = []
    const deep = []
    const per = (sizes, from) => {
      const out = { index: 0, posts: 0, comments: 0, other: 0, requests: 0 }
      for (const [u, b] of sizes.slice(from)) {
        const k = Object.keys(logs).find((n) => u.includes(`/v1/logs/${logs[n].keyHex}/`))
        out[k || 'other'] += b
        out.requests++
      }
      out.total = out.index + out.posts + out.comments + out.other
      return out
    }
    for (let r = 0; r < runs; r++) {
      // (a) the community page, then the post.
      let p = await lib.countingPage(chrome.browser)
      let got = await lib.loadPage(p, instance.url)
      const before = (await p.sizes()).length
      let t = Date.now()
      await p.page.evaluate((id) => { location.hash = '#/post/' + encodeURIComponent(id) }, hot)
      await got.frame.waitForFunction(() => document.body.dataset.view === 'post' && document.querySelectorAll('details.comment').length >= 300, null, { timeout: 60_000, polling: 'raf' })
      const ms = Date.now() - t
      const n = await got.frame.$$eval('details.comment', (d) => d.length)
      await lib.sleep(500)
      nav.push({ ms, n, ...per(await p.sizes(), before) })
      await p.context.close()
      // (b) a deep link on a fresh page.
      p = await lib.countingPage(chrome.browser)
      t = Date.now()
      got = await lib.loadPage(p, instance.url, { url: instance.url + '/#/post/' + encodeURIComponent(hot), selector: 'article.full h2' })
      await got.frame.waitForFunction(() => document.querySelectorAll('details.comment').length >= 300, null, { timeout: 60_000, polling: 'raf' })
      const dms = Date.now() - t
      await lib.sleep(500)
      deep.push({ ms: dms, ...per(await p.sizes(), 0) })
      await p.context.close()
      console.error(`run ${r + 1}: post ${ms} ms, ${kb(nav[r].total)} KiB (${n} comments); deep link ${dms} ms, ${kb(deep[r].total)} KiB`)
    }
    const row = (name, xs) => `| ${name} | ${median(xs.map((x) => x.ms))} ms (${xs.map((x) => x.ms).join(', ')}) | ${kb(median(xs.map((x) => x.total)))} KiB | ${kb(median(xs.map((x) => x.index)))} | ${kb(median(xs.map((x) => x.comments)))} | ${kb(median(xs.map((x) => x.posts)))} | ${median(xs.map((x) => x.requests))} |`
    console.log(`Community: ${logs.posts.length} posts, ${logs.comments.length} comments log blocks (${(logs.comments.byteLength / 1e6).toFixed(1)} MB), index log ${logs.index.length} blocks (${(logs.index.byteLength / 1e6).toFixed(1)} MB); post ${hot} with ${nav[0].n} comments; 3 mirrors on loopback; median of ${runs}.`)
    console.log('')
    console.log('| what | time | bytes fetched | index KiB | comments KiB | posts KiB | requests |')
    console.log('|---|---|---|---|---|---|---|')
    console.log(row('open the post from the community page', nav))
    console.log(row('deep link #/post/ID, fresh page (boot, runtime and app included)', deep))
    console.log(`| reading the whole comments log instead | | ${kb(logs.comments.byteLength)} KiB of blocks | | | | |`)
  } finally {
    if (chrome) await chrome.close()
    for (const m of mirrors || []) lib.stop(m)
    lib.stop(instance)
    if (!keep) fs.rmSync(dir, { recursive: true, force: true })
  }
}

main().catch((e) => { console.error(e); process.exit(1) })
