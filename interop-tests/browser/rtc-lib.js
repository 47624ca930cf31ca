'use strict'
// Helpers for the WebRTC browser tests (rtc.test.js, rtc-bench.js, rtc-netlab.js): the test
// home peer and the instance (src/bin/rtc_peer.rs `serve` and `instance`: the gateway with
// its signaling relay, health checks and STUN server, serving the test page) as JSON-lines
// child processes, each inside a network namespace; Chromium (Debian's, through
// playwright-core) inside a namespace too, through a wrapper script; the test page bundled
// from web/ with web/'s esbuild.
//
// Why namespaces even for "loopback": Chromium gathers no candidates on the loopback
// interface, so the browser and the peer share a namespace with one veth interface
// (10.99.0.1) instead; Chromium's mDNS host candidates stay on (the peer connects through
// peer-reflexive and server-reflexive candidates, as it must in the wild).

const { spawn, execFileSync } = require('node:child_process')
const crypto = require('node:crypto')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const readline = require('node:readline')

const ROOT = path.resolve(__dirname, '..', '..')
const TARGET = process.env.CARGO_TARGET_DIR || path.join(ROOT, 'target')
const RTC_PEER = process.env.RTC_PEER_BIN || path.join(TARGET, 'release', 'rtc_peer')
const PEERHOST = process.env.PEERHOST_BIN || path.join(TARGET, 'release', 'peerhost')
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium'

const { sleep, waitFor: waitLong } = require('./lib.js')

/** Until `f()` gives something truthy (exceptions count as no), or throw after `ms`. */
const waitFor = (what, f, ms = 30_000) => waitLong(what, f, ms)

function sh (cmd, args, opts = {}) {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], ...opts }).trim()
}

/** `cmd args` inside namespace `ns` (or here when `ns` is null). */
function inNs (ns, cmd, args) {
  return ns ? ['ip', ['netns', 'exec', ns, cmd, ...args]] : [cmd, args]
}

/** A child speaking JSON lines: `ready` resolves with its first line; `request(obj)` tags
 * `obj` and resolves with the line that carries the same tag. */
