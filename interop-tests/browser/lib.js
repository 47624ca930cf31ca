'use strict'
// Helpers for the browser tests and the bench: real `peerhost` processes on loopback (an
// instance publishing a community, mirrors registering with it), Debian's Chromium through
// playwright-core, and the bytes each origin served as Chromium counted them.

const { spawn, execFileSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')
const zlib = require('node:zlib')
const readline = require('node:readline')

const ROOT = path.resolve(__dirname, '..', '..')
const BIN = process.env.PEERHOST_BIN ||
  path.join(process.env.CARGO_TARGET_DIR || path.join(ROOT, 'target'), 'release', 'peerhost')
const PAGE = process.env.PEERHOST_PAGE || path.join(ROOT, 'web', 'dist')
const APP = process.env.PEERHOST_APP || path.join(ROOT, 'web', 'app', 'dist')
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium'

function run (storage, args) {
  return execFileSync(BIN, [...args, '--storage', storage], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, PEERHOST_LOG: 'warn' }
  }).trim()
}

/** A long-running peerhost; resolves once it printed `lines` lines (its addresses). */
function start (storage, args, lines) {
  const child = spawn(BIN, [...args, '--storage', storage], {
    env: { ...process.env, PEERHOST_LOG: process.env.PEERHOST_LOG || 'error' },
    stdio: ['ignore', 'pipe', 'inherit']
  })
  const got = []
  return new Promise((resolve, reject) => {
    const rl = readline.createInterface({ input: child.stdout })
    const timer = setTimeout(() => reject(new Error(`peerhost ${args[0]}: no address in 30 s`)), 30_000)
    child.once('exit', (code) => reject(new Error(`peerhost ${args.join(' ')} exited with ${code}`)))
    rl.on('line', (l) => {
      got.push(l.trim())
      if (got.length === lines) {
        clearTimeout(timer)
        resolve({ child, lines: got, url: got[got.length - 1] })
      }
    })
  })
}

