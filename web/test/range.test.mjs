// The PHR1 range-proof verifier against responses the Rust gateway produced
// (test/golden/gateway.json, written by `cargo test -p peerhost-gateway --test http
// golden_responses_for_web` with PEERHOST_WRITE_GOLDEN=1; that test fails when the file is stale).

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'

import {
  MAX_PROOF_NODES, VerifyError, decodeRangeProof, fromHex, rangeRoots, toHex, treeHash, verifyHead, verifyRange
} from '../src/verify.js'

const golden = JSON.parse(readFileSync(new URL('./golden/gateway.json', import.meta.url), 'utf8'))

function trustedHeads (log) {
  return Promise.all(log.heads.map((h) => verifyHead(h, log.key)))
}

test('golden heads verify (v11 multisig, compat raw, a forked log)', async () => {
  const names = golden.logs.map((l) => l.name)
  assert.deepEqual(names, ['default', 'compat', 'forked'])
  for (const log of golden.logs) {
    const heads = await trustedHeads(log)
    assert.equal(heads[0].compat, log.name === 'compat')
    assert.equal(heads[1].length, log.blocks.length)
  }
})

test('every golden range response verifies and yields the log\'s blocks', async () => {
  let ok = 0
  let refused = 0
  for (const log of golden.logs) {
    const heads = await trustedHeads(log)
    for (const r of log.ranges) {
      const head = heads.find((h) => h.length === r.length && h.fork === r.fork)
      assert.ok(head, r.url)
      if (r.status !== 200) {
        // The forked log's old fork: the gateway refuses with the fork it is on.
        assert.equal(r.status, 409, r.url)
        assert.equal(r.error.error, 'FORK_MISMATCH')
        refused++
        continue
      }
      const got = verifyRange(fromHex(r.body), head, r.start, r.end)
      assert.equal(got.start, r.start)
      assert.equal(got.end, r.servedEnd, r.url)
      assert.ok(got.end <= r.end && got.end - got.start <= golden.maxBlocks)
      if (head === heads[heads.length - 1]) {
        got.blocks.forEach((b, i) => assert.equal(toHex(b), log.blocks[r.start + i], `${r.url} block ${i}`))
      }
      ok++
    }
  }
  assert.ok(ok >= 20, `${ok} verified`)
  assert.ok(refused >= 1, `${refused} refused`)
})

async function goldenCase (name, pick = (r) => r.status === 200 && r.start === 2) {
  const log = golden.logs.find((l) => l.name === name)
  const heads = await trustedHeads(log)
  const r = log.ranges.find(pick)
  const head = heads.find((h) => h.length === r.length && h.fork === r.fork)
  return { log, r, head, body: fromHex(r.body) }
}

test('every bit flip of a response is rejected (header, nodes, block lengths, block bytes)', async () => {
  for (const name of ['default', 'compat']) {
    const { r, head, body } = await goldenCase(name)
    assert.ok(decodeRangeProof(body).nodes.length > 0)
    for (let i = 0; i < body.length; i++) {
      for (let bit = 0; bit < 8; bit++) {
        const bad = body.slice()
        bad[i] ^= 1 << bit
        assert.throws(() => verifyRange(bad, head, r.start, r.end), VerifyError, `${name} byte ${i} bit ${bit}`)
      }
    }
    for (let cut = 0; cut < body.length; cut++) {
      assert.throws(() => verifyRange(body.subarray(0, cut), head, r.start, r.end), VerifyError)
    }
    const longer = new Uint8Array(body.length + 1)
    longer.set(body)
    assert.throws(() => verifyRange(longer, head, r.start, r.end), /trailing/)
  }
})

test('a response is only accepted for its own head and request', async () => {
  const { log, r, head, body } = await goldenCase('default')
  const heads = await trustedHeads(log)
  const other = heads.find((h) => h.length !== head.length)
  assert.throws(() => verifyRange(body, other, r.start, r.end), /INVALID_OPERATION/)
  assert.throws(() => verifyRange(body, { ...head, treeHash: new Uint8Array(32) }, r.start, r.end), /INVALID_PROOF/)
  assert.throws(() => verifyRange(body, { ...head, fork: head.fork + 1 }, r.start, r.end), /another fork/)
  assert.throws(() => verifyRange(body, head, r.start + 1, r.end), /another range/)
  assert.throws(() => verifyRange(body, head, r.start, r.start + 1), /another range/)
  // A longer request accepts the served prefix.
  assert.equal(verifyRange(body, head, r.start, head.length).end, r.servedEnd)
})

test('swapping blocks, dropping or adding a node breaks the tiling or the hash', async () => {
  const { r, head, body } = await goldenCase('default')
  const p = decodeRangeProof(body)
  // Recomputed roots equal the head's.
  const roots = rangeRoots(p)
  assert.equal(toHex(treeHash(roots)), toHex(head.treeHash))
  const swapped = { ...p, blocks: [p.blocks[1], p.blocks[0], ...p.blocks.slice(2)] }
  assert.notEqual(toHex(treeHash(rangeRoots(swapped))), toHex(head.treeHash))
  assert.throws(() => rangeRoots({ ...p, nodes: p.nodes.slice(1) }), /tile/)
  assert.throws(() => rangeRoots({ ...p, nodes: [...p.nodes, p.nodes[0]] }), VerifyError)
  assert.ok(r.status === 200)
})

test('the decoder bounds node counts, lengths and integers before hashing', async () => {
  const { body } = await goldenCase('default')
  const view = (b) => new DataView(b.buffer, b.byteOffset, b.byteLength)
  const withCount = body.slice()
  view(withCount).setUint32(36, MAX_PROOF_NODES + 1, true)
  assert.throws(() => decodeRangeProof(withCount), /too many nodes/)
  const huge = body.slice()
  view(huge).setUint32(16, 2 ** 21, true) // length high word: 2^85
  assert.throws(() => decodeRangeProof(huge), /INVALID_PROOF/)
  const big = body.slice()
  view(big).setUint32(16, 2 ** 16 + 1, true) // length above 2^48
  assert.throws(() => decodeRangeProof(big), /length out of bounds/)
  assert.throws(() => decodeRangeProof(new Uint8Array(10)), /truncated/)
  assert.throws(() => decodeRangeProof(new Uint8Array(40)), /not a range proof/)
})