class JsonChild {
  constructor (name, cmd, args, { ns = null, env = {} } = {}) {
    const [c, a] = inNs(ns, cmd, args)
    this.name = name
    this.child = spawn(c, a, { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...env } })
    this.waiters = new Map()
    this.tag = 0
    this.stderr = ''
    this.child.stderr.on('data', (d) => { this.stderr = (this.stderr + d).slice(-(Number(process.env.RTC_STDERR_KEEP) || 4000)) })
    const rl = readline.createInterface({ input: this.child.stdout })
    this.ready = new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${name}: not ready in 60 s; stderr: ${this.stderr}`)), 60_000)
      this.child.once('exit', (code) => reject(new Error(`${name} exited with ${code}: ${this.stderr}`)))
      rl.on('line', (line) => {
        let v
        try { v = JSON.parse(line) } catch { return }
        if (v.event === 'ready') {
          clearTimeout(timer)
          resolve(v)
        } else if (v.event === 'failed') {
          reject(new Error(`${name}: ${v.error}`))
        } else if (v.tag !== undefined && this.waiters.has(v.tag)) {
          this.waiters.get(v.tag)(v)
          this.waiters.delete(v.tag)
        }
      })
    })
  }

  request (obj, ms = 30_000) {
    const tag = ++this.tag
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { this.waiters.delete(tag); reject(new Error(`${this.name}: no reply to ${obj.op} in ${ms} ms`)) }, ms)
      this.waiters.set(tag, (v) => { clearTimeout(timer); resolve(v) })
      this.child.stdin.write(JSON.stringify({ ...obj, tag }) + '\n')
    })
  }

  stop () {
    try { this.child.stdin.end() } catch {}
    const c = this.child
    setTimeout(() => { if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL') }, 500).unref()
  }
}

/** A home peer: `rtc_peer serve --instance URL ARGS…` in `ns` (signaled through the instance). */
function startPeer (ns, args) {
  if (!fs.existsSync(RTC_PEER)) throw new Error(`${RTC_PEER} is missing: cargo build --release -p peerhost-interop-tests --bin rtc_peer`)
  return new JsonChild('rtc_peer', RTC_PEER, ['serve', ...args], { ns, env: { RUST_LOG: process.env.RUST_LOG || 'warn' } })
}

/** A STUN server: `rtc_peer stun ADDR` in `ns`. */
function startStun (ns, addr) {
  return new JsonChild('stun', RTC_PEER, ['stun', addr], { ns })
}

/** Bundle the test page (rtc-page.js) into `dir`: index.html (with the data block the instance
 * fills in: its healthy WebRTC peers and ICE servers) and rtc-page.bundle.js. */
async function bundlePage (dir) {
  const esbuild = require(path.join(ROOT, 'web', 'node_modules', 'esbuild'))
  await esbuild.build({
    entryPoints: [path.join(__dirname, 'rtc-page.js')],
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: ['es2022'],
    outfile: path.join(dir, 'rtc-page.bundle.js'),
    minify: true,
    logLevel: 'warning',
    // RTC_PAGE_HASH=wasm (benchmarks only): verify with a WebAssembly BLAKE2b instead of
    // @noble/hashes' (blake2b-wasm-shim.js).
    plugins: process.env.RTC_PAGE_HASH === 'wasm'
      ? [{
          name: 'blake2b-wasm',
          setup (b) {
            b.onResolve({ filter: /^@noble\/hashes\/blake2\.js$/ }, () => ({ path: path.join(__dirname, 'blake2b-wasm-shim.js') }))
          }
        }]
      : []
  })
  fs.writeFileSync(path.join(dir, 'index.html'),
    '<!doctype html><meta charset="utf-8"><title>peerhost WebRTC test</title>' +
    '<script id="peerhost-data" type="application/json">null</script>' +
    '<main id="posts"></main><script type="module" src="/rtc-page.bundle.js"></script>\n')
}

/**
 * A self-signed certificate for `names` (IP addresses or host names) in `dir`: {cert, key}
 * (PEM files) and `spki`, the base64 SHA-256 of its public key, for Chromium's
 * `--ignore-certificate-errors-spki-list` (that one certificate trusted, no other).
 */
function makeCert (dir, names) {
  const cert = path.join(dir, 'cert.pem')
  // openssl: a P-256 end-entity certificate (CA:FALSE, as rustls wants one it serves and
  // trusts as its own anchor), the names as subjectAltNames.
  const san = names.map((n) => (/^[0-9.]+$|:/.test(n) ? `IP:${n}` : `DNS:${n}`)).join(',')
  sh('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2',
    '-subj', '/CN=peerhost-test', '-addext', `subjectAltName=${san}`, '-addext', 'basicConstraints=critical,CA:FALSE',
    '-keyout', path.join(dir, 'key.pem'), '-out', cert])
  const x = new crypto.X509Certificate(fs.readFileSync(cert))
  const spki = crypto.createHash('sha256').update(x.publicKey.export({ type: 'spki', format: 'der' })).digest('base64')
  return { cert, key: path.join(dir, 'key.pem'), spki }
}

/** Chromium's flag that trusts certificate `c` (from makeCert). */
const trustFlag = (c) => `--ignore-certificate-errors-spki-list=${c.spki}`

/**
 * The instance: `rtc_peer instance --http HOST:0 --page DIR ARGS…` in `ns` (the gateway with
 * its signaling relay and health checks, serving the test page bundled into `dir`; `--stun
 * ADDR` in ARGS adds its STUN server); https:// with `tls` (from makeCert), as a real
 * instance's page is (a secure context: WebCrypto). Ready: {url, stun, posts, bulk}.
 */
async function startInstance (ns, host, dir, args = [], { tls = null, page = true } = {}) {
  if (!fs.existsSync(RTC_PEER)) throw new Error(`${RTC_PEER} is missing: cargo build --release -p peerhost-interop-tests --bin rtc_peer`)
  // `page: false`: ARGS name the page (e.g. `--page web/dist`, the real bootstrap).
  if (page) await bundlePage(dir)
  const t = tls ? ['--tls-cert', tls.cert, '--tls-key', tls.key] : []
  return new JsonChild('instance', RTC_PEER, ['instance', '--http', `${host}:0`, ...(page ? ['--page', dir] : []), ...t, ...args],
    { ns, env: { RUST_LOG: process.env.RUST_LOG || 'warn' } })
}

/**
 * A `peerhost` daemon (`serve` or `mirror`), in namespace `ns` (`ip netns exec` execs it: the
 * child's pid is the daemon's). `ready` resolves with the lines it prints first (`lines` of
 * them: its addresses). `status()`: `peerhost status --json` of its store (written every
 * 200 ms, the store's peerhost.toml); `rssKb()`: its VmRSS.
 */
class Daemon {
  constructor (name, storage, args, { ns = null, lines = 0, env = {}, config = '' } = {}) {
    if (!fs.existsSync(PEERHOST)) throw new Error(`${PEERHOST} is missing: cargo build --release -p peerhost (or PEERHOST_BIN)`)
    fs.mkdirSync(storage, { recursive: true })
    fs.writeFileSync(path.join(storage, 'peerhost.toml'), `status_interval_ms = 200\n${config}`)
    const [c, a] = inNs(ns, PEERHOST, [...args, '--storage', storage])
    this.name = name
    this.storage = storage
    this.child = spawn(c, a, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, PEERHOST_LOG: process.env.PEERHOST_LOG || 'warn', ...env } })
    this.stderr = ''
    this.child.stderr.on('data', (d) => { this.stderr = (this.stderr + d).slice(-(Number(process.env.RTC_STDERR_KEEP) || 4000)) })
    const got = []
    const rl = readline.createInterface({ input: this.child.stdout })
    this.ready = new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${name}: not ready in 60 s; stderr: ${this.stderr}`)), 60_000)
      this.child.once('exit', (code) => reject(new Error(`${name} exited with ${code}: ${this.stderr}`)))
      const done = () => { clearTimeout(timer); resolve(got) }
      if (lines === 0) setImmediate(done)
      rl.on('line', (l) => {
        got.push(l.trim())
        if (got.length === lines) done()
      })
    })
  }

  /** `peerhost status --json` of its store. */
  status () {
    return JSON.parse(execFileSync(PEERHOST, ['status', '--json', '--storage', this.storage], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }))
  }

  /** Its resident set (KiB), from /proc. */
  rssKb () {
    const m = /VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${this.child.pid}/status`, 'utf8'))
    return m ? Number(m[1]) : 0
  }

  stop (signal = 'SIGTERM') {
    const c = this.child
    if (c.exitCode !== null || c.signalCode !== null) return
    c.kill(signal)
    setTimeout(() => { if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL') }, 2000).unref()
  }
}

/** Run `peerhost ARGS --storage STORAGE` to completion; its stdout. */
function peerhost (storage, args) {
  return sh(PEERHOST, [...args, '--storage', storage], { env: { ...process.env, PEERHOST_LOG: 'warn' } })
}

/**
 * A store made by `peerhost` in `dir/store`: a community of `posts` posts (the default app
 * published if `web/app/dist` is built, else none) titled as the tests expect, and with `bulk`
 * a log of that many incompressible blocks of `blockSize` bytes (`peerhost log create` and
 * `log append`). Returns {storage, key, posts (the posts log's key, hex), titles (oldest
 * first), bulk (hex or null)}.
 */
function makeStore (dir, { posts = 50, bulk = 0, blockSize = 65_536 } = {}) {
  const storage = path.join(dir, 'store')
  const app = process.env.PEERHOST_APP || path.join(ROOT, 'web', 'app', 'dist')
  const withApp = fs.existsSync(path.join(app, 'index.html')) ? ['--app', app] : []
  const key = peerhost(storage, ['community', 'create', 'peerhost-demo', ...withApp])
  const titles = []
  for (let i = 1; i <= posts; i++) {
    const title = `Post ${i}: notes on hypercore, part ${i}`
    const body = 'Every block of this post reached your browser over a WebRTC data channel, checked against the signed head. '.repeat(1 + i % 3)
    peerhost(storage, ['post', 'peerhost-demo', '--title', title, '--body', body])
    titles.push(title)
  }
  let bulkKey = null
  if (bulk > 0) {
    const blocks = path.join(dir, 'bulk-blocks')
    fs.mkdirSync(blocks, { recursive: true })
    const files = []
    for (let i = 0; i < bulk; i++) {
      const f = path.join(blocks, String(i).padStart(5, '0'))
      fs.writeFileSync(f, crypto.randomBytes(blockSize))
      files.push(f)
    }
    bulkKey = toHex(peerhost(storage, ['log', 'create', 'bulk']))
    for (let i = 0; i < files.length; i += 256) peerhost(storage, ['log', 'append', 'bulk', ...files.slice(i, i + 256)])
    fs.rmSync(blocks, { recursive: true, force: true })
  }
  const info = JSON.parse(peerhost(storage, ['community', 'info', 'peerhost-demo', '--json']))
  return { storage, key, info, posts: toHex(info.logs.posts.key), titles, bulk: bulkKey }
}

/** A key as 64 hex characters (from z-base32, as `peerhost` prints keys). */
function toHex (z) {
  z = z.trim()
  if (/^[0-9a-f]{64}$/.test(z)) return z
  const alphabet = 'ybndrfg8ejkmcpqxot1uwisza345h769'
  let bits = 0
  let value = 0
  const out = []
  for (const ch of z) {
    const v = alphabet.indexOf(ch)
    if (v < 0) throw new Error(`not z-base32: ${z}`)
    value = (value << 5) | v
    bits += 5
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 255)
      bits -= 8
    }
  }
  return Buffer.from(out.slice(0, 32)).toString('hex')
}

/**
 * The instance: `peerhost serve` in `ns` over a copy of `store` (from makeStore) in
 * `dir/name`: TCP for mirrors and the gateway on `host` (https with `tls`), the bootstrap page
 * `page` (a directory), its STUN server on `host:stunPort`, health checks every second,
 * private addresses accepted (the lab's). Ready: {url, tcp, stun}.
 */
async function startServe (ns, host, dir, store, { tls = null, page, stunPort = 3478, name = 'instance', args = [] } = {}) {
  const storage = path.join(dir, name)
  fs.cpSync(store.storage, storage, { recursive: true })
  const t = tls ? ['--tls-cert', tls.cert, '--tls-key', tls.key] : []
  const d = new Daemon(name, storage, ['serve', '--no-dht', '--listen-tcp', `${host}:0`, '--http', `${host}:0`,
    '--bootstrap-page', page, ...t, '--stun', `${host}:${stunPort}`, '--http-interval', '1', '--allow-private-peers', ...args],
  { ns, lines: 3 })
  const [tcp, url, stun] = await d.ready
  d.url = url
  d.tcp = tcp
  d.stunUrl = stun
  return d
}

/**
 * A home peer: `peerhost mirror KEY --register URL` (no --http) in `ns`, replicating from the
 * instance's TCP address (or from a copy of `store` made beforehand with `copy`); the
 * instance's self-signed certificate trusted through PEERHOST_EXTRA_CA_CERTS.
 */
function startHome (ns, dir, store, instance, { tls = null, name = 'home', copy = true, mirrors = [] } = {}) {
  const storage = path.join(dir, name)
  if (copy) fs.cpSync(store.storage, storage, { recursive: true })
  const env = tls ? { PEERHOST_EXTRA_CA_CERTS: tls.cert } : {}
  // More logs to keep (e.g. the bench's bulk log): the config's `mirrors`.
  return new Daemon(name, storage, ['mirror', store.key, '--no-dht', '-q', '--peer', `tcp://${instance.tcp}`, '--register', instance.url],
    { ns, env, config: `mirrors = ${JSON.stringify(mirrors)}\n` })
}

