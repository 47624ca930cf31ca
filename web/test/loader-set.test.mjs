// The bootstrap loader's sets of blocks (web/boot/loader.js blocks(), PHS1 via web/boot/set.js)
// over fake gateways: one request for scattered blocks, served prefixes continued, a tampering
// peer banned, gateways without the route answered by ranges; and the hedge that runs from
// the moment a request is sent, not while it waits in a queue.

import { test } from 'node:test'
import assert from 'node:assert/strict'

import { Loader } from '../boot/loader.js'
import { encodeRuns, runsOf } from '../boot/set.js'
import { children, fullRoots, leftSpan, rightSpan } from '../src/verify.js'
import { fakePeer, golden, nodeAt, seeded } from './helpers.mjs'

const log = golden.logs.find((l) => l.name === 'default')
const blocks = log.blocks.map((h) => Uint8Array.from(Buffer.from(h, 'hex')))

const varint = (out, v) => { while (v >= 128) { out.push((v % 128) | 128); v = Math.floor(v / 128) } out.push(v) }
const u64 = (n) => { const b = new Uint8Array(8); new DataView(b.buffer).setBigUint64(0, BigInt(n), true); return [...b] }
function proveSet (all, length, fork, runs) {
  const has = (a, b) => runs.some(([s, e]) => s <= b && e > a)
  const idx = []
  const walk = (n) => {
    if (!has(leftSpan(n) / 2, rightSpan(n) / 2)) idx.push(n)
    else if (children(n)) children(n).forEach(walk)
  }
  fullRoots(2 * length).forEach(walk)
  const out = [0x50, 0x48, 0x53, 0x31, ...u64(fork), ...u64(length)]
  const r = encodeRuns(runs)
  varint(out, r.length)
  out.push(...r)
  varint(out, idx.length)
  for (const n of idx.map((i) => nodeAt(all, i))) { varint(out, n.size); out.push(...n.hash) }
  for (const [s, e] of runs) for (let i = s; i < e; i++) { varint(out, all[i].length); out.push(...all[i]) }
  return Uint8Array.from(out)
}

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
function decodeRuns (q) {
  const bytes = []
  for (let k = 0; k < q.length; k += 4) {
    const c = q.slice(k, k + 4)
    let v = 0
    for (let j = 0; j < 4; j++) v = v * 64 + (j < c.length ? B64.indexOf(c[j]) : 0)
    for (let j = 0; j < c.length - 1; j++) bytes.push((v >> (16 - 8 * j)) & 255)
  }
  const runs = []
  let prev = -1
  for (let o = 0; o < bytes.length;) {
    const read = () => { let v = 0; let f = 1; for (;;) { const b = bytes[o++]; v += (b & 127) * f; f *= 128; if (b < 128) return v } }
    const v = read()
    const n = v % 2 ? read() + 2 : 1
    const s = prev < 0 ? v >> 1 : prev + (v >> 1) + 1
    runs.push([s, s + n])
    prev = s + n
  }
  return runs
}

// A fake gateway with the set route: `maxBlocks` per answer (a prefix), `tamper`, `noSets` (404).
function setPeer (url, { maxBlocks = 1024, tamper = false, noSets = false } = {}) {
  const ranges = fakePeer(log)
  const head = log.heads[log.heads.length - 1]
  const peer = {
    url,
    kind: 'test',
    sets: 0,
    ranges,
    async get (path) {
      const u = new URL(path, 'http://x')
      if (u.pathname.endsWith('/set')) {
        peer.sets++
        if (noSets) return { status: 404, body: null }
        let runs = decodeRuns(u.searchParams.get('runs'))
        const out = []
        let n = 0
        for (const [s, e] of runs) {
          if (n >= maxBlocks) break
          const end = Math.min(e, s + maxBlocks - n)
          out.push([s, end])
          n += end - s
        }
        runs = out
        const body = proveSet(blocks, Number(u.searchParams.get('length')), head.fork, runs)
        if (tamper) body[body.length - 1] ^= 1
        return { status: 200, body }
      }
      const res = await ranges.handle(path)
      return { status: res.status, body: res.status === 200 ? (path.endsWith('/head') ? await res.json() : new Uint8Array(await res.arrayBuffer())) : null }
    }
  }
  return peer
}

