// Sets of blocks with one proof (PHS1, protocol/gateway.md §3.3): the compact runs a
// `GET /v1/logs/{key}/set?runs=…` asks for, and the verifier of its answer. The same rules as
// crates/gateway/src/set.rs; test/set.test.mjs runs both over the same bytes. The hashing goes
// through ./verify.js's exported functions (b2, treeHash), so it follows wherever verify.js
// sends it.

import { b2, eq, fail, fullRoots, treeHash, u64 } from './verify.js'

/** Most runs in one set request (the server refuses more). */
export const MAX_RUNS = 512
const MAX_BLOCKS = 65536
const MAX_LENGTH = 2 ** 48

/** Sorted, disjoint, non-adjacent runs `[start, end)` covering `indices` (any order). */
export function runsOf (indices) {
  const all = [...new Set(indices)].sort((a, b) => a - b)
  const runs = []
  for (const i of all) {
    if (!Number.isSafeInteger(i) || i < 0 || i >= MAX_LENGTH) fail('INVALID_OPERATION', 'block index out of bounds')
    const last = runs[runs.length - 1]
    if (last && last[1] === i) last[1]++
    else runs.push([i, i + 1])
  }
  return runs
}

const putVarint = (out, v) => {
  while (v >= 128) { out.push((v % 128) | 128); v = Math.floor(v / 128) }
  out.push(v)
}

/** The compact form of `runs`: per run varint(2·d + (len > 1)) [varint(len − 2)]. */
export function encodeRuns (runs) {
  const out = []
  let prev = -1
  for (const [s, e] of runs) {
    const d = prev < 0 ? s : s - prev - 1
    putVarint(out, 2 * d + (e - s > 1 ? 1 : 0))
    if (e - s > 1) putVarint(out, e - s - 2)
    prev = e
  }
  return Uint8Array.from(out)
}

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
/** base64url without padding. */
export function b64url (bytes) {
  let s = ''
  for (let k = 0; k < bytes.length; k += 3) {
    const n = Math.min(3, bytes.length - k)
    const v = (bytes[k] << 16) | ((bytes[k + 1] || 0) << 8) | (bytes[k + 2] || 0)
    for (let j = 0; j <= n; j++) s += B64[(v >> (18 - 6 * j)) & 63]
  }
  return s
}

/** The `runs=` value of `runs`. */
export const runsQuery = (runs) => b64url(encodeRuns(runs))

function reader (body, bad) {
  let o = 0
  return {
    get at () { return o },
    take (n) { if (o + n > body.length) bad('set proof truncated'); return body.subarray(o, (o += n)) },
    varint () {
      let v = 0
      for (let i = 0, f = 1; i < 8; i++, f *= 128) {
        if (o >= body.length) bad('set proof truncated')
        const b = body[o++]
        v += (b & 127) * f
        if (b < 128) {
          if (i > 0 && b === 0) bad('varint not minimal')
          if (v > Number.MAX_SAFE_INTEGER) bad('varint out of bounds')
          return v
        }
      }
      bad('varint out of bounds')
    }
  }
}

function decodeRuns (bytes, bad) {
  const r = reader(bytes, bad)
  const runs = []
  let prev = -1
  while (r.at < bytes.length) {
    if (runs.length === MAX_RUNS) bad('too many runs')
    const v = r.varint()
    const d = Math.floor(v / 2)
    const n = v % 2 ? r.varint() + 2 : 1
    const s = prev < 0 ? d : prev + d + 1
    if (s + n > MAX_LENGTH) bad('runs out of bounds')
    runs.push([s, s + n])
    prev = s + n
  }
  return runs
}

// Flat tree index of the subtree of 2^d leaves starting at leaf `at` (aligned).
const flat = (d, at) => (2 * (at / 2 ** d) + 1) * 2 ** d - 1
const log2floor = (x) => { let d = 0; while (2 ** (d + 1) <= x) d++; return d }
const alignOf = (at) => { if (!at) return 64; let d = 0; while ((at / 2 ** (d + 1)) % 1 === 0) d++; return d }

