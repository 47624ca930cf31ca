'use strict'

// The JS side of scripts/bench-node.sh: corestore 7 mirroring many logs over one connection
// from the same source as the Rust side (`mirror_bench serve`), then idle, then serving a
// follower.
//
//   node community/bench-mirror.js PORT KEYS_FILE
//
// Prints JSON lines like mirror_bench: {event:'mirrored', ms, cpu_ms, peak_rss, rss}, then
// {event:'idle', rss, cpu_ms} after 5 s, then {event:'listening', port}; after a line on
// stdin (the follower is done): {event:'served', cpu_ms, peak_rss, rss}.

const net = require('net')
const os = require('os')
const fs = require('fs')
const path = require('path')
const readline = require('readline')
const Corestore = require('corestore')
const NoiseSecretStream = require('@hyperswarm/secret-stream')

const out = (o) => process.stdout.write(JSON.stringify(o) + '\n')
const cpuMs = () => { const u = process.cpuUsage(); return Math.round((u.user + u.system) / 1000) }
const peak = () => process.resourceUsage().maxRSS * 1024
const rss = () => process.memoryUsage().rss

async function main () {
  const [port, keysFile] = process.argv.slice(2)
  const keys = fs.readFileSync(keysFile, 'utf8').split('\n').filter(Boolean)
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'peerhost-bench-js-'))
  // Removed on any exit; SIGTERM (how the tests stop a peer) exits too.
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }))
  process.on('SIGTERM', () => process.exit(0))
  const store = new Corestore(dir)
  const t0 = Date.now()
  const c0 = cpuMs()
  const cores = keys.map((k) => store.get({ key: Buffer.from(k, 'hex') }))
  await Promise.all(cores.map((c) => c.ready()))
  const socket = net.connect(Number(port), '127.0.0.1')
  store.replicate(new NoiseSecretStream(true, socket))
  await Promise.all(cores.map(async (c) => {
    await c.update({ wait: true })
    await c.download({ start: 0, end: c.length }).done()
  }))
  out({ event: 'mirrored', logs: cores.length, ms: Date.now() - t0, cpu_ms: cpuMs() - c0, peak_rss: peak(), rss: rss() })
  const c1 = cpuMs()
  await new Promise((resolve) => setTimeout(resolve, 5000))
  out({ event: 'idle', rss: rss(), cpu_ms: cpuMs() - c1 })
  const server = net.createServer((s) => store.replicate(new NoiseSecretStream(false, s)))
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  out({ event: 'listening', port: server.address().port })
  const c2 = cpuMs()
  const rl = readline.createInterface({ input: process.stdin })
  rl.once('line', () => {
    out({ event: 'served', cpu_ms: cpuMs() - c2, peak_rss: peak(), rss: rss() })
    process.exit(0)
  })
}

main().catch((e) => { out({ event: 'error', message: String(e.stack || e) }); process.exit(1) })
