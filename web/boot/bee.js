// A sparse reader of a Hyperbee (the JS `hyperbee` 2.x block format, protocol/bee.md): a
// B-tree whose nodes are the blocks of one log. It fetches only the blocks a lookup or a walk
// touches, through `block(seq)` (an async function: the caller's verified block path), keeps
// them decoded in a bounded cache, and walks them as hyperbee does (the same probes, in the
// same order, so it fetches the blocks JS would).
//
// Blocks are untrusted input even once verified (a community may sign garbage): decoding is
// bounded and refuses what protocol/bee.md refuses; a walk is bounded by depth (64) and never
// follows a pointer forward. Every failure is a BeeError with a `code`:
// `BEE_DECODE` (a block that is not a Node), `BEE_CORRUPT` (a tree that is not a tree),
// `BEE_ARGUMENT` (a bad call).

export class BeeError extends Error {
  constructor (code, message) {
    super(message)
    this.code = code
  }
}

const MAX_BLOCK = 1 << 20
const MAX_DEPTH = 64
const decodeErr = (seq, what) => new BeeError('BEE_DECODE', `index block ${seq}: ${what}`)

// Protobuf reading, bounded: `[field, wireType, value]` triples; varints as numbers (above
// 2^53 refused: no sequence number gets there), length-delimited as subarrays.
function * pb (b, seq) {
  let i = 0
  const varint = () => {
    let v = 0
    for (let k = 0, m = 1; ; k++, m *= 128) {
      if (k >= 10) throw decodeErr(seq, 'a varint longer than 10 bytes')
      if (i >= b.length) throw decodeErr(seq, 'truncated')
      const x = b[i++]
      v += (x & 127) * m
      if (x < 128) {
        if (!Number.isSafeInteger(v)) throw decodeErr(seq, 'a number above 2^53')
        return v
      }
    }
  }
  while (i < b.length) {
    const tag = varint()
    const field = Math.floor(tag / 8)
    const type = tag & 7
    if (type === 0) yield [field, 0, varint()]
    else if (type === 2) {
      const n = varint()
      if (n > b.length - i) throw decodeErr(seq, 'a length past the end')
      yield [field, 2, b.subarray(i, (i += n))]
    } else if (type === 1 || type === 5) {
      const n = type === 1 ? 8 : 4
      if (n > b.length - i) throw decodeErr(seq, 'truncated')
      i += n
      yield [field, type, null]
    } else throw decodeErr(seq, `unsupported wire type ${type}`)
  }
}

function packed (b, seq, out) {
  let i = 0
  while (i < b.length) {
    let v = 0
    for (let k = 0, m = 1; ; k++, m *= 128) {
      if (k >= 10 || i >= b.length) throw decodeErr(seq, 'a bad packed varint')
      const x = b[i++]
      v += (x & 127) * m
      if (x < 128) break
    }
    if (!Number.isSafeInteger(v)) throw decodeErr(seq, 'a number above 2^53')
    out.push(v)
  }
  return out
}

/**
 * Block `seq` of a bee as a Node: `{seq, key, value, levels: [{keys, children: [[seq, offset]]}]}`
 * (`value` null when the block has none). Throws a BeeError (`BEE_DECODE`) for anything else,
 * block 0 (the header) included.
 */
export function decodeNode (bytes, seq) {
  try {
    if (!(bytes instanceof Uint8Array)) throw decodeErr(seq, 'not bytes')
    if (bytes.length > MAX_BLOCK) throw decodeErr(seq, 'larger than 1 MiB')
    let index = null
    let key = null
    let value = null
    for (const [f, t, v] of pb(bytes, seq)) {
      if (f >= 1 && f <= 3 && t !== 2) throw decodeErr(seq, `field ${f} with wire type ${t}`)
      if (f === 1) index = v
      else if (f === 2) key = v
      else if (f === 3) value = v
    }
    if (index === null || key === null) throw decodeErr(seq, 'not a node (no index or key)')
    const levels = []
    for (const [f, t, v] of pb(index, seq)) {
      if (f !== 1) continue
      if (t !== 2) throw decodeErr(seq, 'a level with another wire type')
      const keys = []
      const flat = []
      for (const [g, u, w] of pb(v, seq)) {
        if (g !== 1 && g !== 2) continue
        if (u !== 2) throw decodeErr(seq, 'an unpacked key or child list')
        packed(w, seq, g === 1 ? keys : flat)
      }
      if (flat.length % 2) throw decodeErr(seq, 'children of odd length')
      const children = []
      for (let k = 0; k < flat.length; k += 2) children.push([flat[k], flat[k + 1]])
      levels.push({ keys, children })
    }
    return { seq, key, value, levels }
  } catch (e) {
    throw e instanceof BeeError ? e : decodeErr(seq, String(e && e.message))
  }
}

