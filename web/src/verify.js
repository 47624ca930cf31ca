// Verification of what a peerhost gateway serves, with the same rules as the Rust `log` crate
// (protocol/log.md) and hypercore 11: BLAKE2b-256 Merkle hashes, manifests and their hashes,
// signables, multisignatures, Ed25519 (./ed25519.js), and the PHR1 range proof
// (protocol/gateway.md §4).
//
// Everything here is pure: bytes in, values out, or a VerifyError with a hypercore-errors
// style `code`. Signature checks are async (WebCrypto): `verifySignature` and `verifyHead`
// return promises; everything else is synchronous. Numbers stay below 2^53 (lengths below 2^48), so plain JS numbers are exact.

import { blake2b } from '@noble/hashes/blake2.js'
import { b2wasm } from '../boot/blake2b-wasm.js'
import { ed25519Verify } from './ed25519.js'

// ---------------------------------------------------------------------------------------------
// Errors and bytes

/** A verification failure. `code` is INVALID_SIGNATURE, INVALID_PROOF, INVALID_OPERATION,
 * DECODING_ERROR or BAD_ARGUMENT (hypercore-errors names). */
export class VerifyError extends Error {
  constructor (code, message) {
    super(`${code}: ${message}`)
    this.name = 'VerifyError'
    this.code = code
  }
}

const MAX_SAFE = Number.MAX_SAFE_INTEGER
/** Largest log length the range-proof format carries (2^48). */
export const MAX_LENGTH = 2 ** 48
/** Most nodes in one range proof. */
export const MAX_PROOF_NODES = 256
/** Most blocks in one range proof. */
export const MAX_PROOF_BLOCKS = 2 ** 16
/** compact-encoding refuses longer arrays. */
const MAX_ARRAY = 0x100000

export function fromHex (hex) {
  if (typeof hex !== 'string' || hex.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(hex)) {
    throw new VerifyError('DECODING_ERROR', 'not a hex string')
  }
  const out = new Uint8Array(hex.length / 2)
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16)
  return out
}

export function toHex (bytes) {
  let s = ''
  for (const b of bytes) s += b.toString(16).padStart(2, '0')
  return s
}

export function equal (a, b) {
  if (a.length !== b.length) return false
  let d = 0
  for (let i = 0; i < a.length; i++) d |= a[i] ^ b[i]
  return d === 0
}

function concat (parts) {
  let n = 0
  for (const p of parts) n += p.length
  const out = new Uint8Array(n)
  let o = 0
  for (const p of parts) {
    out.set(p, o)
    o += p.length
  }
  return out
}

/** 8 bytes little endian of an integer in 0..2^53-1. */
export function u64le (n) {
  const out = new Uint8Array(8)
  let lo = n % 2 ** 32
  let hi = Math.floor(n / 2 ** 32)
  for (let i = 0; i < 4; i++) {
    out[i] = lo & 0xff
    out[4 + i] = hi & 0xff
    lo = Math.floor(lo / 256)
    hi = Math.floor(hi / 256)
  }
  return out
}

/** BLAKE2b-256 of the concatenation of `parts` (libsodium crypto_generichash): the
 * WebAssembly hash once compiled (../boot/blake2b-wasm.js), @noble/hashes' until then. */
export function blake2b256 (...parts) {
  return b2wasm(...parts) || blake2b(concat(parts), { dkLen: 32 })
}

// ---------------------------------------------------------------------------------------------
// Namespaces (hypercore lib/caps.js: crypto.namespace('hypercore', 6))

/** `BLAKE2b-256(BLAKE2b-256(name) ‖ byte(id))` (hypercore-crypto `namespace`). */
export function namespace (name, id) {
  return blake2b256(blake2b256(new TextEncoder().encode(name)), Uint8Array.of(id))
}

