// The loader's verification against the vectors the real JS packages generated
// (fixtures/hypercore-11.39.5: the same files crates/log checks).

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'

import {
  DEFAULT_NAMESPACE, MANIFEST, TREE, VerifyError, decodeManifest, decodeMultiSignature, encodeManifest,
  fromHex, fullRoots, leafHash, manifestHash, namespace, parentHash, signable, signableCompat, toHex,
  treeHash, validateManifest, verifierFor, verifyHead, verifySignature, defaultSignerManifest,
  parent, sibling, leftSpan, rightSpan, children, depth, offset
} from '../src/verify.js'
import { ENGINES, engineName, strict, useEngine } from '../src/ed25519.js'
import { ed25519 } from '@noble/curves/ed25519.js'

const dir = new URL('../../fixtures/hypercore-11.39.5/', import.meta.url)
const load = (name) => JSON.parse(readFileSync(new URL(name, dir), 'utf8'))
const crypto = load('crypto.json')
const cores = load('cores.json').cores
const manifests = load('manifests.json').manifests

const node = (n) => ({ index: n.index, size: n.size, hash: fromHex(n.hash) })

test('namespaces: TREE, MANIFEST, DEFAULT_NAMESPACE as hypercore derives them', () => {
  const ns = crypto.namespaces.find((n) => n.name === 'hypercore')
  const value = (label) => ns.values.find((v) => v.label === label)
  for (const [label, constant] of [['TREE', TREE], ['MANIFEST', MANIFEST], ['DEFAULT_NAMESPACE', DEFAULT_NAMESPACE]]) {
    const v = value(label)
    assert.equal(toHex(constant), v.value, label)
    assert.equal(toHex(namespace('hypercore', v.id)), v.value, label)
  }
})

test('leaf, parent and tree hashes', () => {
  const { leaves, parents, trees } = crypto.hashes
  for (const l of leaves) assert.equal(toHex(leafHash(fromHex(l.data))), l.hash, l.name)
  for (const p of parents) {
    const [a, b] = [node(p.left), node(p.right)]
    assert.equal(toHex(parentHash(a, b)), p.hash, p.name)
    assert.equal(toHex(parentHash(b, a)), p.hash, `${p.name} (swapped)`)
  }
  for (const t of trees) assert.equal(toHex(treeHash(t.roots.map(node))), t.hash, t.name)
})

test('flat tree arithmetic matches flat-tree on small and large indices', () => {
  assert.deepEqual(fullRoots(22), [7, 17, 20])
  assert.deepEqual(fullRoots(0), [])
  assert.equal(parent(0), 1)
  assert.equal(parent(2), 1)
  assert.equal(parent(1), 3)
  assert.equal(parent(5), 3)
  assert.equal(sibling(1), 5)
  assert.equal(sibling(4), 6)
  assert.deepEqual([leftSpan(7), rightSpan(7)], [0, 14])
  assert.deepEqual([leftSpan(23), rightSpan(23)], [16, 30])
  assert.deepEqual(children(7), [3, 11])
  assert.equal(children(4), null)
  // 2^48 leaves: index math stays exact.
  const big = 2 ** 49 - 1
  assert.equal(depth(big), 49)
  assert.equal(offset(big), 0)
  assert.deepEqual([leftSpan(big), rightSpan(big)], [0, 2 ** 50 - 2])
  assert.deepEqual(fullRoots(2 ** 49 - 2).length, 48)
})

test('every fixture key pair: default manifest encoding and key', () => {
  for (const kp of crypto.keyPairs) {
    const m = defaultSignerManifest(fromHex(kp.publicKey))
    assert.equal(toHex(encodeManifest(m)), kp.defaultManifest)
    assert.equal(toHex(manifestHash(m)), kp.defaultKey)
  }
})

test('manifests: decode, canonical re-encoding, hash and validity as hypercore', () => {
  for (const f of manifests) {
    if (f.error) {
      assert.throws(() => decodeManifest(fromHex(f.encoded)), VerifyError, f.name)
      continue
    }
    const m = decodeManifest(fromHex(f.encoded))
    const d = f.decoded
    assert.equal(m.version, d.version, f.name)
    assert.equal(m.allowPatch, d.allowPatch, f.name)
    assert.equal(m.quorum, d.quorum, f.name)
    assert.deepEqual(m.signers.map((s) => [toHex(s.namespace), toHex(s.publicKey)]),
      d.signers.map((s) => [s.namespace, s.publicKey]), f.name)
    assert.deepEqual(m.prologue && { hash: toHex(m.prologue.hash), length: m.prologue.length }, d.prologue, f.name)
    assert.deepEqual(m.linked && m.linked.map(toHex), d.linked, f.name)
    assert.equal(m.userData && toHex(m.userData), d.userData, f.name)
    assert.equal(toHex(encodeManifest(m)), f.canonical ? f.encoded : f.reencoded, f.name)
    assert.equal(toHex(manifestHash(m)), f.hash, f.name)
    if (f.semanticValid) validateManifest(m)
    else assert.throws(() => validateManifest(m), /BAD_ARGUMENT/, f.name)
  }
})

