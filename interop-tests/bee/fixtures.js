'use strict'

// Hyperbee test vectors for crates/bee: for each scenario, the operations, the blocks the real
// hyperbee (pinned in package-lock.json) appended for them, and the answers of lookups and
// range walks at several versions. Called by fixtures/generate.js; writes
//
//   <out>/bee/hyperbee-<version>/scenarios.json
//   <out>/bee/README.md
//
// Deterministic: keys and values come from a seeded xorshift generator, no timestamps, no
// paths; JSON with a fixed key order. The Rust test (crates/bee/tests/fixtures.rs) replays the
// operations with our encoder and compares every block, then asks the same questions.
//
// Operation records (bytes as lowercase hex):
//   {op: 'put', key, value, cas}   value null = put(key) with no value
//   {op: 'del', key, cas}
//   {op: 'batch', ops: [put|del ...]}   one bee.batch(), flushed
// cas is null or a rule name, the same function on both sides:
//   never         () => false
//   always        () => true
//   greater       the new value (empty if none) sorts after the old one (empty if none)
//   prev-even     the old entry's seq is even

const fs = require('fs')
const path = require('path')
const b4a = require('b4a')
const Hypercore = require('hypercore')
const Hyperbee = require('hyperbee')

const { hx, stableJson, makeTempDir, removeDir } = require('../lib/common')

const VERSIONS = {
  hyperbee: require('hyperbee/package.json').version,
  hypercore: require('hypercore/package.json').version
}

// ---------------------------------------------------------------- determinism

function xorshift(seed) {
  let x = seed >>> 0 || 1
  return () => {
    x ^= x << 13
    x >>>= 0
    x ^= x >>> 17
    x ^= x << 5
    x >>>= 0
    return x
  }
}

function randBytes(rnd, min, max) {
  const n = min + (rnd() % (max - min + 1))
  const b = b4a.alloc(n)
  for (let i = 0; i < n; i++) b[i] = rnd() & 0xff
  return b
}

const CAS = {
  never: () => false,
  always: () => true,
  greater: (prev, next) => b4a.compare(next.value || b4a.alloc(0), prev.value || b4a.alloc(0)) > 0,
  'prev-even': (prev) => prev.seq % 2 === 0
}

function unhexOrNull(s) {
  return s === null ? null : b4a.from(s, 'hex')
}

// An entry as one string: "SEQ KEY VALUE" (VALUE "-" for none).
function entryJson(e) {
  if (!e) return null
  return e.seq + ' ' + hx(e.key) + ' ' + (e.value === null ? '-' : hx(e.value))
}

// An operation as one string: "put KEY VALUE CAS" / "del KEY CAS" (VALUE and CAS "-" for none),
// or {batch: [strings]}; a sub-bee operation is {sub: i, op: string}.
function opString(o) {
  const cas = o.cas || '-'
  return o.op === 'put' ? 'put ' + o.key + ' ' + (o.value === null ? '-' : o.value) + ' ' + cas : 'del ' + o.key + ' ' + cas
}

function opJson(o) {
  if (o.op === 'batch') return { batch: o.ops.map(opString) }
  if (o.sub !== undefined && o.sub !== null) return { sub: o.sub, op: opString(o) }
  return opString(o)
}

// ---------------------------------------------------------------- running ops in JS

async function runOp(target, op) {
  const opts = op.cas ? { cas: CAS[op.cas] } : undefined
  const key = b4a.from(op.key, 'hex')
  if (op.op === 'put') {
    const value = unhexOrNull(op.value)
    if (value === null) await target.put(key, undefined, opts)
    else await target.put(key, value, opts)
  } else {
    await target.del(key, opts)
  }
}

async function apply(bee, op) {
  if (op.op !== 'batch') return runOp(bee, op)
  const b = bee.batch()
  for (const o of op.ops) await runOp(b, o)
  await b.flush()
}

// A walk's answer: the seqs of its entries, space-separated (an entry is its block's key and
// value, so the seq says it all; a sub-bee's keys are the block's keys without the prefix).
async function collect(ite) {
  const out = []
  for await (const e of ite) out.push(e.seq)
  return out.join(' ')
}

