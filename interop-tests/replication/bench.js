'use strict'

// The JS side of replication/bench.sh: hypercore 11 over @hyperswarm/secret-stream on loopback
// TCP, the same workloads as peerhost's `serve` / `follow --stats`.
//
//   node replication/bench.js writer BLOCKS SIZE     create a core of BLOCKS blocks of SIZE bytes,
//                                                   listen; prints {"key", "port"} and serves
//                                                   until killed
//   node replication/bench.js reader KEY PORT        download the whole core from PORT; prints
//                                                   {"blocks", "bytes", "ms", "peak_rss"}

const net = require('net')
const os = require('os')
const fs = require('fs')
const path = require('path')
const b4a = require('b4a')
const Hypercore = require('hypercore')
const NoiseSecretStream = require('@hyperswarm/secret-stream')

const [mode, a, b] = process.argv.slice(2)
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'peerhost-bench-js-'))
process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }))
process.on('SIGTERM', () => process.exit(0))

function block (i, size) {
  const buf = b4a.alloc(size, i & 255)
  buf.writeUInt32LE(i >>> 0, 0)
  return buf
}

async function writer (blocks, size) {
  const core = new Hypercore(path.join(dir, 'w'))
  await core.ready()
  for (let i = 0; i < blocks; i += 1000) {
    const batch = []
    for (let j = i; j < Math.min(blocks, i + 1000); j++) batch.push(block(j, size))
    await core.append(batch)
  }
  const server = net.createServer((socket) => {
    socket.setNoDelay(true)
    const s = new NoiseSecretStream(false, socket)
    s.on('error', () => {})
    core.replicate(s)
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  console.log(JSON.stringify({ key: b4a.toString(core.key, 'hex'), port: server.address().port }))
}

async function reader (key, port) {
  const started = Date.now()
  const core = new Hypercore(path.join(dir, 'r'), b4a.from(key, 'hex'))
  await core.ready()
  const socket = net.connect(Number(port), '127.0.0.1')
  socket.setNoDelay(true)
  const s = new NoiseSecretStream(true, socket)
  s.on('error', () => {})
  core.replicate(s)
  await new Promise((resolve) => core.once('peer-add', resolve))
  await core.update({ wait: true })
  await core.download({ start: 0, end: core.length }).done()
  const ms = Date.now() - started
  console.log(JSON.stringify({
    blocks: core.length,
    bytes: core.byteLength,
    ms,
    peak_rss: process.resourceUsage().maxRSS * 1024
  }))
  s.destroy()
  await core.close()
  process.exit(0)
}

if (mode === 'writer') writer(Number(a), Number(b))
else if (mode === 'reader') reader(a, b)
else throw new Error('mode: writer | reader')