/** Until daemon `home`'s status shows it listed (or not) by its instance; its webrtc status. */
async function waitHomeListed (home, { listed = true, ms = 30_000 } = {}) {
  const t0 = Date.now()
  let w = null
  while (Date.now() - t0 < ms) {
    if (home.child.exitCode !== null) throw new Error(`${home.name} exited: ${home.stderr}`)
    try {
      const st = home.status()
      w = (st.webrtc || [])[0] || null
      if (w && w.listed === listed) return { ...w, node: st.public_key, status: st }
    } catch {}
    await sleep(100)
  }
  throw new Error(`${home.name}: not ${listed ? 'listed' : 'delisted'} in ${ms} ms: ${JSON.stringify(w)}; stderr: ${home.stderr}`)
}

/** Wait until the instance lists home peer `peer` (it passed a health check), or throw. */
async function waitListed (peer, { listed = true, ms = 20_000 } = {}) {
  const t0 = Date.now()
  let st
  while (Date.now() - t0 < ms) {
    st = await peer.request({ op: 'status' })
    if (st.home && st.home.listed === listed) return st.home
    await sleep(100)
  }
  throw new Error(`the instance did not ${listed ? 'list' : 'delist'} the peer in ${ms} ms: ${JSON.stringify(st && st.home)}`)
}

