'use strict'

// Shared helpers for the fixture generator (fixtures/generate.js) and the
// "JS verifies Rust" checker (verify-log.js).
//
// Everything here drives the REAL hypercore 11 package: proofs are verified
// with hypercore's own Core#verify / Core#verifyReorg / ReorgBatch#update /
// Core#reorg, i.e. the calls lib/replicator.js makes for a received `data`
// message. Nothing in here re-implements Merkle verification.

const fs = require('fs')
const os = require('os')
const path = require('path')

const Hypercore = require('hypercore')
const { MerkleTree } = require('hypercore/lib/merkle-tree')
const messages = require('hypercore/lib/messages')
const Verifier = require('hypercore/lib/verifier')
const c = require('compact-encoding')
const hcrypto = require('hypercore-crypto')

const PACKAGES = [
  'hypercore',
  'corestore',
  'hypercore-crypto',
  'hypercore-id-encoding',
  'compact-encoding',
  'flat-tree',
  'hypercore-storage',
  'z32',
  'sodium-native',
  '@hyperswarm/secret-stream',
  'hyperdht'
]

function versions() {
  const out = {}
  for (const name of PACKAGES) {
    const file = require.resolve(name + '/package.json', { paths: [__dirname] })
    out[name] = JSON.parse(fs.readFileSync(file, 'utf8')).version
  }
  return out
}

// ---------------------------------------------------------------- hex / JSON

function hx(buf) {
  if (buf === null || buf === undefined) return null
  return Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength).toString('hex')
}

function unhex(s, what = 'hex') {
  if (typeof s !== 'string' || !/^([0-9a-f]{2})*$/.test(s)) {
    throw new DocError('expected lowercase hex for ' + what)
  }
  return Buffer.from(s, 'hex')
}

function stableJson(obj) {
  return JSON.stringify(obj, null, 2) + '\n'
}

function normNode(n) {
  return { index: n.index, size: n.size, hash: hx(n.hash) }
}

function normManifest(m) {
  if (m === null || m === undefined) return null
  return {
    version: m.version,
    hash: m.hash,
    allowPatch: !!m.allowPatch,
    quorum: m.quorum,
    signers: m.signers.map((s) => ({
      signature: s.signature,
      namespace: hx(s.namespace),
      publicKey: hx(s.publicKey)
    })),
    prologue: m.prologue ? { hash: hx(m.prologue.hash), length: m.prologue.length } : null,
    linked: m.linked ? m.linked.map(hx) : null,
    userData: m.userData ? hx(m.userData) : null
  }
}

function normRequest(r) {
  return {
    id: r.id,
    fork: r.fork,
    block: r.block ? { index: r.block.index, nodes: r.block.nodes } : null,
    hash: r.hash ? { index: r.hash.index, nodes: r.hash.nodes } : null,
    seek: r.seek ? { bytes: r.seek.bytes, padding: r.seek.padding } : null,
    upgrade: r.upgrade ? { start: r.upgrade.start, length: r.upgrade.length } : null,
    manifest: !!r.manifest,
    priority: r.priority || 0
  }
}

function normData(d) {
  return {
    request: d.request,
    fork: d.fork,
    block: d.block
      ? { index: d.block.index, value: hx(d.block.value), nodes: d.block.nodes.map(normNode) }
      : null,
    hash: d.hash ? { index: d.hash.index, nodes: d.hash.nodes.map(normNode) } : null,
    seek: d.seek ? { bytes: d.seek.bytes, nodes: d.seek.nodes.map(normNode) } : null,
    upgrade: d.upgrade
      ? {
          start: d.upgrade.start,
          length: d.upgrade.length,
          nodes: d.upgrade.nodes.map(normNode),
          additionalNodes: d.upgrade.additionalNodes.map(normNode),
          signature: hx(d.upgrade.signature)
        }
      : null,
    manifest: d.manifest ? hx(c.encode(messages.manifest, d.manifest)) : null
  }
}

function encodeRequest(msg) {
  return c.encode(messages.wire.request, msg)
}

function decodeRequest(buf) {
  return c.decode(messages.wire.request, buf)
}

function encodeData(msg) {
  return c.encode(messages.wire.data, msg)
}

