'use strict'

// Frames written by the real protomux 3.12.1 in small scripted scenarios, as JSON on stdout:
// { versions, scenarios: { name: { out: [hex...], error } } }. Big frames are reported as
// { len, head, tail, sha256 } (first and last 64 bytes) instead of hex. interop-tests/tests/protomux.rs replays each scenario on the
// Rust mux and compares the bytes.
//
// The stream is a bare EventEmitter that records `write`s: protomux needs nothing more
// (it calls `stream.write(buffer)` and listens for 'data' / 'drain' / 'end' / 'close').

const { EventEmitter } = require('events')
const crypto = require('crypto')
const Protomux = require('protomux')
const c = require('compact-encoding')

function recorder() {
  const stream = new EventEmitter()
  stream.out = []
  stream.destroyed = false
  stream.error = null
  stream.write = (buf) => {
    stream.out.push(Buffer.from(buf))
    return true
  }
  stream.destroy = (err) => {
    stream.destroyed = true
    stream.error = err ? err.message : null
  }
  stream.end = () => {}
  stream.pause = () => {}
  stream.resume = () => {}
  return stream
}

function report(stream) {
  return {
    out: stream.out.map((b) =>
      b.byteLength > 4096
        ? {
            len: b.byteLength,
            head: b.subarray(0, 64).toString('hex'),
            tail: b.subarray(b.byteLength - 64).toString('hex'),
            sha256: crypto.createHash('sha256').update(b).digest('hex')
          }
        : b.toString('hex')
    ),
    error: stream.error
  }
}

const raw3 = [{ encoding: c.raw }, { encoding: c.raw }, { encoding: c.raw }]

function channel(mux, protocol, id, opts = {}) {
  return mux.createChannel({ protocol, id, handshake: c.raw, messages: raw3, unique: false, ...opts })
}

async function main() {
  const scenarios = {}

  {
    const s = recorder()
    const mux = new Protomux(s)
    channel(mux, 'hypercore/alpha', Buffer.alloc(32, 0xaa)).open(Buffer.from([1, 2]))
    scenarios.open_hypercore = report(s)
  }
  {
    const s = recorder()
    const mux = new Protomux(s)
    for (let i = 0; i < 300; i++) channel(mux, 'a', null).open(Buffer.alloc(0))
    s.out = s.out.slice(-1)
    scenarios.open_300 = report(s)
  }
  {
    const s = recorder()
    const mux = new Protomux(s)
    s.emit('data', Buffer.from('0001010170' + '00', 'hex')) // open from remote 1, "p", null
    scenarios.reject_unknown = report(s)
    void mux
  }
  {
    const s = recorder()
    const mux = new Protomux(s)
    const a = channel(mux, 'p', null)
    a.open(Buffer.alloc(0))
    a.close()
    scenarios.close = report(s)
  }
  {
    const s = recorder()
    const mux = new Protomux(s)
    const a = channel(mux, 'p', null)
    a.open(Buffer.alloc(0))
    a.messages[2].send(Buffer.from('hi'))
    scenarios.message = report(s)
  }
  {
    const s = recorder()
    const mux = new Protomux(s)
    mux.cork()
    const a = channel(mux, 'p', null)
    a.open(Buffer.alloc(0))
    a.messages[0].send(Buffer.from('x'))
    const b = channel(mux, 'p', Buffer.from('b'))
    b.open(Buffer.alloc(0))
    b.messages[1].send(Buffer.from('yz'))
    a.messages[0].send(Buffer.alloc(0))
    mux.uncork()
    scenarios.batch = report(s)
  }
  {
    // A batch carrying two opens nobody listens to: JS corks while it reads the batch and
    // answers with one batch of two rejects (after a microtask).
    const s = recorder()
    const mux = new Protomux(s)
    s.emit('data', Buffer.from('0000' + '00' + '05' + '0101017000' + '05' + '0102017100', 'hex'))
    await new Promise((resolve) => setImmediate(resolve))
    scenarios.batch_reply = report(s)
    void mux
  }
  {
    const s = recorder()
    const mux = new Protomux(s)
    mux.cork()
    const a = channel(mux, 'p', null)
    a.open(Buffer.alloc(0))
    for (let i = 0; i < 3; i++) a.messages[0].send(Buffer.alloc(4 * 1024 * 1024, i + 1))
    mux.uncork()
    scenarios.big_batch = report(s)
  }
  {
    const s = recorder()
    const mux = new Protomux(s)
    s.emit('data', Buffer.from('0001000170' + '00', 'hex')) // open with remote id 0
    scenarios.open_remote_zero = report(s)
    void mux
  }
  {
    // A reject for a local id we never opened.
    const s = recorder()
    const mux = new Protomux(s)
    s.emit('data', Buffer.from('000201', 'hex'))
    scenarios.reject_unknown_id = report(s)
    void mux
  }
  {
    // An open that skips a remote id.
    const s = recorder()
    const mux = new Protomux(s)
    s.emit('data', Buffer.from('0001020170' + '00', 'hex'))
    scenarios.open_gap = report(s)
    void mux
  }

  const versions = {}
  for (const name of ['protomux', 'compact-encoding']) {
    versions[name] = require(name + '/package.json').version
  }
  process.stdout.write(JSON.stringify({ versions, scenarios }, null, 1) + '\n')
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
