// Community entries (protocol/feed.proto) as the app reads them: posts with their edits and
// deletions applied, newest first, the way `peerhost feed` shows them (crates/feed
// read::latest_posts): read back from the end, collect edits and deletions by id, stop at the
// n-th live post.

/** One protobuf message as `{field: [values]}`: varints as numbers, the rest as bytes. */
export function fields (b) {
  const out = {}
  let i = 0
  const varint = () => {
    let v = 0
    for (let m = 1; ; m *= 128) {
      if (i >= b.length || m > 2 ** 63) throw new Error('bad varint')
      const x = b[i++]
      v += (x & 127) * m
      if (x < 128) return v
    }
  }
  while (i < b.length) {
    const tag = varint()
    const type = tag & 7
    const n = type === 0 ? 0 : type === 1 ? 8 : type === 5 ? 4 : type === 2 ? varint() : -1
    if (n < 0 || i + n > b.length) throw new Error('bad field')
    ;(out[Math.floor(tag / 8)] ||= []).push(type ? b.subarray(i, (i += n)) : varint())
  }
  return out
}

const last = (m, f) => (m[f] ? m[f][m[f].length - 1] : undefined)
const utf8 = new TextDecoder()
const text = (v) => (v ? utf8.decode(v) : '')
const opt = (m, f) => (m[f] ? text(last(m, f)) : undefined) // proto3 `optional`: absent ≠ ''
// A `Votes` message field: `{up, down}`, or undefined when absent (not counted).
const votes = (m, f) => {
  const v = last(m, f)
  if (!(v instanceof Uint8Array)) return undefined
  const x = fields(v)
  const n = (k) => (typeof last(x, k) === 'number' ? last(x, k) : 0)
  return { up: n(1), down: n(2) }
}

/**
 * Apply an edit to a decoded post or comment (`names`: the fields it may change there; a
 * comment has only a body): true when its content changed, false when only its votes did.
 */
export function applyEdit (e, x, names = ['title', 'body', 'link']) {
  let content = false
  for (const f of names) {
    if (x[f] !== undefined) {
      e[f] = x[f]
      content = true
    }
  }
  if (x.votes) e.votes = x.votes
  return content
}

/**
 * One block: `{kind: 'post', id, title, body, link, author, publishedUs, updatedUs, votes?}`,
 * `{kind: 'comment', id, post, parent, author, body, publishedUs, updatedUs, votes?}`,
 * `{kind: 'edit', target, timeUs, title?, body?, link?, votes?}` (votes: `{up, down}`), `{kind: 'delete', target}`,
 * `{kind: 'descriptor', …}`, `{kind: 'other'}` (a kind this app does not show), or null
 * (malformed or an unknown version: skipped, as protocol/feeds.md says).
 */
export function decode (bytes) {
  try {
    const e = fields(bytes)
    if (last(e, 1) !== 1) return null
    if (e[3]) {
      const p = fields(last(e, 3))
      const a = p[2] ? fields(last(p, 2)) : null
      const id = text(last(p, 1))
      if (!id) return null
      return {
        kind: 'post',
        id,
        title: text(last(p, 3)),
        body: text(last(p, 4)),
        link: text(last(p, 5)),
        author: a ? { name: text(last(a, 1)), displayName: text(last(a, 2)), url: text(last(a, 3)) } : null,
        publishedUs: last(p, 6) || 0,
        updatedUs: last(p, 7) || 0,
        votes: votes(p, 10)
      }
    }
    if (e[4]) {
      const c = fields(last(e, 4))
      const a = c[4] ? fields(last(c, 4)) : null
      const id = text(last(c, 1))
      const post = text(last(c, 2))
      if (!id || !post) return null
      return {
        kind: 'comment',
        id,
        post,
        parent: text(last(c, 3)),
        author: a ? { name: text(last(a, 1)), displayName: text(last(a, 2)), url: text(last(a, 3)) } : null,
        body: text(last(c, 5)),
        publishedUs: last(c, 6) || 0,
        updatedUs: last(c, 7) || 0,
        votes: votes(c, 9)
      }
    }
    if (e[5]) {
      const x = fields(last(e, 5))
      const target = text(last(x, 1))
      return target ? { kind: 'edit', target, timeUs: last(x, 2) || 0, title: opt(x, 3), body: opt(x, 4), link: opt(x, 5), votes: votes(x, 6) } : null
    }
    if (e[6]) {
      const target = text(last(fields(last(e, 6)), 1))
      return target ? { kind: 'delete', target } : null
    }
    if (e[2]) {
      const d = fields(last(e, 2))
      return { kind: 'descriptor', name: text(last(d, 1)), title: text(last(d, 2)), description: text(last(d, 3)) }
    }
    return { kind: 'other' }
  } catch {
    return null
  }
}

/**
 * Fold blocks, newest first (`[{index, value}]`), into `state` ({out, edits, deleted, done}):
 * live posts as they stand now, until `n` are found. Returns true once `n` are.
 */
export function fold (state, blocks, n) {
  for (const { index, value } of blocks) {
    if (state.out.length >= n) return true
    const e = decode(value)
    if (!e) continue
    if (e.kind === 'post') {
      // Only the last Post of an id counts; a deleted id is not shown.
      if (state.done.has(e.id) || state.deleted.has(e.id)) continue
      state.done.add(e.id)
      let editedUs = 0
      for (const x of (state.edits.get(e.id) || []).reverse()) {
        if (applyEdit(e, x)) editedUs = x.timeUs
      }
      state.edits.delete(e.id)
      state.out.push({ index, post: e, editedUs })
    } else if (e.kind === 'edit') {
      if (!state.done.has(e.target) && !state.deleted.has(e.target)) {
        state.edits.set(e.target, [...(state.edits.get(e.target) || []), e])
      }
    } else if (e.kind === 'delete' && !state.done.has(e.target)) {
      state.edits.delete(e.target)
      state.deleted.add(e.target)
    }
  }
  return state.out.length >= n
}

/**
 * The latest `n` posts of the posts log `key` as they stand, through the data API
 * (`peerhost`): `{head, posts: [{index, post, editedUs}]}`. Reads back from the end in
 * batches until `n` live posts are found or the log's start.
 */
export async function latestPosts (api, key, n = 20) {
  const state = { out: [], edits: new Map(), deleted: new Set(), done: new Set() }
  const { head, blocks } = await api.latest(key, n)
  let start = head.length - blocks.length
  let full = fold(state, blocks, n)
  while (!full && start > 0) {
    const s = Math.max(0, start - Math.max(16, n - state.out.length))
    const got = await api.range(key, s, start, head.length)
    full = fold(state, got.map((value, k) => ({ index: s + k, value })).reverse(), n)
    start = s
  }
  return { head, posts: state.out }
}
