'use strict'
// The browser end to end (issues 7 and 12): real peerhost processes on loopback, Debian's
// Chromium driven by playwright-core. The instance serves only the bootstrap document (and its
// Service Worker); the runtime, the app and the posts come from the mirrors, verified.
//
// 1. An instance and 3 mirrors, a text-only community: the latest 20 posts; the first visit
//    costs the instance at most 6 KB, the repeat visit (Service Worker, cached blocks) at most
//    1 KB; at least 95% of the wire bytes from the peers; nothing but the document and sw.js
//    from the instance (Chromium's network log, the page's and its Service Worker's requests).
// 2. WebCrypto's Ed25519 hidden: the pinned fallback comes from the peers.
// 3. A tampering peer and a killed one: the right posts, the tamperer named and banned.
// 4. Swap: a developer `app fork`s the community's app, changes one file (other markup) and
//    `assets publish`es it; #app=KEY of the fork shows the same 20 posts, says which app
//    runs and offers the way back; a peer tampering with that app's files is refused and the
//    files come from another peer.
// 5. An app that tries storage, cookies, the parent page, keys and the network gets nothing.
// 6. One of three mirrors frozen (SIGSTOP): the first post within 1.5 s; all frozen: within
//    2.5 s from the instance, with a visible notice.
//
// Needs: target/release/peerhost (or $PEERHOST_BIN), web/dist and web/app/dist (npm run build
// in web/), /usr/bin/chromium (or $CHROMIUM). Screenshots go to screenshots/.

const test = require('node:test')
const assert = require('node:assert')
const fs = require('node:fs')
const http = require('node:http')
const os = require('node:os')
const path = require('node:path')
const lib = require('./lib.js')

const SHOTS = path.join(__dirname, 'screenshots')

let dir, community, instance, dev, mirrors, chrome, fork, hostile

/** A community in the developer's store `dev` whose app is the directory `app`. */
function devApp (name, app) {
  const storage = path.join(dir, 'dev')
  const key = lib.run(storage, ['community', 'create', name])
  lib.run(storage, ['assets', 'publish', name, app])
  return { key, app: JSON.parse(lib.run(storage, ['log', 'info', `${name}.assets`, '--json'])).keyHex }
}

