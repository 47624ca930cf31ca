// The PHS1 set-proof verifier (web/boot/set.js): sets built here with an independent encoder
// (web/src/verify.js's tree functions, the tiling computed by halving), the vector the Rust
// gateway pins in crates/gateway/src/set.rs (`rust_vector`), every bit flip, served prefixes.

import { test } from 'node:test'
import assert from 'node:assert/strict'

import { fullRoots as flatRoots, fromHex, leftSpan, rightSpan, children } from '../src/verify.js'
import { nodeAt } from './helpers.mjs'
import { treeHash } from '../boot/verify.js'
import { encodeRuns, runsOf, runsQuery, verifySet } from '../boot/set.js'

const blocksOf = (n) => Array.from({ length: n }, (_, i) => new Uint8Array(i % 7 + 1).fill(i & 255))
const headOf = (blocks, fork = 0) => {
  const roots = flatRoots(2 * blocks.length).map((i) => nodeAt(blocks, i)).map((x) => ({ i: x.index, s: x.size, h: x.hash }))
  return { fork, length: blocks.length, treeHash: treeHash(roots) }
}

const varint = (out, v) => { while (v >= 128) { out.push((v % 128) | 128); v = Math.floor(v / 128) } out.push(v) }
const u64 = (n) => { const b = new Uint8Array(8); new DataView(b.buffer).setBigUint64(0, BigInt(n), true); return [...b] }

// The nodes outside the runs, by descending from the roots (a different algorithm from the
// greedy walk in set.js: a subtree with no block is sent whole, one with blocks is split).
function indicesOutside (runs, length) {
  const has = (a, b) => runs.some(([s, e]) => s <= b && e > a)
  const out = []
  const walk = (n) => {
    const a = leftSpan(n) / 2
    const b = rightSpan(n) / 2
    if (!has(a, b)) out.push(n)
    else if (children(n)) children(n).forEach(walk)
  }
  flatRoots(2 * length).forEach(walk)
  return out
}

function prove (blocks, runs, fork = 0) {
  const out = [0x50, 0x48, 0x53, 0x31, ...u64(fork), ...u64(blocks.length)]
  const r = encodeRuns(runs)
  varint(out, r.length)
  out.push(...r)
  const nodes = indicesOutside(runs, blocks.length).map((i) => nodeAt(blocks, i))
  varint(out, nodes.length)
  for (const n of nodes) { varint(out, n.size); out.push(...n.hash) }
  for (const [s, e] of runs) for (let i = s; i < e; i++) { varint(out, blocks[i].length); out.push(...blocks[i]) }
  return Uint8Array.from(out)
}

test('runs: compact form and query as the gateway reads them', () => {
  const runs = runsOf([20, 3, 5, 6, 7, 7])
  assert.deepEqual(runs, [[3, 4], [5, 8], [20, 21]])
  assert.deepEqual([...encodeRuns(runs)], [6, 1, 1, 22])
  assert.equal(runsQuery(runs), 'BgEBFg')
  // 300 blocks ten apart: one byte each (the first three), 403 characters.
  assert.equal(runsQuery(runsOf(Array.from({ length: 300 }, (_, i) => 500_000 + 10 * i))).length, 403)
})

test('every set of small logs verifies and yields its blocks', () => {
  for (let n = 1; n <= 24; n++) {
    const blocks = blocksOf(n)
    const head = headOf(blocks)
    for (let mask = 1; mask < 2 ** Math.min(n, 10); mask += n > 6 ? 7 : 1) {
      const idx = []
      for (let i = 0; i < n; i++) if (mask & (1 << (i % 10))) idx.push(i)
      const runs = runsOf(idx)
      const got = verifySet(prove(blocks, runs), head, runs)
      assert.deepEqual(got.runs, runs)
      for (const i of idx) assert.deepEqual(got.blocks.get(i), blocks[i])
    }
  }
})

test('the Rust vector verifies', () => {
  // crates/gateway/src/set.rs, test rust_vector: blocks 1, 4..6, 9 of a log of 11 blocks.
  const blocks = blocksOf(11)
  const runs = runsOf([1, 4, 5, 9])
  const body = prove(blocks, runs)
  assert.equal(Buffer.from(body).toString('hex'), RUST_VECTOR)
  verifySet(fromHex(RUST_VECTOR), headOf(blocks), runs)
})

test('every flipped bit, cut or extra byte is rejected', () => {
  const blocks = blocksOf(29)
  const head = headOf(blocks)
  const runs = runsOf([2, 3, 9, 17, 18, 19, 27])
  const body = prove(blocks, runs)
  verifySet(body, head, runs)
  for (let i = 0; i < body.length; i++) {
    for (let bit = 0; bit < 8; bit++) {
      const bad = body.slice()
      bad[i] ^= 1 << bit
      assert.throws(() => verifySet(bad, head, runs), (e) => e.code === 'INVALID_PROOF', `byte ${i} bit ${bit}`)
    }
  }
  for (let cut = 0; cut < body.length; cut++) assert.throws(() => verifySet(body.subarray(0, cut), head, runs))
  assert.throws(() => verifySet(Uint8Array.from([...body, 0]), head, runs))
})

test('a served prefix is accepted, other sets and heads are not', () => {
  const blocks = blocksOf(40)
  const head = headOf(blocks)
  const asked = runsOf([1, 5, 6, 7, 30])
  const got = verifySet(prove(blocks, [[1, 2], [5, 7]]), head, asked)
  assert.deepEqual(got.runs, [[1, 2], [5, 7]])
  for (const other of [[[5, 7]], [[1, 2], [6, 7]], [[1, 2], [5, 8], [30, 31], [33, 34]]]) {
    assert.throws(() => verifySet(prove(blocks, other), head, asked), /other blocks/)
  }
  assert.throws(() => verifySet(prove(blocks, asked), { ...head, fork: 1 }, asked), /another head/)
  assert.throws(() => verifySet(prove(blocks, asked), headOf(blocks.slice(0, 39)), asked), /another head/)
})

// Filled in from the Rust test's output (the same bytes, built by two encoders).
const RUST_VECTOR = '5048533100000000000000000b0000000000000004020300040501db10035e7a49836258fdb2613413948afa33c8f7db510f0860d7eb493d89da990725e53a2e4071ffda8765bfdf5dcb7c588a7b39db5615acfa94375b875a88440008905c5c66a70ab0c0375c29eca614bca4fcb95d07baf1f0a2817b526ee645424502ddc9fa69e3677335a425263f2d5ed3ce66139d0e581cc39a0874bbd1f0e608a904c0ff3b8a8a7da5b425a3ab437f8326a1d3ff69fba15e8a7644f7af50b51c1a0a0201010504040404040605050505050503090909'
