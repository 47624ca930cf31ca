// Opening many logs at once with JS corestore 7: the counterpart of the store's open_bench
// (crates/store/examples/open_bench.rs), run by scripts/bench-open.sh. Prints one JSON line.
//
//   node bench/open.js make DIR [--logs N] [--blocks B] [--size BYTES]
//   node bench/open.js open DIR
//
// `make` writes N cores of B blocks of BYTES bytes into a corestore at DIR (one append of the
// B blocks each; corestore's named cores, so writable: JS has no way to write a replica
// without a peer) and their keys to DIR.keys. `open`, in a fresh process, opens the corestore,
// gets every core by key and waits until all are ready, keeping them all open, then reads the
// last block of each; it reports the times, the RSS at each step, the open file descriptors and
// the store's files and disk use.
'use strict'
const fs = require('fs')
const path = require('path')
const Corestore = require('corestore')

function flag (name, def) {
  const i = process.argv.indexOf(name)
  return i === -1 ? def : Number(process.argv[i + 1])
}

const rss = () => process.memoryUsage().rss
const fds = () => fs.readdirSync('/proc/self/fd').length
const ms = (t) => Math.round(Number(process.hrtime.bigint() - t) / 1e5) / 10

// Files and directories under `dir` (not counting `dir`), and their allocated bytes.
function tally (dir) {
  let files = 0
  let dirs = 0
  let bytes = 0
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name)
    const st = fs.lstatSync(p)
    bytes += st.blocks * 512
    if (e.isDirectory()) {
      dirs++
      const t = tally(p)
      files += t.files
      dirs += t.dirs
      bytes += t.bytes
    } else {
      files++
    }
  }
  return { files, dirs, bytes }
}

async function make (dir, logs, blocks, size) {
  const store = new Corestore(dir)
  await store.ready()
  const t0 = process.hrtime.bigint()
  const keys = new Array(logs)
  // A few at a time: the same work as one by one, with the I/O overlapped.
  const parallel = 32
  let next = 0
  async function worker () {
    while (next < logs) {
      const i = next++
      const core = store.get({ name: 'log-' + i })
      await core.ready()
      const values = []
      for (let b = 0; b < blocks; b++) {
        const v = Buffer.alloc(size, '.')
        v.write(`log ${i} block ${b} `)
        values.push(v)
      }
      await core.append(values)
      keys[i] = core.key.toString('hex')
      await core.close()
    }
  }
  await Promise.all(Array.from({ length: parallel }, worker))
  await store.close()
  fs.writeFileSync(dir + '.keys', keys.join('\n') + '\n')
  const t = tally(dir)
  console.log(JSON.stringify({ event: 'made', impl: 'js', logs, blocks, size, ms: ms(t0), files: t.files, dirs: t.dirs, disk: t.bytes }))
}

async function open (dir) {
  const rssStart = rss()
  const keys = fs.readFileSync(dir + '.keys', 'utf8').split('\n').filter(Boolean)
  const t0 = process.hrtime.bigint()
  const store = new Corestore(dir)
  await store.ready()
  const storeMs = ms(t0)
  const rssStore = rss()
  const t2 = process.hrtime.bigint()
  const cores = keys.map((k) => store.get({ key: Buffer.from(k, 'hex') }))
  await Promise.all(cores.map((c) => c.ready()))
  const openMs = ms(t2)
  const rssOpen = rss()
  const openFds = fds()
  const t3 = process.hrtime.bigint()
  const values = await Promise.all(cores.map((c) => c.get(c.length - 1)))
  const readMs = ms(t3)
  const readBytes = values.reduce((n, v) => n + (v ? v.length : 0), 0)
  const rssRead = rss()
  const t = tally(dir)
  console.log(JSON.stringify({
    event: 'opened',
    impl: 'js',
    logs: cores.length,
    store_ms: storeMs,
    keys_ms: 0,
    open_ms: openMs,
    read_ms: readMs,
    read_bytes: readBytes,
    rss_start: rssStart,
    rss_store: rssStore,
    rss_open: rssOpen,
    rss_read: rssRead,
    fds: openFds,
    files: t.files,
    dirs: t.dirs,
    disk: t.bytes
  }))
  await store.close()
}

async function main () {
  const [cmd, dir] = process.argv.slice(2)
  if (cmd === 'make') await make(dir, flag('--logs', 40000), flag('--blocks', 20), flag('--size', 1024))
  else if (cmd === 'open') await open(dir)
  else throw new Error('usage: open.js make|open DIR [--logs N] [--blocks B] [--size BYTES]')
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