export const TREE = fromHex('9fac70b50ca14efc4e91c833b204e75b8b5aad8b5881bfc0adb5ef38a3275b9c')
export const MANIFEST = fromHex('e64b7108eacce47cfc61ac850568f55f8b15b82ec5ed78c4ec597b036e2a1498')
export const DEFAULT_NAMESPACE = fromHex('4144eea531e483d54e0c14f4ca68e0644f355343ff6fcb0f005200e12cd747cb')

// ---------------------------------------------------------------------------------------------
// Flat tree (flat-tree 1.13): leaf i at 2i, a parent between its children. Arithmetic only
// (no 32-bit bitwise operators): indices go up to 2^49.

export function depth (i) {
  let d = 0
  while (i % 2 === 1) {
    i = (i - 1) / 2
    d++
  }
  return d
}

function offsetAt (i, d) {
  return ((i + 1) / 2 ** d - 1) / 2
}

export function offset (i) {
  return offsetAt(i, depth(i))
}

export function index (d, o) {
  return (2 * o + 1) * 2 ** d - 1
}

export function parent (i) {
  const d = depth(i)
  return index(d + 1, Math.floor(offsetAt(i, d) / 2))
}

export function sibling (i) {
  const d = depth(i)
  const o = offsetAt(i, d)
  return index(d, o % 2 === 0 ? o + 1 : o - 1)
}

export function leftSpan (i) {
  const d = depth(i)
  return d === 0 ? i : offsetAt(i, d) * 2 ** (d + 1)
}

export function rightSpan (i) {
  const d = depth(i)
  return d === 0 ? i : (offsetAt(i, d) + 1) * 2 ** (d + 1) - 2
}

export function children (i) {
  const d = depth(i)
  if (d === 0) return null
  const o = offsetAt(i, d)
  return [index(d - 1, 2 * o), index(d - 1, 2 * o + 1)]
}

/** Roots of the complete subtrees left of leaf index `head` (usually 2·length), left first. */
export function fullRoots (head) {
  const out = []
  let leaves = Math.floor(head / 2)
  let off = 0
  while (leaves > 0) {
    let factor = 1
    while (factor * 2 <= leaves) factor *= 2
    out.push(off + factor - 1)
    off += 2 * factor
    leaves -= factor
  }
  return out
}

// ---------------------------------------------------------------------------------------------
// Merkle hashes (hypercore-crypto `data`, `parent`, `tree`)

/** Leaf hash of a block: `H(00 ‖ u64le(len) ‖ data)`. */
export function leafHash (data) {
  return blake2b256(Uint8Array.of(0), u64le(data.length), data)
}

/** Parent hash: `H(01 ‖ u64le(a.size + b.size) ‖ left.hash ‖ right.hash)`, left = lower index. */
export function parentHash (a, b) {
  const [l, r] = a.index > b.index ? [b, a] : [a, b]
  return blake2b256(Uint8Array.of(1), u64le(l.size + r.size), l.hash, r.hash)
}

/** Tree hash of roots: `H(02 ‖ (hash ‖ u64le(index) ‖ u64le(size))*)`: what is signed. */
export function treeHash (roots) {
  const parts = [Uint8Array.of(2)]
  for (const r of roots) parts.push(r.hash, u64le(r.index), u64le(r.size))
  return blake2b256(...parts)
}

// ---------------------------------------------------------------------------------------------
// compact-encoding (3.5.2) reading and writing, what manifests and signatures need

class Reader {
  constructor (bytes) {
    this.b = bytes
    this.i = 0
  }

  take (n) {
    if (this.i + n > this.b.length) throw new VerifyError('DECODING_ERROR', 'out of bounds')
    const out = this.b.subarray(this.i, this.i + n)
    this.i += n
    return out
  }

  uint () {
    const a = this.take(1)[0]
    if (a < 0xfd) return a
    const n = a === 0xfd ? 2 : a === 0xfe ? 4 : 8
    const b = this.take(n)
    let v = 0
    for (let k = n - 1; k >= 0; k--) v = v * 256 + b[k]
    if (v > MAX_SAFE) throw new VerifyError('DECODING_ERROR', 'uint above 2^53-1')
    return v
  }