function rangeOpts(r) {
  const o = {}
  for (const k of ['gt', 'gte', 'lt', 'lte']) if (r[k] !== undefined) o[k] = b4a.from(r[k], 'hex')
  if (r.reverse) o.reverse = true
  if (r.limit !== undefined) o.limit = r.limit
  return o
}

// ---------------------------------------------------------------- scenarios

function keySpace(rnd, n, min, max) {
  const seen = new Set()
  const keys = []
  while (keys.length < n) {
    const k = randBytes(rnd, min, max)
    if (seen.has(hx(k))) continue
    seen.add(hx(k))
    keys.push(k)
  }
  return keys
}

function randomOps(rnd, keys, count, { delPct = 30, casPct = 0, nullPct = 0, sameValuePct = 0 } = {}) {
  const ops = []
  const last = new Map()
  for (let i = 0; i < count; i++) {
    const key = keys[rnd() % keys.length]
    const cas = rnd() % 100 < casPct ? Object.keys(CAS)[rnd() % 4] : null
    if (rnd() % 100 < delPct) {
      ops.push({ op: 'del', key: hx(key), cas })
      last.delete(hx(key))
      continue
    }
    let value
    if (last.has(hx(key)) && rnd() % 100 < sameValuePct) value = last.get(hx(key))
    else if (rnd() % 100 < nullPct) value = null
    else value = hx(randBytes(rnd, 0, 24))
    last.set(hx(key), value)
    ops.push({ op: 'put', key: hx(key), value, cas })
  }
  return ops
}

function batched(rnd, ops, sizes) {
  const out = []
  let i = 0
  let s = 0
  while (i < ops.length) {
    const n = sizes[s++ % sizes.length]
    if (n === 1) out.push(ops[i++])
    else {
      out.push({ op: 'batch', ops: ops.slice(i, i + n) })
      i += n
    }
  }
  return out
}

function ascii(s) {
  return hx(b4a.from(s))
}

