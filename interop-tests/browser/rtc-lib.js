'use strict'
// Helpers for the WebRTC browser tests (rtc.test.js, rtc-bench.js, rtc-netlab.js): the test
// peer (src/bin/rtc_peer.rs) and the page server as JSON-lines child processes, each inside
// a network namespace; Chromium (Debian's, through playwright-core) inside a namespace too,
// through a wrapper script; the test page bundled from web/src with web/'s esbuild.
//
// Why namespaces even for "loopback": Chromium gathers no candidates on the loopback
// interface, so the browser and the peer share a namespace with one veth interface
// (10.99.0.1) instead; Chromium's mDNS host candidates stay on (the peer connects through
// peer-reflexive and server-reflexive candidates, as it must in the wild).

const { spawn, execFileSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const readline = require('node:readline')

const ROOT = path.resolve(__dirname, '..', '..')
const TARGET = process.env.CARGO_TARGET_DIR || path.join(ROOT, 'target')
const RTC_PEER = process.env.RTC_PEER_BIN || path.join(TARGET, 'release', 'rtc_peer')
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium'

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

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
    this.child.stderr.on('data', (d) => { this.stderr = (this.stderr + d).slice(-4000) })
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

/** The test peer: `rtc_peer serve ARGS…` in `ns`. */
function startPeer (ns, args) {
  if (!fs.existsSync(RTC_PEER)) throw new Error(`${RTC_PEER} is missing: cargo build --release -p peerhost-interop-tests --bin rtc_peer`)
  return new JsonChild('rtc_peer', RTC_PEER, ['serve', ...args], { ns, env: { RUST_LOG: process.env.RUST_LOG || 'warn' } })
}

/** A STUN server: `rtc_peer stun ADDR` in `ns`. */
function startStun (ns, addr) {
  return new JsonChild('stun', RTC_PEER, ['stun', addr], { ns })
}

/** The page: bundle rtc-page.js into `dir` and serve it from `host` in `ns`. */
async function startPage (ns, host, dir) {
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
    '<main id="posts"></main><script type="module" src="/rtc-page.bundle.js"></script>\n')
  return new JsonChild('page', 'node', [path.join(__dirname, 'rtc-static.js'), `${host}:0`, dir], { ns })
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

/** A fresh page on `url` whose `peerhostSignal(offer)` goes to `peer`. */
async function openPage (browser, url, peer, { onOffer } = {}) {
  const context = await browser.newContext()
  const page = await context.newPage()
  const console = []
  page.on('console', (m) => console.push(`${m.type()}: ${m.text()}`))
  // Bytes from the page's origin (the instance), as Chromium counted them: bodies + headers.
  const counted = []
  page.on('requestfinished', (req) => {
    if (!/^https?:/.test(req.url())) return
    counted.push(req.sizes().then((s) => s.responseBodySize + s.responseHeadersSize).catch(() => 0))
  })
  await page.exposeFunction('peerhostSignal', async (sdp) => {
    if (onOffer) onOffer(sdp)
    const r = await peer.request({ op: 'offer', sdp })
    if (r.error) throw new Error(r.error)
    return r.answer
  })
  await page.goto(url)
  await page.waitForFunction(() => typeof window.rtcRun === 'function')
  return {
    context,
    page,
    console,
    close: () => context.close(),
    /** Bytes the page fetched over HTTP so far (the page server's share). */
    httpBytes: async () => (await Promise.all(counted)).reduce((a, b) => a + b, 0)
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
  ROOT, RTC_PEER, CHROMIUM, sleep, sh, inNs, JsonChild, startPeer, startStun, startPage,
  makeNetns, removeNetns, launch, openPage, candidateTypes, tmpdir, median
}