test.before(async () => {
  for (const f of [lib.BIN, path.join(lib.PAGE, 'index.html'), path.join(lib.APP, 'peerhost-runtime.js'), lib.CHROMIUM]) {
    if (!fs.existsSync(f)) throw new Error(`${f} is missing (see the header of this file)`)
  }
  fs.mkdirSync(SHOTS, { recursive: true })
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'peerhost-browser-'))
  community = lib.makeCommunity(dir, { posts: 50 })
  // What `community create --app web/app/dist` published (no `assets publish` after it).
  community.published = JSON.parse(lib.run(community.storage, ['assets', 'ls', 'peerhost-demo', '--json']))
  // An app that tries everything it must not reach; the URLs are filled in per test.
  const hostileDir = path.join(dir, 'hostile')
  fs.mkdirSync(hostileDir)
  fs.writeFileSync(path.join(hostileDir, 'index.html'), '<!doctype html><meta charset="utf-8"><pre id="out">…</pre><script type="module" src="hostile.js"></script>')
  fs.writeFileSync(path.join(hostileDir, 'hostile.js'), `const out = {}
const probe = async (name, f) => {
  try { out[name] = 'GOT ' + JSON.stringify(await f()) } catch (e) { out[name] = 'refused: ' + e.name }
}
const targets = (await peerhost.peers()).map((p) => p.url)
await probe('localStorage', () => localStorage.getItem('peerhost.secret'))
await probe('sessionStorage', () => sessionStorage.getItem('peerhost.secret'))
await probe('indexedDB', () => new Promise((resolve, reject) => { const r = indexedDB.open('keys'); r.onsuccess = () => resolve(r.result.objectStoreNames.length); r.onerror = () => reject(r.error) }))
await probe('cookie', () => document.cookie)
await probe('caches', () => caches.keys())
await probe('serviceWorker', () => navigator.serviceWorker.getRegistrations().then((r) => r.length))
await probe('parent.document', () => parent.document.cookie)
await probe('parent.peerhost', () => Object.keys(parent.peerhost))
await probe('top.location', () => top.location.href)
for (const u of targets) await probe('fetch ' + u, () => fetch(u + '/v1/peers').then((r) => r.text()))
await probe('image', () => new Promise((resolve, reject) => { const i = new Image(); i.onload = () => resolve('loaded'); i.onerror = () => reject(new Error('blocked')); i.src = targets[0] + '/v1/peers' }))
document.querySelector('#out').textContent = JSON.stringify(out, null, 1)
await peerhost.ready({ posts: 0 })
`)
  hostile = devApp('hostile', hostileDir)
  instance = await lib.startInstance(community.storage)
  // A developer forks the community's app: follows its app log from the instance, `app fork`s
  // it into a log of their own, changes one file (main.js: a list instead of articles) and
  // publishes it with `assets publish`.
  const devStorage = path.join(dir, 'dev')
  const appLog = community.info.logs.assets.key
  lib.run(devStorage, ['follow', appLog, '--peer', `tcp://${instance.lines[0]}`, '-q'])
  const forkKey = lib.run(devStorage, ['app', 'fork', appLog, 'fork'])
  assert.match(forkKey, /^[0-9a-f]{64}$/)
  const forkDir = lib.copyApp(dir, 'fork')
  fs.writeFileSync(path.join(forkDir, 'main.js'), `import { latestPosts } from './feed.js'
const c = await peerhost.community()
const { posts } = await latestPosts(peerhost, c.posts, 20)
const ol = document.createElement('ol')
ol.append(...posts.map(({ post }) => {
  const li = document.createElement('li')
  li.className = 'fork-post'
  li.textContent = post.title
  return li
}))
document.querySelector('#posts').replaceChildren(ol)
await peerhost.ready({ posts: posts.length })
`)
  const published = lib.run(devStorage, ['assets', 'publish', 'fork', forkDir])
  assert.match(published, /^published \d+ files \(1 new or changed/, 'one file changed')
  fork = { key: forkKey, app: forkKey }
  dev = await lib.start(path.join(dir, 'dev'), ['serve', '--no-dht', '--listen-tcp', '127.0.0.1:0'], 1)
  mirrors = await Promise.all([1, 2, 3].map((i) => lib.startMirror(dir, i, community.key, instance, {
    peers: [dev.lines[0]], mirrors: [fork.key, hostile.key]
  })))
  await lib.waitPeers(instance, mirrors.map((m) => m.url))
  // The mirrors hold the fork's app log too.
  await lib.waitFor('the mirrors hold the forked app', async () => {
    for (const m of mirrors) if (!(await fetch(`${m.url}/v1/logs/${fork.app}/head`)).ok || !(await fetch(`${m.url}/v1/logs/${hostile.app}/head`)).ok) return false
    return true
  })
  chrome = await lib.launch()
})

test.after(async () => {
  if (chrome) await chrome.close()
  for (const m of mirrors || []) { try { process.kill(m.child.pid, 'SIGCONT') } catch {} lib.stop(m) }
  lib.stop(dev)
  lib.stop(instance)
  if (dir) fs.rmSync(dir, { recursive: true, force: true })
})

const latest20 = () => community.titles.slice(-20).reverse()
const sum = (bytes, urls, f = (b) => b.body) => urls.reduce((n, u) => n + f(bytes.get(u) || { body: 0, headers: 0 }), 0)