function decodeData(buf) {
  return c.decode(messages.wire.data, buf)
}

// ------------------------------------------------------------------- errors

// The document itself is malformed (not a protocol rejection).
class DocError extends Error {}

// JS (hypercore) refused something: a proof, a signature, a final-state check.
class Rejection extends Error {}

// ---------------------------------------------------------------- temp dirs

function makeTempDir(prefix) {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix))
}

function removeDir(dir) {
  fs.rmSync(dir, { recursive: true, force: true })
}

// ------------------------------------------------------------- replica set

// Same check as Replicator#_matchingRequest (with allowPush = false).
function matchesRequest(req, data) {
  if (data.block !== null && (req.block === null || req.block.index !== data.block.index)) {
    return 'data.block does not answer request.block'
  }
  if (data.hash !== null && (req.hash === null || req.hash.index !== data.hash.index)) {
    return 'data.hash does not answer request.hash'
  }
  if (data.seek !== null && (req.seek === null || req.seek.bytes !== data.seek.bytes)) {
    return 'data.seek does not answer request.seek'
  }
  if (data.upgrade !== null && req.upgrade === null) {
    return 'data.upgrade without request.upgrade'
  }
  if (req.fork !== data.fork) return 'data.fork != request.fork'
  return null
}

// A set of independent, initially empty, JS replicas of one core ("peers"),
// each a real Hypercore opened with only the core key, in its own directory.
class ReplicaSet {
  constructor({ key, manifest = null, manifestInOpts = false, parentDir = null }) {
    this.key = key
    this.manifest = manifest // decoded manifest object or null
    this.manifestInOpts = manifestInOpts
    this.dir = parentDir
      ? fs.mkdtempSync(path.join(parentDir, 'replicas-'))
      : makeTempDir('peerhost-replica-')
    this.peers = new Map()
    this.order = []
  }

  async peer(name) {
    let p = this.peers.get(name)
    if (p) return p

    const opts = { valueEncoding: 'binary' }
    if (this.manifestInOpts && this.manifest) opts.manifest = this.manifest
    const core = new Hypercore(path.join(this.dir, name), this.key, opts)
    await core.ready()

    p = { name, core, reorg: null, nextId: 1 }
    this.peers.set(name, p)
    this.order.push(name)
    return p
  }

  state(p) {
    const s = p.core.core.state
    return { length: s.length, fork: s.fork }
  }

  // Apply one received `data` message (raw wire bytes) to a peer, exactly the
  // way Peer#_handleData / Replicator#_onreorgdata would. Throws Rejection.
  async apply(p, dataBuf, request) {
    let data
    try {
      data = decodeData(dataBuf)
    } catch (err) {
      throw new Rejection('data message does not decode: ' + err.message)
    }

    if (request) {
      const why = matchesRequest(request, data)
      if (why) throw new Rejection(why)
    }

    const core = p.core.core
    try {
      if (data.fork > core.state.fork) {
        await this._applyReorg(p, data)
      } else if (data.fork < core.state.fork) {
        throw new Rejection('data is for an older fork (' + data.fork + ' < ' + core.state.fork + ')')
      } else {
        if (p.reorg !== null) throw new Rejection('reorg in progress, expected fork ' + p.reorg.fork)
        const ok = await core.verify(data, null)
        if (!ok) throw new Rejection('hypercore Core#verify returned false (proof not applicable)')
      }
    } catch (err) {
      if (err instanceof Rejection) throw err
      throw new Rejection((err.code ? err.code + ': ' : '') + stripCode(err.message))
    }

    if (data.block) {
      const got = await p.core.get(data.block.index, { wait: false })
      if (got === null || !got.equals(data.block.value)) {
        throw new Rejection('block ' + data.block.index + ' not stored after a verified proof')
      }
    }

    return data
  }

  async _applyReorg(p, data) {
    const core = p.core.core

    if (p.reorg !== null && p.reorg.fork === data.fork && !data.upgrade) {
      const batch = p.reorg.batch
      const before = batch.nodes.length
      await batch.update(data)
      if (batch.nodes.length === before && !batch.finished) {
        throw new Rejection('reorg hash proof does not match the diverging root')
      }
    } else {
      if (!data.upgrade) throw new Rejection('data for a newer fork without an upgrade proof')
      const batch = await core.verifyReorg(data)
      p.reorg = { fork: data.fork, batch }
    }

    if (p.reorg.batch.finished) {
      const ok = await core.reorg(p.reorg.batch)
      if (!ok) throw new Rejection('hypercore refused to apply the verified reorg')
      p.reorg = null
    }
  }

