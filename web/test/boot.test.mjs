// The bootstrap's own verifier (web/boot): BLAKE2b against @noble/hashes and the RFC vector;
// heads and range proofs on the same fixtures and golden responses as web/src/verify.js, with
// the same verdicts (and the documented refusals: v0 manifests, re-encoded manifests); the
// prefix proof behind the block cache; the loader's hedging, bans, instance fallback and cache;
// the bootstrap's protobuf readers.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { blake2b } from '@noble/hashes/blake2.js'

import { b2, fullRoots, hex, sameRoots, strict, unhex, verifyHead, verifyRange } from '../boot/verify.js'
import { Loader } from '../boot/loader.js'
import { assetIndex, chunk, descriptor } from '../boot/proto.js'
import * as full from '../src/verify.js'
import { fakePeer, golden, prove, seeded } from './helpers.mjs'

const dir = new URL('../../fixtures/hypercore-11.39.5/', import.meta.url)
const load = (name) => JSON.parse(readFileSync(new URL(name, dir), 'utf8'))
const cores = load('cores.json').cores
const headJson = (core, h) => ({ key: core.key, length: h.length, fork: h.fork, byteLength: h.byteLength, treeHash: h.treeHash, signature: h.signature, manifest: core.manifest, roots: h.roots })

test('BLAKE2b-256: the RFC 7693 vector and @noble/hashes on every length around the block size', () => {
  assert.equal(hex(b2(new TextEncoder().encode('abc'))), 'bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319')
  const rnd = seeded(3)
  for (const n of [0, 1, 63, 64, 65, 127, 128, 129, 255, 256, 257, 1000, 65_536, 200_001]) {
    const d = Uint8Array.from({ length: n }, () => Math.floor(rnd() * 256))
    assert.equal(hex(b2(d.subarray(0, n >> 1), d.subarray(n >> 1))), hex(blake2b(d, { dkLen: 32 })), `${n} bytes`)
  }
})

test('fixture heads: the bootstrap and the full verifier agree on every head and every tampering', async () => {
  let ok = 0
  for (const core of cores) {
    for (const h of core.heads) {
      const json = headJson(core, h)
      const head = await verifyHead(json, core.key)
      assert.equal(hex(head.treeHash), h.treeHash)
      assert.deepEqual(head.roots.map((r) => r.i), fullRoots(h.length))
      ok++
      // Each single-byte change of the signature, a wrong fork, root, byte length or key.
      const variants = []
      const sig = unhex(h.signature)
      for (let i = 0; i < sig.length; i++) {
        const bad = sig.slice()
        bad[i] ^= 1
        variants.push({ ...json, signature: hex(bad) })
      }
      const roots = h.roots.map((r) => ({ ...r }))
      if (roots.length) roots[0].hash = (roots[0].hash[0] === '0' ? '1' : '0') + roots[0].hash.slice(1)
      variants.push({ ...json, fork: h.fork + 1 }, { ...json, roots }, { ...json, byteLength: h.byteLength + 1 }, { ...json, signature: null })
      for (const v of variants) {
        const mine = await verifyHead(v, core.key).then(() => true, () => false)
        const theirs = await full.verifyHead(v, core.key).then(() => true, () => false)
        assert.equal(mine, theirs, `${core.name} at ${h.length}`)
      }
    }
  }
  assert.equal(ok, 29)
})

test('documented refusals: a v0 manifest, a manifest that is not the exact bytes hashed into the key', async () => {
  const core = cores.find((c) => !c.compat)
  const h = core.heads[core.heads.length - 1]
  // Trailing bytes: the full verifier re-encodes and accepts; the bootstrap hashes the bytes
  // served, which are then not the key's preimage, so the head is checked as compat and fails.
  const padded = { ...headJson(core, h), manifest: core.manifest + '00' }
  assert.equal((await full.verifyHead(padded, core.key)).length, h.length)
  await assert.rejects(verifyHead(padded, core.key), /INVALID_SIGNATURE/)
  // A v0 manifest hashed into a key: refused by version.
  const v0 = full.encodeManifest({ ...full.decodeManifest(unhex(core.manifest)), version: 0 })
  const key = hex(full.manifestHash(full.decodeManifest(v0)))
  await assert.rejects(verifyHead({ ...headJson(core, h), key, manifest: hex(v0) }, key), /manifest version 0/)
})

