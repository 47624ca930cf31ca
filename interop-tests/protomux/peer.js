'use strict'

// A real protomux 3.12.1 peer, remote-controlled by interop-tests/tests/protomux.rs.
//
//   node protomux/peer.js PORT
//
// Connects to 127.0.0.1:PORT, frames the TCP stream into messages with a uint24le length
// prefix (what secret-stream would deliver: one message per 'data' event), and runs
// `new Protomux(framed)` on it. Commands arrive as JSON lines on stdin; events leave as JSON
// lines on stdout.
//
// Commands: open {name, protocol, id, handshake, aliases, unique} | send {name, type, hex} |
// send {name, type, len} (payload body(len, type)) | close {name} | cork | uncork |
// pair {protocol, id, mode: accept|reject|delay, ms, name, handshake} | unpair {protocol, id} |
// raw {hex} (a frame written around protomux) | sync {tag} | end.
// Events: ready | open {name, handshake} | message {name, type, len, ok, hex} |
// close {name, remote} | open-failed {name} | notify {protocol, id} | sync {tag} |
// stream-close {error}.

const net = require('net')
const readline = require('readline')
const { Duplex } = require('streamx')
const Protomux = require('protomux')
const c = require('compact-encoding')

const hex = (b) => (b === null || b === undefined ? null : Buffer.from(b).toString('hex'))
const unhex = (h) => (h === null || h === undefined ? null : Buffer.from(h, 'hex'))

// Deterministic message bodies shared with the Rust side: byte i of a body of length n with
// seed k is (i * 31 + n + k) & 255.
function body(n, k) {
  const b = Buffer.alloc(n)
  for (let i = 0; i < n; i++) b[i] = (i * 31 + n + k) & 255
  return b
}

function emit(ev) {
  process.stdout.write(JSON.stringify(ev) + '\n')
}

class Framed extends Duplex {
  constructor(socket) {
    super()
    this.socket = socket
    this.pending = Buffer.alloc(0)
    socket.on('data', (d) => this._onsocket(d))
    socket.on('end', () => this.push(null))
    socket.on('error', (err) => this.destroy(err))
    socket.on('close', () => this.destroy())
  }

  _onsocket(data) {
    this.pending = Buffer.concat([this.pending, data])
    while (this.pending.byteLength >= 3) {
      const n = this.pending.readUIntLE(0, 3)
      if (this.pending.byteLength < 3 + n) break
      const msg = this.pending.subarray(3, 3 + n)
      this.pending = this.pending.subarray(3 + n)
      this.push(msg)
    }
  }

  _write(data, cb) {
    const head = Buffer.alloc(3)
    head.writeUIntLE(data.byteLength, 0, 3)
    this.socket.write(Buffer.concat([head, data]))
    cb(null)
  }

  _final(cb) {
    this.socket.end()
    cb(null)
  }

  _destroy(cb) {
    this.socket.destroy()
    cb(null)
  }
}

const socket = net.connect(Number(process.argv[2]), '127.0.0.1')
const framed = new Framed(socket)
const mux = new Protomux(framed)
const channels = new Map()
let streamError = null

framed.on('error', (err) => {
  streamError = err.message
})
framed.on('close', () => {
  emit({ ev: 'stream-close', error: streamError })
  setTimeout(() => process.exit(0), 50)
})
socket.on('connect', () => emit({ ev: 'ready' }))

function createChannel(name, protocol, id, aliases = [], unique = true) {
  const messages = []
  for (let type = 0; type < 8; type++) {
    messages.push({
      encoding: c.raw,
      onmessage(payload) {
        const p = Buffer.from(payload)
        emit({
          ev: 'message',
          name,
          type,
          len: p.byteLength,
          ok: p.equals(body(p.byteLength, type)),
          hex: p.byteLength <= 64 ? hex(p) : null
        })
      }
    })
  }
  const ch = mux.createChannel({
    protocol,
    id,
    aliases,
    unique,
    handshake: c.raw,
    messages,
    onopen(handshake) {
      emit({ ev: 'open', name, handshake: hex(handshake) })
    },
    onclose(remote) {
      emit({ ev: 'close', name, remote })
    }
  })
  if (ch === null) {
    emit({ ev: 'open-failed', name })
    return null
  }
  channels.set(name, ch)
  return ch
}

function run(cmd) {
  switch (cmd.op) {
    case 'open': {
      const ch = createChannel(cmd.name, cmd.protocol, unhex(cmd.id), cmd.aliases, cmd.unique)
      if (ch) ch.open(unhex(cmd.handshake || ''))
      break
    }
    case 'send': {
      const payload = cmd.hex !== undefined ? unhex(cmd.hex) : body(cmd.len, cmd.type)
      channels.get(cmd.name).messages[cmd.type].send(payload)
      break
    }
    case 'close':
      channels.get(cmd.name).close()
      break
    case 'cork':
      mux.cork()
      break
    case 'uncork':
      mux.uncork()
      break
    case 'pair': {
      let n = 0
      mux.pair({ protocol: cmd.protocol, id: unhex(cmd.id) }, async (id) => {
        emit({ ev: 'notify', protocol: cmd.protocol, id: hex(id) })
        if (cmd.mode === 'reject') return
        if (cmd.mode === 'delay') await new Promise((resolve) => setTimeout(resolve, cmd.ms))
        const name = cmd.name + (n++ === 0 ? '' : '#' + n)
        const ch = createChannel(name, cmd.protocol, id)
        if (ch) ch.open(unhex(cmd.handshake || ''))
      })
      break
    }
    case 'unpair':
      mux.unpair({ protocol: cmd.protocol, id: unhex(cmd.id) })
      break
    case 'raw':
      framed.write(unhex(cmd.hex))
      break
    case 'sync':
      emit({ ev: 'sync', tag: cmd.tag })
      break
    case 'end':
      framed.end()
      break
    default:
      throw new Error('unknown command ' + cmd.op)
  }
}

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  if (line.trim() === '') return
  try {
    run(JSON.parse(line))
  } catch (err) {
    emit({ ev: 'command-error', error: err.message, line })
  }
})
process.stdin.on('end', () => {
  framed.destroy()
})
