// The community's index log (protocol/feeds.md, "The index log") as the app reads it: pages of
// posts by time and one post's thread, through the data API's index.get / index.range (the
// bootstrap walks the Hyperbee over verified blocks), then the blocks each entry names from
// the posts and comments logs. The index is a hint: every block it names is fetched (verified
// by the bootstrap) and checked to be what the key claims; anything else is `Disagree`, and
// the app falls back to scanning the logs (scan* below).

import { applyEdit, decode } from './feed.js'

export class Disagree extends Error {
  constructor (what) {
    super(`the index disagrees with the logs: ${what}`)
    this.code = 'INDEX_DISAGREES'
  }
}

const enc = new TextEncoder()
const cat = (...parts) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let o = 0
  for (const p of parts) { out.set(p, o); o += p.length }
  return out
}
const tag = (c) => Uint8Array.of(c.charCodeAt(0))
/** An id or name as the index keys it: its UTF-8 length (2 bytes, big-endian), its bytes. */
export const idBytes = (s) => {
  const b = enc.encode(s)
  if (b.length > 0xffff) throw new Error('an id longer than 65535 bytes')
  return cat(Uint8Array.of(b.length >> 8, b.length & 255), b)
}
export const u64 = (b, o = 0) => {
  if (b.length < o + 8) throw new Disagree('a number cut short')
  const v = new DataView(b.buffer, b.byteOffset + o, 8).getBigUint64(0)
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new Disagree('a number above 2^53')
  return Number(v)
}
export const keys = {
  posts: enc.encode('!posts'),
  comments: enc.encode('!comments'),
  byTime: tag('t'),
  post: (id) => cat(tag('p'), idBytes(id)),
  thread: (id) => cat(tag('c'), idBytes(id))
}

/** A state value: `{deleted, truncated, block, changes}`; Disagree if it is not one. */
export function parseState (v) {
  if (!v || v.length < 9 || (v.length - 1) % 8 || v[0] & ~3) throw new Disagree('a value that is not a state')
  const seqs = []
  for (let o = 1; o < v.length; o += 8) seqs.push(u64(v, o))
  for (let i = 1; i < seqs.length; i++) if (seqs[i] <= seqs[i - 1]) throw new Disagree('changes not after the item')
  return { deleted: !!(v[0] & 1), truncated: !!(v[0] & 2), block: seqs[0], changes: seqs.slice(1) }
}

// Data APIs whose runtime has no `blocks` (the API is a Proxy: any name is a call).
const noBlocks = new WeakSet()

// Blocks `seqs` of a log (at the head `head`): Map seq → bytes. Through the data API's
// `blocks` (scattered blocks in set requests, one proof for all: protocol/gateway.md §3.3);
// with a runtime that has none, runs of neighbours in one range call each.
export async function fetchBlocks (api, key, head, seqs) {
  const sorted = [...new Set(seqs)].sort((a, b) => a - b)
  for (const s of sorted) if (!(s >= 0 && s < head.length)) throw new Disagree(`block ${s} is past the log's ${head.length}`)
  if (!sorted.length) return new Map()
  if (typeof api.blocks === 'function' && !noBlocks.has(api)) {
    try {
      const got = await api.blocks(key, sorted, head.length)
      if (got instanceof Map) return got
    } catch (e) {
      if (e.code !== 'NOT_SUPPORTED') throw e
      noBlocks.add(api)
    }
  }
  const runs = []
  for (const s of sorted) {
    const r = runs[runs.length - 1]
    if (r && s - r[1] <= 4 && s - r[0] < 64) r[1] = s // neighbours: one request, one proof
    else runs.push([s, s])
  }
  // At most 4 requests in flight: more only queue in the browser, look stalled to the
  // loader and get hedged to a second peer (the same bytes twice).
  const out = new Map()
  let next = 0
  await Promise.all(Array.from({ length: Math.min(4, runs.length) }, async () => {
    while (next < runs.length) {
      const [s, e] = runs[next++]
      const got = await api.range(key, s, e + 1, head.length)
      got.forEach((b, k) => out.set(s + k, b))
    }
  }))
  return out
}

// The blocks a state names: the item's entry and its changes (all blocks up to the last change
// when truncated: at most 4096).
const stateBlocks = (st) => {
  if (!st.truncated) return [st.block, ...st.changes]
  const end = st.changes.length ? st.changes[st.changes.length - 1] : st.block
  if (end - st.block > 4096) throw new Disagree('a truncated state over more than 4096 blocks')
  return Array.from({ length: end - st.block + 1 }, (_, k) => st.block + k)
}