/** A namespace with one interface at `addr` (and lo): the "loopback" lab. */
function makeNetns (name, addr) {
  removeNetns(name)
  sh('ip', ['netns', 'add', name])
  sh('ip', ['-n', name, 'link', 'set', 'lo', 'up'])
  // A veth pair with both ends inside (the kernel here has no dummy devices): eth0 holds the
  // address, eth1 (no address) swallows what is routed out.
  sh('ip', ['-n', name, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth1'])
  sh('ip', ['-n', name, 'addr', 'add', `${addr}/24`, 'dev', 'eth0'])
  sh('ip', ['-n', name, 'link', 'set', 'eth0', 'up'])
  sh('ip', ['-n', name, 'link', 'set', 'eth1', 'up'])
  // A default route into it: Chromium picks its "default" network by a routing lookup;
  // nothing can leave the namespace.
  sh('ip', ['-n', name, 'route', 'add', 'default', 'dev', 'eth0'])
}

function removeNetns (name) {
  if (!fs.existsSync(`/run/netns/${name}`)) return
  let pids = ''
  try { pids = sh('ip', ['netns', 'pids', name]) } catch {}
  for (const pid of pids.split(/\s+/).filter(Boolean)) { try { process.kill(Number(pid), 'SIGKILL') } catch {} }
  try { sh('ip', ['netns', 'del', name]) } catch {}
}

/** Chromium inside `ns` (a wrapper script as playwright's executable). */
async function launch (ns, tmp, extra = []) {
  const { chromium } = require('playwright-core')
  let exe = CHROMIUM
  if (ns) {
    exe = path.join(tmp, `chromium-${ns}.sh`)
    fs.writeFileSync(exe, `#!/bin/sh\nexec ip netns exec ${ns} ${CHROMIUM} "$@"\n`, { mode: 0o755 })
  }
  const browser = await chromium.launch({
    executablePath: exe,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync', ...extra]
  })
  return browser
}

/**
 * A fresh page on `url` (the instance). Offers go through the instance's `POST /v1/signal`
 * (`onOffer(sdp)` sees each, `onCandidate(line)` each trickled candidate). Chromium's network log: `requests()` lists every request the
 * page made ({method, url, path, status, bytes}: body + headers as Chromium counted them).
 */
async function openPage (browser, url, { onOffer, onCandidate } = {}) {
  // ignoreHTTPSErrors: for playwright's own requests (route.fetch); Chromium trusts the
  // instance's certificate by its flag (trustFlag).
  const context = await browser.newContext({ ignoreHTTPSErrors: true })
  const page = await context.newPage()
  const console = []
  page.on('console', (m) => console.push(`${m.type()}: ${m.text()}`))
  const log = []
  const record = (req, failed) => {
    if (!/^https?:/.test(req.url())) return
    const u = new URL(req.url())
    log.push(req.sizes().then((s) => s.responseBodySize + s.responseHeadersSize).catch(() => 0).then(async (bytes) => {
      const res = failed ? null : await req.response().catch(() => null)
      return { method: req.method(), url: req.url(), origin: u.origin, path: u.pathname, status: res ? res.status() : null, bytes }
    }))
  }
  page.on('requestfinished', (req) => record(req, false))
  page.on('requestfailed', (req) => record(req, true))
  page.on('request', (req) => {
    if (onOffer && req.method() === 'POST' && new URL(req.url()).pathname === '/v1/signal') {
      try { onOffer(JSON.parse(req.postData()).sdp) } catch {}
    }
    // A trickled candidate (protocol/webrtc.md §2.1), as an SDP line.
    if (onCandidate && req.method() === 'POST' && new URL(req.url()).pathname === '/v1/signal/candidate') {
      try { onCandidate('a=' + JSON.parse(req.postData()).candidate) } catch {}
    }
  })
  await page.goto(url)
  await page.waitForFunction(() => typeof window.rtcRun === 'function')
  const requests = () => Promise.all(log)
  return {
    context,
    page,
    console,
    close: () => context.close(),
    requests,
    /** Bytes the page fetched over HTTP(S) so far (all from the instance here). */
    httpBytes: async () => (await requests()).reduce((a, r) => a + r.bytes, 0)
  }
}

/** The candidate types an SDP carries, e.g. {host: 1, srflx: 1, mdns: 1}. */
function candidateTypes (sdp) {
  const out = {}
  for (const line of sdp.split(/\r?\n/)) {
    const m = /^a=candidate:\S+ \d+ (\S+) \d+ (\S+) \d+ typ (\S+)/.exec(line)
    if (!m) continue
    const kind = m[2].endsWith('.local') ? 'mdns' : m[3]
    out[kind] = (out[kind] || 0) + 1
  }
  return out
}

function tmpdir (prefix) {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix))
}

function median (xs) {
  const s = [...xs].sort((a, b) => a - b)
  return s.length === 0 ? null : s[Math.floor((s.length - 1) / 2)]
}

module.exports = {
  PEERHOST, Daemon, peerhost, waitFor, makeStore, toHex, startServe, startHome, waitHomeListed,
  ROOT, RTC_PEER, CHROMIUM, sleep, sh, inNs, JsonChild, startPeer, startStun, startInstance, waitListed, bundlePage, makeCert, trustFlag,
  makeNetns, removeNetns, launch, openPage, candidateTypes, tmpdir, median
}
