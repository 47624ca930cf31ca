'use strict'

// Self-test of the fixtures and of verify-log.js:
//  * every core in fixtures/hypercore-<v>/cores.json is accepted by verify-log
//  * tampered copies (flipped block byte, flipped signature byte, flipped
//    tree-node hash, wrong key, block list differing from the log) are rejected
//  * the committed fixtures are exactly what generate.js produces now

const test = require('node:test')
const assert = require('node:assert')
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const c = require('compact-encoding')
const messages = require('hypercore/lib/messages')

const ROOT = path.join(__dirname, '..')
const VERSION = require('hypercore/package.json').version
const FIXTURES = path.join(ROOT, '..', 'fixtures')
const DIR = path.join(FIXTURES, 'hypercore-' + VERSION)
const CORES_FILE = path.join(DIR, 'cores.json')
const VERIFY = path.join(ROOT, 'verify-log.js')

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'peerhost-selftest-'))
test.after(() => fs.rmSync(tmp, { recursive: true, force: true }))

function loadCores() {
  assert.ok(fs.existsSync(CORES_FILE), CORES_FILE + ' is missing: run `npm run fixtures`')
  return JSON.parse(fs.readFileSync(CORES_FILE, 'utf8')).cores
}

function runVerify(doc, extra = []) {
  const file = path.join(tmp, 'doc-' + Math.random().toString(16).slice(2) + '.json')
  fs.writeFileSync(file, JSON.stringify(doc))
  const r = spawnSync(process.execPath, [VERIFY, file, ...extra], { encoding: 'utf8' })
  fs.rmSync(file)
  return r
}

function clone(x) {
  return JSON.parse(JSON.stringify(x))
}

// rewrite proof i's data message; drops the redundant "decoded" so that only
// hypercore's own verification can notice the change
function editData(doc, i, fn) {
  const pr = doc.proofs[i]
  const data = c.decode(messages.wire.data, Buffer.from(pr.data, 'hex'))
  fn(data)
  pr.data = c.encode(messages.wire.data, data).toString('hex')
  delete pr.decoded
}

function flipByte(buf, i) {
  const b = Buffer.from(buf)
  b[i] ^= 0x01
  return b
}

const HYPERCORE_REJECTION = /INVALID_(CHECKSUM|SIGNATURE|PROOF|OPERATION)/

const cores = loadCores()

for (const core of cores) {
  test(core.name + ': verify-log accepts the fixture', () => {
    const r = runVerify(core)
    assert.strictEqual(r.status, 0, r.stderr + r.stdout)
    assert.strictEqual(r.stdout.trim(), 'ok: ' + core.proofs.length + ' proofs verified, length ' + core.length)
  })

  test(core.name + ': --expect-reject fails on the untampered fixture', () => {
    const r = runVerify(core, ['--expect-reject'])
    assert.strictEqual(r.status, 1, r.stderr + r.stdout)
  })

  test(core.name + ': flipped block byte inside a proof is rejected', () => {
    const doc = clone(core)
    const i = doc.proofs.findIndex((p) => p.decoded.block && p.decoded.block.value.length > 0)
    editData(doc, i, (d) => {
      d.block.value = flipByte(d.block.value, 0)
    })
    const r = runVerify(doc, ['--expect-reject'])
    assert.strictEqual(r.status, 0, r.stderr + r.stdout)
    assert.match(r.stdout, HYPERCORE_REJECTION)

    const plain = runVerify(doc)
    assert.strictEqual(plain.status, 1, plain.stderr + plain.stdout)
    assert.match(plain.stderr, /^rejected: proof #\d+/)
  })

  test(core.name + ': flipped signature byte is rejected', () => {
    const doc = clone(core)
    const i = doc.proofs.findIndex((p) => p.decoded.upgrade !== null)
    editData(doc, i, (d) => {
      // multisig: 01 00 <64-byte ed25519 signature> 00 00; compat: raw 64 bytes
      d.upgrade.signature = flipByte(d.upgrade.signature, 10)
    })
    const r = runVerify(doc, ['--expect-reject'])
    assert.strictEqual(r.status, 0, r.stderr + r.stdout)
    assert.match(r.stdout, /INVALID_SIGNATURE/)
  })

  test(core.name + ': flipped tree-node hash is rejected', () => {
    const doc = clone(core)
    const i = doc.proofs.findIndex((p) => p.decoded.block && p.decoded.block.nodes.length > 0)
    editData(doc, i, (d) => {
      d.block.nodes[0].hash = flipByte(d.block.nodes[0].hash, 31)
    })
    const r = runVerify(doc, ['--expect-reject'])
    assert.strictEqual(r.status, 0, r.stderr + r.stdout)
    assert.match(r.stdout, HYPERCORE_REJECTION)
  })

  test(core.name + ': a different key is rejected', () => {
    const doc = clone(core)
    const key = flipByte(Buffer.from(doc.key, 'hex'), 0)
    doc.key = key.toString('hex')
    delete doc.discoveryKey
    if (doc.compat) delete doc.publicKey
    const r = runVerify(doc, ['--expect-reject'])
    assert.strictEqual(r.status, 0, r.stderr + r.stdout)
  })

  test(core.name + ': a block list differing from the verified log is rejected', () => {
    const doc = clone(core)
    let index = -1
    for (const p of doc.proofs) {
      if (p.decoded.block && p.decoded.block.value.length > 0 && p.atFork === doc.fork) index = p.decoded.block.index
    }
    assert.ok(index >= 0)
    doc.blocks[index] = flipByte(Buffer.from(doc.blocks[index], 'hex'), 0).toString('hex')
    const r = runVerify(doc, ['--expect-reject'])
    assert.strictEqual(r.status, 0, r.stderr + r.stdout)
    assert.match(r.stdout, new RegExp('block ' + index + ' differs from document'))
  })
}

test('committed fixtures equal a fresh run of generate.js', () => {
  const out = path.join(tmp, 'regen')
  const r = spawnSync(process.execPath, [path.join(ROOT, 'fixtures', 'generate.js'), out], { encoding: 'utf8' })
  assert.strictEqual(r.status, 0, r.stderr + r.stdout)
  const files = fs.readdirSync(path.join(out, 'hypercore-' + VERSION)).sort()
  assert.deepStrictEqual(files, ['cores.json', 'crypto.json', 'manifests.json'])
  for (const f of files) {
    const fresh = fs.readFileSync(path.join(out, 'hypercore-' + VERSION, f))
    const committed = fs.readFileSync(path.join(DIR, f))
    assert.ok(fresh.equals(committed), f + ' differs from a fresh run: run `npm run fixtures`')
  }
  const readme = fs.readFileSync(path.join(out, 'README.md'))
  assert.ok(readme.equals(fs.readFileSync(path.join(FIXTURES, 'README.md'))), 'README.md differs: run `npm run fixtures`')
})