// Check the item a state names against its blocks and apply its changes: `{entry, editedUs,
// deleted}`. `want(entry)` says whether the entry is the one the key claims.
function apply (st, blocks, kind, want, fields) {
  const e = decode(blocks.get(st.block) || new Uint8Array(0))
  if (!e || e.kind !== kind || !want(e)) throw new Disagree(`block ${st.block} is not the ${kind} its key names`)
  let editedUs = 0
  let deleted = false
  const seqs = st.truncated ? stateBlocks(st).slice(1) : st.changes
  for (const s of seqs) {
    const x = decode(blocks.get(s) || new Uint8Array(0))
    const ours = x && (x.kind === 'edit' || x.kind === 'delete') && x.target === e.id
    if (!ours) {
      if (st.truncated) continue
      throw new Disagree(`block ${s} is not a change of ${e.id}`)
    }
    if (x.kind === 'delete') deleted = true
    else if (!deleted && applyEdit(e, x, fields)) editedUs = x.timeUs || editedUs
  }
  if (deleted !== st.deleted) throw new Disagree(`${e.id}: the deleted flag does not match its changes`)
  return { entry: e, editedUs, deleted }
}

/**
 * Open the community's index: its head and the heads of the posts and comments logs it
 * indexes; `checked` resolves once `!posts`, `!comments` and `!format` are read (how far it
 * got: `P`, `C`), or rejects with Disagree if it claims more than the logs hold. Reads start
 * without waiting for it (they share the tree's top blocks) and await it before answering.
 */
export async function openIndex (api, c) {
  const [index, posts, comments] = await Promise.all([api.head(c.index), api.head(c.posts), c.comments ? api.head(c.comments) : null])
  const ix = { c, index, posts, comments, P: 0, C: 0 }
  ix.checked = (async () => {
    // `!comments`, `!format`, `!posts`: neighbours in key order, one walk.
    const meta = (await api.call('index.range', c.index, { prefix: enc.encode('!'), limit: 16 }, index.length)).entries
    const get = (k) => meta.find((e) => e.key.length === k.length && e.key.every((x, i) => x === k[i]))
    const [p, cm, fmt] = [get(keys.posts), get(keys.comments), get(enc.encode('!format'))]
    if (!fmt || new TextDecoder().decode(fmt.value || new Uint8Array(0)) !== 'peerhost-index/1') throw new Disagree('not a peerhost-index/1 index')
    ix.P = p && p.value ? u64(p.value) : 0
    ix.C = cm && cm.value ? u64(cm.value) : 0
    if (ix.P > posts.length || ix.C > (comments ? comments.length : 0)) throw new Disagree('it indexes more blocks than the logs hold')
    return ix
  })()
  ix.checked.catch(() => {})
  return ix
}

const range = async (api, ix, opts) => (await api.call('index.range', ix.c.index, opts, ix.index.length)).entries

// The posts log's tail the index has not reached yet (at most 1024 blocks), folded: per id its
// last Post (`post`), edits after it, or its deletion.
async function postsTail (api, ix) {
  const n = ix.posts.length - ix.P
  if (!n) return { lag: 0, ids: new Map() }
  const s = Math.max(ix.P, ix.posts.length - 1024)
  const got = await api.range(ix.c.posts, s, ix.posts.length, ix.posts.length)
  const ids = new Map()
  got.forEach((b, k) => {
    const e = decode(b)
    if (!e) return
    const id = e.kind === 'post' ? e.id : e.target
    if (!id) return
    const t = ids.get(id) || { edits: [], deleted: false, post: null }
    if (e.kind === 'post') ids.set(id, { post: { index: s + k, post: e, editedUs: 0 }, edits: [], deleted: false })
    else if (e.kind === 'delete') ids.set(id, { ...t, deleted: true, post: null })
    else if (e.kind === 'edit' && !t.deleted) {
      t.edits.push(e)
      if (t.post && applyEdit(t.post.post, e)) t.post.editedUs = e.timeUs
      ids.set(id, t)
    }
  })
  return { lag: n, ids }
}

/**
 * Page `n` (from 1) of `per` posts, newest first by publication time: `{posts: [{index, post,
 * editedUs}], more, lag}`. Index keys `t ‖ published_us ‖ block` reversed; each Post block is
 * fetched and checked (its time and block are those of its key); posts the index has not
 * reached yet (`lag` blocks) are merged in.
 */
