'use strict'
// The browser bootstrap end to end (issue 7): real peerhost processes on loopback, Debian's
// Chromium driven by playwright-core.
//
// 1. An instance and 3 mirrors: the page shows the latest 20 posts; the instance served only
//    the bootstrap (page, script, JSON: at most 20 KB as sent, compressed); at least 95% of
//    the bytes came from the peers. Signatures are checked with Chromium's WebCrypto.
// 2. A browser without WebCrypto Ed25519 (hidden by an init script) fetches the fallback,
//    ed25519-noble.js, from the instance and shows the same posts.
// 3. One peer serves tampered blocks to browsers (it answers the instance's health checks
//    honestly), another is killed mid-load: the page still shows the right posts, the
//    tamperer is demoted, the console names the bad proof.
//
// Needs: target/release/peerhost (or $PEERHOST_BIN), web/dist (npm run build in web/),
// /usr/bin/chromium (or $CHROMIUM). Screenshots go to screenshots/.

const test = require('node:test')
const assert = require('node:assert')
const fs = require('node:fs')
const http = require('node:http')
const os = require('node:os')
const path = require('node:path')
const lib = require('./lib.js')
const auth = require('../lib/peerhost-auth.js')

const SHOTS = path.join(__dirname, 'screenshots')
const BUDGET = 20_000 // the instance's bytes for one page load, bodies as sent (20 KB)

let dir, community, instance, mirrors, chrome

test.before(async () => {
  for (const f of [lib.BIN, path.join(lib.PAGE, 'index.html'), lib.CHROMIUM]) {
    if (!fs.existsSync(f)) throw new Error(`${f} is missing (see the header of this file)`)
  }
  fs.mkdirSync(SHOTS, { recursive: true })
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'peerhost-browser-'))
  community = lib.makeCommunity(dir, { posts: 50 })
  instance = await lib.startInstance(community.storage)
  mirrors = await Promise.all([1, 2, 3].map((i) => lib.startMirror(dir, i, community.key, instance)))
  await lib.waitPeers(instance, mirrors.map((m) => m.url))
  chrome = await lib.launch()
})

test.after(async () => {
  if (chrome) await chrome.close()
  for (const m of mirrors || []) lib.stop(m)
  lib.stop(instance)
  if (dir) fs.rmSync(dir, { recursive: true, force: true })
})

const latest20 = () => community.titles.slice(-20).reverse()

test('an instance and 3 mirrors: the latest 20 posts, nearly every byte from the peers', async () => {
  const p = await lib.countingPage(chrome.browser)
  const got = await lib.loadPage(p, instance.url)
  assert.deepStrictEqual(got.titles, latest20())
  await p.page.waitForSelector('body[data-assets="loaded"]', { timeout: 60_000 })
  assert.deepStrictEqual(await p.page.evaluate(() => window.peerhost.assets), ['banner.png', 'style.css'])
  assert.strictEqual(await p.page.evaluate(() => window.peerhost.ed25519), 'webcrypto')
  await p.page.screenshot({ path: path.join(SHOTS, 'three-mirrors.png'), fullPage: false })

  const bytes = await p.bytes()
  const inst = bytes.get(instance.url) || { body: 0, headers: 0, requests: 0 }
  let peers = 0
  for (const m of mirrors) peers += (bytes.get(m.url) || { body: 0 }).body
  const total = inst.body + peers
  const share = peers / total
  console.log(`# instance: ${inst.body} B of bodies in ${inst.requests} requests (+${inst.headers} B headers); ` +
    `peers: ${peers} B; ${(share * 100).toFixed(1)}% from peers; first post after ${got.firstPostMs.toFixed(0)} ms`)
  // Nothing but the three bootstrap requests went to the instance.
  assert.deepStrictEqual(p.urls(instance.url), ['/', '/app.js', '/v1/bootstrap'])
  assert.ok(inst.body <= BUDGET, `the instance served ${inst.body} B, over ${BUDGET}`)
  assert.ok(share >= 0.95, `only ${(share * 100).toFixed(1)}% from peers`)
  // Every peer carried some of it, and each counted what it served (its own report).
  for (const m of mirrors) assert.ok((bytes.get(m.url) || { body: 0 }).body > 0, `${m.url} served nothing`)
  const table = await lib.waitFor('the reports reach the instance', async () => {
    const t = await lib.getJson(instance.url + '/v1/contributions')
    const served = t.peers.reduce((n, r) => n + r.bytesServed, 0)
    return served >= peers ? t : null
  })
  assert.strictEqual(table.peers.length, 3)
  assert.ok(table.peers.every((r) => r.healthy && r.bytesServed > 0))
  await p.context.close()
})

test('a browser without WebCrypto Ed25519: the fallback from the instance, the same posts', async () => {
  const p = await lib.countingPage(chrome.browser)
  await p.page.addInitScript(() => {
    const subtle = crypto.subtle
    const importKey = subtle.importKey.bind(subtle)
    subtle.importKey = (format, key, alg, ...rest) =>
      /ed25519/i.test(alg && (alg.name || alg))
        ? Promise.reject(new DOMException('Unrecognized algorithm name', 'NotSupportedError'))
        : importKey(format, key, alg, ...rest)
  })
  const got = await lib.loadPage(p, instance.url)
  assert.deepStrictEqual(got.titles, latest20())
  assert.strictEqual(await p.page.evaluate(() => window.peerhost.ed25519), 'noble')
  assert.deepStrictEqual(p.urls(instance.url), ['/', '/app.js', '/ed25519-noble.js', '/v1/bootstrap'])
  await p.context.close()
})

