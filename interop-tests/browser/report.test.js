'use strict'
// A peer caught serving bad data is reported by the page and delisted by the instance for
// everyone (issue 12; protocol/gateway.md §7.4). Real peerhost processes on loopback and
// Debian's Chromium.
//
// 1. A registered, listed HTTP mirror (behind a proxy that is its public URL) turns to
//    tampered blocks: the page bans it, falls back, and POSTs one report (JSON, no
//    credentials); the instance checks the peer at once and delists it, seconds after the
//    report and before its periodic check (every 12 s here) would have run.
// 2. A flood of reports from one client: 429 after its budget; at most one check scheduled
//    per peer per 30 s, and the peer sees no more requests from the instance than one check.
//
// Needs what e2e.test.js needs (see its header).

const test = require('node:test')
const assert = require('node:assert')
const fs = require('node:fs')
const http = require('node:http')
const os = require('node:os')
const path = require('node:path')
const lib = require('./lib.js')

const INTERVAL = 12 // seconds between the instance's periodic checks

let dir, community, instance, mirror, proxy, chrome

/** A reverse proxy that is the mirror's public URL: the Host header passes through (so the
 * mirror signs the instance's challenge for this origin), no compression is asked (so a
 * flipped byte reaches the verifier), and with `tamper` set, the last byte of every block
 * range it answers, to anyone, is flipped. Counts the instance's block requests. */
function startProxy () {
  const server = http.createServer((req, res) => {
    if (!server.target) { res.writeHead(502); return res.end() }
    const headers = { ...req.headers }
    delete headers['accept-encoding']
    const fromInstance = /peerhost/.test(req.headers['user-agent'] || '')
    if (fromInstance && req.url.includes('/blocks?')) server.checks.push(Date.now())
    const up = http.request(server.target + req.url, { method: req.method, headers }, (u) => {
      const parts = []
      u.on('data', (c) => parts.push(c))
      u.on('end', () => {
        const body = Buffer.concat(parts)
        if (server.tamper && u.statusCode === 200 && req.url.includes('/blocks?') && body.length) {
          body[body.length - 1] ^= 0x20
          server.tampered++
        }
        res.writeHead(u.statusCode, { ...u.headers, 'content-length': body.length })
        res.end(body)
      })
    })
    up.on('error', () => { res.writeHead(502); res.end() })
    req.pipe(up)
  })
  Object.assign(server, { target: null, tamper: false, tampered: 0, checks: [] })
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => {
    server.url = `http://127.0.0.1:${server.address().port}`
    resolve(server)
  }))
}

const contributions = () => lib.getJson(instance.url + '/v1/contributions')
const row = async (url) => (await contributions()).peers.find((r) => r.url === url)

test.before(async () => {
  for (const f of [lib.BIN, path.join(lib.PAGE, 'index.html'), path.join(lib.APP, 'peerhost-runtime.js'), lib.CHROMIUM]) {
    if (!fs.existsSync(f)) throw new Error(`${f} is missing (see the header of e2e.test.js)`)
  }
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'peerhost-report-'))
  community = lib.makeCommunity(dir, { posts: 30 })
  community.hex = ['peerhost-demo', 'peerhost-demo.posts', 'peerhost-demo.comments', 'peerhost-demo.assets', 'peerhost-demo.index'].map((name) =>
    JSON.parse(lib.run(community.storage, ['log', 'info', name, '--json'])).keyHex)
  proxy = await startProxy()
  instance = await lib.startInstance(community.storage, { interval: INTERVAL })
  mirror = await lib.startMirror(dir, 1, community.key, instance, { args: ['--public-url', proxy.url] })
  proxy.target = mirror.url
  // Registered at the proxy's URL, challenged, then checked: two rounds of the instance's loop.
  await lib.waitPeers(instance, [proxy.url])
  chrome = await lib.launch()
})

test.after(async () => {
  if (chrome) await chrome.close()
  lib.stop(mirror)
  lib.stop(instance)
  if (proxy) proxy.close()
  if (dir) fs.rmSync(dir, { recursive: true, force: true })
})