test('3 mirrors: the latest 20 posts; first visit ≤ 6 KB, repeat ≤ 1 KB from the instance; ≥ 95% of the wire bytes from peers', async () => {
  // The app the page runs is the one `community create` published: every file of the build.
  const built = fs.readdirSync(lib.APP).sort().map((name) => {
    const bytes = fs.readFileSync(path.join(lib.APP, name))
    return { path: name, sha256: require('node:crypto').createHash('sha256').update(bytes).digest('hex'), size: bytes.length }
  })
  assert.deepStrictEqual(community.published.map(({ path, sha256, size }) => ({ path, sha256, size })), built)
  const p = await lib.countingPage(chrome.browser)
  const got = await lib.loadPage(p, instance.url)
  assert.deepStrictEqual(got.titles, latest20())
  assert.strictEqual(await p.page.evaluate(() => window.peerhost.ed25519), 'webcrypto')
  assert.match(await p.page.textContent('#app'), /\(the community's\)/)
  await p.page.screenshot({ path: path.join(SHOTS, 'three-mirrors.png') })
  await lib.sleep(1000) // the Service Worker installs
  const bytes = await p.bytes()
  p.stop()
  const inst = bytes.get(instance.url) || { body: 0, headers: 0 }
  const peers = sum(bytes, mirrors.map((m) => m.url))
  const share = peers / (peers + inst.body)
  console.log(`# first visit: instance ${inst.body} B bodies + ${inst.headers} B headers in ${p.urls(instance.url).join(' ')}; ` +
    `peers ${peers} B; ${(share * 100).toFixed(1)}% from peers; first post after ${got.firstPostMs.toFixed(0)} ms`)
  assert.deepStrictEqual(p.urls(instance.url), ['/', '/sw.js'], 'no script from the instance but the bootstrap')
  assert.ok(inst.body + inst.headers <= 6000, `first visit: ${inst.body + inst.headers} B from the instance`)
  // Bytes on the wire, both sides compressed (the instance's document brotli'd, the peers'
  // answers by `Accept-Encoding`). The document fetches the runtime by its hash in one request
  // (`/v1/blob/PIN`) and the header's markup comes with the runtime, so the instance sends
  // about 1.2 KB (the document 1.0 KB with the data block, sw.js 0.2 KB) against 2.1 KB with
  // the chain it replaced; the peers about 52 KB (the runtime 21 KB, the app's files 12 KB,
  // heads, posts and index nodes): 97.7% (BENCHMARKS.md, issue 12). The bound keeps 95%.
  assert.ok(share >= 0.95, `only ${(share * 100).toFixed(1)}% from peers`)
  for (const m of mirrors) assert.ok((bytes.get(m.url) || { body: 0 }).body > 0, `${m.url} served nothing`)

  // The repeat visit: the Service Worker serves the document, the blocks come from the cache;
  // only heads are asked of the peers.
  const q = await lib.countingPage(chrome.browser, p.context)
  const again = await lib.loadPage(q, instance.url)
  assert.deepStrictEqual(again.titles, latest20())
  const b2 = await q.bytes()
  q.stop()
  const inst2 = b2.get(instance.url) || { body: 0, headers: 0 }
  const peers2 = sum(b2, mirrors.map((m) => m.url))
  console.log(`# repeat visit: instance ${inst2.body + inst2.headers} B (${q.urls(instance.url).join(' ') || 'no request'}); peers ${peers2} B; first post after ${again.firstPostMs.toFixed(0)} ms`)
  assert.ok(inst2.body + inst2.headers <= 1000, `repeat visit: ${inst2.body + inst2.headers} B from the instance`)
  assert.ok(peers2 < peers / 2, `the repeat visit fetched ${peers2} B from peers (first: ${peers})`)
  for (const m of mirrors) assert.ok(!q.urls(m.url).some((u) => u.includes('/blocks?')), 'no block fetched again')
  await p.context.close()
})

test('a browser without WebCrypto Ed25519: the pinned fallback from the peers, the same posts', async () => {
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
  await lib.sleep(300)
  assert.deepStrictEqual(p.urls(instance.url).filter((u) => u !== '/sw.js'), ['/'])
  await p.context.close()
})

/** A gateway in front of `target` that flips a byte of every block range it sends to
 * browsers for which `which(url)` holds, and answers peerhost nodes (health checks) honestly.
 * Pages get it through their peer list (`loadsWith`), so it never registers. */
function tamperingProxy (target, which = () => true) {
  const server = http.createServer((req, res) => {
    const browser = !/peerhost/.test(req.headers['user-agent'] || '')
    fetch(target + req.url, { headers: { 'user-agent': req.headers['user-agent'] || '' } }).then(async (up) => {
      const body = Buffer.from(await up.arrayBuffer())
      if (browser && up.status === 200 && req.url.includes('/blocks?') && which(req.url) && body.length > 0) {
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
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => {
    server.url = `http://127.0.0.1:${server.address().port}`
    resolve(server)
  }))
}

/** Load pages whose peer list is `peers` (instead of the instance's), until `done()`. */
async function loadsWith (peers, each, done, { url, selector, max = 8 } = {}) {
  for (let load = 1; load <= max && !done(); load++) {
    const p = await lib.countingPage(chrome.browser)
    await p.page.route(instance.url + '/', async (route) => {
      const res = await route.fetch()
      const html = (await res.text()).replace(/("peers":)\[[^\]]*\]/, `$1${JSON.stringify(peers)}`)
      await route.fulfill({ response: res, body: html, headers: { ...res.headers(), 'content-encoding': '' } })
    })
    const got = await lib.loadPage(p, instance.url, { url, selector })
    await each(p, got, load)
    await p.context.close()
  }
}

test('a tampering peer and a peer killed mid-load: the right posts, the tamperer demoted', async () => {
  const proxy = await tamperingProxy(mirrors[0].url)
  let killed = false
  let caught = null
  try {
    // The page gets the tamperer (in front of mirror 1), mirrors 2 and 3.
    const peers = [proxy.url, mirrors[1].url, mirrors[2].url]
    await loadsWith(peers, async (p, got, load) => {
      assert.deepStrictEqual(got.titles, latest20(), `load ${load}`)
      const table = await p.page.evaluate(() => window.peerhost.loader.list())
      const bad = p.console.map((m) => m.text).find((t) => t.includes(proxy.url) && t.includes('INVALID_PROOF'))
      if (bad && !caught) {
        caught = bad
        assert.ok(table.find((r) => r.url === proxy.url).banned, 'the tamperer is banned')
        assert.match(bad, /does not verify \(INVALID_PROOF: range proof does not hash to the signed tree hash\)/)
        await p.page.screenshot({ path: path.join(SHOTS, 'tampered-and-killed.png') })
      }
    }, () => caught && killed, {})
    // Mirror 2 killed, then a load with what is left.
    mirrors[1].child.kill('SIGKILL')
    killed = true
    await loadsWith(peers, async (p, got) => assert.deepStrictEqual(got.titles, latest20()), () => false, { max: 1 })
    assert.ok(proxy.tampered > 0 && caught, 'the tamperer was caught')
  } finally {
    proxy.close()
  }
})

test('swap: #app=KEY renders the same posts with the fork\'s markup; a tampered file of it is refused', async () => {
  const live = mirrors.filter((m) => m.child.exitCode === null && m.child.signalCode === null)
  // The fork's app log through a tamperer: its blocks flipped, every other log honest.
  const proxy = await tamperingProxy(live[0].url, (u) => u.includes(fork.app))
  let caught = false
  try {
    await loadsWith([proxy.url, ...live.slice(1).map((m) => m.url)], async (p, got) => {
      assert.deepStrictEqual(got.titles, latest20())
      assert.match(await p.page.textContent('#app'), /\(swapped in\)/)
      assert.strictEqual(await p.page.getAttribute('#app', 'title'), fork.app)
      assert.strictEqual(await p.page.isVisible('#back'), true, 'a way back')
      assert.strictEqual(await got.frame.locator('article').count(), 0, 'the fork\'s markup, not the default app\'s')
      if (p.console.some((m) => m.text.includes(proxy.url) && m.text.includes('INVALID_PROOF'))) caught = true
      if (caught) await p.page.screenshot({ path: path.join(SHOTS, 'forked-app.png') })
      // The way back: the community's app again.
      await p.page.click('#back')
      await p.page.waitForSelector('body[data-state="loaded"]')
      assert.match(await p.page.textContent('#app'), /\(the community's\)/)
    }, () => caught, { url: `${instance.url}/#app=${fork.app}`, selector: 'li.fork-post' })
    assert.ok(proxy.tampered > 0 && caught, 'a tampered file of the fork was refused')
  } finally {
    proxy.close()
  }
})

test('an app that reaches for storage, cookies, the parent page, keys and the network gets nothing', async () => {
  const p = await lib.countingPage(chrome.browser)
  // Secrets of the instance's origin, as a reader's keys will be kept.
  await p.page.goto(instance.url + '/')
  await p.page.waitForSelector('body[data-state="loaded"]')
  await p.page.evaluate(async () => {
    localStorage.setItem('peerhost.secret', 'S3CRET')
    sessionStorage.setItem('peerhost.secret', 'S3CRET')
    document.cookie = 'secret=S3CRET'
    await new Promise((resolve) => { const r = indexedDB.open('keys'); r.onupgradeneeded = () => r.result.createObjectStore('S3CRET'); r.onsuccess = resolve })
    await caches.open('S3CRET')
  })
  // A new hash reloads the page itself (web/boot/main.js): wait for that navigation rather
  // than racing it with one of our own.
  await Promise.all([
    p.page.waitForNavigation({ waitUntil: 'load' }),
    p.page.evaluate((app) => { location.hash = `app=${app}` }, hostile.app)
  ])
  await p.page.waitForSelector('body[data-state="loaded"]')
  const frame = await lib.appFrame(p.page)
  const out = JSON.parse(await frame.textContent('#out'))
  console.log('# the hostile app saw: ' + JSON.stringify(out))
  assert.ok(Object.keys(out).length >= 12, JSON.stringify(out))
  for (const [name, v] of Object.entries(out)) {
    assert.doesNotMatch(v, /S3CRET/, name)
    assert.ok(v.startsWith('refused') || v === 'GOT ""', `${name}: ${v}`)
  }
  await p.context.close()
})

test('frozen mirrors: one of three costs little; all three fall back to the instance, said on the page', async () => {
  const live = mirrors.filter((m) => m.child.exitCode === null && m.child.signalCode === null)
  // Three live peers again: mirror 2 was killed above; the page lists what the instance lists.
  const extra = await lib.startMirror(dir, 4, community.key, instance, { peers: [dev.lines[0]], mirrors: [fork.key] })
  mirrors.push(extra)
  const three = [...live, extra]
  await lib.waitPeers(instance, three.map((m) => m.url))
  process.kill(three[0].child.pid, 'SIGSTOP')
  try {
    const times = []
    for (let i = 0; i < 3; i++) {
      const p = await lib.countingPage(chrome.browser)
      const got = await lib.loadPage(p, instance.url)
      assert.deepStrictEqual(got.titles, latest20())
      times.push(got.firstPostMs)
      await p.context.close()
    }
    console.log(`# one of three frozen: first post after ${times.map((t) => t.toFixed(0)).join(', ')} ms`)
    for (const t of times) assert.ok(t <= 1500, `first post after ${t} ms`)
    for (const m of three.slice(1)) process.kill(m.child.pid, 'SIGSTOP')
    const p = await lib.countingPage(chrome.browser)
    const got = await lib.loadPage(p, instance.url)
    assert.deepStrictEqual(got.titles, latest20())
    console.log(`# all frozen: first post after ${got.firstPostMs.toFixed(0)} ms, notice: ${got.note}`)
    assert.ok(got.firstPostMs <= 2500, `first post after ${got.firstPostMs} ms`)
    assert.match(got.note, /Reading from the instance/)
    assert.strictEqual(await p.page.isVisible('#note'), true)
    await p.page.screenshot({ path: path.join(SHOTS, 'all-frozen.png') })
    await p.context.close()
  } finally {
    for (const m of three) { try { process.kill(m.child.pid, 'SIGCONT') } catch {} }
  }
})