function scenarios() {
  const list = []

  {
    const ops = []
    for (let i = 0; i < 150; i++) ops.push({ op: 'put', key: ascii('k' + String(i).padStart(4, '0')), value: ascii('v' + i), cas: null })
    list.push({ name: 'ascending', note: '150 puts in key order: leaf and root splits', options: {}, ops, seed: 1 })
  }
  {
    const ops = []
    for (let i = 149; i >= 0; i--) ops.push({ op: 'put', key: ascii('k' + String(i).padStart(4, '0')), value: ascii('v' + i), cas: null })
    list.push({ name: 'descending', note: '150 puts in reverse key order', options: {}, ops, seed: 2 })
  }
  {
    const rnd = xorshift(3)
    const keys = keySpace(rnd, 220, 1, 10)
    list.push({ name: 'random', note: '700 puts and deletes over 220 keys: overwrites, borrows, merges', options: {}, ops: randomOps(rnd, keys, 700), keys: keys.map(hx), seed: 3 })
  }
  {
    const rnd = xorshift(4)
    const keys = keySpace(rnd, 200, 1, 8)
    const ops = batched(rnd, randomOps(rnd, keys, 700, { delPct: 35 }), [1, 2, 5, 17, 64, 3, 1, 120, 9])
    list.push({ name: 'batches', note: 'the same kind of operations in batches of 1 to 120', options: {}, ops, keys: keys.map(hx), seed: 4 })
  }
  {
    const rnd = xorshift(5)
    const keys = keySpace(rnd, 120, 1, 6)
    const flat = randomOps(rnd, keys, 500, { delPct: 25, casPct: 40 })
    const ops = flat.slice(0, 200).concat(batched(rnd, flat.slice(200), [7, 1, 30, 2, 50]))
    list.push({ name: 'cas', note: 'compare-and-swap puts and deletes, alone and in batches (refused ones write nothing)', options: {}, ops, keys: keys.map(hx), seed: 5 })
  }
  {
    const rnd = xorshift(6)
    const keys = keySpace(rnd, 80, 1, 6)
    const flat = randomOps(rnd, keys, 400, { delPct: 15, sameValuePct: 50 })
    const ops = flat.slice(0, 200).concat(batched(rnd, flat.slice(200), [10, 1, 40]))
    list.push({ name: 'no-duplicates', note: 'alwaysDuplicate: false, puts of the same value again', options: { alwaysDuplicate: false }, ops, keys: keys.map(hx), seed: 6 })
  }
  {
    const rnd = xorshift(7)
    const keys = keySpace(rnd, 100, 2, 5)
    const ops = keys.map((k) => ({ op: 'put', key: hx(k), value: hx(randBytes(rnd, 1, 8)), cas: null }))
    const order = keys.slice()
    for (let i = order.length - 1; i > 0; i--) {
      const j = rnd() % (i + 1)
      const t = order[i]
      order[i] = order[j]
      order[j] = t
    }
    for (const k of order) ops.push({ op: 'del', key: hx(k), cas: null })
    ops.push({ op: 'del', key: hx(keys[0]), cas: null })
    for (const k of keys.slice(0, 12)) ops.push({ op: 'put', key: hx(k), value: ascii('again'), cas: null })
    list.push({ name: 'drain', note: '100 puts, every key deleted (the tree empties), a delete of nothing, 12 puts', options: {}, ops, keys: keys.map(hx), seed: 7 })
    const bops = batched(rnd, ops.slice(), [13, 1, 40, 7, 60, 2])
    list.push({ name: 'drain-batches', note: 'the drain scenario in batches', options: {}, ops: bops, keys: keys.map(hx), seed: 8 })
  }
  {
    const big = b4a.alloc(1500, 0xab)
    const ops = [
      { op: 'del', key: ascii('nothing'), cas: null },
      { op: 'put', key: '', value: ascii('empty key'), cas: null },
      { op: 'put', key: '00', value: '', cas: null },
      { op: 'put', key: 'ff', value: null, cas: null },
      { op: 'put', key: '00ff00', value: hx(big), cas: null },
      { op: 'put', key: ascii('no value'), value: null, cas: null },
      { op: 'put', key: ascii('no value'), value: null, cas: null },
      { op: 'del', key: 'ff', cas: null },
      { op: 'put', key: hx(b4a.alloc(200, 0x61)), value: ascii('long key'), cas: null }
    ]
    for (let i = 0; i < 20; i++) ops.push({ op: 'put', key: hx(b4a.from([i])), value: hx(b4a.from([i, i])), cas: null })
    list.push({ name: 'values', note: 'a delete on an empty log (writes the header), empty key and value, no value, 0x00/0xff keys, a 1500-byte value, a 200-byte key', options: {}, ops, keys: ['', '00', 'ff', '00ff00', ascii('no value'), ascii('nothing'), hx(b4a.alloc(200, 0x61))], seed: 9 })
  }
  {
    const ops = [
      { op: 'put', key: ascii('a'), value: ascii('1'), cas: null },
      { op: 'batch', ops: [{ op: 'put', key: ascii('b'), value: ascii('2'), cas: null }, { op: 'del', key: ascii('a'), cas: null }] }
    ]
    list.push({ name: 'metadata', note: 'a header with metadata (contentFeed and userData)', options: { metadata: { contentFeed: hx(b4a.alloc(32, 7)), userData: ascii('peerhost') } }, ops, keys: [ascii('a'), ascii('b')], seed: 10 })
  }
  {
    // Sub-bees: keys are written prefixed; the Rust side rebuilds them with Sub.
    const rnd = xorshift(11)
    const ops = []
    const subs = [
      { path: [{ name: ascii('posts'), sep: null }] },
      { path: [{ name: ascii('comments'), sep: null }, { name: ascii('by-post'), sep: ascii('/') }] },
      { path: [{ name: ascii('comments'), sep: null }, { name: ascii('by-post'), sep: ascii('/') }, { name: ascii('x'), sep: null }] }
    ]
    const subKeys = [['', '00', '01', 'ff'].concat(Array.from({ length: 30 }, (_, i) => ascii('p' + String(i).padStart(3, '0')))), Array.from({ length: 25 }, (_, i) => ascii('c' + i)), [ascii('z')]]
    for (let i = 0; i < 3; i++) {
      for (const k of subKeys[i]) ops.push({ op: 'put', sub: i, key: k, value: hx(randBytes(rnd, 1, 4)), cas: null })
    }
    ops.push({ op: 'put', sub: null, key: ascii('posts'), value: ascii('outside'), cas: null })
    ops.push({ op: 'put', sub: null, key: ascii('postsz'), value: ascii('outside'), cas: null })
    list.push({ name: 'subs', note: 'sub-bees (prefix ‖ 0x00, a "/" separator, a sub of a sub) beside plain keys', options: {}, ops, subs, seed: 11 })
  }
  return list
}

