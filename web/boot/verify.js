// The bootstrap's verifier: the least that must run before any app code, with the rules of
// web/src/verify.js (and crates/log, hypercore 11) where it matters for safety:
// - heads: roots ↔ length ↔ tree hash ↔ byte length, the manifest ↔ the key, the signature
//   (v1–v3 manifests: quorum, distinct signers, prologue; compat keys), Ed25519 with
//   libsodium's extra checks (S < L, canonical key, no small-order key or R) before WebCrypto
//   or the fallback engine;
// - PHR1 range proofs (protocol/gateway.md §3), and the roots left of a range, which prove
//   that an older head of the same log is a prefix of this one (cached blocks stay valid).
// Differences from web/src/verify.js, each on the refusing side: the manifest must be served
// exactly as hashed into the key (no re-encoding), v0 (legacy) manifests are refused, and
// every mismatch of a range answer is INVALID_PROOF. test/boot.test.mjs runs both over the
// same fixtures.

import { b2 as b2js } from './blake2b.js'
import { b2wasm } from './blake2b-wasm.js'

/** BLAKE2b-256 of the concatenation of `parts`: the WebAssembly hash once it is compiled (right
 * after load; ./blake2b-wasm.js), the JavaScript one until then or without it. Same bytes. */
export const b2 = (...parts) => b2wasm(...parts) || b2js(...parts)

/** Throw an Error with a hypercore-errors style `code`. */
export function fail (code, message) {
  throw Object.assign(new Error(`${code}: ${message}`), { code })
}

export const hex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('')
export const unhex = (s) => {
  if (!/^([0-9a-f]{2})*$/.test(s)) fail('DECODING_ERROR', 'not lowercase hex')
  return Uint8Array.from(s.match(/../g) || [], (x) => parseInt(x, 16))
}
export const eq = (a, b) => a.length === b.length && a.every((x, i) => x === b[i])
export const cat = (...parts) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  parts.reduce((o, p) => (out.set(p, o), o + p.length), 0)
  return out
}
/** 8 bytes little-endian of an integer below 2^53. */
export const u64 = (n) => {
  const o = new Uint8Array(8)
  const d = new DataView(o.buffer)
  d.setUint32(0, n % 2 ** 32, true)
  d.setUint32(4, n / 2 ** 32, true)
  return o
}

// hypercore's namespaces (lib/caps.js): TREE and MANIFEST.
const TREE = unhex('9fac70b50ca14efc4e91c833b204e75b8b5aad8b5881bfc0adb5ef38a3275b9c')
const MANIFEST = unhex('e64b7108eacce47cfc61ac850568f55f8b15b82ec5ed78c4ec597b036e2a1498')

// Flat tree: node i at depth d (2^d = w) spans leaves i-w+1 .. i+w-1; (i+1)/w is odd, and
// 1 mod 4 for a left child.
const width = (i) => {
  let w = 1
  while (((i + 1) / w) % 2 === 0) w *= 2
  return w
}

/** Full roots of a tree of `n` blocks, left to right. */
export function fullRoots (n) {
  const out = []
  for (let off = 0; n;) {
    let f = 1
    while (f * 2 <= n) f *= 2
    out.push(off + f - 1)
    off += 2 * f
    n -= f
  }
  return out
}

const leaf = (b) => ({ s: b.length, h: b2([0], u64(b.length), b) })
export const treeHash = (roots) => b2([2], ...roots.flatMap((r) => [r.h, u64(r.i), u64(r.s)]))

// compact-encoding, as much as manifests and multisignatures need.
function reader (b) {
  let i = 0
  const take = (n) => {
    if (i + n > b.length) fail('DECODING_ERROR', 'out of bounds')
    return b.subarray(i, (i += n))
  }
  const uint = () => {
    const a = take(1)[0]
    if (a < 0xfd) return a
    const x = take(a === 0xfd ? 2 : a === 0xfe ? 4 : 8)
    return x.reduceRight((n, y) => n * 256 + y, 0)
  }
  return { take, uint, arr: (f) => Array.from({ length: uint() }, f) }
}

// The Ed25519 engine: WebCrypto, or the fallback module's `verify` (useEngine).
let engine = async (pk, msg, sig) => {
  try {
    const s = crypto.subtle
    return await s.verify('Ed25519', await s.importKey('raw', pk, 'Ed25519', false, ['verify']), sig, msg)
  } catch {
    return false
  }
}
const webcrypto = engine
/** Use `verify(pk, msg, sig)` (the fallback's, sync or async) for every signature from now on. */
export const useEngine = (verify) => { engine = verify }