/** A core fixture head in the shape the gateway serves. */
function headJson (core, h) {
  return {
    key: core.key,
    length: h.length,
    fork: h.fork,
    byteLength: h.byteLength,
    treeHash: h.treeHash,
    signature: h.signature,
    manifest: core.manifest,
    roots: h.roots
  }
}

for (const engine of ['webcrypto', 'noble']) {
  test(`${engine}: every head of the default, compat and forked cores verifies`, async () => {
    useEngine(engine)
    let n = 0
    for (const core of cores) {
      assert.equal(core.manifest === null, core.compat)
      for (const h of core.heads) {
        const head = await verifyHead(headJson(core, h), core.key)
        assert.equal(toHex(head.treeHash), h.treeHash)
        assert.equal(head.compat, core.compat)
        // The signable is the one hypercore signed.
        const v = verifierFor(fromHex(core.key), core.manifest && fromHex(core.manifest))
        const msg = core.compat
          ? signableCompat(head.treeHash, h.length, h.fork)
          : signable(v.manifestHash, head.treeHash, h.length, h.fork)
        assert.equal(toHex(msg), h.signable)
        if (!core.compat) {
          const multi = decodeMultiSignature(fromHex(h.signature))
          assert.equal(toHex(multi.proofs[0].signature), h.rawSignature)
        }
        n++
      }
    }
    assert.equal(n, 29)
  })

  test(`${engine}: tampered heads fail: every signature byte, the tree hash, length, fork, roots, key, manifest`, async () => {
    useEngine(engine)
    for (const core of cores) {
      const h = core.heads[core.heads.length - 1]
      const good = headJson(core, h)
      const fails = (json, key = core.key, code) =>
        assert.rejects(verifyHead(json, key), (e) => e instanceof VerifyError && (!code || e.code === code))
      const sig = fromHex(h.signature)
      for (let i = 0; i < sig.length; i++) {
        const bad = sig.slice()
        bad[i] ^= 0x01
        if (!core.compat && i === 66) {
          // `01 00 <sig> 00 00`: byte 66 is the proof's `patch`, which hypercore (and the log
          // crate) ignore unless the manifest allows patches. The signed head is the same.
          assert.equal((await verifyHead({ ...good, signature: toHex(bad) }, core.key)).length, h.length)
          continue
        }
        await fails({ ...good, signature: toHex(bad) })
      }
      await fails({ ...good, signature: null }, core.key, 'INVALID_SIGNATURE')
      await fails({ ...good, signature: h.signature.slice(0, -2) })
      await fails({ ...good, fork: h.fork + 1 }, core.key, 'INVALID_SIGNATURE')
      // Another length needs other roots; the signed roots with a wrong length do not match it.
      await fails({ ...good, length: h.length + 1 }, core.key, 'INVALID_PROOF')
      const roots = h.roots.map((r) => ({ ...r }))
      roots[0].hash = roots[0].hash.replace(/^./, (c) => (c === '0' ? '1' : '0'))
      await fails({ ...good, roots }, core.key, 'INVALID_PROOF')
      const sized = h.roots.map((r) => ({ ...r }))
      sized[0].size += 1
      await fails({ ...good, roots: sized, byteLength: h.byteLength + 1 }, core.key, 'INVALID_PROOF')
      await fails({ ...good, byteLength: h.byteLength + 1 }, core.key, 'INVALID_PROOF')
      // Another core's head, or this head presented for another key.
      const other = cores.find((c) => c !== core)
      await fails(good, other.key, 'INVALID_OPERATION')
      await fails({ ...headJson(other, other.heads[0]), key: core.key })
      if (core.compat) {
        // A compat head with a manifest of another signer does not pass for this key.
        await fails({ ...good, manifest: cores.find((c) => !c.compat).manifest }, core.key, 'INVALID_SIGNATURE')
      } else {
        // A v11 head without its manifest is checked as compat, and fails.
        await fails({ ...good, manifest: null }, core.key, 'INVALID_SIGNATURE')
        const m = fromHex(core.manifest)
        m[m.length - 1] ^= 1
        await fails({ ...good, manifest: toHex(m) }, core.key, 'INVALID_SIGNATURE')
      }
    }
  })

  test(`${engine}: signature rules: quorum, distinct signers, prologue, v0 namespaces`, async () => {
    useEngine(engine)
    // Built from the default core: its writer's signature over its last head.
    const core = cores.find((c) => c.name === 'default')
    const h = core.heads[core.heads.length - 1]
    const v = verifierFor(fromHex(core.key), fromHex(core.manifest))
    const head = { treeHash: fromHex(h.treeHash), length: h.length, fork: h.fork }
    assert.equal(await verifySignature(v, head, fromHex(h.signature)), true)
    // The raw 64-byte form is not a multisignature.
    assert.equal(await verifySignature(v, head, fromHex(h.rawSignature)), false)
    // Quorum 2 of the same signer twice: refused.
    const pk = fromHex(core.publicKey)
    const two = { ...v.manifest, quorum: 2, signers: [v.manifest.signers[0], v.manifest.signers[0]] }
    const v2 = { key: manifestHash(two), manifest: two, manifestHash: manifestHash(two), compat: false }
    const raw = fromHex(h.rawSignature)
    const twice = fromHex('02' + '00' + toHex(raw) + '00' + '00' + toHex(raw) + '00' + '00')
    assert.equal(await verifySignature(v2, head, twice), false)
    // A prologue covers its own length without any signature, and only its exact hash.
    const pro = { ...defaultSignerManifest(pk), prologue: { hash: head.treeHash, length: h.length } }
    const vp = { key: manifestHash(pro), manifest: pro, manifestHash: manifestHash(pro), compat: false }
    assert.equal(await verifySignature(vp, head, null), true)
    assert.equal(await verifySignature(vp, { ...head, treeHash: new Uint8Array(32) }, null), false)
    assert.equal(await verifySignature(vp, { ...head, length: h.length - 1 }, null), false)
    // Quorum 0 never verifies.
    const zero = { ...v.manifest, quorum: 0 }
    assert.equal(await verifySignature({ ...v, manifest: zero }, head, fromHex(h.signature)), false)
  })
}

