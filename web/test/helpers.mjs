// Test helpers: a JavaScript range-proof builder (the same minimal tiling as the Rust
// `range::prove`, checked byte for byte against the golden responses) and fake gateways built
// on it, for the loader's tests.

import { readFileSync } from 'node:fs'

import { children, fromHex, fullRoots, leafHash, leftSpan, parentHash, rightSpan, u64le } from '../src/verify.js'

export const golden = JSON.parse(readFileSync(new URL('./golden/gateway.json', import.meta.url), 'utf8'))

/** The node at flat `index` of the tree over `blocks` (recomputed from the leaves). */
export function nodeAt (blocks, index) {
  const kids = children(index)
  if (!kids) {
    const b = blocks[index / 2]
    return { index, size: b.length, hash: leafHash(b) }
  }
  const [l, r] = kids.map((k) => nodeAt(blocks, k))
  return { index, size: l.size + r.size, hash: parentHash(l, r) }
}

/** Flat indices of the minimal proof of `start..end` at `length` (Rust `proof_indices`). */
export function proofIndices (start, end, length) {
  const out = []
  for (const root of fullRoots(2 * length)) {
    const stack = [root]
    while (stack.length) {
      const n = stack.pop()
      const first = leftSpan(n) / 2
      const last = rightSpan(n) / 2
      if (last < start || first >= end) out.push(n)
      else if (first < start || last >= end) {
        const [l, r] = children(n)
        stack.push(r, l)
      }
    }
  }
  return out
}

/** A PHR1 body for blocks `start..end` of `blocks` (the first `length` of them) on `fork`. */
export function prove (blocks, length, fork, start, end) {
  const nodes = proofIndices(start, end, length).map((i) => nodeAt(blocks, i))
  const parts = [Uint8Array.of(0x50, 0x48, 0x52, 0x31), u64le(fork), u64le(length), u64le(start), u64le(end)]
  const u32 = (n) => u64le(n).subarray(0, 4)
  parts.push(u32(nodes.length))
  for (const n of nodes) parts.push(u64le(n.index), u64le(n.size), n.hash)
  for (let i = start; i < end; i++) parts.push(u32(blocks[i].length), blocks[i])
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0))
  let o = 0
  for (const p of parts) {
    out.set(p, o)
    o += p.length
  }
  return out
}

function json (status, body) {
  return {
    status,
    json: async () => body,
    arrayBuffer: async () => new TextEncoder().encode(JSON.stringify(body)).buffer
  }
}

function bytes (body) {
  return {
    status: 200,
    json: async () => JSON.parse(new TextDecoder().decode(body)),
    arrayBuffer: async () => body.buffer.slice(body.byteOffset, body.byteOffset + body.byteLength)
  }
}

/**
 * A fake gateway serving `log` (a golden log entry) at its latest head, or at `headIndex`.
 * `mode`: 'good', 'tamper' (flips a byte of the first block it serves), 'badhead' (a flipped
 * signature), 'down' (every fetch rejects), 'busy' (429), 'oldfork' (409 on ranges).
 * `maxBlocks` caps each response (a prefix). `calls` counts requests.
 */
export function fakePeer (log, { mode = 'good', headIndex = log.heads.length - 1, maxBlocks = 16, delay = 0 } = {}) {
  const head = log.heads[headIndex]
  const blocks = log.blocks.map(fromHex)
  const peer = { calls: 0, ranges: 0 }
  peer.handle = async (path) => {
    peer.calls++
    if (delay) await new Promise((resolve) => setTimeout(resolve, delay))
    if (mode === 'down') throw new TypeError('fetch failed')
    if (mode === 'busy') return json(429, { error: 'TOO_MANY_REQUESTS' })
    const url = new URL(path, 'http://x')
    const m = url.pathname.match(/^\/v1\/logs\/([0-9a-f]{64})\/(head|blocks)$/)
    if (!m || m[1] !== log.key) return json(404, { error: 'UNKNOWN_LOG' })
    if (m[2] === 'head') {
      if (mode === 'badhead') {
        const sig = head.signature
        return json(200, { ...head, signature: sig.slice(0, 20) + (sig[20] === '0' ? '1' : '0') + sig.slice(21) })
      }
      return json(200, head)
    }
    peer.ranges++
    const q = Object.fromEntries(url.searchParams)
    const [start, end, length, fork] = ['start', 'end', 'length', 'fork'].map((k) => Number(q[k]))
    if (mode === 'oldfork' || fork !== head.fork) return json(409, { error: 'FORK_MISMATCH', fork: head.fork })
    if (length > head.length || end > length) return json(416, { error: 'LENGTH_UNAVAILABLE', length: head.length })
    const served = Math.min(end, start + maxBlocks)
    const body = prove(blocks, length, fork, start, served)
    if (mode === 'tamper') body[body.length - 1] ^= 0x20
    return bytes(body)
  }
  return peer
}

/** A `fetch` over fake peers: `{ 'https://a': peer, … }`. */
export function fakeFetch (peers) {
  return async (url) => {
    const u = new URL(url)
    const peer = peers[u.origin]
    if (!peer) throw new TypeError('fetch failed: no such host')
    return peer.handle(u.pathname + u.search)
  }
}

/** A seeded PRNG (mulberry32), so peer choice is repeatable. */
export function seeded (seed = 1) {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}