export async function page (api, ix, n, per = 20) {
  const [entries] = await Promise.all([byTime(api, ix, (n - 1) * per, per + 1), ix.checked])
  const tail = await postsTail(api, ix)
  const fresh = [...tail.ids.values()].filter((t) => t.post).map((t) => t.post)
  // With a tail, every entry up to this page is checked (the tail may drop or add some; up
  // to 1024 entries); without, only this page's.
  const cand = tail.lag ? (await byTime(api, ix, 0, Math.min(1024, n * per + 1))) : entries
  const states = cand.map((e) => {
    if (e.key.length !== 17) throw new Disagree('a time key of the wrong length')
    const st = parseState(e.value)
    if (st.deleted) throw new Disagree('a deleted post keyed by time')
    if (st.block !== u64(e.key, 9)) throw new Disagree('a time key and its state name different blocks')
    return { st, us: u64(e.key, 1) }
  })
  const blocks = await fetchBlocks(api, ix.c.posts, ix.posts, states.flatMap(({ st }) => stateBlocks(st)))
  let list = states.map(({ st, us }) => {
    const r = apply(st, blocks, 'post', (p) => p.publishedUs === us, ['title', 'body', 'link'])
    return { index: st.block, post: r.entry, editedUs: r.editedUs }
  })
  if (tail.lag) {
    list = list.filter((p) => {
      const t = tail.ids.get(p.post.id)
      if (!t) return true
      if (t.deleted || t.post) return false
      for (const x of t.edits) if (applyEdit(p.post, x)) p.editedUs = x.timeUs
      return true
    })
    list = [...list, ...fresh].sort((a, b) => b.post.publishedUs - a.post.publishedUs || b.index - a.index).slice((n - 1) * per)
  }
  return { posts: list.slice(0, per), more: list.length > per, lag: tail.lag }
}

// `count` entries of `t` from position `offset` (newest first). A Hyperbee has no counts, so
// position N is reached by walking N keys, 1024 a walk; the key ending each walk is kept
// (`ix.cursors`), so paging on continues from the last key seen (`lt`) instead.
async function byTime (api, ix, offset, count) {
  const cursors = (ix.cursors ||= new Map([[0, null]]))
  let at = Math.max(...[...cursors.keys()].filter((o) => o <= offset))
  const out = []
  while (out.length < count) {
    const lt = cursors.get(at) || prefixEndOf(keys.byTime)
    const limit = Math.min(1024, offset + count - at)
    const got = await range(api, ix, { gte: keys.byTime, lt, reverse: true, limit })
    for (let k = 0; k < got.length; k++) if (at + k >= offset) out.push(got[k])
    if (!got.length) break
    at += got.length
    cursors.set(at, got[got.length - 1].key)
    if (got.length < limit) break
  }
  return out.slice(0, count)
}

/**
 * One post and its comments: `{post: {index, post, editedUs, deleted}, comments: [node], count,
 * lag}` with node = `{index, comment, editedUs, deleted, depth, replies: [node]}`. The post by
 * `p ‖ ID`, the thread by the prefix `c ‖ ID` (in key order: each comment after its parent,
 * nested by its path), each block fetched and checked; comments the index has not reached
 * yet are added from the log's tail. Null if the index has no such post.
 */
export async function thread (api, ix, id) {
  const prefix = keys.thread(id)
  // The thread's keys come a page at a time, and each page's comment blocks are fetched while
  // the walk goes on (the two would otherwise take turns).
  const cst = []
  const fetches = []
  const onPage = (got) => {
    const part = got.map((e) => {
      const path = e.key.subarray(prefix.length)
      if (!path.length || path.length % 8 || path.length > 64 * 8) throw new Disagree('a thread path that is not one')
      return { path, st: parseState(e.value) }
    })
    cst.push(...part)
    const f = fetchBlocks(api, ix.c.comments, ix.comments, part.flatMap(({ st }) => stateBlocks(st)))
    f.catch(() => {})
    fetches.push(f)
  }
  // The post's key, then its blocks, while the thread's walk runs (not after it).
  const ofPost = api.call('index.get', ix.c.index, keys.post(id), ix.index.length).then(async ({ entry: p }) => {
    if (!p) return null
    const pst = parseState(p.value)
    return { pst, pb: await fetchBlocks(api, ix.c.posts, ix.posts, stateBlocks(pst)) }
  })
  ofPost.catch(() => {})
  const [got] = await Promise.all([ofPost, ix.comments ? rangeAll(api, ix, prefix, onPage) : [], ix.checked])
  if (!got) return null
  const { pst, pb } = got
  const parts = await Promise.all(fetches)
  const cb = new Map(parts.flatMap((m) => [...m]))
  const pr = apply(pst, pb, 'post', (e) => e.id === id, ['title', 'body', 'link'])
  const post = { index: pst.block, post: pr.entry, editedUs: pr.editedUs, deleted: pr.deleted }
  const byPath = new Map()
  const byId = new Map()
  const top = []
  for (const { path, st } of cst) {
    const r = apply(st, cb, 'comment', (e) => e.post === id, ['body'])
    const node = { index: st.block, comment: r.entry, editedUs: r.editedUs, deleted: r.deleted, depth: path.length / 8, replies: [] }
    const parent = byPath.get(hexOf(path.subarray(0, path.length - 8)))
    ;(parent ? parent.replies : top).push(node)
    byPath.set(hexOf(path), node)
    byId.set(node.comment.id, node)
  }
  let count = cst.length
  // The comments log's tail the index has not reached (at most 1024 blocks).
  const lag = ix.comments ? ix.comments.length - ix.C : 0
  if (lag) {
    const s = Math.max(ix.C, ix.comments.length - 1024)
    const got = await api.range(ix.c.comments, s, ix.comments.length, ix.comments.length)
    got.forEach((b, k) => {
      const e = decode(b)
      if (e) count += addToThread(byId, top, id, e, s + k)
    })
  }
  return { post, comments: top, count, lag: Math.max(0, ix.posts.length - ix.P) + lag }
}