/** Byte order, as hyperbee compares keys (b4a.compare). */
export function compare (a, b) {
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i]
  return a.length - b.length
}

/** The least key above every key that starts with `p` (null: none, p is all 0xff). */
export function prefixEnd (p) {
  const e = Uint8Array.from(p)
  for (let n = e.length; n-- > 0;) {
    if (e[n] < 0xff) {
      e[n]++
      return e.subarray(0, n + 1)
    }
  }
  return null
}

const bytes = (k, what) => {
  if (!(k instanceof Uint8Array)) throw new BeeError('BEE_ARGUMENT', `${what} must be a Uint8Array`)
  return k
}

/**
 * A bee at `length` (a version: the tree rooted at level 0 of block length − 1) over
 * `block(seq) → Promise<Uint8Array>`. Decoded blocks are kept (at most `cache`; pass a Map to
 * share one across versions of the same fork).
 */
export class Bee {
  constructor (block, length, { cache = 8192, blocks = new Map(), range = null, set = null, gap = 4 } = {}) {
    if (!Number.isSafeInteger(length) || length < 0) throw new BeeError('BEE_ARGUMENT', 'a bad length')
    Object.assign(this, { fetch: block, fetchRange: range, fetchSet: set, gap, length, cap: cache, blocks })
    this.fetched = 0 // blocks fetched (not from the cache)
  }

  // Block `seq`, decoded (a promise, cached); `got`: its bytes, when a range brought them.
  node (seq, got) {
    if (!Number.isSafeInteger(seq) || seq < 1 || seq >= this.length) {
      return Promise.reject(new BeeError('BEE_CORRUPT', `a pointer to block ${seq} of ${this.length}`))
    }
    let p = this.blocks.get(seq)
    if (p) {
      this.blocks.delete(seq) // most recently used last
    } else {
      this.fetched++
      p = (got || Promise.resolve().then(() => this.fetch(seq))).then((b) => decodeNode(b, seq))
      p.catch(() => this.blocks.get(seq) === p && this.blocks.delete(seq))
      while (this.blocks.size >= this.cap) this.blocks.delete(this.blocks.keys().next().value)
    }
    this.blocks.set(seq, p)
    return p
  }

  // Fetch these blocks at once (errors show when they are used); resolves when they are in.
  // With `set(seqs)` (a Map seq → bytes), all blocks not held come in one set request, one
  // proof for all. Else with `range(start, end)`, blocks not held that lie close together (at
  // most `gap` apart, 64 at most) come in one request: a thread's keys, put in one batch, are
  // neighbours in the log, and one proof for a run costs far less than one per block.
  preload (seqs) {
    const want = [...new Set(seqs)].filter((s) => Number.isSafeInteger(s) && s >= 1 && s < this.length && !this.blocks.has(s)).sort((a, b) => a - b)
    if (this.fetchSet && want.length > 1) {
      const all = Promise.resolve().then(() => this.fetchSet(want))
      all.catch(() => {})
      const missing = (k) => new BeeError('BEE_CORRUPT', `block ${k} missing from a set answer`)
      return Promise.allSettled(want.map((k) => this.node(k, all.then((m) => m.get(k) || Promise.reject(missing(k))))))
    }
    if (!this.fetchRange || want.length < 2) {
      for (const s of want) this.node(s).catch(() => {})
      return
    }
    const runs = []
    for (const s of want) {
      const r = runs[runs.length - 1]
      if (r && s - r[1] <= this.gap && s - r[0] < 64) r[1] = s
      else runs.push([s, s])
    }
    for (const [s, e] of runs) {
      if (s === e) { this.node(s).catch(() => {}); continue }
      const all = Promise.resolve().then(() => this.fetchRange(s, e + 1))
      all.catch(() => {})
      for (let k = s; k <= e; k++) if (!this.blocks.has(k)) this.node(k, all.then((bs) => bs[k - s])).catch(() => {})
    }
  }