function stop (p) {
  if (p && p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL')
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

async function getJson (url) {
  const res = await fetch(url, { headers: { 'user-agent': 'peerhost-test' } })
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`)
  return res.json()
}

async function waitFor (what, f, ms = 60_000) {
  const deadline = Date.now() + ms
  for (;;) {
    try {
      const v = await f()
      if (v) return v
    } catch {}
    if (Date.now() > deadline) throw new Error(`hang guard: ${what}`)
    await sleep(100)
  }
}

/** A PNG of `w`×`h` RGB noise over a gradient: a banner image that does not compress. */
function png (w, h, seed = 1) {
  let s = seed
  const rnd = () => ((s = (s * 1103515245 + 12345) >>> 0) >>> 16) & 255
  const raw = Buffer.alloc((w * 3 + 1) * h)
  for (let y = 0; y < h; y++) {
    const row = y * (w * 3 + 1)
    for (let x = 0; x < w; x++) {
      const o = row + 1 + x * 3
      raw[o] = (40 + (x * 120) / w + (rnd() & 31)) | 0
      raw[o + 1] = (90 + (y * 100) / h + (rnd() & 31)) | 0
      raw[o + 2] = (160 + (rnd() & 63)) | 0
    }
  }
  const chunk = (type, data) => {
    const len = Buffer.alloc(4)
    len.writeUInt32BE(data.length)
    const td = Buffer.concat([Buffer.from(type), data])
    const crc = Buffer.alloc(4)
    crc.writeUInt32BE(zlib.crc32(td) >>> 0)
    return Buffer.concat([len, td, crc])
  }
  const ihdr = Buffer.alloc(13)
  ihdr.writeUInt32BE(w, 0)
  ihdr.writeUInt32BE(h, 4)
  ihdr[8] = 8 // bit depth
  ihdr[9] = 2 // RGB
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', zlib.deflateSync(raw, { level: 9 })),
    chunk('IEND', Buffer.alloc(0))
  ])
}

const STYLE = `body{background:#f6f7fb;color:#1d2333}
h1{color:#2b4aa8;margin-bottom:.3rem}
img.banner{display:block;width:100%;height:120px;object-fit:cover;border-radius:8px}
article{background:#fff;border:1px solid #dde2ee;border-radius:8px;margin:.6rem 0;padding:.4rem 1rem}
article h2{color:#2b4aa8}
`

/**
 * An instance's store: a community with `posts` posts (titles returned, oldest first) and the
 * default web app (web/app/dist), which `community create --app` publishes; with
 * `bannerBytes`, a style sheet and a banner image of about that size are added to it.
 */
function makeCommunity (dir, { posts = 50, bannerBytes = 0, app = APP } = {}) {
  const storage = path.join(dir, 'instance')
  if (bannerBytes) {
    app = copyApp(dir, 'app-with-banner')
    fs.appendFileSync(path.join(app, 'style.css'), STYLE + `body{background-image:url(banner.png)}`)
    const side = Math.ceil(Math.sqrt(bannerBytes / 3 / 4))
    fs.writeFileSync(path.join(app, 'banner.png'), png(side * 4, side))
  }
  const key = run(storage, ['community', 'create', 'peerhost-demo', '--app', app])
  const titles = []
  for (let i = 1; i <= posts; i++) {
    const title = `Post ${i}: notes on hypercore, part ${i}`
    const body = `Post number ${i}. ` + 'Every block of this text reached your browser from a peer, checked against the signed head. '.repeat(2)
    run(storage, ['post', 'peerhost-demo', '--title', title, '--body', body])
    titles.push(title)
  }
  return { storage, key, titles, info: communityInfo(storage, 'peerhost-demo') }
}

/** `peerhost community info NAME --json` of a store. */
function communityInfo (storage, name) {
  return JSON.parse(run(storage, ['community', 'info', name, '--json']))
}

/** A copy of the default app's build in `dir/name`, to change. */
function copyApp (dir, name) {
  const to = path.join(dir, name)
  fs.cpSync(APP, to, { recursive: true })
  return to
}

/** The instance (TCP for mirrors, HTTP with the bootstrap page), checking its peers every
 * `interval` seconds. */
async function startInstance (storage, { interval = 1 } = {}) {
  fs.writeFileSync(path.join(storage, 'peerhost.toml'), 'status_interval_ms = 500\n')
  // Its mirrors run on this machine: loopback peers, refused by default (issue 17).
  return start(storage, ['serve', '--no-dht', '--listen-tcp', '127.0.0.1:0', '--http', '127.0.0.1:0',
    '--bootstrap-page', PAGE, '--http-interval', String(interval), '--allow-private-peers'], 2)
}

/** A mirror of `key` from the instance, serving HTTP and registering with it; `peers` are
 * more tcp addresses to replicate with, `mirrors` more keys to keep (its config file), `args`
 * more arguments (e.g. `--public-url`). */
async function startMirror (dir, i, key, instance, { peers = [], mirrors = [], args = [] } = {}) {
  const storage = path.join(dir, `mirror${i}`)
  fs.mkdirSync(storage, { recursive: true })
  fs.writeFileSync(path.join(storage, 'peerhost.toml'), `status_interval_ms = 500\nmirrors = ${JSON.stringify(mirrors)}\n`)
  return start(storage, ['mirror', key, '--peer', `tcp://${instance.lines[0]}`, ...peers.flatMap((p) => ['--peer', `tcp://${p}`]),
    '--no-dht', '-q', '--http', '127.0.0.1:0', '--register', instance.url, '--http-interval', '1', ...args], 1)
}

/** Until the instance lists exactly these peers (registered and healthy). */
async function waitPeers (instance, urls) {
  const want = [...urls].sort().join(',')
  await waitFor(`the instance lists ${urls.length} peers`, async () =>
    (await getJson(instance.url + '/v1/peers')).peers.sort().join(',') === want)
}

// Playwright gives every launch a fresh temporary profile (user-data-dir) and removes it on
// close; every page load below also gets a fresh context (no cache, no cookies).
async function launch () {
  const { chromium } = require('playwright-core')
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      // Pages the tests rewrite (page.route) count as public: let them reach loopback peers.
      '--disable-features=LocalNetworkAccessChecks,BlockInsecurePrivateNetworkRequests']
  })
  return { browser, close: () => browser.close() }
}

/**
 * Open a page that counts, per origin, the response bytes that came over the network (bodies
 * as sent, compressed when compressed, and headers), from Chromium's own accounting: the
 * page's requests and its Service Worker's, not what the Service Worker or the memory cache
 * answered. A fresh context (no cache, no cookies, no Service Worker) unless `context` is
 * given (a repeat visit).
 */
async function countingPage (browser, context = null) {
  context ||= await browser.newContext({ viewport: { width: 900, height: 1100 } })
  const page = await context.newPage()
  const bytes = new Map()
  const console = []
  const pending = []
  const urls = []
  const sizes = []
  page.on('console', (m) => console.push({ type: m.type(), text: m.text() }))
  const onFinished = (req) => {
    if (!/^https?:/.test(req.url())) return // blob: and data: URLs are not the network
    pending.push((async () => {
      const res = await req.response()
      if (!res || res.fromServiceWorker()) return
      const s = await req.sizes()
      const origin = new URL(req.url()).origin
      urls.push(req.url())
      sizes.push([req.url(), Math.max(0, s.responseBodySize)])
      const b = bytes.get(origin) || { body: 0, headers: 0, requests: 0 }
      b.body += Math.max(0, s.responseBodySize)
      b.headers += s.responseHeadersSize
      b.requests++
      bytes.set(origin, b)
    })().catch(() => {}))
  }
  context.on('requestfinished', onFinished)
  return {
    page,
    context,
    console,
    /** The paths asked of `origin` over the network, sorted. */
    urls: (origin) => urls.filter((u) => u.startsWith(origin + '/')).map((u) => u.slice(origin.length)).sort(),
    async bytes () {
      await Promise.all(pending)
      return bytes
    },
    /** [url, response body bytes as sent] of every request counted. */
    async sizes () {
      await Promise.all(pending)
      return sizes
    },
    /** Stop counting (the context stays open for another visit). */
    stop: () => context.off('requestfinished', onFinished)
  }
}

/** The app's frame (the bootstrap's sandboxed iframe), once it exists. */
async function appFrame (page) {
  const el = await page.waitForSelector('main iframe', { timeout: 60_000 })
  return el.contentFrame()
}

/** Load the instance page (or `url`); resolves when the app reported its first posts. */
async function loadPage (p, instanceUrl, { url = instanceUrl + '/', selector = 'main article h2' } = {}) {
  const t0 = Date.now()
  await p.page.goto(url)
  await p.page.waitForSelector('body[data-state="loaded"], body[data-state="failed"]', { timeout: 60_000 })
  const state = await p.page.evaluate(() => document.body.dataset.state)
  const note = await p.page.textContent('#note')
  if (state !== 'loaded') throw new Error(`the page failed: ${note}`)
  const firstPostMs = await p.page.evaluate(() => window.peerhost.firstPostMs)
  const frame = await appFrame(p.page)
  const titles = await frame.$$eval(selector, (hs) => hs.map((h) => h.textContent))
  const status = await frame.textContent('#status').catch(() => '')
  return { titles, firstPostMs, wallMs: Date.now() - t0, status, note, frame }
}

/** The instance's own count of the response body bytes it sent, and its requests. */
async function instanceCount (instance) {
  const res = await fetch(instance.url + '/v1/contributions', { headers: { 'user-agent': 'peerhost-test' } })
  const body = await res.text()
  const t = JSON.parse(body)
  // This answer is counted after it is sent: leave it out of the next reading.
  return { bytes: t.instance.bytes + Buffer.byteLength(body), requests: t.instance.requests + 1 }
}

module.exports = {
  ROOT, BIN, PAGE, APP, CHROMIUM, run, start, stop, sleep, getJson, waitFor, png, makeCommunity,
  communityInfo, copyApp, startInstance, startMirror, waitPeers, launch, countingPage, loadPage,
  appFrame, instanceCount
}
