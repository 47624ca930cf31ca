// Just enough protobuf (protocol/feed.proto) for the bootstrap: the community's Descriptor
// (the keys of its logs) and the app's AssetIndex and Chunks. Everything else is the app's.

/** One message as `{field: [values]}`: varints as numbers, length-delimited as bytes. */
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

const last = (m, f) => m[f] && m[f][m[f].length - 1]
const text = (v) => new TextDecoder().decode(v || new Uint8Array(0))
const key = (v) => (v && v.length === 32 ? Array.from(v, (x) => x.toString(16).padStart(2, '0')).join('') : null)

/** An Entry (version 1) as `[kind field number, the kind's fields]`, or null. */
export function entry (bytes) {
  try {
    const e = fields(bytes)
    if (last(e, 1) !== 1) return null
    for (const k of [2, 7, 8]) if (e[k]) return [k, fields(last(e, k))]
  } catch {}
  return null
}

/** A Descriptor entry: `{name, title, description, posts, comments, assets, index}` (keys hex, null if none). */
export function descriptor (bytes) {
  const [k, d] = entry(bytes) || []
  return k === 2
    ? { name: text(last(d, 1)), title: text(last(d, 2)), description: text(last(d, 3)), posts: key(last(d, 4)), comments: key(last(d, 5)), assets: key(last(d, 6)), index: key(last(d, 9)) }
    : null
}

/** An AssetIndex entry: `[{path, type, size, sha256, start, blocks}]`, or null. */
export function assetIndex (bytes) {
  const [k, x] = entry(bytes) || []
  return k === 7
    ? (x[1] || []).map((f) => {
        const a = fields(f)
        return { path: text(last(a, 1)), type: text(last(a, 2)), size: last(a, 3) || 0, sha256: last(a, 4), start: last(a, 5) || 0, blocks: last(a, 6) || 0 }
      })
    : null
}

/** A Chunk's bytes, or null. */
export const chunk = (bytes) => {
  const [k, c] = entry(bytes) || []
  return k === 8 ? last(c, 1) || new Uint8Array(0) : null
}