test('a listed mirror turned to tampered blocks: reported by the page, delisted by the instance at once', async () => {
  const before = await row(proxy.url)
  assert.ok(before.healthy && before.proven, JSON.stringify(before))
  proxy.tamper = true
  const p = await lib.countingPage(chrome.browser)
  let sent = null
  let status = null
  p.page.on('request', (r) => {
    if (r.url() === instance.url + '/v1/bad-peer') sent = { at: Date.now(), body: JSON.parse(r.postData()), headers: r.headers() }
  })
  p.page.on('response', (r) => { if (r.url() === instance.url + '/v1/bad-peer') status = r.status() })
  const got = await lib.loadPage(p, instance.url)
  assert.deepStrictEqual(got.titles, community.titles.slice(-20).reverse(), 'the right posts, from the instance')
  // The page's console reaches us a little after the load: wait for it, under load too.
  await lib.waitFor('the page caught it', () => p.console.some((m) => m.text.includes(proxy.url) && m.text.includes('INVALID_PROOF')), 10_000)
  await lib.waitFor('the page reports the peer', () => sent && status, 10_000)
  console.log(`# the report: ${JSON.stringify(sent.body)} → HTTP ${status}`)
  assert.strictEqual(status, 202)
  assert.strictEqual(sent.body.peer, proxy.url)
  assert.ok(community.hex.includes(sent.body.log), `a log of the community: ${sent.body.log}`)
  assert.ok(sent.body.end > sent.body.start, 'a range')
  assert.strictEqual(sent.body.code, 'INVALID_PROOF')
  assert.match(sent.headers['content-type'], /^application\/json/)
  assert.strictEqual(sent.headers.cookie, undefined, 'no credentials')

  const delisted = await lib.waitFor('the instance delists the peer', async () => {
    const r = await row(proxy.url)
    return !r.healthy && r
  }, 10_000)
  const after = Date.now()
  console.log(`# delisted ${after - sent.at} ms after the report (checked at +${delisted.checkedMs - sent.at} ms); ` +
    `the periodic check was due at +${before.checkedMs + INTERVAL * 1000 - sent.at} ms; ${JSON.stringify(delisted)}`)
  assert.strictEqual(delisted.problem, 'BAD_PROOF')
  assert.ok(delisted.reports >= 1 && delisted.reportedMs >= sent.at - 1000, 'the report triggered the check')
  assert.ok(delisted.checkedMs < before.checkedMs + INTERVAL * 1000, 'before the periodic check would have run')
  assert.ok(delisted.checkedMs - sent.at < 3000, `checked ${delisted.checkedMs - sent.at} ms after the report`)
  assert.ok(!(await lib.getJson(instance.url + '/v1/peers')).peers.includes(proxy.url), 'no longer listed')
  // The next reader is not given it.
  const q = await lib.countingPage(chrome.browser)
  await lib.loadPage(q, instance.url)
  assert.ok(!q.urls(proxy.url).length, 'a new page never asks the delisted peer')
  await q.context.close()
  await p.context.close()
})

test('a flood of reports: 429 after the reporter\'s budget, at most one check of the peer', async () => {
  const before = await contributions()
  const checksBefore = proxy.checks.length
  const t0 = Date.now()
  const log = community.hex[1]
  const statuses = {}
  for (let i = 0; i < 300; i++) {
    const peer = i % 3 ? proxy.url : `http://127.0.0.1:${10_000 + i}` // and peers that are not registered
    const res = await fetch(instance.url + '/v1/bad-peer', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ peer, log, start: i, end: i + 1, code: 'INVALID_PROOF' })
    })
    statuses[res.status] = (statuses[res.status] || 0) + 1
    await res.arrayBuffer()
  }
  // Not JSON: refused before anything is read.
  const wrongType = await fetch(instance.url + '/v1/bad-peer', { method: 'POST', headers: { 'content-type': 'text/plain' }, body: '{}' })
  assert.strictEqual(wrongType.status, 415)
  await lib.sleep(1500) // anything the flood scheduled has run
  const after = await contributions()
  const checks = proxy.checks.filter((t) => t >= t0).length
  const scheduled = after.reports.scheduled - before.reports.scheduled
  console.log(`# 300 reports from one client: ${JSON.stringify(statuses)}; checks scheduled ${scheduled}; ` +
    `block requests from the instance to the peer meanwhile ${checks} (before: ${checksBefore})`)
  assert.ok((statuses[429] || 0) >= 290, JSON.stringify(statuses))
  assert.ok((statuses[202] || 0) + (statuses[404] || 0) <= 8, JSON.stringify(statuses))
  assert.ok(scheduled <= 1, `${scheduled} checks scheduled`)
  assert.ok(after.reports.admitted - before.reports.admitted <= 8)
  // At most one check (its community logs' last blocks and one reported range), plus one
  // periodic round that may fall in the window.
  const perCheck = 4 + 1
  assert.ok(checks <= 2 * perCheck, `${checks} block requests to the peer`)
})
