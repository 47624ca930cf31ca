'use strict'

// A plain hypercore 11 reader of a peerhost posts log, decoding the blocks with protobufjs and
// protocol/feed.proto (no peerhost code): the format test of interop-tests/tests/community.rs.
//
//   node community/read-posts.js PORT POSTS_KEY_HEX N
//
// Connects to 127.0.0.1:PORT (a `peerhost serve --listen-tcp`) with @hyperswarm/secret-stream,
// replicates one Hypercore (not a corestore), downloads the last N blocks and prints one JSON
// line: {length, entries: [{index, version, kind, id, title, body, publishedUs} | {index, error}]},
// newest last.

const net = require('net')
const os = require('os')
const fs = require('fs')
const path = require('path')
const protobuf = require('protobufjs')
const Hypercore = require('hypercore')
const NoiseSecretStream = require('@hyperswarm/secret-stream')

const fail = (e) => {
  process.stdout.write(JSON.stringify({ error: String(e && e.stack ? e.stack : e) }) + '\n')
  process.exit(1)
}
process.on('unhandledRejection', fail)
setTimeout(() => fail('overall timeout'), 120000).unref()

async function main () {
  const [port, keyHex, n] = process.argv.slice(2)
  const root = protobuf.loadSync(path.join(__dirname, '..', '..', 'protocol', 'feed.proto'))
  const Entry = root.lookupType('peerhost.feed.Entry')
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'peerhost-read-posts-'))
  // Removed on any exit; SIGTERM (how the tests stop a peer) exits too.
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }))
  process.on('SIGTERM', () => process.exit(0))
  const core = new Hypercore(dir, Buffer.from(keyHex, 'hex'))
  await core.ready()
  const socket = net.connect(Number(port), '127.0.0.1')
  const stream = new NoiseSecretStream(true, socket)
  core.replicate(stream)
  await core.update({ wait: true })
  const entries = []
  const start = Math.max(0, core.length - Number(n))
  for (let i = start; i < core.length; i++) {
    const block = await core.get(i)
    try {
      const e = Entry.toObject(Entry.decode(block), { longs: String, defaults: true, oneofs: true })
      const item = e[e.kind] || {}
      entries.push({
        index: i,
        version: e.version,
        kind: e.kind || null,
        id: item.id || null,
        title: item.title || null,
        body: item.body || null,
        publishedUs: item.publishedUs || null
      })
    } catch (err) {
      entries.push({ index: i, error: err.message })
    }
  }
  process.stdout.write(JSON.stringify({ length: core.length, entries }) + '\n')
  socket.destroy()
  await core.close()
  process.exit(0)
}

main().catch(fail)