  // what a JS requester at this peer would put in request.block.nodes /
  // request.hash.nodes (Peer#_send -> MerkleTree.missingNodes)
  missingNodes(p, index) {
    const s = p.core.core.state
    return MerkleTree.missingNodes(s, index, s.length)
  }

  async close() {
    try {
      for (const name of this.order) await this.peers.get(name).core.close()
    } finally {
      removeDir(this.dir)
    }
  }
}

function stripCode(msg) {
  return String(msg).replace(/^[A-Z_]+: /, '')
}

// ---------------------------------------------------------- document replay

function parseManifestHex(hex) {
  if (hex === null || hex === undefined) return null
  try {
    return c.decode(messages.manifest, unhex(hex, 'manifest'))
  } catch (err) {
    if (err instanceof DocError) throw err
    throw new Rejection('manifest does not decode: ' + err.message)
  }
}

function treeHashOf(core) {
  return MerkleTree.hash(core.core.state)
}

// Replays a core document (shape of one cores.json entry) into fresh JS
// replicas. Returns { proofs, length }. Throws Rejection / DocError.
async function replayDocument(doc, { log = null } = {}) {
  if (!doc || typeof doc !== 'object') throw new DocError('document is not an object')
  if (!Array.isArray(doc.proofs)) throw new DocError('document has no "proofs" array')
  if (!Array.isArray(doc.blocks)) throw new DocError('document has no "blocks" array')

  const key = unhex(doc.key, 'key')
  if (key.byteLength !== 32) throw new DocError('key must be 32 bytes')

  const compat = doc.compat === true
  const manifest = parseManifestHex(doc.manifest)

  if (compat) {
    if (doc.publicKey && doc.publicKey !== doc.key) {
      throw new Rejection('compat core: key must equal the ed25519 public key')
    }
  } else {
    if (!manifest) throw new DocError('non-compat document needs "manifest"')
    if (!Verifier.isValidManifest(key, manifest)) {
      throw new Rejection('manifestHash(manifest) != key')
    }
  }

  if (doc.discoveryKey && doc.discoveryKey !== hx(hcrypto.discoveryKey(key))) {
    throw new Rejection('discoveryKey != BLAKE2b("hypercore"; key)')
  }

  // A JS peer only knows the key; the manifest has to arrive in-band
  // (request.manifest -> data.manifest). Only if the document never sends
  // it do we hand it to the replica up front.
  const anyWireManifest = doc.proofs.some((pr) => {
    try {
      return decodeData(unhex(pr.data, 'data')).manifest !== null
    } catch {
      return false
    }
  })

  const set = new ReplicaSet({ key, manifest, manifestInOpts: !compat && !anyWireManifest })
  let n = 0

  try {
    for (let i = 0; i < doc.proofs.length; i++) {
      const pr = doc.proofs[i]
      const where = 'proof #' + i + (pr.name ? ' (' + pr.name + ')' : '')
      const peerName = pr.peer || 'a'
      const p = await set.peer(peerName)

      let request = null
      if (pr.requestEncoded) {
        try {
          request = decodeRequest(unhex(pr.requestEncoded, where + ' requestEncoded'))
        } catch (err) {
          if (err instanceof DocError) throw err
          throw new Rejection(where + ': requestEncoded does not decode: ' + err.message)
        }
        if (pr.request && !sameJson(normRequest(request), pr.request)) {
          throw new Rejection(where + ': "request" does not match "requestEncoded"')
        }
      } else if (pr.request) {
        request = jsonRequestToMsg(pr.request)
      }

      if (pr.before) expectState(set.state(p), pr.before, where + ' before')

      const dataBuf = unhex(pr.data, where + ' data')
      let data
      try {
        data = await set.apply(p, dataBuf, request)
      } catch (err) {
        if (err instanceof Rejection) err.message = where + ': ' + err.message
        throw err
      }

      if (pr.decoded && !sameJson(normData(data), pr.decoded)) {
        throw new Rejection(where + ': "decoded" does not match the decoding of "data"')
      }

      if (pr.after) expectState(set.state(p), pr.after, where + ' after')
      if (manifest && data.manifest && !sameJson(normManifest(data.manifest), normManifest(manifest))) {
        throw new Rejection(where + ': data.manifest differs from the document manifest')
      }

      n++
      if (log) log(where + ' ok -> peer ' + peerName + ' ' + JSON.stringify(set.state(p)))
    }

    // ----- final state checks
    if (set.order.length === 0) throw new DocError('document has no proofs')

    const heads = Array.isArray(doc.heads) ? doc.heads : []
    const finalLength = typeof doc.length === 'number' ? doc.length : doc.blocks.length
    if (finalLength !== doc.blocks.length) {
      throw new DocError('"length" (' + finalLength + ') != number of "blocks" (' + doc.blocks.length + ')')
    }
    const finalFork = typeof doc.fork === 'number' ? doc.fork : 0
    const main = set.peers.get(set.order[0])

    for (const name of set.order) {
      const p = set.peers.get(name)
      const core = p.core.core
      const st = set.state(p)
      const what = 'peer ' + name + ' at length ' + st.length + ' fork ' + st.fork

      if (p.reorg !== null) throw new Rejection(what + ': unfinished reorg to fork ' + p.reorg.fork)

      const treeHash = hx(treeHashOf(p.core))

      if (heads.length > 0) {
        const head = heads.find((h) => h.length === st.length && h.fork === st.fork)
        if (!head) throw new Rejection(what + ': no entry in "heads" for this length and fork')
        if (head.treeHash !== treeHash) throw new Rejection(what + ': tree hash differs from head')
        if (head.signature && hx(core.state.signature) !== head.signature) {
          throw new Rejection(what + ': stored signature differs from head')
        }
      }

      if (p === main) {
        if (st.length !== finalLength) {
          throw new Rejection(what + ': expected final length ' + finalLength)
        }
        if (st.fork !== finalFork) throw new Rejection(what + ': expected final fork ' + finalFork)
        if (p.core.length !== finalLength || p.core.fork !== finalFork) {
          throw new Rejection(what + ': session length/fork disagree with core state')
        }
      }

      if (st.fork === finalFork) {
        for (let i = 0; i < st.length; i++) {
          if (!(await p.core.has(i))) continue
          const got = await p.core.get(i, { wait: false })
          const want = unhex(doc.blocks[i] === undefined ? '' : doc.blocks[i], 'blocks[' + i + ']')
          if (got === null || !got.equals(want) || i >= doc.blocks.length) {
            throw new Rejection(what + ': block ' + i + ' differs from document')
          }
        }
      }
    }

    return { proofs: n, length: main.core.length, peers: set.order.length }
  } finally {
    await set.close()
  }
}