  // Before a bulk walk (`limit` ≥ 128) over lo..hi: fetch the part of the tree it reads a level
  // at a time, so the walk then runs from the cache. One set request per level: the keys of
  // the level's nodes together with all their children (which of the children overlap the
  // bounds is known only from those keys: the few outside them, at most 8 a node on the
  // edges of the range, cost less than a second round trip), so round trips = the depth.
  // At most `limit` children in range in all, taken in the walk's order.
  async prefetch (lo, hi, reverse, limit) {
    if (!this.fetchSet || limit < 128) return
    const root = await this.root()
    let frontier = root ? [root] : []
    let budget = Math.min(limit, 4096)
    for (let d = 0; frontier.length && d < MAX_DEPTH && budget > 0; d++) {
      // The children of the nodes taken this level, while the budget allows them all.
      const kids = []
      for (let n = 0, left = budget; n < frontier.length && left > 0; n++) {
        for (const c of frontier[n].children) kids.push(c[0])
        left -= frontier[n].children.length
      }
      await this.preload([...frontier.flatMap((n) => n.keys), ...kids])
      const next = []
      for (const n of reverse ? [...frontier].reverse() : frontier) {
        if (!n.children.length) continue
        const ks = await Promise.all(n.keys.map((k) => this.node(k).then((b) => b.key, () => null)))
        const order = n.children.map((_, i) => i)
        if (reverse) order.reverse()
        for (const i of order) {
          // Child i holds the keys between ks[i − 1] and ks[i].
          if (lo && i < ks.length && ks[i] && compare(ks[i], lo) <= 0) continue
          if (hi && i > 0 && ks[i - 1] && compare(ks[i - 1], hi) >= 0) continue
          if (budget-- <= 0) break
          next.push([n.children[i], n.seq])
        }
      }
      frontier = (await Promise.all(next.map(([[seq, off], from]) => this.tree(seq, off, from).catch(() => null)))).filter(Boolean)
    }
  }

  // Tree node `offset` of block `seq`, checked: `{seq, keys, children, block}`.
  async tree (seq, offset, from) {
    if (from !== undefined && seq > from) throw new BeeError('BEE_CORRUPT', `block ${from} points forward to ${seq}`)
    const block = await this.node(seq)
    const l = block.levels[offset]
    if (!l) throw new BeeError('BEE_CORRUPT', `block ${seq} has no level ${offset}`)
    if (l.children.length && l.children.length !== l.keys.length + 1) throw new BeeError('BEE_CORRUPT', `block ${seq}: ${l.keys.length} keys, ${l.children.length} children`)
    for (const k of l.keys) if (k > seq || k < 1) throw new BeeError('BEE_CORRUPT', `block ${seq} points at key ${k}`)
    for (const [c] of l.children) if (c > seq || c < 1) throw new BeeError('BEE_CORRUPT', `block ${seq} points at child ${c}`)
    return { seq, keys: l.keys, children: l.children, block }
  }

  root () {
    return this.length < 2 ? null : this.tree(this.length - 1, 0)
  }

  child (n, i) {
    const [seq, off] = n.children[i]
    return this.tree(seq, off, n.seq)
  }

  // Binary search of `n`'s keys (hyperbee's probes): {found: index} or {at: index}. The
  // node's keys are fetched at once (one round trip, not one per probe: at most 8 blocks),
  // and with a set fetch its children with them: the one a lookup descends into next is then
  // here when the search ends (one round trip a level, not two, for 8 blocks more).
  async search (n, key) {
    this.preload(this.fetchSet ? [...n.keys, ...n.children.map((c) => c[0])] : n.keys)
    let s = 0
    let e = n.keys.length
    while (s < e) {
      const mid = (s + e) >> 1
      const c = compare(key, (await this.node(n.keys[mid])).key)
      if (c === 0) return { found: mid }
      if (c < 0) e = mid
      else s = mid + 1
    }
    return { at: s }
  }

