'use strict'

// Shared by the secret-stream interop scripts: package versions and small helpers.

const fs = require('fs')
const path = require('path')

const PACKAGES = [
  '@hyperswarm/secret-stream',
  'noise-handshake',
  'noise-curve-ed',
  'sodium-secretstream',
  'sodium-native',
  'hyperdht'
]

function versions () {
  const out = {}
  for (const name of PACKAGES) {
    const file = require.resolve(name + '/package.json', { paths: [path.join(__dirname, '..')] })
    out[name] = JSON.parse(fs.readFileSync(file, 'utf8')).version
  }
  return out
}

const hex = (b) => Buffer.from(b).toString('hex')

// Deterministic message bodies shared with the Rust side: byte i of a message of length n
// with index k is (i * 31 + n + k) & 255.
function body (n, k) {
  const b = Buffer.alloc(n)
  for (let i = 0; i < n; i++) b[i] = (i * 31 + n + k) & 255
  return b
}

module.exports = { versions, hex, body }
