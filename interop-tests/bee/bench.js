'use strict'

// The Hyperbee benchmark, JS side: hyperbee 2.27.3 on hypercore 11.39.5 (pinned), the same
// workloads, keys and values as crates/bee/examples/bench.rs (see there). One JSON line per
// measurement. Run by interop-tests/bee/bench.sh.
//
//   node bee/bench.js [--entries N] [--single N] [--lookups N] [--walks N]

const fs = require('fs')
const os = require('os')
const path = require('path')
const b4a = require('b4a')
const Hypercore = require('hypercore')
const Hyperbee = require('hyperbee')

function arg(name, dflt) {
  const i = process.argv.indexOf('--' + name)
  return i === -1 ? dflt : Number(process.argv[i + 1])
}

const ENTRIES = arg('entries', 1000000)
const SINGLE = arg('single', 10000)
const LOOKUPS = arg('lookups', 10000)
const WALKS = arg('walks', 1000)

function fmix32(x) {
  x >>>= 0
  x ^= x >>> 16
  x = Math.imul(x, 0x85ebca6b) >>> 0
  x ^= x >>> 13
  x = Math.imul(x, 0xc2b2ae35) >>> 0
  x ^= x >>> 16
  return x >>> 0
}

const hex8 = (n) => (n >>> 0).toString(16).padStart(8, '0')
const timeKey = (i) => b4a.from('t/' + String(i).padStart(12, '0'))
const randomKey = (i) => b4a.from('c/' + hex8(fmix32(i)) + hex8(fmix32((i ^ 0x9e3779b9) >>> 0)))
const value = (i) => b4a.from(hex8(fmix32((i + 1) >>> 0)) + hex8(i))

const IMPL = 'js'
const emit = (name, ms, ops, extra = {}) => process.stdout.write(JSON.stringify({ impl: IMPL, name, ms, ops, ...extra }) + '\n')

function dirBytes(p) {
  let n = 0
  for (const e of fs.readdirSync(p, { withFileTypes: true })) {
    const f = path.join(p, e.name)
    n += e.isDirectory() ? dirBytes(f) : fs.statSync(f).size
  }
  return n
}

async function build(bee, n, key) {
  for (let start = 0; start < n; start += 1000) {
    const b = bee.batch()
    for (let i = start; i < Math.min(start + 1000, n); i++) await b.put(key(i), value(i))
    await b.flush()
  }
}

function percentile(sorted, p) {
  return sorted[Math.round((sorted.length - 1) * p)]
}

async function main() {
  const dirs = []
  const tmp = () => {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), 'peerhost-bee-bench-js-'))
    dirs.push(d)
    return d
  }
  process.on('exit', () => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })))

  let randomDir = null
  for (const [name, key] of [['build, time order', timeKey], ['build, random order', randomKey]]) {
    const dir = tmp()
    const core = new Hypercore(dir)
    const bee = new Hyperbee(core)
    await bee.ready()
    const t = process.hrtime.bigint()
    await build(bee, ENTRIES, key)
    const ms = Number(process.hrtime.bigint() - t) / 1e6
    const bytes = core.byteLength
    const blocks = core.length
    await bee.close()
    emit(name, ms, ENTRIES, { bytes, blocks, disk: dirBytes(dir) })
    if (key === randomKey) randomDir = dir
  }

  {
    const core = new Hypercore(randomDir)
    const bee = new Hyperbee(core)
    await bee.ready()
    const lat = []
    const t = process.hrtime.bigint()
    for (let q = 0; q < LOOKUPS; q++) {
      const i = fmix32((q ^ 0x01234567) >>> 0) % ENTRIES
      const t1 = process.hrtime.bigint()
      const e = await bee.get(randomKey(i))
      lat.push(Number(process.hrtime.bigint() - t1) / 1e3)
      if (!e || !b4a.equals(e.value, value(i))) throw new Error('wrong value for ' + i)
    }
    const ms = Number(process.hrtime.bigint() - t) / 1e6
    lat.sort((a, b) => a - b)
    emit('get (random key, reopened)', ms, LOOKUPS, { p50_us: percentile(lat, 0.5), p99_us: percentile(lat, 0.99) })

    const t2 = process.hrtime.bigint()
    let n = 0
    for (let q = 0; q < WALKS; q++) {
      const start = randomKey(fmix32(q) % ENTRIES)
      for await (const e of bee.createReadStream({ gte: start, limit: 50 })) n += e ? 1 : 0
    }
    emit('walk 50 entries', Number(process.hrtime.bigint() - t2) / 1e6, WALKS, { entries: n })
    await bee.close()
  }

  {
    const core = new Hypercore(tmp())
    const bee = new Hyperbee(core)
    await bee.ready()
    const t = process.hrtime.bigint()
    for (let i = 0; i < SINGLE; i++) await bee.put(randomKey(i), value(i))
    emit('put one by one', Number(process.hrtime.bigint() - t) / 1e6, SINGLE)
    await bee.close()
  }
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
