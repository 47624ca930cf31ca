'use strict'

// A udx-native peer driven over stdin/stdout, one JSON object per line, for the live tests in
// interop-tests/tests/udx.rs. It binds one socket on 127.0.0.1 and prints
//   {"event":"ready","port":P}
// then obeys commands:
//   {"cmd":"stream","id":2,"remoteId":1,"port":RP}   createStream + connect (no port: firewall
//                                                      that connects to the first source)
//   {"cmd":"write","id":2,"len":N,"seed":S,"end":true} write pattern bytes, then end()
//   {"cmd":"end","id":2}            {"cmd":"destroy","id":2}
//   {"cmd":"send","id":2,"data":HEX}                  unreliable stream message
//   {"cmd":"dgram","port":RP,"data":HEX}              raw datagram on the same socket
//   {"cmd":"info","id":2}           {"cmd":"exit"}
// and reports events: data totals and SHA-256 at 'end', 'close' with the error code, stream
// 'message's, and socket 'message's (non-UDX datagrams) as {"event":"dgram",...}.

const crypto = require('crypto')
const readline = require('readline')
const UDX = require('udx-native')

const udx = new UDX()
const socket = udx.createSocket()
socket.bind(0, '127.0.0.1')

const streams = new Map()

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n')
}

// The test pattern shared with the Rust side: byte i = (i*31 + (i >> 10) + seed) & 0xff.
function pattern(len, seed) {
  const buf = Buffer.allocUnsafe(len)
  for (let i = 0; i < len; i++) buf[i] = (i * 31 + Math.floor(i / 1024) + seed) & 0xff
  return buf
}

socket.on('message', (buf, rinfo) => {
  out({ event: 'dgram', data: buf.toString('hex'), port: rinfo.port, host: rinfo.host })
})

function openStream(cmd) {
  const opts = {}
  if (!cmd.port) {
    opts.firewall = (sock, port, host) => {
      stream.connect(sock, cmd.remoteId, port, host)
      out({ event: 'connected', id: cmd.id, port, host })
      return false
    }
  }
  const stream = udx.createStream(cmd.id, opts)
  const st = { stream, hash: crypto.createHash('sha256'), received: 0 }
  streams.set(cmd.id, st)
  stream.on('data', (chunk) => {
    st.hash.update(chunk)
    st.received += chunk.length
  })
  stream.on('end', () => {
    out({ event: 'end', id: cmd.id, received: st.received, sha256: st.hash.digest('hex') })
  })
  stream.on('message', (buf) => out({ event: 'message', id: cmd.id, data: buf.toString('hex') }))
  stream.on('error', (err) => out({ event: 'error', id: cmd.id, code: err.code || String(err) }))
  stream.on('close', () => out({ event: 'close', id: cmd.id, mtu: stream.mtu }))
  if (cmd.port) stream.connect(socket, cmd.remoteId, cmd.port, '127.0.0.1')
  out({ event: 'stream', id: cmd.id })
}

async function write(cmd) {
  const { stream } = streams.get(cmd.id)
  const data = pattern(cmd.len, cmd.seed || 0)
  const sha256 = crypto.createHash('sha256').update(data).digest('hex')
  const chunk = 64 * 1024
  for (let i = 0; i < data.length; i += chunk) {
    if (!stream.write(data.subarray(i, i + chunk))) {
      await new Promise((resolve) => stream.once('drain', resolve))
    }
  }
  if (cmd.end) stream.end()
  out({ event: 'written', id: cmd.id, len: data.length, sha256 })
}

const rl = readline.createInterface({ input: process.stdin })
rl.on('line', (line) => {
  const cmd = JSON.parse(line)
  switch (cmd.cmd) {
    case 'stream':
      openStream(cmd)
      break
    case 'write':
      write(cmd).catch((err) => out({ event: 'error', id: cmd.id, code: String(err) }))
      break
    case 'end':
      streams.get(cmd.id).stream.end()
      break
    case 'destroy':
      streams.get(cmd.id).stream.destroy()
      break
    case 'send':
      streams.get(cmd.id).stream.trySend(Buffer.from(cmd.data, 'hex'))
      break
    case 'dgram':
      socket.send(Buffer.from(cmd.data, 'hex'), cmd.port, '127.0.0.1')
      break
    case 'info': {
      const s = streams.get(cmd.id).stream
      out({ event: 'info', id: cmd.id, mtu: s.mtu, rtt: s.rtt, cwnd: s.cwnd, retransmits: s.retransmits })
      break
    }
    case 'exit':
      for (const { stream } of streams.values()) stream.destroy()
      socket.close().then(() => process.exit(0))
      break
  }
})
rl.on('close', () => process.exit(0))

out({ event: 'ready', port: socket.address().port })