// ---------------------------------------------------------------- questions

function rangesFor(rnd, keys) {
  const pick = () => (keys.length && rnd() % 4 ? keys[rnd() % keys.length] : hx(randBytes(rnd, 0, 6)))
  const ranges = [{}, { reverse: true }, { limit: 5 }, { reverse: true, limit: 7 }, { limit: 0 }]
  for (let i = 0; i < 10; i++) {
    const r = {}
    const a = pick()
    const b = pick()
    const [lo, hi] = b4a.compare(b4a.from(a, 'hex'), b4a.from(b, 'hex')) <= 0 ? [a, b] : [b, a]
    if (rnd() % 3) r[rnd() % 2 ? 'gt' : 'gte'] = lo
    if (rnd() % 3) r[rnd() % 2 ? 'lt' : 'lte'] = hi
    if (rnd() % 2) r.reverse = true
    if (rnd() % 3 === 0) r.limit = 1 + (rnd() % 10)
    ranges.push(r)
  }
  // Both bounds on one side: gt wins over gte, lt over lte.
  if (keys.length > 3) ranges.push({ gte: keys[0], gt: keys[1], lte: keys[2], lt: keys[3] })
  return ranges
}

async function questions(bee, sc, versions) {
  const rnd = xorshift(1000 + sc.seed)
  const keys = sc.keys || Array.from(new Set(flatOps(sc.ops).map((o) => o.key))).sort()
  const out = []
  for (const version of versions) {
    const view = version === null ? bee : bee.checkout(version)
    const getKeys = sample(keys, 40).concat([ascii('absent'), ''])
    for (const k of getKeys) {
      const e = await view.get(b4a.from(k, 'hex'))
      out.push({ version, get: k, result: e ? entryJson(e) : null })
    }
    for (const r of rangesFor(rnd, keys)) {
      out.push({ version, range: r, result: await collect(view.createReadStream(rangeOpts(r))) })
    }
    if (view !== bee) await view.close()
  }
  return out
}

async function subQuestions(bee, sc) {
  const out = []
  const rnd = xorshift(2000)
  for (let i = 0; i < sc.subs.length; i++) {
    const sub = subOf(bee, sc.subs[i].path)
    const keys = flatOps(sc.ops).filter((o) => o.sub === i).map((o) => o.key)
    for (const k of keys.concat([ascii('absent')])) {
      out.push({ sub: i, get: k, result: entryJson(await sub.get(b4a.from(k, 'hex'))) })
    }
    for (const r of rangesFor(rnd, keys)) out.push({ sub: i, range: r, result: await collect(sub.createReadStream(rangeOpts(r))) })
  }
  return out
}

// Every `step`-th key, at most about n of them (deterministic).
function sample(keys, n) {
  const step = Math.max(1, Math.ceil(keys.length / n))
  return keys.filter((_, i) => i % step === 0)
}

function subOf(bee, pathList) {
  let s = bee
  for (const p of pathList) s = s.sub(b4a.from(p.name, 'hex'), p.sep === null ? {} : { sep: b4a.from(p.sep, 'hex') })
  return s
}

function flatOps(ops) {
  return ops.flatMap((o) => (o.op === 'batch' ? o.ops : [o]))
}

