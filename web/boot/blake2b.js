// BLAKE2b-256 (RFC 7693), unkeyed, for the bootstrap: about 0.6 KB minified, where
// @noble/hashes' would be 4 KB. 64-bit words are pairs of 32-bit halves (low, high) in
// Uint32Arrays; little-endian byte order as every browser has. Checked against @noble/hashes
// and the RFC vectors in test/boot.test.mjs.

const IV = Uint32Array.of(
  0xf3bcc908, 0x6a09e667, 0x84caa73b, 0xbb67ae85, 0xfe94f82b, 0x3c6ef372, 0x5f1d36f1, 0xa54ff53a,
  0xade682d1, 0x510e527f, 0x2b3e6c1f, 0x9b05688c, 0xfb41bd6b, 0x1f83d9ab, 0x137e2179, 0x5be0cd19)
// The message schedule, one row of 16 hex digits per round (rounds 10 and 11 repeat 0 and 1).
const SIGMA = ('0123456789abcdefea489fd61c02b753b8c052fdae3671947931dcbe265a40f8905724afe1bc683d' +
  '2c6a0b834d75fe19c51fed4a0763928bdb7ec13950f4862a6fe9b308c2d714a5a2847615fb9e3cd0')
  .split('').map((c) => 2 * parseInt(c, 16))

const v = new Uint32Array(32)
const m = new Uint32Array(32)

// v[a] += (lo, hi), 64-bit: the low half's carry goes into the high half.
function add (a, lo, hi) {
  const x = v[a] + lo
  v[a + 1] += hi + (x > 0xffffffff)
  v[a] = x
}

// v[d] = rotr64(v[d] ^ v[a], n) for n in 16, 24, 32, 63.
function xr (d, a, n) {
  let lo = v[d] ^ v[a]
  let hi = v[d + 1] ^ v[a + 1]
  if (n >= 32) [lo, hi, n] = [hi, lo, n - 32]
  if (n) [lo, hi] = [(lo >>> n) | (hi << (32 - n)), (hi >>> n) | (lo << (32 - n))]
  v[d] = lo
  v[d + 1] = hi
}

function G (a, b, c, d, x, y) {
  add(a, v[b], v[b + 1]); add(a, m[x], m[x + 1]); xr(d, a, 32)
  add(c, v[d], v[d + 1]); xr(b, c, 24)
  add(a, v[b], v[b + 1]); add(a, m[y], m[y + 1]); xr(d, a, 16)
  add(c, v[d], v[d + 1]); xr(b, c, 63)
}

function compress (h, block, t, last) {
  v.set(h)
  v.set(IV, 16)
  v[24] ^= t % 2 ** 32
  v[25] ^= t / 2 ** 32
  if (last) {
    v[28] = ~v[28]
    v[29] = ~v[29]
  }
  new Uint8Array(m.buffer).set(block)
  for (let r = 0; r < 12; r++) {
    const s = SIGMA.slice((r % 10) * 16)
    G(0, 8, 16, 24, s[0], s[1]); G(2, 10, 18, 26, s[2], s[3])
    G(4, 12, 20, 28, s[4], s[5]); G(6, 14, 22, 30, s[6], s[7])
    G(0, 10, 20, 30, s[8], s[9]); G(2, 12, 22, 24, s[10], s[11])
    G(4, 14, 16, 26, s[12], s[13]); G(6, 8, 18, 28, s[14], s[15])
  }
  for (let i = 0; i < 16; i++) h[i] ^= v[i] ^ v[i + 16]
}

/** BLAKE2b-256 of the concatenation of `parts` (Uint8Arrays or arrays of bytes). */
export function b2 (...parts) {
  const d = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  parts.reduce((o, p) => (d.set(p, o), o + p.length), 0)
  const h = IV.slice()
  h[0] ^= 0x01010020 // digest length 32, no key, fanout 1, depth 1
  let i = 0
  do {
    const block = new Uint8Array(128)
    block.set(d.subarray(i, (i += 128)))
    compress(h, block, Math.min(i, d.length), i >= d.length)
  } while (i < d.length)
  return new Uint8Array(h.buffer, 0, 32)
}
