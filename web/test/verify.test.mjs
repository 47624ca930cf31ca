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

test('every head of the default, compat and forked cores verifies', () => {
  let n = 0
  for (const core of cores) {
    assert.equal(core.manifest === null, core.compat)
    for (const h of core.heads) {
      const head = verifyHead(headJson(core, h), core.key)
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

test('tampered heads fail: every signature byte, the tree hash, length, fork, roots, key, manifest', () => {
  for (const core of cores) {
    const h = core.heads[core.heads.length - 1]
    const good = headJson(core, h)
    const fails = (json, key = core.key, code) => {
      assert.throws(() => verifyHead(json, key), (e) => e instanceof VerifyError && (!code || e.code === code))
    }
    const sig = fromHex(h.signature)
    for (let i = 0; i < sig.length; i++) {
      const bad = sig.slice()
      bad[i] ^= 0x01
      if (!core.compat && i === 66) {
        // `01 00 <sig> 00 00`: byte 66 is the proof's `patch`, which hypercore (and the log
        // crate) ignore unless the manifest allows patches. The signed head is the same.
        assert.equal(verifyHead({ ...good, signature: toHex(bad) }, core.key).length, h.length)
        continue
      }
      fails({ ...good, signature: toHex(bad) })
    }
    fails({ ...good, signature: null }, core.key, 'INVALID_SIGNATURE')
    fails({ ...good, signature: h.signature.slice(0, -2) })
    fails({ ...good, fork: h.fork + 1 }, core.key, 'INVALID_SIGNATURE')
    // Another length needs other roots; the signed roots with a wrong length do not match it.
    fails({ ...good, length: h.length + 1 }, core.key, 'INVALID_PROOF')
    const roots = h.roots.map((r) => ({ ...r }))
    roots[0].hash = roots[0].hash.replace(/^./, (c) => (c === '0' ? '1' : '0'))
    fails({ ...good, roots }, core.key, 'INVALID_PROOF')
    const sized = h.roots.map((r) => ({ ...r }))
    sized[0].size += 1
    fails({ ...good, roots: sized, byteLength: h.byteLength + 1 }, core.key, 'INVALID_PROOF')
    fails({ ...good, byteLength: h.byteLength + 1 }, core.key, 'INVALID_PROOF')
    // Another core's head, or this head presented for another key.
    const other = cores.find((c) => c !== core)
    fails(good, other.key, 'INVALID_OPERATION')
    fails({ ...headJson(other, other.heads[0]), key: core.key })
    if (core.compat) {
      // A compat head with a manifest of another signer does not pass for this key.
      fails({ ...good, manifest: cores.find((c) => !c.compat).manifest }, core.key, 'INVALID_SIGNATURE')
    } else {
      // A v11 head without its manifest is checked as compat, and fails.
      fails({ ...good, manifest: null }, core.key, 'INVALID_SIGNATURE')
      const m = fromHex(core.manifest)
      m[m.length - 1] ^= 1
      fails({ ...good, manifest: toHex(m) }, core.key, 'INVALID_SIGNATURE')
    }
  }
})

test('signature rules: quorum, distinct signers, prologue, v0 namespaces', () => {
  // Built from the default core: its writer's signature over its last head.
  const core = cores.find((c) => c.name === 'default')
  const h = core.heads[core.heads.length - 1]
  const v = verifierFor(fromHex(core.key), fromHex(core.manifest))
  const head = { treeHash: fromHex(h.treeHash), length: h.length, fork: h.fork }
  assert.equal(verifySignature(v, head, fromHex(h.signature)), true)
  // The raw 64-byte form is not a multisignature.
  assert.equal(verifySignature(v, head, fromHex(h.rawSignature)), false)
  // Quorum 2 of the same signer twice: refused.
  const pk = fromHex(core.publicKey)
  const two = { ...v.manifest, quorum: 2, signers: [v.manifest.signers[0], v.manifest.signers[0]] }
  const v2 = { key: manifestHash(two), manifest: two, manifestHash: manifestHash(two), compat: false }
  const raw = fromHex(h.rawSignature)
  const twice = fromHex('02' + '00' + toHex(raw) + '00' + '00' + toHex(raw) + '00' + '00')
  assert.equal(verifySignature(v2, head, twice), false)
  // A prologue covers its own length without any signature, and only its exact hash.
  const pro = { ...defaultSignerManifest(pk), prologue: { hash: head.treeHash, length: h.length } }
  const vp = { key: manifestHash(pro), manifest: pro, manifestHash: manifestHash(pro), compat: false }
  assert.equal(verifySignature(vp, head, null), true)
  assert.equal(verifySignature(vp, { ...head, treeHash: new Uint8Array(32) }, null), false)
  assert.equal(verifySignature(vp, { ...head, length: h.length - 1 }, null), false)
  // Quorum 0 never verifies.
  const zero = { ...v.manifest, quorum: 0 }
  assert.equal(verifySignature({ ...v, manifest: zero }, head, fromHex(h.signature)), false)
})