test('blocks(): scattered blocks in one set request, verified', async () => {
  const a = setPeer('a')
  const loader = new Loader({ peers: [a], random: seeded(3) })
  const head = await loader.head(log.key)
  const want = [1, 4, 5, 9, 17, 20].filter((i) => i < head.length)
  const got = await loader.blocks(head, [...want].reverse().concat([4]))
  assert.deepEqual([...got.keys()].sort((x, y) => x - y), want)
  for (const i of want) assert.deepEqual(got.get(i), blocks[i])
  assert.equal(a.sets, 1)
  assert.equal(a.ranges.ranges, 0)
})

test('blocks(): a served prefix is continued; a tampering peer is banned; no set route → ranges', async () => {
  const capped = setPeer('capped', { maxBlocks: 2 })
  const l1 = new Loader({ peers: [capped] })
  const h1 = await l1.head(log.key)
  const want = [0, 2, 3, 4, 8, 11, 12].filter((i) => i < h1.length)
  const got = await l1.blocks(h1, want)
  for (const i of want) assert.deepEqual(got.get(i), blocks[i])
  assert.equal(capped.sets, Math.ceil(want.length / 2))

  const warnings = []
  const evil = setPeer('evil', { tamper: true })
  const good = setPeer('good')
  const l2 = new Loader({ peers: [evil, good], random: () => 0, log: { warn: (m) => warnings.push(m) } })
  const h2 = await l2.head(log.key)
  const got2 = await l2.blocks(h2, want)
  for (const i of want) assert.deepEqual(got2.get(i), blocks[i])
  assert.match(warnings.join('\n'), /peer evil served data that does not verify \(INVALID_PROOF/)

  const old = setPeer('old', { noSets: true })
  const l3 = new Loader({ peers: [old] })
  const h3 = await l3.head(log.key)
  const got3 = await l3.blocks(h3, want)
  for (const i of want) assert.deepEqual(got3.get(i), blocks[i])
  assert.ok(old.ranges.ranges >= 1)
  // Every peer said 404: later sets go straight to ranges.
  const asked = old.sets
  await l3.blocks(h3, [3, 7])
  assert.equal(old.sets, asked)
})

test('hedging runs from the send: requests queued for a busy peer are not hedged', async () => {
  // A peer that works on at most 6 requests at once and queues the rest (as a browser queues
  // requests per host): 18 requests of 300 ms each take 900 ms; the peer's latency is 300 ms
  // (so its hedge delay 1 s), exceeded only if the time in the queue counted.
  let active = 0
  let most = 0
  const fake = fakePeer(log)
  const slow = {
    url: 'slow',
    kind: 'test',
    async get (path) {
      active++
      most = Math.max(most, active)
      try {
        await new Promise((resolve) => setTimeout(resolve, 300))
        const res = await fake.handle(path)
        return { status: res.status, body: res.status === 200 ? (path.endsWith('/head') ? await res.json() : new Uint8Array(await res.arrayBuffer())) : null }
      } finally {
        active--
      }
    }
  }
  const inst = fakePeer(log)
  const instance = { url: 'instance', kind: 'test', async get (path) { const res = await inst.handle(path); return { status: res.status, body: res.status === 200 ? (path.endsWith('/head') ? await res.json() : new Uint8Array(await res.arrayBuffer())) : null } } }
  const loader = new Loader({ peers: [slow], instance })
  const head = await loader.head(log.key)
  const t0 = performance.now()
  const got = await Promise.all(Array.from({ length: 18 }, (_, k) => loader.range(head, k % head.length, k % head.length + 1)))
  assert.ok(performance.now() - t0 >= 850)
  got.forEach((b, k) => assert.deepEqual(b[0], blocks[k % head.length]))
  assert.ok(most <= 6, `${most} requests at once`)
  assert.equal(inst.ranges, 0, 'no request was hedged to the instance')
  assert.equal(loader.fallback, false)
})
