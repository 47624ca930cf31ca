// Log benchmark for JS hypercore 11, the counterpart of `peerhost bench log`.
// Usage: node bench/log.js [--scale F]   (prints one JSON object per line)
// Same workloads, sizes and order as the Rust side (cli/src/bench.rs); see scripts/bench-log.sh.
'use strict'
const Hypercore = require('hypercore')
const fs = require('fs')
const os = require('os')
const path = require('path')

const scale = Number(argValue('--scale') || 1)
const N_SINGLE = Math.round(10000 * scale)
const N_BATCHES = Math.round(100 * scale)
const BATCH = 1000
const N_BIG = Math.round(1600 * scale)
const N_READS = Math.round(100000 * scale)

function argValue (name) {
  const i = process.argv.indexOf(name)
  return i === -1 ? null : process.argv[i + 1]
}

function block (i, size) {
  const b = Buffer.alloc(size, i & 0xff)
  b.writeUInt32LE(i >>> 0, 0)
  return b
}

function report (name, ops, bytes, ms) {
  console.log(JSON.stringify({ impl: 'js', name, ops, bytes, ms: Math.round(ms * 1000) / 1000 }))
}

async function timed (fn) {
  const t = process.hrtime.bigint()
  await fn()
  return Number(process.hrtime.bigint() - t) / 1e6
}

async function fresh (root, name) {
  const core = new Hypercore(path.join(root, name))
  await core.ready()
  return core
}

async function main () {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'peerhost-bench-js-'))
  try {
    let core = await fresh(root, 'single')
    let ms = await timed(async () => {
      for (let i = 0; i < N_SINGLE; i++) await core.append(block(i, 1024))
    })
    report('append 1 KiB one by one', N_SINGLE, N_SINGLE * 1024, ms)
    await core.close()

    core = await fresh(root, 'batch')
    ms = await timed(async () => {
      for (let b = 0; b < N_BATCHES; b++) {
        const batch = []
        for (let i = 0; i < BATCH; i++) batch.push(block(b * BATCH + i, 1024))
        await core.append(batch)
      }
    })
    report('append 1 KiB in batches of 1000', N_BATCHES * BATCH, N_BATCHES * BATCH * 1024, ms)

    const len = core.length
    let seed = 42
    const rand = () => { seed = (Math.imul(seed, 1103515245) + 12345) & 0x7fffffff; return seed }
    ms = await timed(async () => {
      for (let i = 0; i < N_READS; i++) {
        const idx = rand() % len
        const v = await core.get(idx)
        if (v.readUInt32LE(0) !== idx) throw new Error('bad block ' + idx)
      }
    })
    report('random reads of 1 KiB blocks', N_READS, N_READS * 1024, ms)
    await core.close()

    core = await fresh(root, 'big')
    ms = await timed(async () => {
      for (let i = 0; i < N_BIG; i++) await core.append(block(i, 65536))
    })
    report('append 64 KiB one by one', N_BIG, N_BIG * 65536, ms)
    await core.close()
  } finally {
    fs.rmSync(root, { recursive: true, force: true })
  }
}

main().catch((err) => { console.error(err); process.exit(1) })