  array (item) {
    const n = this.uint()
    if (n > MAX_ARRAY) throw new VerifyError('DECODING_ERROR', 'array is too big')
    const out = []
    for (let k = 0; k < n; k++) out.push(item(this))
    return out
  }

  buffer () {
    return this.take(this.uint()).slice()
  }
}

class Writer {
  constructor () {
    this.parts = []
  }

  raw (b) {
    this.parts.push(b)
  }

  uint (n) {
    if (n <= 0xfc) this.raw(Uint8Array.of(n))
    else if (n <= 0xffff) this.raw(Uint8Array.of(0xfd, n & 0xff, n >>> 8))
    else if (n <= 0xffffffff) this.raw(concat([Uint8Array.of(0xfe), u64le(n).subarray(0, 4)]))
    else this.raw(concat([Uint8Array.of(0xff), u64le(n)]))
  }

  bytes () {
    return concat(this.parts)
  }
}

// ---------------------------------------------------------------------------------------------
// Manifests (hypercore lib/messages.js `manifest`, protocol/log.md §3)

const FLAG_PATCH = 1
const FLAG_PROLOGUE = 2
const FLAG_LINKED = 4
const FLAG_USER_DATA = 8

function decodeSigner (r) {
  if (r.uint() !== 0) throw new VerifyError('DECODING_ERROR', 'unknown signature id')
  return { signature: 'ed25519', namespace: r.take(32).slice(), publicKey: r.take(32).slice() }
}

function hashId (r) {
  if (r.uint() !== 0) throw new VerifyError('DECODING_ERROR', 'unknown hash id')
  return 'blake2b'
}

/**
 * Decode a manifest as JS hypercore does: versions 0 (legacy layout) to 3, unknown flag bits
 * and trailing bytes ignored. Returns `{version, hash, allowPatch, quorum, signers, prologue,
 * linked, userData}` with byte arrays for keys.
 */
export function decodeManifest (bytes) {
  const r = new Reader(bytes)
  const version = r.uint()
  if (version === 0) {
    const hash = hashId(r)
    const type = r.uint()
    const m = { version: 0, hash, allowPatch: false, quorum: 0, signers: [], prologue: null, linked: null, userData: null }
    if (type === 0) {
      m.prologue = { hash: r.take(32).slice(), length: 0 }
    } else if (type === 1) {
      m.quorum = 1
      m.signers = [decodeSigner(r)]
    } else if (type === 2) {
      m.allowPatch = (r.uint() & 1) !== 0
      m.quorum = r.uint()
      m.signers = r.array(decodeSigner)
    } else {
      throw new VerifyError('DECODING_ERROR', 'unknown legacy manifest type')
    }
    return m
  }
  if (version > 3) throw new VerifyError('DECODING_ERROR', 'unknown manifest version')
  const flags = r.uint()
  const hash = hashId(r)
  const quorum = r.uint()
  const signers = r.array(decodeSigner)
  const prologue = flags & FLAG_PROLOGUE ? { hash: r.take(32).slice(), length: r.uint() } : null
  const linked = flags & FLAG_LINKED ? r.array((s) => s.take(32).slice()) : null
  const userData = flags & FLAG_USER_DATA ? r.buffer() : null
  return { version, hash, allowPatch: (flags & FLAG_PATCH) !== 0, quorum, signers, prologue, linked, userData }
}

function encodeSigner (w, s) {
  w.uint(0)
  w.raw(s.namespace)
  w.raw(s.publicKey)
}

