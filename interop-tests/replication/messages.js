'use strict'

// Prints hypercore 11.39.5's `wire.*` encodings of fixed messages as hex, one JSON object per
// line, for the snapshot tests in crates/replication/src/messages.rs (the hex there was
// produced by this script; interop-tests/tests/replication.rs re-runs it and compares).
//
//   node replication/messages.js

const c = require('compact-encoding')
const { wire } = require('hypercore/lib/messages')
const b4a = require('b4a')
const caps = require('hypercore/lib/caps')

const cap = b4a.alloc(32, 0xab)
const out = []
const add = (name, enc, m) => out.push({ name, hex: b4a.toString(c.encode(enc, m), 'hex') })

add('handshake', wire.handshake, { seeks: true, capability: cap })
add('handshake-noseek', wire.handshake, { seeks: false, capability: cap })
add('sync', wire.sync, { fork: 0, length: 3, remoteLength: 0, canUpgrade: true, uploading: true, downloading: true, hasManifest: true, allowPush: false })
add('sync-big', wire.sync, { fork: 2, length: 70000, remoteLength: 300, canUpgrade: false, uploading: true, downloading: false, hasManifest: false, allowPush: true })
add('cancel', wire.cancel, { request: 300 })
add('noData', wire.noData, { request: 7, reason: 0 })
add('noData-reason', wire.noData, { request: 7, reason: 2 })
add('want', wire.want, { start: 2097152, length: 2097152, any: false })
add('want-any', wire.want, { start: 0, length: 64, any: true })
add('unwant', wire.unwant, { start: 0, length: 2097152, any: false })
add('bitfield', wire.bitfield, { start: 32, bitfield: new Uint32Array([0xffffffff, 5]) })
add('range', wire.range, { drop: false, start: 0, length: 3 })
add('range-one', wire.range, { drop: false, start: 9, length: 1 })
add('range-drop', wire.range, { drop: true, start: 5, length: 300 })
add('extension', wire.extension, { name: 'ext', message: b4a.from('hi') })
add('extension-empty-name', wire.extension, { name: '', message: b4a.from('') })

// The capability for a fixed key and handshake hash, as both roles compute it.
const key = b4a.alloc(32, 1)
const hash = b4a.alloc(64, 2)
out.push({ name: 'cap-initiator', hex: b4a.toString(caps.replicate(true, key, hash), 'hex') })
out.push({ name: 'cap-responder', hex: b4a.toString(caps.replicate(false, key, hash), 'hex') })

for (const o of out) console.log(JSON.stringify(o))
