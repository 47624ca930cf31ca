#!/usr/bin/env node
// probe.js - classify the NAT in front of this host (node dgram only, no packages).
//
//   probe.js server IP_A IP_B       answer probes on IP_A:3478, IP_A:3479 and IP_B:3478
//   probe.js classify IP_A IP_B     print one JSON line: {mapping, filtering, type, ...}
//
// Mapping: one socket asks all three server endpoints which address they see. The same
// address everywhere is endpoint-independent mapping (EIM), anything else endpoint-dependent
// (EDM). Filtering: a fresh socket talks to IP_A:3478 only, then asks it to have IP_B:3478
// (another address) and IP_A:3479 (same address, other port) send to the mapped address.
// IP_B getting through is endpoint-independent filtering (EIF), only IP_A:3479 address-dependent
// (ADF), neither address-and-port-dependent (APDF). The NAT type follows:
// EIM+EIF full, EIM+ADF restricted, EIM+APDF port, EDM symmetric.
'use strict'
const dgram = require('dgram')

const PORT_A = 3478
const PORT_B = 3479
const WAIT_MS = 400

function server (ipA, ipB) {
  const ends = [[ipA, PORT_A], [ipA, PORT_B], [ipB, PORT_A]]
  const socks = ends.map(([host, port]) => {
    const s = dgram.createSocket('udp4')
    s.bind(port, host)
    return s
  })
  const byName = { 'a:a': socks[0], 'a:b': socks[1], 'b:a': socks[2] }
  socks.forEach((s) => {
    s.on('message', (buf, rinfo) => {
      let m
      try { m = JSON.parse(buf) } catch { return }
      const seen = `${rinfo.address}:${rinfo.port}`
      if (m.op === 'map') {
        s.send(JSON.stringify({ op: 'seen', nonce: m.nonce, seen }), rinfo.port, rinfo.address)
      } else if (m.op === 'ask' && byName[m.from]) {
        byName[m.from].send(JSON.stringify({ op: 'hello', nonce: m.nonce }), rinfo.port, rinfo.address)
      }
    })
  })
  console.log(JSON.stringify({ event: 'listening', ends: ends.map((e) => e.join(':')) }))
}

function open () {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4')
    s.bind(0, () => resolve(s))
  })
}

// Send `msg` to `to` every 100 ms until a reply with the same nonce arrives or `ms` pass.
function exchange (sock, msg, to, ms) {
  const nonce = Math.random().toString(36).slice(2)
  return new Promise((resolve) => {
    const send = () => sock.send(JSON.stringify({ ...msg, nonce }), to[1], to[0])
    const onmsg = (buf) => {
      let m
      try { m = JSON.parse(buf) } catch { return }
      if (m.nonce === nonce) done(m)
    }
    const timer = setInterval(send, 100)
    const guard = setTimeout(() => done(null), ms)
    function done (m) {
      clearInterval(timer)
      clearTimeout(guard)
      sock.off('message', onmsg)
      resolve(m)
    }
    sock.on('message', onmsg)
    send()
  })
}

async function classify (ipA, ipB) {
  const out = { mapping: null, filtering: null, type: null, seen: [] }
  const s1 = await open()
  for (const to of [[ipA, PORT_A], [ipA, PORT_B], [ipB, PORT_A]]) {
    const r = await exchange(s1, { op: 'map' }, to, 2000)
    if (!r) {
      out.error = `no answer from ${to.join(':')}`
      console.log(JSON.stringify(out))
      process.exit(1)
    }
    out.seen.push(r.seen)
  }
  s1.close()
  out.mapping = new Set(out.seen).size === 1 ? 'EIM' : 'EDM'

  const s2 = await open()
  const a = [ipA, PORT_A]
  await exchange(s2, { op: 'map' }, a, 2000)
  // Only a "hello" from another endpoint counts: the ask goes to A:a and nothing else.
  const other = await exchange(s2, { op: 'ask', from: 'b:a' }, a, WAIT_MS)
  const port = other ? true : !!(await exchange(s2, { op: 'ask', from: 'a:b' }, a, WAIT_MS))
  s2.close()
  out.filtering = other ? 'EIF' : port ? 'ADF' : 'APDF'

  if (out.mapping === 'EDM') out.type = 'symmetric'
  else out.type = { EIF: 'full', ADF: 'restricted', APDF: 'port' }[out.filtering]
  console.log(JSON.stringify(out))
}

const [cmd, ipA, ipB] = process.argv.slice(2)
if (cmd === 'server' && ipA && ipB) server(ipA, ipB)
else if (cmd === 'classify' && ipA && ipB) classify(ipA, ipB)
else {
  console.error('usage: probe.js server|classify IP_A IP_B')
  process.exit(2)
}