/** The canonical encoding of a decoded manifest (what JS hashes). */
export function encodeManifest (m) {
  const w = new Writer()
  w.uint(m.version)
  if (m.version === 0) {
    w.uint(0)
    if (m.prologue && m.signers.length === 0) {
      w.uint(0)
      w.raw(m.prologue.hash)
    } else if (m.quorum === 1 && m.signers.length === 1 && !m.allowPatch) {
      w.uint(1)
      encodeSigner(w, m.signers[0])
    } else {
      w.uint(2)
      w.uint(m.allowPatch ? 1 : 0)
      w.uint(m.quorum)
      w.uint(m.signers.length)
      for (const s of m.signers) encodeSigner(w, s)
    }
    return w.bytes()
  }
  let flags = 0
  if (m.allowPatch) flags |= FLAG_PATCH
  if (m.prologue) flags |= FLAG_PROLOGUE
  if (m.linked) flags |= FLAG_LINKED
  if (m.userData) flags |= FLAG_USER_DATA
  w.uint(flags)
  w.uint(0)
  w.uint(m.quorum)
  w.uint(m.signers.length)
  for (const s of m.signers) encodeSigner(w, s)
  if (m.prologue) {
    w.raw(m.prologue.hash)
    w.uint(m.prologue.length)
  }
  if (m.linked) {
    w.uint(m.linked.length)
    for (const k of m.linked) w.raw(k)
  }
  if (m.userData) {
    w.uint(m.userData.length)
    w.raw(m.userData)
  }
  return w.bytes()
}

/** `BLAKE2b-256(MANIFEST ‖ encode(manifest))`: the key of a v11 log. */
export function manifestHash (m) {
  return blake2b256(MANIFEST, encodeManifest(m))
}

/** `Verifier.defaultSignerManifest(publicKey)`. */
export function defaultSignerManifest (publicKey) {
  return {
    version: 1,
    hash: 'blake2b',
    allowPatch: false,
    quorum: 1,
    signers: [{ signature: 'ed25519', namespace: DEFAULT_NAMESPACE, publicKey }],
    prologue: null,
    linked: null,
    userData: null
  }
}

/** JS `createManifest` rules: a manifest that fails them is never used. Throws BAD_ARGUMENT. */
export function validateManifest (m) {
  if (m.quorum > m.signers.length) throw new VerifyError('BAD_ARGUMENT', 'quorum higher than the number of signers')
  if (m.version < 2 && m.userData) throw new VerifyError('BAD_ARGUMENT', 'invalid field: userData')
  if (m.version < 2 && m.linked && m.linked.length > 0) throw new VerifyError('BAD_ARGUMENT', 'invalid field: linked')
}

// ---------------------------------------------------------------------------------------------
// Signatures (hypercore lib/caps.js, lib/multisig.js, lib/verifier.js; protocol/log.md §4)

/** `TREE ‖ context ‖ treeHash ‖ u64le(length) ‖ u64le(fork)` (112 bytes); context = manifest
 * hash, or the signer's namespace for a v0 manifest. */
export function signable (context, tree, length, fork) {
  return concat([TREE, context, tree, u64le(length), u64le(fork)])
}

/** Compat logs: `TREE ‖ treeHash ‖ u64le(length) ‖ u64le(fork)` (80 bytes). */
export function signableCompat (tree, length, fork) {
  return concat([TREE, tree, u64le(length), u64le(fork)])
}

function decodeNode (r) {
  return { index: r.uint(), size: r.uint(), hash: r.take(32).slice() }
}

/** `messages.multiSignature`: `array({uint signer, fixed64 signature, uint patch}) ‖ array(node)`. */
export function decodeMultiSignature (bytes) {
  const r = new Reader(bytes)
  const proofs = r.array((s) => ({ signer: s.uint(), signature: s.take(64).slice(), patch: s.uint() }))
  return { proofs, patch: r.array(decodeNode) }
}

