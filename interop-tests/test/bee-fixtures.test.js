'use strict'

// The committed Hyperbee vectors (fixtures/bee/) are exactly what bee/fixtures.js writes now
// with the pinned hyperbee, and every scenario's blocks start with a hyperbee header.

const test = require('node:test')
const assert = require('node:assert')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const { beeFixtures, VERSIONS } = require('../bee/fixtures')
const { Header } = require('hyperbee/lib/messages')

const FIXTURES = path.join(__dirname, '..', '..', 'fixtures', 'bee')
const DIR = 'hyperbee-' + VERSIONS.hyperbee

test('committed bee fixtures equal a fresh run of bee/fixtures.js', async () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'peerhost-bee-selftest-'))
  try {
    await beeFixtures(tmp)
    for (const f of [path.join(DIR, 'scenarios.json'), 'README.md']) {
      const fresh = fs.readFileSync(path.join(tmp, 'bee', f))
      const committed = fs.readFileSync(path.join(FIXTURES, f))
      assert.ok(fresh.equals(committed), 'fixtures/bee/' + f + ' differs from a fresh run: run `npm run fixtures`')
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true })
  }
})

test('every scenario is a hyperbee log', () => {
  const doc = JSON.parse(fs.readFileSync(path.join(FIXTURES, DIR, 'scenarios.json'), 'utf8'))
  assert.ok(doc.scenarios.length >= 10)
  for (const sc of doc.scenarios) {
    assert.strictEqual(Header.decode(Buffer.from(sc.blocks[0], 'hex')).protocol, 'hyperbee', sc.name)
    assert.strictEqual(sc.blocks.length, sc.lengths[sc.lengths.length - 1], sc.name)
  }
})