// RFC 8032 §7.1 test 1, to check that WebCrypto has Ed25519 and it is not broken.
const RFC = unhex('d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a' +
  'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b')
/** Whether the platform's WebCrypto verifies Ed25519 (and refuses a wrong message). */
export const webcryptoWorks = async () =>
  await webcrypto(RFC.subarray(0, 32), new Uint8Array(0), RFC.subarray(32)) &&
  !await webcrypto(RFC.subarray(0, 32), [1], RFC.subarray(32))

// libsodium's checks before the curve equation (web/src/ed25519.js explains them).
const P = 2n ** 255n - 19n
const L = 2n ** 252n + 27742317777372353535851937790883648493n
const Y8 = 0x05fc536d880238b13933c6d305acdfd5f098eff289f4c345b027b2c28f95e826n
const le = (b) => b.reduceRight((n, x) => (n << 8n) | BigInt(x), 0n)
const y = (b) => le(b) & (P + 18n)
const small = (b) => [0n, 1n, Y8, P - Y8, P - 1n, P, P + 1n].includes(y(b))
export const strict = (pk, sig) => pk.length === 32 && sig.length === 64 &&
  le(sig.subarray(32)) < L && y(pk) < P && !small(pk) && !small(sig.subarray(0, 32))

/** Ed25519 as hypercore (libsodium) accepts it. */
export const ed25519 = async (pk, msg, sig) => strict(pk, sig) && !!await engine(pk, msg, sig)

/** Skip signatures (only to find the pinned Ed25519 fallback, which its hash proves). */
let unsigned = false
export const setUnsigned = (on) => { unsigned = on }

// Whether `sig` signs head `h` of the log `key` (bytes) with the served `manifest` bytes.
async function signed (key, manifest, h, sig) {
  const tail = [h.treeHash, u64(h.length), u64(h.fork)]
  if (!manifest || !eq(b2(MANIFEST, manifest), key)) {
    // Compat: the key is the Ed25519 public key; a raw signature of TREE ‖ tree ‖ len ‖ fork.
    return !!sig && ed25519(key, cat(TREE, ...tail), sig)
  }
  const r = reader(manifest)
  const version = r.uint()
  if (version < 1 || version > 3) fail('BAD_ARGUMENT', `manifest version ${version} is not supported here`)
  const flags = r.uint()
  if (r.uint() !== 0) fail('DECODING_ERROR', 'unknown hash')
  const quorum = r.uint()
  const signers = r.arr(() => {
    if (r.uint() !== 0) fail('DECODING_ERROR', 'unknown signature type')
    r.take(32) // namespace (v1+ signs with the manifest hash instead)
    return r.take(32)
  })
  if (flags & 2) {
    const hash = r.take(32)
    const n = r.uint()
    if (h.length <= n) return h.length === n && eq(h.treeHash, hash)
  }
  if (!sig || !quorum) return false
  const s = reader(sig)
  const proofs = s.arr(() => ({ i: s.uint(), sig: s.take(64), patch: s.uint() }))
  s.arr(() => [s.uint(), s.uint(), s.take(32)]) // patch nodes: unused, but must decode
  if (proofs.length < quorum) return false
  const msg = cat(TREE, key, ...tail)
  const seen = new Set()
  for (const p of proofs.slice(0, quorum)) {
    // Patched signatures (allowPatch) are not supported: a gateway serves signed heads.
    if ((p.patch && flags & 1) || p.i >= signers.length || seen.has(p.i)) return false
    seen.add(p.i)
    if (!await ed25519(signers[p.i], msg, p.sig)) return false
  }
  return true
}

const int = (n) => Number.isSafeInteger(n) && n >= 0

/**
 * Verify a head as `GET /v1/logs/{key}/head` serves it, for `key` (lowercase hex). Returns
 * `{key, length, fork, byteLength, treeHash, roots}` (roots `{i, s, h}`), or throws.
 */