/** `messages.multiSignaturev0`, viewed as v1 (a patch counts its length). */
export function decodeMultiSignatureV0 (bytes) {
  const r = new Reader(bytes)
  const proofs = r.array((s) => {
    const flags = s.uint()
    const signer = s.uint()
    const signature = s.take(64).slice()
    let patch = 0
    if (flags & 1) {
      s.uint() // start
      patch = s.uint()
      s.array((t) => t.uint())
    }
    return { signer, signature, patch }
  })
  return { proofs, patch: r.array(decodeNode) }
}

/**
 * A verifier for `key`: with `manifestBytes` (a v11 log) the manifest must hash to the key, or
 * name the key as its only signer (compat); without, the key is a compat Ed25519 key.
 * Throws INVALID_SIGNATURE for a manifest of another key, BAD_ARGUMENT for one JS refuses.
 */
export function verifierFor (key, manifestBytes) {
  if (key.length !== 32) throw new VerifyError('BAD_ARGUMENT', 'a key is 32 bytes')
  if (manifestBytes == null) {
    const manifest = defaultSignerManifest(key)
    return { key, manifest, manifestHash: manifestHash(manifest), compat: true }
  }
  const manifest = decodeManifest(manifestBytes)
  const hash = manifestHash(manifest)
  const compat = manifest.signers.length === 1 && equal(manifest.signers[0].publicKey, key)
  if (!compat && !equal(hash, key)) {
    throw new VerifyError('INVALID_SIGNATURE', 'manifest does not hash to the key')
  }
  validateManifest(manifest)
  return { key, manifest, manifestHash: hash, compat }
}

/**
 * Whether `signature` signs the head `{treeHash, length, fork}` under `verifier`
 * (`Verifier.verify`), as a promise. Patched signatures (a signer over a longer head, `allowPatch`) are not
 * supported here and fail: a gateway serves heads its writer signed directly.
 */
export async function verifySignature (verifier, head, signature) {
  const { manifest, compat } = verifier
  const version = compat ? 0 : manifest.version
  const quorum = compat ? 1 : manifest.quorum
  const allowPatch = !compat && manifest.allowPatch
  const signerVerifies = async (i, sig) => {
    const s = manifest.signers[i]
    if (!s) return false
    const msg = compat
      ? signableCompat(head.treeHash, head.length, head.fork)
      : signable(version === 0 ? s.namespace : verifier.manifestHash, head.treeHash, head.length, head.fork)
    return ed25519Verify(s.publicKey, msg, sig)
  }
  const multi = async (sig) => {
    if (quorum === 0) return false
    let inflated
    try {
      inflated = version >= 1 ? decodeMultiSignature(sig) : decodeMultiSignatureV0(sig)
    } catch {
      return false
    }
    if (inflated.proofs.length < quorum) return false
    const tried = new Set()
    for (const p of inflated.proofs.slice(0, quorum)) {
      if (p.patch !== 0 && allowPatch) return false // unsupported, see above
      if (p.signer >= manifest.signers.length || tried.has(p.signer)) return false
      tried.add(p.signer)
      if (!(await signerVerifies(p.signer, p.signature))) return false
    }
    return true
  }
  if (version === 0) {
    if (!signature) return false
    if (compat || (!allowPatch && manifest.signers.length === 1)) return signerVerifies(0, signature)
    return multi(signature)
  }
  const prologue = manifest.prologue
  if (prologue && head.length <= prologue.length) {
    return head.length === prologue.length && equal(head.treeHash, prologue.hash)
  }
  return !!signature && multi(signature)
}

function nodeFromJson (n) {
  if (!n || !Number.isSafeInteger(n.index) || !Number.isSafeInteger(n.size) || n.index < 0 || n.size < 0) {
    throw new VerifyError('DECODING_ERROR', 'bad root node')
  }
  const hash = fromHex(n.hash)
  if (hash.length !== 32) throw new VerifyError('DECODING_ERROR', 'bad root hash')
  return { index: n.index, size: n.size, hash }
}