/** The minimal tiling (gateway.md §3.3): `{node: flatIndex}` and `{run: [s, e]}` in order. */
function tiling (runs, length, bad) {
  const out = []
  let at = 0
  for (const [stop, run] of [...runs.map((r) => [r[0], r]), [length, null]]) {
    if (stop > length || stop < at) bad('runs out of bounds')
    while (at < stop) {
      const d = Math.min(alignOf(at), log2floor(stop - at))
      out.push({ node: flat(d, at) })
      at += 2 ** d
    }
    if (run) { out.push({ run }); at = run[1] }
  }
  return out
}

/**
 * Verify a PHS1 body against a verified head (`{fork, length, treeHash}`) for the runs asked
 * (`[[start, end], …]`, as runsOf makes them). A non-empty prefix may be served, the last run
 * cut short. Returns `{runs, blocks}`: the runs served and a Map from block index to bytes.
 */
export function verifySet (body, head, asked) {
  const bad = (why) => fail('INVALID_PROOF', why)
  if (!(body instanceof Uint8Array) || body.length < 22 || body[0] !== 0x50 || body[1] !== 0x48 || body[2] !== 0x53 || body[3] !== 0x31) bad('not a set proof')
  const dv = new DataView(body.buffer, body.byteOffset, body.byteLength)
  const num = (o) => {
    const hi = dv.getUint32(o + 4, true)
    if (hi >= 2 ** 21) bad('integer above 2^53')
    return hi * 2 ** 32 + dv.getUint32(o, true)
  }
  const fork = num(4)
  const length = num(12)
  if (fork !== head.fork || length !== head.length) bad('set proof for another head')
  const r = reader(body, bad)
  r.take(20)
  const n = r.varint()
  if (n > 16 * MAX_RUNS) bad('runs out of bounds')
  const runs = decodeRuns(r.take(n), bad)
  // A non-empty prefix of the asked runs, the last one maybe cut short.
  const k = runs.length - 1
  if (k < 0 || k >= asked.length || runs.slice(0, k).some((x, j) => x[0] !== asked[j][0] || x[1] !== asked[j][1]) ||
      runs[k][0] !== asked[k][0] || runs[k][1] > asked[k][1]) {
    bad('set proof for other blocks than asked')
  }
  const total = runs.reduce((t, [s, e]) => t + e - s, 0)
  if (total > MAX_BLOCKS) bad('too many blocks')
  const tiles = tiling(runs, length, bad)
  const count = r.varint()
  if (count !== tiles.filter((t) => t.node !== undefined).length) bad('set proof does not tile the tree')
  const nodes = []
  for (let j = 0; j < count; j++) {
    const s = r.varint()
    nodes.push({ s, h: r.take(32) })
  }
  const blocks = new Map()
  const list = []
  for (const [s, e] of runs) {
    for (let i = s; i < e; i++) {
      const b = r.take(r.varint()).slice()
      blocks.set(i, b)
      list.push(b)
    }
  }
  if (r.at !== body.length) bad('trailing bytes')
  // Walk the tiling, merging siblings (gateway.md §3.2's push_merge).
  const stack = []
  const push = (x) => {
    for (stack.push(x); stack.length > 1;) {
      const rt = stack[stack.length - 1]
      const l = stack[stack.length - 2]
      const w = width(rt.i)
      if (((rt.i + 1) / w) % 4 !== 3 || l.i !== rt.i - 2 * w) break
      const size = l.s + rt.s
      if (size > Number.MAX_SAFE_INTEGER) bad('size out of bounds')
      stack.length -= 2
      stack.push({ i: rt.i - w, s: size, h: b2([1], u64(size), l.h, rt.h) })
    }
  }
  let nx = 0
  let bx = 0
  for (const t of tiles) {
    if (t.node !== undefined) {
      push({ i: t.node, ...nodes[nx++] })
    } else {
      for (let i = t.run[0]; i < t.run[1]; i++) {
        const b = list[bx++]
        push({ i: 2 * i, s: b.length, h: b2([0], u64(b.length), b) })
      }
    }
  }
  const want = fullRoots(length)
  if (stack.length !== want.length || stack.some((x, j) => x.i !== want[j])) bad('set proof does not reduce to the roots')
  if (!eq(treeHash(stack), head.treeHash)) bad('set proof does not hash to the signed tree hash')
  return { runs, blocks }
}

const width = (i) => {
  let w = 1
  while (((i + 1) / w) % 2 === 0) w *= 2
  return w
}
