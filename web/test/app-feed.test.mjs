// The default app's reading of a posts log (web/app/feed.js): edits and deletions applied as
// crates/feed read::latest_posts (and so `peerhost feed`) applies them, reading back in batches.

import { test } from 'node:test'
import assert from 'node:assert/strict'

import { decode, latestPosts } from '../app/feed.js'

const varint = (n) => { const o = []; while (n > 127) { o.push((n & 127) | 128); n = Math.floor(n / 128) } o.push(n); return o }
const str = (f, s) => { const b = [...new TextEncoder().encode(s)]; return [...varint(f * 8 + 2), ...varint(b.length), ...b] }
const num = (f, n) => [...varint(f * 8), ...varint(n)]
const msg = (f, body) => [...varint(f * 8 + 2), ...varint(body.length), ...body]
const entry = (kind, body) => Uint8Array.from([...num(1, 1), ...msg(kind, body)])
const post = (id, title, body = '') => entry(3, [...str(1, id), ...str(3, title), ...str(4, body), ...num(6, 1_700_000_000_000_000)])
const edit = (target, fields) => entry(5, [...str(1, target), ...num(2, 5), ...Object.entries(fields).flatMap(([k, v]) => str({ title: 3, body: 4, link: 5 }[k], v))])
const votes = (f, up, down) => msg(f, [...num(1, up), ...num(2, down)])
const del = (target) => entry(6, [...str(1, target), ...num(3, 2)])

// An in-memory data API over one log, as the bootstrap answers it.
function api (blocks) {
  const head = { key: 'k', length: blocks.length }
  return {
    latest: async (key, n) => ({ head, blocks: blocks.slice(-n).map((value, i) => ({ index: blocks.length - Math.min(n, blocks.length) + i, value })).reverse() }),
    range: async (key, s, e, length) => { assert.equal(length, blocks.length); return blocks.slice(s, e) }
  }
}

test('edits apply in order, an edit without a field keeps it, an empty title is a value', () => {
  assert.deepEqual(decode(edit('a', { title: '' })), { kind: 'edit', target: 'a', timeUs: 5, title: '', body: undefined, link: undefined, votes: undefined })
  assert.equal(decode(Uint8Array.of(0xff)), null)
  assert.equal(decode(Uint8Array.from([...num(1, 2), ...msg(3, str(1, 'x'))])), null) // another version
})

test('latest posts as they stand: edited titles, deleted posts gone, re-posted ids back, batches read back', async () => {
  const log = [
    post('a', 'A'), post('b', 'B'), post('c', 'C', 'body c'), post('d', 'D'),
    edit('a', { title: 'A2' }), edit('a', { body: 'new body' }), del('b'), edit('b', { title: 'ignored' }),
    post('e', 'E'), del('d'), post('d', 'D again'), edit('c', { title: 'C2' }), del('nope')
  ]
  // Padding so the posts lie beyond the first batch.
  const padded = [...log, ...Array.from({ length: 30 }, (_, i) => edit('zz' + i, { title: 'x' }))]
  const { posts } = await latestPosts(api(padded), 'k', 20)
  assert.deepEqual(posts.map((p) => [p.post.id, p.post.title, p.post.body, p.editedUs > 0]), [
    ['d', 'D again', '', false], ['e', 'E', '', false], ['c', 'C2', 'body c', true], ['a', 'A2', 'new body', true]
  ])
  const two = await latestPosts(api(padded), 'k', 2)
  assert.deepEqual(two.posts.map((p) => p.post.id), ['d', 'e'])
})

test('votes: decoded from posts, comments and edits; an edit of only votes sets them and is not an edit of the content', async () => {
  const voted = entry(3, [...str(1, 'v'), ...str(3, 'V'), ...num(6, 7), ...votes(10, 54, 8)])
  assert.deepEqual(decode(voted).votes, { up: 54, down: 8 })
  assert.equal(decode(post('n', 'N')).votes, undefined, 'absent: not counted, not zero')
  const comment = entry(4, [...str(1, 'c1'), ...str(2, 'v'), ...str(5, 'hi'), ...votes(9, 3, 0)])
  assert.deepEqual(decode(comment).votes, { up: 3, down: 0 })
  // A Votes message with a zero count leaves the field out (proto3): it is 0.
  assert.deepEqual(decode(entry(5, [...str(1, 'v'), ...num(2, 9), ...msg(6, num(1, 2))])).votes, { up: 2, down: 0 })
  const onlyVotes = entry(5, [...str(1, 'v'), ...num(2, 9), ...votes(6, 60, 9)])
  const log = [voted, onlyVotes]
  const { posts } = await latestPosts(api(log), 'k', 5)
  assert.deepEqual(posts.map((p) => [p.post.id, p.post.votes, p.editedUs]), [['v', { up: 60, down: 9 }, 0]])
  const both = [voted, edit('v', { title: 'V2' }), onlyVotes]
  const after = await latestPosts(api(both), 'k', 5)
  assert.deepEqual(after.posts.map((p) => [p.post.title, p.post.votes, p.editedUs]), [['V2', { up: 60, down: 9 }, 5]])
})