/**
 * Verify a head as `GET /v1/logs/{key}/head` serves it (JSON, hex fields) for the log `key`
 * (32 bytes, or hex). Checks: the key field, the manifest against the key, the roots against
 * the length and the tree hash, the byte length, the signature. Returns the trusted head
 * `{key, length, fork, byteLength, treeHash, roots, compat}` or rejects with a VerifyError
 * (or another error if the fallback Ed25519 engine cannot be loaded).
 * An empty log (length 0) has no signature and proves nothing; it is returned as is.
 */
export async function verifyHead (json, key) {
  if (typeof key === 'string') key = fromHex(key)
  if (!json || typeof json !== 'object') throw new VerifyError('DECODING_ERROR', 'head is not an object')
  if (!equal(fromHex(json.key), key)) throw new VerifyError('INVALID_OPERATION', 'head of another log')
  const { length, fork, byteLength } = json
  for (const n of [length, fork, byteLength]) {
    if (!Number.isSafeInteger(n) || n < 0) throw new VerifyError('DECODING_ERROR', 'bad head field')
  }
  if (length > MAX_LENGTH) throw new VerifyError('BAD_ARGUMENT', 'length above 2^48')
  if (!Array.isArray(json.roots) || json.roots.length > 64) throw new VerifyError('DECODING_ERROR', 'bad roots')
  const roots = json.roots.map(nodeFromJson)
  const want = fullRoots(2 * length)
  if (want.length !== roots.length || want.some((i, k) => roots[k].index !== i)) {
    throw new VerifyError('INVALID_PROOF', 'roots do not match the length')
  }
  const tree = treeHash(roots)
  if (!equal(tree, fromHex(json.treeHash))) throw new VerifyError('INVALID_PROOF', 'roots do not hash to the tree hash')
  if (roots.reduce((s, r) => s + r.size, 0) !== byteLength) throw new VerifyError('INVALID_PROOF', 'byte length does not match the roots')
  const verifier = verifierFor(key, json.manifest == null ? null : fromHex(json.manifest))
  const head = { key, length, fork, byteLength, treeHash: tree, roots, compat: verifier.compat }
  if (length === 0 && json.signature == null) return head
  const signature = json.signature == null ? null : fromHex(json.signature)
  if (!(await verifySignature(verifier, head, signature))) throw new VerifyError('INVALID_SIGNATURE', 'head signature does not verify')
  return head
}

// ---------------------------------------------------------------------------------------------
// The PHR1 range proof (protocol/gateway.md §4)

const MAGIC = Uint8Array.of(0x50, 0x48, 0x52, 0x31) // "PHR1"

function readU64 (view, o) {
  const lo = view.getUint32(o, true)
  const hi = view.getUint32(o + 4, true)
  if (hi >= 2 ** 21) throw new VerifyError('INVALID_PROOF', 'integer above 2^53-1')
  return hi * 2 ** 32 + lo
}

/**
 * Decode a PHR1 body, with the bounds checks of the Rust decoder (no hashing). Returns
 * `{fork, length, start, end, nodes: [{index, size, hash}], blocks: [Uint8Array]}`.
 */
