// BLAKE2b-256 (RFC 7693) in WebAssembly, for verifying blocks at the speed the data channel
// delivers them: the JavaScript BLAKE2bs (./blake2b.js, @noble/hashes) emulate 64-bit words
// with pairs of 32-bit ones and top out near 15-20 MB/s in a page; WebAssembly has i64
// add/xor/rotr and runs the same compression function ~10-20x faster.
//
// No binary blob and no package: the module is generated here, at load, from the
// compression function below (RFC 7693 §3.2: 12 rounds of 8 G mixes over 16 words, the
// message schedule SIGMA resolved at generation time, so the code is straight-line), and
// compiled by the browser. What runs is what this file says. Until the module is compiled
// (asynchronously, right after load), where WebAssembly is missing, or where a
// Content-Security-Policy forbids compiling it, `b2wasm` answers null and callers use their
// JavaScript BLAKE2b; the digests are the same bytes (test/blake2b-wasm.test.mjs checks them
// against @noble/hashes and ./blake2b.js for every length 0..1100 and large inputs).
//
// The module: memory (2 pages) exported as `m`, holding the state h (8 words at byte 0) and a
// buffer of BUF_SIZE bytes at byte 128; `c(ptr, t, last)` compresses the 128-byte block at
// `ptr` into h with the byte counter t (an f64, exact below 2^53) and the final-block flag.

const IV = [
  0x6a09e667f3bcc908n, 0xbb67ae8584caa73bn, 0x3c6ef372fe94f82bn, 0xa54ff53a5f1d36f1n,
  0x510e527fade682d1n, 0x9b05688c2b3e6c1fn, 0x1f83d9abfb41bd6bn, 0x5be0cd19137e2179n
]
const SIGMA = [
  [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
  [14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3],
  [11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4],
  [7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8],
  [9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13],
  [2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9],
  [12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11],
  [13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10],
  [6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5],
  [10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0]
]

const BUF = 128
const BUF_SIZE = 65536

// Opcodes (WebAssembly core 1.0).
const GET = 0x20
const SET = 0x21
const I32_CONST = 0x41
const I64_CONST = 0x42
const I64_LOAD = 0x29
const I64_STORE = 0x37
const I64_ADD = 0x7c
const I64_SUB = 0x7d
const I64_XOR = 0x85
const I64_ROTR = 0x8a
const I64_EXTEND_I32_U = 0xad
const I64_TRUNC_F64_U = 0xb1
const END = 0x0b

const uleb = (n) => {
  const out = []
  do {
    let b = n & 0x7f
    n >>>= 7
    if (n) b |= 0x80
    out.push(b)
  } while (n)
  return out
}
const sleb64 = (v) => {
  v = BigInt.asIntN(64, v)
  const out = []
  for (;;) {
    const b = Number(v & 0x7fn)
    v >>= 7n
    if ((v === 0n && !(b & 0x40)) || (v === -1n && (b & 0x40))) return [...out, b]
    out.push(b | 0x80)
  }
}
const section = (id, bytes) => [id, ...uleb(bytes.length), ...bytes]
const name = (s) => [...uleb(s.length), ...[...s].map((c) => c.charCodeAt(0))]

/** The module's bytes. Locals: 0 ptr (i32), 1 t (f64), 2 last (i32), 3-18 v0..v15, 19-34 m0..m15. */
export function moduleBytes () {
  const V = (i) => 3 + i
  const M = (i) => 19 + i
  const code = []
  const get = (l) => code.push(GET, ...uleb(l))
  const set = (l) => code.push(SET, ...uleb(l))
  // m[i] = load(ptr + 8i)
  for (let i = 0; i < 16; i++) {
    get(0)
    code.push(I64_LOAD, 3, ...uleb(8 * i))
    set(M(i))
  }
  // v[0..8] = h, v[8..16] = IV; v12 ^= t; v14 ^= -last (all ones on the final block)
  for (let i = 0; i < 8; i++) {
    code.push(I32_CONST, 0, I64_LOAD, 3, ...uleb(8 * i))
    set(V(i))
    code.push(I64_CONST, ...sleb64(IV[i]))
    set(V(8 + i))
  }
  get(V(12)); get(1); code.push(I64_TRUNC_F64_U, I64_XOR); set(V(12))
  get(V(14)); code.push(I64_CONST, 0); get(2); code.push(I64_EXTEND_I32_U, I64_SUB, I64_XOR); set(V(14))
  // G(a, b, c, d, x, y)
  const rot = (d, a, n) => { get(V(d)); get(V(a)); code.push(I64_XOR, I64_CONST, ...sleb64(BigInt(n)), I64_ROTR); set(V(d)) }
  const add3 = (a, b, x) => { get(V(a)); get(V(b)); code.push(I64_ADD); get(M(x)); code.push(I64_ADD); set(V(a)) }
  const add2 = (c, d) => { get(V(c)); get(V(d)); code.push(I64_ADD); set(V(c)) }
  const G = (a, b, c, d, x, y) => {
    add3(a, b, x); rot(d, a, 32); add2(c, d); rot(b, c, 24)
    add3(a, b, y); rot(d, a, 16); add2(c, d); rot(b, c, 63)
  }
  for (let r = 0; r < 12; r++) {
    const s = SIGMA[r % 10]
    G(0, 4, 8, 12, s[0], s[1]); G(1, 5, 9, 13, s[2], s[3])
    G(2, 6, 10, 14, s[4], s[5]); G(3, 7, 11, 15, s[6], s[7])
    G(0, 5, 10, 15, s[8], s[9]); G(1, 6, 11, 12, s[10], s[11])
    G(2, 7, 8, 13, s[12], s[13]); G(3, 4, 9, 14, s[14], s[15])
  }
  // h[i] ^= v[i] ^ v[i + 8]
  for (let i = 0; i < 8; i++) {
    code.push(I32_CONST, 0, I32_CONST, 0, I64_LOAD, 3, ...uleb(8 * i))
    get(V(i)); code.push(I64_XOR); get(V(8 + i)); code.push(I64_XOR)
    code.push(I64_STORE, 3, ...uleb(8 * i))
  }
  code.push(END)
  const body = [1, 32, 0x7e, ...code] // one group of 32 i64 locals
  return Uint8Array.from([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, [1, 0x60, 3, 0x7f, 0x7c, 0x7f, 0]), // type: (i32, f64, i32) -> ()
    ...section(3, [1, 0]), // one function of type 0
    ...section(5, [1, 0, 2]), // one memory, 2 pages
    ...section(7, [2, ...name('m'), 2, 0, ...name('c'), 0, 0]), // exports
    ...section(10, [1, ...uleb(body.length), ...body])
  ])
}