function expectState(got, want, where) {
  if (got.length !== want.length || got.fork !== want.fork) {
    throw new Rejection(
      where + ': replica is at length ' + got.length + ' fork ' + got.fork +
        ', document says length ' + want.length + ' fork ' + want.fork
    )
  }
}

function jsonRequestToMsg(r) {
  return {
    id: r.id,
    fork: r.fork,
    block: r.block || null,
    hash: r.hash || null,
    seek: r.seek || null,
    upgrade: r.upgrade || null,
    manifest: !!r.manifest,
    priority: r.priority || 0
  }
}

// deep equality of JSON values, ignoring object key order
function sameJson(a, b) {
  return JSON.stringify(canon(a)) === JSON.stringify(canon(b))
}

function canon(x) {
  if (Array.isArray(x)) return x.map(canon)
  if (x === null || typeof x !== 'object') return x
  const out = {}
  for (const k of Object.keys(x).sort()) out[k] = canon(x[k])
  return out
}

module.exports = {
  versions,
  hx,
  unhex,
  stableJson,
  normNode,
  normManifest,
  normRequest,
  normData,
  encodeRequest,
  decodeRequest,
  encodeData,
  decodeData,
  DocError,
  Rejection,
  makeTempDir,
  removeDir,
  ReplicaSet,
  replayDocument,
  treeHashOf
}