export function decodeRangeProof (bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  let o = 0
  const need = (n) => {
    if (o + n > bytes.length) throw new VerifyError('INVALID_PROOF', 'range proof truncated')
  }
  need(40)
  if (!equal(bytes.subarray(0, 4), MAGIC)) throw new VerifyError('INVALID_PROOF', 'not a range proof')
  const fork = readU64(view, 4)
  const length = readU64(view, 12)
  const start = readU64(view, 20)
  const end = readU64(view, 28)
  const count = view.getUint32(36, true)
  o = 40
  if (length > MAX_LENGTH) throw new VerifyError('INVALID_PROOF', 'length out of bounds')
  if (start >= end || end > length || end - start > MAX_PROOF_BLOCKS) throw new VerifyError('INVALID_PROOF', 'start/end out of bounds')
  if (count > MAX_PROOF_NODES) throw new VerifyError('INVALID_PROOF', 'too many nodes')
  const nodes = []
  for (let k = 0; k < count; k++) {
    need(48)
    const index = readU64(view, o)
    const size = readU64(view, o + 8)
    const hash = bytes.slice(o + 16, o + 48)
    o += 48
    if (index >= 2 * length || (nodes.length > 0 && nodes[nodes.length - 1].index >= index)) {
      throw new VerifyError('INVALID_PROOF', 'node index out of bounds')
    }
    nodes.push({ index, size, hash })
  }
  const blocks = []
  for (let k = start; k < end; k++) {
    need(4)
    const len = view.getUint32(o, true)
    o += 4
    need(len)
    blocks.push(bytes.slice(o, o + len))
    o += len
  }
  if (o !== bytes.length) throw new VerifyError('INVALID_PROOF', 'trailing bytes')
  return { fork, length, start, end, nodes, blocks }
}

function pushMerge (stack, node) {
  stack.push(node)
  while (stack.length >= 2) {
    const right = stack[stack.length - 1]
    const left = stack[stack.length - 2]
    if (sibling(right.index) !== left.index || left.index > right.index) break
    const size = left.size + right.size
    if (size > MAX_SAFE) throw new VerifyError('INVALID_PROOF', 'node size out of bounds')
    stack.length -= 2
    stack.push({ index: parent(right.index), size, hash: parentHash(left, right) })
  }
}

/**
 * Recompute the roots of the tree at `proof.length` from the blocks and nodes: walk the
 * tiling left to right (the blocks' leaves go where the cursor reaches 2·start), merge
 * adjacent siblings, and require exactly the full roots at the end.
 */
export function rangeRoots (proof) {
  const head = 2 * proof.length
  const stack = []
  let cursor = 0
  let next = 0
  let placed = false
  while (cursor < head) {
    if (!placed && cursor === 2 * proof.start) {
      proof.blocks.forEach((b, k) => {
        pushMerge(stack, { index: 2 * (proof.start + k), size: b.length, hash: leafHash(b) })
      })
      placed = true
      cursor = 2 * proof.end
      continue
    }
    const n = proof.nodes[next++]
    if (!n || leftSpan(n.index) !== cursor || rightSpan(n.index) >= head) {
      throw new VerifyError('INVALID_PROOF', `range proof does not tile at leaf ${cursor}`)
    }
    cursor = rightSpan(n.index) + 2
    pushMerge(stack, n)
  }
  if (next !== proof.nodes.length || !placed) throw new VerifyError('INVALID_PROOF', 'range proof does not tile the tree')
  const want = fullRoots(head)
  if (want.length !== stack.length || want.some((i, k) => stack[k].index !== i)) {
    throw new VerifyError('INVALID_PROOF', 'range proof does not reduce to the roots')
  }
  return stack
}

/**
 * Verify a PHR1 body against a trusted head (from `verifyHead`) for the request
 * `start..end`: same fork and length, blocks `start..end'` with `end' ≤ end` (a gateway may
 * serve a prefix), roots hashing to the signed tree hash. Returns `{start, end, blocks}`.
 */
export function verifyRange (bytes, head, start, end) {
  const proof = decodeRangeProof(bytes)
  if (proof.fork !== head.fork) throw new VerifyError('INVALID_OPERATION', 'range proof for another fork')
  if (proof.length !== head.length) throw new VerifyError('INVALID_OPERATION', 'range proof for another length')
  if (proof.start !== start || proof.end > end) throw new VerifyError('INVALID_OPERATION', 'range proof for another range')
  const roots = rangeRoots(proof)
  if (!equal(treeHash(roots), head.treeHash)) throw new VerifyError('INVALID_PROOF', 'range proof does not hash to the signed tree hash')
  return { start: proof.start, end: proof.end, blocks: proof.blocks }
}