// Ed25519 strictness: what hypercore (libsodium crypto_sign_verify_detached) refuses, both
// engines refuse, through `strict` before the curve equation.
const P = 2n ** 255n - 19n
const L = 2n ** 252n + 27742317777372353535851937790883648493n
const leBytes = (n) => Uint8Array.from({ length: 32 }, (_, i) => Number((n >> BigInt(8 * i)) & 0xffn))
const leInt = (b) => b.reduceRight((n, x) => (n << 8n) | BigInt(x), 0n)

/** A signature of `msg` by a deterministic key, and the key. */
function signed (msg = new TextEncoder().encode('peerhost')) {
  const secret = new Uint8Array(32).fill(7)
  return { pk: ed25519.getPublicKey(secret), msg, sig: ed25519.sign(msg, secret) }
}

test('auto picks WebCrypto where it has Ed25519 (Node ≥ 20), noble where it does not', async () => {
  useEngine('auto')
  assert.equal(await engineName(), 'webcrypto')
  const real = Object.getOwnPropertyDescriptor(globalThis, 'crypto')
  const unsupported = async () => { throw new DOMException('Unrecognized name', 'NotSupportedError') }
  Object.defineProperty(globalThis, 'crypto', { value: { subtle: { importKey: unsupported, verify: unsupported } }, configurable: true })
  try {
    useEngine('auto')
    assert.equal(await engineName(), 'noble')
    // And the fallback verifies real heads.
    const core = cores.find((c) => c.name === 'default')
    const h = core.heads[core.heads.length - 1]
    assert.equal((await verifyHead(headJson(core, h), core.key)).length, h.length)
  } finally {
    Object.defineProperty(globalThis, 'crypto', real)
    useEngine('auto')
  }
})

for (const engine of ['webcrypto', 'noble']) {
  test(`${engine}: a valid signature, a wrong key, a wrong message, S + L, a flipped bit`, async () => {
    useEngine(engine)
    const { pk, msg, sig } = signed()
    const verify = (p, m, s) => verifySignature({ manifest: { signers: [{ publicKey: p }] }, compat: true }, { treeHash: m, length: 0, fork: 0 }, s)
    // Through the head path (compat signable) and directly.
    assert.equal(await ENGINES[engine](pk, msg, sig), true)
    const tree = new Uint8Array(32).fill(1)
    const compatSig = ed25519.sign(signableCompat(tree, 0, 0), new Uint8Array(32).fill(7))
    assert.equal(await verify(pk, tree, compatSig), true)
    assert.equal(await verify(signed(Uint8Array.of(1)).pk.map((b, i) => (i === 0 ? b ^ 1 : b)), tree, compatSig), false)
    assert.equal(await verify(pk, new Uint8Array(32), compatSig), false)
    const other = ed25519.getPublicKey(new Uint8Array(32).fill(8))
    assert.equal(await verify(other, tree, compatSig), false)
    // S + L: the same signature, malleated. Refused before the engine.
    const s = leInt(compatSig.subarray(32))
    const malleated = compatSig.slice()
    malleated.set(leBytes(s + L), 32)
    assert.equal(strict(pk, malleated), false)
    assert.equal(await verify(pk, tree, malleated), false)
    for (const i of [0, 31, 32, 63]) {
      const bad = compatSig.slice()
      bad[i] ^= 0x40
      assert.equal(await verify(pk, tree, bad), false, `byte ${i}`)
    }
    useEngine('auto')
  })
}