// Every entry under `prefix` (at most 100 000), handed to `onPage` a page at a time: 1024
// entries a walk (a bulk walk: the bootstrap fetches the tree a level at a time, so a thread's
// index costs round trips by depth, not by entries).
async function rangeAll (api, ix, prefix, onPage) {
  let n = 0
  let size = 1024
  let opts = { prefix, limit: size }
  for (;;) {
    const got = await range(api, ix, opts)
    if (got.length) onPage(got)
    n += got.length
    if (got.length < size || n >= 100_000) return n
    size = Math.min(1024, size * 2)
    opts = { gt: got[got.length - 1].key, lt: prefixEndOf(prefix), limit: size }
  }
}

const prefixEndOf = (p) => {
  const e = Uint8Array.from(p)
  for (let n = e.length; n-- > 0;) if (e[n] < 0xff) { e[n]++; return e.subarray(0, n + 1) }
  return undefined
}
const hexOf = (b) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('')

/**
 * Without an index (or when it disagrees): one post and its thread by scanning the logs, as
 * `thread`'s answer. Reads the posts log back from the end until the post, and the whole
 * comments log (at most 200 000 blocks, 1024 at a time).
 */
export async function scanThread (api, c, id) {
  const ph = await api.head(c.posts)
  let post = null
  const edits = []
  let deleted = false
  for (let end = ph.length; end > 0 && !post;) {
    const s = Math.max(0, end - 256)
    const got = await api.range(c.posts, s, end, ph.length)
    for (let k = got.length; k-- > 0;) {
      const e = decode(got[k])
      if (!e) continue
      if (e.kind === 'post' && e.id === id) { post = { index: s + k, post: e, editedUs: 0, deleted }; break }
      // Back from the end: a deletion drops the (later, ignored) edits seen so far.
      if (e.target === id && e.kind === 'delete' && !post) { deleted = true; edits.length = 0 }
      if (e.target === id && e.kind === 'edit' && !deleted) edits.unshift(e)
    }
    end = s
  }
  if (!post) return null
  for (const x of edits) if (applyEdit(post.post, x)) post.editedUs = x.timeUs
  const top = []
  const byId = new Map()
  let count = 0
  if (c.comments) {
    const ch = await api.head(c.comments)
    if (ch.length > 200_000) throw new Error('no index, and the comments log is too long to scan')
    for (let s = 0; s < ch.length; s += 1024) {
      const got = await api.range(c.comments, s, Math.min(ch.length, s + 1024), ch.length)
      got.forEach((b, k) => {
        const e = decode(b)
        if (e) count += addToThread(byId, top, id, e, s + k)
      })
    }
  }
  return { post, comments: top, count, lag: 0 }
}

/**
 * One comments-log entry, read in log order, into a thread being built: a comment of post `id`
 * joins its parent's replies (or the top level), a re-posted comment replaces its earlier copy,
 * an edit or deletion of a known comment applies. Returns 1 when a new comment joined, else 0.
 */
function addToThread (byId, top, id, e, index) {
  if (e.kind === 'comment' && e.post === id) {
    const old = byId.get(e.id)
    if (old) {
      Object.assign(old, { index, comment: e, editedUs: 0, deleted: false })
      return 0
    }
    const parent = byId.get(e.parent)
    const node = { index, comment: e, editedUs: 0, deleted: false, depth: parent ? parent.depth + 1 : 1, replies: [] }
    ;(parent ? parent.replies : top).push(node)
    byId.set(e.id, node)
    return 1
  }
  if ((e.kind === 'edit' || e.kind === 'delete') && byId.has(e.target)) {
    const node = byId.get(e.target)
    if (e.kind === 'delete') node.deleted = true
    else if (!node.deleted) {
      const comment = { ...node.comment }
      if (applyEdit(comment, e, ['body'])) node.editedUs = e.timeUs
      node.comment = comment
    }
  }
  return 0
}