async function runScenario(tmp, sc, n) {
  const core = new Hypercore(path.join(tmp, 'bee-' + n))
  await core.ready()
  const opts = { extension: false }
  if (sc.options.alwaysDuplicate === false) opts.alwaysDuplicate = false
  if (sc.options.metadata) {
    opts.metadata = {
      contentFeed: b4a.from(sc.options.metadata.contentFeed, 'hex'),
      userData: b4a.from(sc.options.metadata.userData, 'hex')
    }
  }
  const bee = new Hyperbee(core, opts)
  await bee.ready()
  const lengths = []
  for (const op of sc.ops) {
    if (op.sub !== undefined && op.sub !== null) {
      await runOp(subOf(bee, sc.subs[op.sub].path), op)
    } else {
      await apply(bee, op)
    }
    lengths.push(core.length)
  }
  // Encode the prefixed keys the sub ops wrote, for the Rust side to compare.
  const blocks = []
  for (let i = 0; i < core.length; i++) blocks.push(hx(await core.get(i)))
  const versions = [null]
  for (const f of [0.25, 0.5, 0.75]) {
    const v = lengths[Math.floor(lengths.length * f)]
    if (v && !versions.includes(v)) versions.push(v)
  }
  const q = sc.subs ? (await questions(bee, sc, [null])).concat(await subQuestions(bee, sc)) : await questions(bee, sc, versions)
  await bee.close()
  const doc = { name: sc.name, note: sc.note, options: sc.options, ops: sc.ops.map(opJson) }
  if (sc.subs) doc.subs = sc.subs
  doc.lengths = lengths
  doc.blocks = blocks
  doc.questions = q
  return doc
}

async function beeFixtures(outRoot) {
  const dir = path.join(outRoot, 'bee', 'hyperbee-' + VERSIONS.hyperbee)
  fs.mkdirSync(dir, { recursive: true })
  const tmp = makeTempDir('peerhost-bee-fixtures-')
  try {
    const docs = []
    let n = 0
    for (const sc of scenarios()) docs.push(await runScenario(tmp, sc, n++))
    fs.writeFileSync(path.join(dir, 'scenarios.json'), stableJson({ versions: VERSIONS, scenarios: docs }))
    fs.writeFileSync(path.join(outRoot, 'bee', 'README.md'), readme(docs))
    return docs
  } finally {
    removeDir(tmp)
  }
}

function readme(docs) {
  const rows = docs
    .map((d) => '| `' + d.name + '` | ' + d.ops.reduce((n, o) => n + (o.batch ? o.batch.length : 1), 0) + ' | ' + d.blocks.length + ' | ' + d.questions.length + ' | ' + d.note + ' |')
    .join('\n')
  return `# Hyperbee vectors

**Generated: do not edit.** Written by \`interop-tests/bee/fixtures.js\` (run by
\`interop-tests/fixtures/generate.js\`) with the real \`hyperbee\` ${VERSIONS.hyperbee} over
\`hypercore\` ${VERSIONS.hypercore}, pinned by \`interop-tests/package-lock.json\`. CI regenerates
them and fails on any diff. \`crates/bee/tests/fixtures.rs\` replays every scenario's operations
with our encoder and compares each block byte for byte, then asks the same lookups and range
walks (at the final version and at past ones) and compares the answers.

## \`hyperbee-${VERSIONS.hyperbee}/scenarios.json\`

\`{versions, scenarios: [{name, note, options, ops, subs?, lengths, blocks, questions}]}\`, bytes
as lowercase hex:

- \`options\`: \`alwaysDuplicate\` (absent: true) and header \`metadata\` ({contentFeed, userData}).
- \`ops\`: \`"put KEY VALUE CAS"\` (\`VALUE\` \`-\` is \`put(key)\` with no value), \`"del KEY CAS"\`,
  \`{batch: [op, ...]}\` (one \`bee.batch()\`, flushed). \`CAS\` is \`-\` or one of \`never\`,
  \`always\`, \`greater\` (the new value, empty if none, sorts after the old), \`prev-even\` (the old
  entry's seq is even). \`{sub: i, op}\` runs \`op\` on the sub-bee \`subs[i].path\` (a list of
  \`{name, sep}\`, \`sep: null\` for the default).
- \`lengths\`: the log's length after each op; \`blocks\`: every block of the final log.
- \`questions\`: \`{version, get, result}\` and \`{version, range, result}\` (\`version: null\` is
  the latest; \`range\` has \`gt\`/\`gte\`/\`lt\`/\`lte\`/\`reverse\`/\`limit\`), or with \`sub: i\`
  instead of \`version\` for a sub-bee. A \`get\` result is \`"SEQ KEY VALUE"\` (\`VALUE\` \`-\` for
  none) or null; a \`range\` result is the seqs of the entries in order, space-separated (each
  entry is its block's key and value).

| scenario | ops | blocks | questions | what |
| --- | --- | --- | --- | --- |
${rows}
`
}

module.exports = { beeFixtures, VERSIONS }
