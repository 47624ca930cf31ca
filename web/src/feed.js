// Just enough protobuf to read community entries (`protocol/feed.proto`) in the browser:
// `Entry` → `Post` (for the page) and `AssetIndex` / `Chunk` (for the app's files). Unknown
// fields are skipped, as protobuf requires. Blocks were verified before they get here; a
// malformed one is skipped (null), never trusted for more than its text.

/** Decode one message into `{field: [values]}` (varints as numbers, the rest as bytes). */
export function fields (b) {
  const out = {}
  let i = 0
  const varint = () => {
    let v = 0
    let m = 1
    for (;;) {
      if (i >= b.length || m > 2 ** 63) throw new Error('bad varint')
      const x = b[i++]
      v += (x & 127) * m
      m *= 128
      if (x < 128) return v
    }
  }
  while (i < b.length) {
    const tag = varint()
    const f = Math.floor(tag / 8)
    let v
    switch (tag & 7) {
      case 0: v = varint(); break
      case 1: v = b.subarray(i, i += 8); break
      case 2: { const n = varint(); if (i + n > b.length) throw new Error('bad length'); v = b.subarray(i, i += n); break }
      case 5: v = b.subarray(i, i += 4); break
      default: throw new Error('bad wire type')
    }
    if (i > b.length) throw new Error('truncated')
    ;(out[f] ||= []).push(v)
  }
  return out
}

const text = (v) => (v ? new TextDecoder().decode(v) : '')
const last = (m, f) => (m[f] ? m[f][m[f].length - 1] : undefined)

/** An `Entry`'s kind: `{post}`, `{index}` or `{chunk}`, or null for anything else. */
export function decodeEntry (bytes) {
  try {
    const e = fields(bytes)
    if (e[3]) {
      const p = fields(last(e, 3))
      const a = p[2] ? fields(last(p, 2)) : {}
      const us = last(p, 6)
      return {
        post: {
          title: text(last(p, 3)),
          body: text(last(p, 4)),
          author: text(last(a, 2)) || text(last(a, 1)),
          time: us ? new Date(us / 1000).toISOString().slice(0, 16).replace('T', ' ') : ''
        }
      }
    }
    if (e[7]) {
      const files = (fields(last(e, 7))[1] || []).map((f) => {
        const a = fields(f)
        return { path: text(last(a, 1)), type: text(last(a, 2)), start: last(a, 5) || 0, blocks: last(a, 6) || 0 }
      })
      return { index: files }
    }
    if (e[8]) return { chunk: last(fields(last(e, 8)), 1) || new Uint8Array(0) }
  } catch {}
  return null
}

/** `decodePost` for `renderPosts`: posts only, everything else skipped. */
export const decodePost = (bytes) => {
  const e = decodeEntry(bytes)
  return e && e.post
}