  /** The entry of `key`: `{seq, key, value}` (value null: put with none), or null. */
  async get (key) {
    bytes(key, 'key')
    let n = await this.root()
    for (let d = 0; n && d < MAX_DEPTH; d++) {
      const b = n.block
      if (compare(b.key, key) === 0) {
        const deleted = b.value === null && !b.levels.some((l) => l.keys.includes(n.seq))
        return deleted ? null : entry(b)
      }
      const r = await this.search(n, key)
      if (r.found !== undefined) return entry(await this.node(n.keys[r.found]))
      if (!n.children.length) return null
      n = await this.child(n, r.at)
    }
    if (n) throw new BeeError('BEE_CORRUPT', 'a tree deeper than 64 levels')
    return null
  }

  /**
   * Entries in key order (`reverse`: backwards) within `gt`/`gte` and `lt`/`lte` (gt wins over
   * gte, lt over lte), at most `limit`: `[{seq, key, value}]`. `prefix` sets gte and lt.
   */
  async range ({ gt, gte, lt, lte, prefix, reverse = false, limit = Infinity } = {}) {
    if (prefix !== undefined) {
      gte = bytes(prefix, 'prefix')
      lt = prefixEnd(prefix) || undefined
    }
    for (const [k, v] of Object.entries({ gt, gte, lt, lte })) if (v !== undefined && v !== null) bytes(v, k)
    if (!(limit >= 0)) throw new BeeError('BEE_ARGUMENT', 'a bad limit')
    const lo = gt || gte
    const loIncl = !gt
    const hi = lt || lte
    const hiIncl = !lt
    const out = []
    if (limit === 0) return out
    const [start, sIncl, end, eIncl] = reverse ? [hi, hiIncl, lo, loIncl] : [lo, loIncl, hi, hiIncl]
    await this.prefetch(lo, hi, reverse, limit)
    const stack = await this.open(start, sIncl, reverse)
    while (stack.length) {
      const top = stack[stack.length - 1]
      const nk = top.n.keys.length
      const isKey = top.i & 1
      let k, next
      if (!reverse) [k, next] = [top.i >> 1, top.i + 1]
      else if (top.i < 0) [k, next] = [nk, top.i]
      else [k, next] = [top.i >> 1, top.i - 1]
      if (!isKey) {
        top.i = next
        if (!top.n.children.length) continue
        if (stack.length >= MAX_DEPTH) throw new BeeError('BEE_CORRUPT', 'a tree deeper than 64 levels')
        const c = await this.child(top.n, k)
        const i = reverse ? c.keys.length * 2 : 0
        this.ahead(c, i, reverse)
        stack.push({ n: c, i })
        continue
      }
      if (k >= nk) {
        stack.pop()
        continue
      }
      const b = await this.node(top.n.keys[k])
      top.i = next
      if (end) {
        const c = compare(b.key, end)
        if (c === 0 ? !eIncl : reverse ? c < 0 : c > 0) break
      }
      out.push(entry(b))
      if (out.length >= limit) break
    }
    return out
  }

  // What a walk at position `i` of `n` reads next, fetched at once: the node's keys from
  // there on and its next child (not all its children: a bounded walk would waste them).
  ahead (n, i, reverse) {
    const keys = reverse ? n.keys.slice(0, Math.max(0, (i + 1) >> 1)).reverse() : n.keys.slice(i >> 1)
    const child = n.children[reverse ? i >> 1 : (i + 1) >> 1]
    this.preload(child ? [...keys, child[0]] : keys)
  }

  // The walk's stack positioned at `start` (hyperbee's iterators/range.js open).
  async open (start, incl, reverse) {
    let n = await this.root()
    if (!n) return []
    if (!start) {
      const i = reverse ? n.keys.length * 2 : 0
      this.ahead(n, i, reverse)
      return [{ n, i }]
    }
    const stack = []
    for (let d = 0; d < MAX_DEPTH; d++) {
      const r = await this.search(n, start)
      if (r.found !== undefined) {
        const i = incl ? r.found * 2 + 1 : r.found * 2 + (reverse ? 0 : 2)
        this.ahead(n, i, reverse)
        stack.push({ n, i })
        return stack
      }
      const i = 2 * r.at + (reverse ? -1 : 1)
      if (i >= 0 && i <= n.keys.length * 2) {
        this.ahead(n, i, reverse)
        stack.push({ n, i })
      }
      if (!n.children.length) return stack
      n = await this.child(n, r.at)
    }
    throw new BeeError('BEE_CORRUPT', 'a tree deeper than 64 levels')
  }
}

const entry = (b) => ({ seq: b.seq, key: b.key, value: b.value })