/** A gateway in front of `target` that flips a byte of every block it sends to browsers, and
 * answers peerhost nodes (the instance's health checks) honestly. It has its own node key:
 * it registers signed and answers the instance's key challenge (protocol/gateway.md §7.1). */
function tamperingProxy (target) {
  const kp = auth.keyPair()
  const server = http.createServer((req, res) => {
    if (req.url.startsWith('/v1/identity?challenge=')) {
      const answer = auth.answerChallenge(kp, `http://${req.headers.host}`, req.url.split('=')[1])
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify(answer))
      return
    }
    const browser = !/peerhost/.test(req.headers['user-agent'] || '')
    fetch(target + req.url, { headers: { 'user-agent': req.headers['user-agent'] || '' } }).then(async (up) => {
      const body = Buffer.from(await up.arrayBuffer())
      if (browser && up.status === 200 && req.url.includes('/blocks?') && body.length > 0) {
        body[body.length - 1] ^= 0x20 // the last byte of the last block
        server.tampered++
      }
      const headers = { 'access-control-allow-origin': '*', 'content-length': body.length }
      for (const h of ['content-type', 'cache-control']) if (up.headers.get(h)) headers[h] = up.headers.get(h)
      res.writeHead(up.status, headers)
      res.end(body)
    }, () => { res.writeHead(502); res.end() })
  })
  server.tampered = 0
  server.keyPair = kp
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => {
    server.url = `http://127.0.0.1:${server.address().port}`
    resolve(server)
  }))
}

test('a tampering peer and a peer killed mid-load: the right posts, the tamperer demoted', async () => {
  const proxy = await tamperingProxy(mirrors[0].url)
  // The tamperer registers like any mirror (signed with its key, which it proves to the
  // instance's challenge); the instance checks it and lists it.
  const register = async () => {
    const res = await auth.postSigned(proxy.keyPair, instance.url, '/v1/peers', { url: proxy.url })
    assert.strictEqual(res.status, 200, await res.text())
  }
  await register()
  const keepAlive = setInterval(register, 2000)
  try {
    const direct = mirrors[0].url // reached only through the tamperer in this test
    await lib.waitFor('the tamperer is listed', async () =>
      (await lib.getJson(instance.url + '/v1/peers')).peers.includes(proxy.url))
    let killed = false
    let caught = null // the load that saw the bad proof
    let outcome = null
    // Several loads, each a fresh loader: every one must show the right posts; peers are
    // picked at random, so the tamperer is hit on some load (and with 3 peers, almost surely
    // on the first), and mirror 2 asked for blocks on some load (it may not be on the load
    // that catches the tamperer: a load makes only a few block requests).
    for (let load = 1; load <= 8 && !(caught && killed); load++) {
      const p = await lib.countingPage(chrome.browser)
      // The page gets the tamperer, mirrors 2 and 3 as its peers (mirror 1 only behind the
      // tamperer), from the instance's own answer.
      await p.page.route(instance.url + '/v1/bootstrap', async (route) => {
        const res = await route.fetch()
        const json = await res.json()
        json.peers = json.peers.filter((u) => u !== direct)
        await route.fulfill({ response: res, json })
      })
      // Mirror 2 is killed the moment the page first asks it for blocks.
      p.page.on('request', (req) => {
        if (!killed && req.url().startsWith(mirrors[1].url) && req.url().includes('/blocks?')) {
          killed = true
          mirrors[1].child.kill('SIGKILL')
        }
      })
      const got = await lib.loadPage(p, instance.url)
      assert.deepStrictEqual(got.titles, latest20(), `load ${load}`)
      await p.page.waitForSelector('body[data-assets="loaded"]', { timeout: 60_000 })
      const table = await p.page.evaluate(() => window.peerhost.loader.peers.list())
      const warns = p.console.filter((m) => m.type === 'warning').map((m) => m.text)
      const bad = warns.find((t) => t.includes(proxy.url) && t.includes('INVALID_PROOF'))
      outcome = { load, sawBadProof: Boolean(bad), bad, table, warns }
      if (bad && !caught) {
        caught = outcome
        const row = table.find((r) => r.url === proxy.url)
        assert.ok(row.bad >= 1, JSON.stringify(row))
        assert.ok(row.bannedUntil > Date.now(), 'the tamperer is banned')
        assert.match(bad, /does not verify.*INVALID_PROOF: range proof does not hash to the signed tree hash/)
        await p.page.screenshot({ path: path.join(SHOTS, 'tampered-and-killed.png') })
      }
      await p.context.close()
    }
    assert.ok(killed, 'mirror 2 was killed mid-load')
    assert.ok(proxy.tampered > 0 && caught, `the tamperer was caught: ${JSON.stringify(outcome)}`)
  } finally {
    clearInterval(keepAlive)
    proxy.close()
  }
})