export async function verifyHead (j, key) {
  if (!j || j.key !== key) fail('INVALID_OPERATION', 'head of another log')
  const { length, fork, byteLength } = j
  if (![length, fork, byteLength].every(int) || length > 2 ** 48) fail('DECODING_ERROR', 'bad head field')
  const want = fullRoots(length)
  if (!Array.isArray(j.roots) || j.roots.length !== want.length) fail('INVALID_PROOF', 'roots do not match the length')
  const roots = j.roots.map((r, k) => {
    if (!r || r.index !== want[k] || !int(r.size)) fail('INVALID_PROOF', 'roots do not match the length')
    return { i: r.index, s: r.size, h: unhex(r.hash) }
  })
  const head = { key, length, fork, byteLength, treeHash: treeHash(roots), roots }
  if (!eq(head.treeHash, unhex(j.treeHash))) fail('INVALID_PROOF', 'roots do not hash to the tree hash')
  if (roots.reduce((n, r) => n + r.s, 0) !== byteLength) fail('INVALID_PROOF', 'byte length does not match the roots')
  if (!length && j.signature == null) return head
  if (!unsigned && !await signed(unhex(key), j.manifest && unhex(j.manifest), head, j.signature && unhex(j.signature))) {
    fail('INVALID_SIGNATURE', 'head signature does not verify')
  }
  return head
}

/**
 * Verify a PHR1 body against a verified head for the request `start..end` (a prefix may be
 * served). Returns `{end, blocks, left}`: `left` are the roots of the tree of `start` blocks
 * as this proof implies them (compare with an older head's roots to prove it a prefix).
 */
export function verifyRange (body, head, start, end) {
  const bad = (why) => fail('INVALID_PROOF', why)
  if (body.length < 40 || hex(body.subarray(0, 4)) !== '50485231') bad('not a range proof')
  const dv = new DataView(body.buffer, body.byteOffset, body.byteLength)
  const num = (o) => {
    const hi = dv.getUint32(o + 4, true)
    if (hi >= 2 ** 21) bad('integer above 2^53')
    return hi * 2 ** 32 + dv.getUint32(o, true)
  }
  const n = num(12)
  const e = num(28)
  const count = dv.getUint32(36, true)
  if (num(4) !== head.fork || n !== head.length || num(20) !== start || e > end || start >= e || e - start > 65536 || count > 256) {
    bad('range proof for another head or range')
  }
  let o = 40
  const need = (k) => { if (o + k > body.length) bad('range proof truncated') }
  const nodes = []
  for (let k = 0; k < count; k++, o += 48) {
    need(48)
    const i = num(o)
    if (i >= 2 * n || (k && nodes[k - 1].i >= i)) bad('node index out of bounds')
    nodes.push({ i, s: num(o + 8), h: body.slice(o + 16, o + 48) })
  }
  const blocks = []
  for (let k = start; k < e; k++) {
    need(4)
    const len = dv.getUint32(o, true)
    o += 4
    need(len)
    blocks.push(body.slice(o, (o += len)))
  }
  if (o !== body.length) bad('trailing bytes')
  // Walk the tiling left to right, merging siblings (protocol/gateway.md §3.2).
  const stack = []
  const push = (x) => {
    for (stack.push(x); stack.length > 1;) {
      const r = stack[stack.length - 1]
      const w = width(r.i)
      const l = stack[stack.length - 2]
      if (((r.i + 1) / w) % 4 !== 3 || l.i !== r.i - 2 * w) break
      stack.length -= 2
      stack.push({ i: r.i - w, s: l.s + r.s, h: b2([1], u64(l.s + r.s), l.h, r.h) })
    }
  }
  let left = null
  let next = 0
  for (let cursor = 0; cursor < 2 * n;) {
    if (!left && cursor === 2 * start) {
      left = stack.slice()
      blocks.forEach((b, k) => push({ i: 2 * (start + k), ...leaf(b) }))
      cursor = 2 * e
      continue
    }
    const x = nodes[next++]
    const w = x && width(x.i)
    if (!x || x.i - w + 1 !== cursor || x.i + w - 1 >= 2 * n) bad(`range proof does not tile at leaf ${cursor}`)
    cursor = x.i + w + 1
    push(x)
  }
  const want = fullRoots(n)
  if (!left || next !== nodes.length || stack.length !== want.length || stack.some((x, k) => x.i !== want[k])) {
    bad('range proof does not reduce to the roots')
  }
  if (!eq(treeHash(stack), head.treeHash)) bad('range proof does not hash to the signed tree hash')
  return { end: e, blocks, left }
}

/** Whether `roots` (of an older head) equal `left` (from verifyRange at start = its length). */
export const sameRoots = (roots, left) =>
  roots.length === left.length && roots.every((r, k) => r.i === left[k].i && r.s === left[k].s && eq(r.h, left[k].h))
