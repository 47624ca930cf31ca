'use strict'

// UDX throughput over loopback with udx-native 1.21.3.
//
//   node udx/bench.js js-js [MiB]   two udx-native streams in this process, one way
//   node udx/bench.js peer          a peer for crates/udx/examples/bench.rs (Rust <-> JS):
//                                   prints {"event":"ready","port":P}, then obeys one line
//     {"cmd":"recv","id":2,"remoteId":1,"port":RP}          count bytes until END, then end
//     {"cmd":"send","id":2,"remoteId":1,"port":RP,"len":N}  write N bytes, then end
//   and prints {"event":"done","bytes":B,"ms":T} (T from the first byte to END when receiving,
//   from the first write to the peer's END when sending).
//
// Timing is reported, never asserted.

const readline = require('readline')
const UDX = require('udx-native')

const CHUNK = Buffer.alloc(64 * 1024, 0xab)

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n')
}

async function send(stream, len) {
  let left = len
  while (left > 0) {
    const n = Math.min(left, CHUNK.length)
    left -= n
    if (!stream.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n))) {
      await new Promise((resolve) => stream.once('drain', resolve))
    }
  }
  stream.end()
}

function count(stream, onend) {
  let bytes = 0
  let first = 0
  stream.on('data', (d) => {
    if (first === 0) first = process.hrtime.bigint()
    bytes += d.length
  })
  stream.on('end', () => {
    const ms = first === 0 ? 0 : Number(process.hrtime.bigint() - first) / 1e6
    onend(bytes, ms)
  })
}

function report(label, bytes, ms) {
  const mib = bytes / (1 << 20)
  const s = ms / 1000
  out({ label, bytes, ms: Math.round(ms), MiBps: +(mib / s).toFixed(1), Mbitps: +((bytes * 8) / s / 1e6).toFixed(0) })
}

async function jsjs(mib) {
  const len = mib << 20
  const udx = new UDX()
  const a = udx.createSocket()
  const b = udx.createSocket()
  a.bind(0, '127.0.0.1')
  b.bind(0, '127.0.0.1')
  const sa = udx.createStream(1)
  const sb = udx.createStream(2)
  sa.connect(a, 2, b.address().port, '127.0.0.1')
  sb.connect(b, 1, a.address().port, '127.0.0.1')
  const start = process.hrtime.bigint()
  const done = new Promise((resolve) => count(sb, (bytes) => resolve(bytes)))
  sb.resume()
  sb.end()
  await send(sa, len)
  const bytes = await done
  report('js->js', bytes, Number(process.hrtime.bigint() - start) / 1e6)
  sa.destroy()
  sb.destroy()
  await a.close()
  await b.close()
}

function peer() {
  const udx = new UDX()
  const socket = udx.createSocket()
  socket.bind(0, '127.0.0.1')
  const rl = readline.createInterface({ input: process.stdin })
  rl.on('line', (line) => {
    const cmd = JSON.parse(line)
    const stream = udx.createStream(cmd.id)
    stream.connect(socket, cmd.remoteId, cmd.port, '127.0.0.1')
    stream.on('close', () => socket.close().then(() => process.exit(0)))
    if (cmd.cmd === 'recv') {
      count(stream, (bytes, ms) => {
        out({ event: 'done', bytes, ms })
        stream.end()
      })
    } else {
      const start = process.hrtime.bigint()
      stream.on('data', () => {})
      stream.on('end', () => {
        out({ event: 'done', bytes: cmd.len, ms: Number(process.hrtime.bigint() - start) / 1e6 })
      })
      send(stream, cmd.len)
    }
  })
  out({ event: 'ready', port: socket.address().port })
}

const mode = process.argv[2] || 'js-js'
if (mode === 'peer') peer()
else jsjs(Number(process.argv[3] || 100)).catch((err) => { console.error(err); process.exit(1) })
