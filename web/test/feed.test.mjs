// The page's protobuf reader (src/feed.js) over entries encoded by hand, byte by byte, as
// protocol/feed.proto lays them out (the Rust crate peerhost-feed writes the same bytes).
import test from 'node:test'
import assert from 'node:assert/strict'
import { decodeEntry, decodePost, fields } from '../src/feed.js'

const varint = (n) => {
  const out = []
  while (n >= 128) {
    out.push((n % 128) | 128)
    n = Math.floor(n / 128)
  }
  out.push(n)
  return out
}
const bytes = (s) => [...new TextEncoder().encode(s)]
const field = (f, v) => (typeof v === 'number'
  ? [...varint(f * 8), ...varint(v)]
  : [...varint(f * 8 + 2), ...varint(v.length), ...v])
const msg = (...parts) => parts.flat()

test('a post: title, body, author, time; unknown fields skipped', () => {
  const author = msg(field(1, bytes('ann')), field(2, bytes('Ann')))
  const post = msg(field(1, bytes('id-1')), field(2, author), field(3, bytes('Hello')),
    field(4, bytes('First post')), field(6, 1_700_000_000_000_000), field(99, bytes('future')))
  const entry = new Uint8Array(msg(field(1, 1), field(3, post)))
  assert.deepEqual(decodePost(entry), {
    title: 'Hello', body: 'First post', author: 'Ann', time: '2023-11-14 22:13'
  })
})

test('an asset index and a chunk', () => {
  const asset = (path, start, blocks) => msg(field(1, bytes(path)), field(2, bytes('text/css')),
    field(3, 10), field(4, new Array(32).fill(7)), field(5, start), field(6, blocks))
  const index = msg(field(1, asset('a.css', 0, 1)), field(1, asset('b.png', 1, 3)), field(2, 5))
  assert.deepEqual(decodeEntry(new Uint8Array(msg(field(1, 1), field(7, index)))), {
    index: [{ path: 'a.css', type: 'text/css', start: 0, blocks: 1 },
      { path: 'b.png', type: 'text/css', start: 1, blocks: 3 }]
  })
  const chunk = decodeEntry(new Uint8Array(msg(field(1, 1), field(8, field(1, [1, 2, 3])))))
  assert.deepEqual([...chunk.chunk], [1, 2, 3])
  assert.equal(decodePost(new Uint8Array(msg(field(1, 1), field(8, field(1, [1]))))), undefined)
})

test('malformed entries are skipped, not trusted', () => {
  for (const bad of [[0xff, 0xff], [0x1a, 0x05, 0x01], [0x0b], [0x80, 0x80]]) {
    assert.equal(decodeEntry(new Uint8Array(bad)), null, JSON.stringify(bad))
  }
  assert.deepEqual(fields(new Uint8Array([0x08, 0x96, 0x01])), { 1: [150] })
})