let exports = null

/**
 * Compile the module (once). Resolves true when `b2wasm` is ready, false where WebAssembly
 * is unavailable or refused (it then stays null: the JavaScript hash is used).
 */
export const wasmReady = (async () => {
  try {
    if (typeof WebAssembly !== 'object') return false
    const { instance } = await WebAssembly.instantiate(moduleBytes())
    exports = instance.exports
    return true
  } catch {
    return false
  }
})()

const IV32 = new Uint32Array(new BigUint64Array(IV).buffer)

/**
 * BLAKE2b-256 of the concatenation of `parts` (Uint8Arrays), or null while the module is not
 * compiled (or could not be).
 */
export function b2wasm (...parts) {
  if (!exports) return null
  const { m, c } = exports
  const mem = new Uint8Array(m.buffer)
  const h = new Uint32Array(m.buffer, 0, 16)
  h.set(IV32)
  h[0] ^= 0x01010020 // digest length 32, no key, fanout 1, depth 1
  let total = 0
  for (const p of parts) total += p.length
  // Feed the bytes through the buffer, holding back the last block (even a full one) for
  // the final compression.
  let fill = 0 // bytes in the buffer
  let t = 0 // bytes compressed so far
  for (const p of parts) {
    let i = 0
    while (i < p.length) {
      if (fill === BUF_SIZE) {
        // Compress all but the last block of the full buffer; keep that one.
        for (let o = 0; o < BUF_SIZE - 128; o += 128) c(BUF + o, (t += 128), 0)
        mem.copyWithin(BUF, BUF + BUF_SIZE - 128, BUF + BUF_SIZE)
        fill = 128
      }
      const n = Math.min(p.length - i, BUF_SIZE - fill)
      mem.set(n === p.length ? p : p.subarray(i, i + n), BUF + fill)
      fill += n
      i += n
    }
  }
  // The buffer holds 0 < fill (or 0 for empty input) bytes: full blocks, then the last.
  const last = fill === 0 ? 0 : Math.floor((fill - 1) / 128) * 128
  for (let o = 0; o < last; o += 128) c(BUF + o, (t += 128), 0)
  mem.fill(0, BUF + fill, BUF + last + 128)
  c(BUF + last, total, 1)
  return mem.slice(0, 32)
}