test('libsodium strictness: S ≥ L, a small-order key or R, a non-canonical key are refused first', () => {
  const good = golden.logs.find((l) => l.name === 'compat')
  const sig = unhex(good.heads[1].signature)
  const pk = unhex(good.key)
  assert.equal(strict(pk, sig), true)
  const L = 2n ** 252n + 27742317777372353535851937790883648493n
  const sPlusL = sig.slice()
  let s = sig.subarray(32).reduceRight((n, x) => (n << 8n) | BigInt(x), 0n) + L
  for (let i = 32; i < 64; i++, s >>= 8n) sPlusL[i] = Number(s & 0xffn)
  assert.equal(strict(pk, sPlusL), false)
  assert.equal(strict(new Uint8Array(32), sig), false) // y = 0, small order
  assert.equal(strict(Uint8Array.of(1, ...new Uint8Array(31)), sig), false) // the identity
  assert.equal(strict(new Uint8Array(32).fill(0xff).map((x, i) => (i === 31 ? 0x7f : x)), sig), false) // y = 2^255-1 ≥ p
  assert.equal(strict(pk, Uint8Array.of(1, ...new Uint8Array(63))), false) // R the identity
})

test('golden ranges: every response verifies as in the full verifier; every bit flip is refused', async () => {
  let n = 0
  for (const log of golden.logs) {
    for (const r of log.ranges.filter((r) => r.status === 200)) {
      const hj = log.heads.find((h) => h.length === r.length && h.fork === r.fork)
      if (!hj) continue
      const head = await verifyHead(hj, log.key)
      const body = unhex(r.body)
      const got = verifyRange(body, head, r.start, r.end)
      assert.equal(got.end, r.servedEnd)
      assert.deepEqual(got.blocks.map(hex), log.blocks.slice(r.start, r.servedEnd).filter(() => log.name !== 'forked' || r.fork === 1))
      // The left roots are the roots of a tree of `start` blocks.
      assert.deepEqual(got.left.map((x) => x.i), fullRoots(r.start))
      for (let bit = 0; bit < body.length * 8; bit += 7) {
        const bad = body.slice()
        bad[bit >> 3] ^= 1 << (bit & 7)
        assert.throws(() => verifyRange(bad, head, r.start, r.end), /INVALID_PROOF/)
      }
      assert.throws(() => verifyRange(body.subarray(0, body.length - 1), head, r.start, r.end), /INVALID_PROOF/)
      assert.throws(() => verifyRange(body, head, r.start + 1, r.end), /INVALID_PROOF/)
      n++
    }
  }
  assert.ok(n >= 10, `${n} ranges`)
})

test('prefix proofs: blocks from an older length prove (or disprove) that head a prefix', async () => {
  const log = golden.logs.find((l) => l.name === 'default')
  const blocks = log.blocks.map(unhex)
  const [older, newer] = [log.heads[0], log.heads[log.heads.length - 1]].map((h) => h)
  const h1 = await verifyHead(older, log.key)
  const h2 = await verifyHead(newer, log.key)
  assert.ok(h1.length < h2.length)
  const got = verifyRange(prove(blocks, h2.length, h2.fork, h1.length, h2.length), h2, h1.length, h2.length)
  assert.equal(sameRoots(h1.roots, got.left), true)
  // Another history of the same length would not match.
  const other = h1.roots.map((r) => ({ ...r, h: r.h.map((x) => x ^ 1) }))
  assert.equal(sameRoots(other, got.left), false)
})

test('descriptor, asset index and chunk entries as feed.proto lays them out', () => {
  const varint = (n) => { const o = []; while (n > 127) { o.push((n & 127) | 128); n = Math.floor(n / 128) } o.push(n); return o }
  const field = (f, bytes) => [...varint(f * 8 + 2), ...varint(bytes.length), ...bytes]
  const num = (f, n) => [...varint(f * 8), ...varint(n)]
  const te = (s) => [...new TextEncoder().encode(s)]
  const key = Array.from({ length: 32 }, (_, i) => i)
  const entry = (kind, body) => Uint8Array.from([...num(1, 1), ...field(kind, body)])
  const d = descriptor(entry(2, [...field(1, te('demo')), ...field(2, te('Demo')), ...field(6, key)]))
  assert.deepEqual(d, { name: 'demo', title: 'Demo', description: '', posts: null, comments: null, assets: hex(key), index: null })
  assert.equal(descriptor(entry(2, [...field(1, te('demo')), ...field(9, key)])).index, hex(key)) // the index log (issue 13)
  const file = [...field(1, te('index.html')), ...field(2, te('text/html')), ...num(3, 5), ...field(4, key), ...num(5, 2), ...num(6, 1)]
  const idx = assetIndex(entry(7, field(1, file)))
  assert.deepEqual(idx.map((f) => [f.path, f.type, f.size, f.start, f.blocks, hex(f.sha256)]), [['index.html', 'text/html', 5, 2, 1, hex(key)]])
  assert.deepEqual(chunk(entry(8, field(1, te('hello')))), Uint8Array.from(te('hello')))
  assert.equal(descriptor(entry(7, file)), null)
  assert.equal(descriptor(Uint8Array.from([...num(1, 2), ...field(2, [])])), null) // an unknown version
  assert.equal(chunk(Uint8Array.of(0xff)), null) // malformed
})