test('strict: small-order keys and R (every encoding that fits), non-canonical keys, S ≥ L', () => {
  const { pk, sig } = signed()
  assert.equal(strict(pk, sig), true)
  // Every point of order 1, 2, 4 or 8 (the torsion subgroup), with either sign bit, and the
  // non-canonical encodings of y = 0 and 1 (P, P + 1): refused as the key and as R.
  // The 8-torsion, from noble: for a point X of the curve, X·L = X·(L - 1) + X lies in it;
  // one of order exactly 8 generates it.
  let t8 = null
  for (let y = 2n; !t8 && y < 100n; y++) {
    let x
    try { x = ed25519.Point.fromBytes(leBytes(y), false) } catch { continue }
    const t = x.multiplyUnsafe(L - 1n).add(x)
    if (!t.double().double().is0()) t8 = t
  }
  assert.ok(t8, 'a point of order 8')
  const torsion = []
  for (let k = 0, q = ed25519.Point.ZERO; k < 8; k++, q = q.add(t8)) torsion.push(q)
  assert.ok(torsion[1].double().double().double().is0())
  const encodings = []
  for (const q of torsion) {
    const b = q.toBytes()
    encodings.push(b)
    const flipped = b.slice()
    flipped[31] ^= 0x80
    encodings.push(flipped)
  }
  encodings.push(leBytes(P), leBytes(P + 1n)) // y ≡ 0 and y ≡ 1, non-canonical
  for (const e of encodings) {
    assert.equal(strict(e, sig), false, `key ${toHex(e)}`)
    const r = sig.slice()
    r.set(e, 0)
    assert.equal(strict(pk, r), false, `R ${toHex(e)}`)
  }
  // A canonical key that is not small order, with y ≥ P written non-canonically.
  for (let y = 2n; y < 19n; y++) {
    let point
    try { point = ed25519.Point.fromBytes(leBytes(y), false) } catch { continue }
    if (point.isSmallOrder()) continue
    assert.equal(strict(leBytes(y), sig), true)
    assert.equal(strict(leBytes(y + P), sig), false, `y = ${y} + P`)
  }
  // S = L - 1 passes the range check, S = L and above do not.
  const at = (s) => { const x = sig.slice(); x.set(leBytes(s), 32); return x }
  assert.equal(strict(pk, at(L - 1n)), true)
  assert.equal(strict(pk, at(L)), false)
  assert.equal(strict(pk, at(2n ** 256n - 1n)), false)
  assert.equal(strict(pk.subarray(1), sig), false)
  assert.equal(strict(pk, sig.subarray(1)), false)
})

test('both engines agree with libsodium on a key with a torsion component (cofactorless)', async () => {
  // A = a·B + T (T of order 8), and a signature made with a: S·B − k·A = R − k·T, which is R
  // only when 8 divides k. libsodium (and WebCrypto) compare encodings, cofactorless, so they
  // accept exactly those; noble's cofactored `verify` would accept every one.
  const { sha512 } = await import('@noble/hashes/sha2.js')
  const { Point } = ed25519
  let t8 = null
  for (let y = 2n; !t8; y++) {
    let x
    try { x = Point.fromBytes(leBytes(y), false) } catch { continue }
    const t = x.multiplyUnsafe(L - 1n).add(x)
    if (!t.double().double().is0()) t8 = t
  }
  const a = 0x1234567n
  const A = Point.BASE.multiply(a).add(t8).toBytes()
  const seen = { accepted: 0, refused: 0 }
  for (let i = 0; i < 48; i++) {
    const msg = new TextEncoder().encode(`message ${i}`)
    const rs = 1000n + BigInt(i)
    const R = Point.BASE.multiply(rs).toBytes()
    const k = leInt(sha512(new Uint8Array([...R, ...A, ...msg]))) % L
    const sig = new Uint8Array([...R, ...leBytes((rs + k * a) % L)])
    assert.equal(ed25519.verify(sig, msg, A, { zip215: false }), true, 'noble\'s own verify is cofactored')
    const want = k % 8n === 0n
    seen[want ? 'accepted' : 'refused']++
    for (const engine of ['webcrypto', 'noble']) {
      assert.equal(await ENGINES[engine](A, msg, sig), want, `${engine}, message ${i}`)
    }
  }
  assert.ok(seen.accepted > 0 && seen.refused > 0, JSON.stringify(seen))
})
