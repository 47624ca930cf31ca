'use strict'

// The community index build benchmark, JS side: replays the batches that
// crates/feed/examples/index_bench.rs wrote with `--ops FILE` (one JSON array of
// [keyhex, valuehex|null] per line, one line per batch) into hyperbee 2.27.3 on hypercore
// 11.39.5, timed. The same tree operations in the same batches: the same blocks.
//
//   node bee/index-bench.js FILE

const fs = require('fs')
const os = require('os')
const path = require('path')
const b4a = require('b4a')
const Hypercore = require('hypercore')
const Hyperbee = require('hyperbee')

async function main() {
  const batches = fs.readFileSync(process.argv[2], 'utf8').trim().split('\n').map(JSON.parse)
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'peerhost-index-bench-'))
  try {
    const core = new Hypercore(path.join(dir, 'index'))
    const bee = new Hyperbee(core)
    await bee.ready()
    const ops = batches.map((b) => b.map(([k, v]) => [b4a.from(k, 'hex'), v === null ? null : b4a.from(v, 'hex')]))
    const t = process.hrtime.bigint()
    for (const batch of ops) {
      const b = bee.batch()
      for (const [k, v] of batch) {
        if (v === null) await b.del(k)
        else await b.put(k, v)
      }
      await b.flush()
    }
    const ms = Number(process.hrtime.bigint() - t) / 1e6
    const ops_n = ops.reduce((n, b) => n + b.length, 0)
    console.log(JSON.stringify({ impl: 'js', ops: ops_n, ms, blocks: core.length, bytes: core.byteLength }))
    await bee.close()
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