// A loader over fake peers (helpers.mjs), with a virtual peer interface: {url, get(path, as)}.
function peerOf (url, fake, { delay = 0, frozen = false } = {}) {
  return {
    url,
    kind: 'test',
    async get (path) {
      if (frozen) return new Promise(() => {})
      if (delay) await new Promise((resolve) => setTimeout(resolve, delay))
      const res = await fake.handle(path)
      return { status: res.status, body: res.status === 200 ? (path.endsWith('/head') ? await res.json() : new Uint8Array(await res.arrayBuffer())) : null }
    }
  }
}
const log = golden.logs.find((l) => l.name === 'default')
const blocks = log.blocks.map(unhex)

test('loader: latest(n) verified, spread over peers; a tampering peer is banned and named', async () => {
  const warnings = []
  const good = [fakePeer(log), fakePeer(log)]
  const evil = fakePeer(log, { mode: 'tamper' })
  const loader = new Loader({ peers: [peerOf('a', good[0]), peerOf('b', good[1]), peerOf('evil', evil)], random: seeded(1), log: { warn: (m) => warnings.push(m) } })
  for (let i = 0; i < 4; i++) {
    const { head, blocks: got } = await loader.latest(log.key, 5)
    assert.equal(head.length, blocks.length)
    for (const { index, value } of got) assert.deepEqual(value, blocks[index])
  }
  if (evil.ranges) {
    assert.match(warnings.join('\n'), /peer evil served data that does not verify \(INVALID_PROOF/)
    assert.equal(loader.list().find((p) => p.url === 'evil').banned, true)
  }
})

test('loader: a frozen peer costs a hedge delay, not a timeout; all frozen falls back to the instance', async () => {
  const fast = [fakePeer(log), fakePeer(log)]
  const loader = new Loader({ peers: [peerOf('frozen', fakePeer(log), { frozen: true }), peerOf('a', fast[0], { delay: 5 }), peerOf('b', fast[1], { delay: 5 })], random: () => 0 })
  const t0 = performance.now()
  for (let i = 0; i < 3; i++) await loader.latest(log.key, 3)
  assert.ok(performance.now() - t0 < 1500, `${performance.now() - t0} ms`)
  assert.equal(loader.fallback, false)

  let fellBack = 0
  const inst = fakePeer(log)
  const all = new Loader({
    peers: ['x', 'y', 'z'].map((u) => peerOf(u, fakePeer(log), { frozen: true })),
    instance: peerOf('instance', inst),
    onFallback: () => fellBack++
  })
  const t1 = performance.now()
  const { blocks: got } = await all.latest(log.key, 3)
  assert.ok(performance.now() - t1 < 1500, `${performance.now() - t1} ms`)
  assert.equal(got.length, 3)
  assert.equal(fellBack, 1)
  assert.ok(inst.calls >= 2)
})

test('loader: the block cache serves what a previous visit verified, and only new blocks are fetched', async () => {
  const mem = new Map()
  const caches = { open: async () => ({
    match: async (u) => (mem.has(u) ? new Response(mem.get(u)) : undefined),
    put: async (u, r) => { mem.set(u, new Uint8Array(await r.arrayBuffer())) },
    keys: async () => [...mem.keys()].map((url) => ({ url })),
    delete: async (r) => mem.delete(r.url)
  }) }
  const { blockCache } = await import('../boot/loader.js')
  const older = fakePeer(log, { headIndex: 0 })
  const first = new Loader({ peers: [peerOf('a', older)], cache: blockCache(caches) })
  const h1 = await first.head(log.key)
  await first.range(h1, 0, h1.length)
  const now = fakePeer(log)
  const second = new Loader({ peers: [peerOf('a', now)], cache: blockCache(caches) })
  const h2 = await second.head(log.key)
  const got = await second.range(h2, 0, h2.length)
  assert.deepEqual(got, blocks.slice(0, h2.length))
  // One range request: the new blocks, whose proof showed the cached head as a prefix.
  assert.equal(now.ranges, 1)
  const again = new Loader({ peers: [peerOf('a', fakePeer(log))], cache: blockCache(caches) })
  const h3 = await again.head(log.key)
  assert.deepEqual(await again.range(h3, 0, h3.length), blocks.slice(0, h3.length))
})
