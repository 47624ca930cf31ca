// The default app's index reading (web/app/index.js) over the index log `peerhost` wrote for
// the Lemmy samples (golden/index.json): pages and threads as `peerhost feed --page` and
// `peerhost thread` print them; the index treated as a hint (a lying value is caught); a
// lagging index completed from the logs' tails; the scan fallback agrees. And the app's
// escape-only Markdown renderer (web/app/markdown.js).

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'

import { Bee } from '../boot/bee.js'
import { Disagree, keys, openIndex, page, scanThread, thread } from '../app/index.js'
import { parse, plain } from '../app/markdown.js'
import { ago } from '../app/main.js'

const golden = JSON.parse(readFileSync(new URL('./golden/index.json', import.meta.url)))
const fromHex = (s) => Uint8Array.from(Buffer.from(s, 'hex'))
const c = { index: 'index', posts: 'posts', comments: 'comments' }

// The data API as the bootstrap answers it, over in-memory logs; counts the blocks read.
function api (logs, { lie } = {}) {
  const read = { index: 0, posts: 0, comments: 0 }
  const bee = (len) => new Bee(async (s) => { read.index++; return logs.index[s] }, len)
  const head = (key) => ({ key, length: logs[key].length })
  return {
    read,
    head: async (key) => head(key),
    range: async (key, s, e, length) => {
      assert.equal(length, logs[key].length)
      assert.ok(s >= 0 && e <= length && s < e, `range ${s}..${e} of ${length}`)
      read[key] += e - s
      return logs[key].slice(s, e)
    },
    call: async (op, key, a, length) => {
      assert.equal(key, 'index')
      const b = bee(length)
      if (op === 'index.get') {
        const entry = await b.get(a)
        return { head: head(key), entry: lie ? lie(a, entry) : entry }
      }
      if (op === 'index.range') return { head: head(key), entries: await b.range(a) }
      throw new Error(op)
    }
  }
}
const logs = () => ({ index: golden.index.map(fromHex), posts: golden.posts.map(fromHex), comments: golden.comments.map(fromHex) })

// peerhost's JSON thread, flattened: [depth, id, deleted, body].
const flatGolden = (cs, d = 1, out = []) => { for (const x of cs) { out.push([d, x.id, x.deleted, x.deleted ? '' : x.body]); flatGolden(x.replies, d + 1, out) } return out }
const flatOurs = (cs, d = 1, out = []) => { for (const x of cs) { out.push([d, x.comment.id, x.deleted, x.deleted ? '' : x.comment.body]); assert.equal(x.depth, d); flatOurs(x.replies, d + 1, out) } return out }

test('pages by time through the index: the posts of `peerhost feed --page 1` and `--page 2`', async () => {
  const a = api(logs())
  const ix = await openIndex(a, c)
  await ix.checked
  assert.equal(ix.P, golden.posts.length)
  const p1 = await page(a, ix, 1)
  assert.deepEqual(p1.posts.map((p) => p.post.id), golden.pages[0])
  assert.equal(p1.more, true)
  const p2 = await page(a, ix, 2)
  assert.deepEqual(p2.posts.map((p) => p.post.id), golden.pages[1])
  assert.equal(p2.more, false)
  assert.deepEqual((await page(a, ix, 3)).posts, [])
  // Pages of 3 posts, forwards (each continuing from the last key seen) and jumping back.
  const all = [...golden.pages[0], ...golden.pages[1]]
  const fresh = await openIndex(a, c)
  for (const n of [1, 2, 3, 7, 10, 4, 11]) {
    const got = await page(a, fresh, n, 3)
    assert.deepEqual(got.posts.map((p) => p.post.id), all.slice((n - 1) * 3, n * 3), `page ${n} of 3`)
    assert.equal(got.more, n * 3 < all.length)
  }
})

test('every thread through the index: the nesting, deletions and bodies of `peerhost thread --json`, reading only its blocks', async () => {
  let n = 0
  for (const [id, want] of Object.entries(golden.threads)) {
    const a = api(logs())
    const ix = await openIndex(a, c)
    const before = { ...a.read }
    const t = await thread(a, ix, id)
    assert.equal(t.post.post.id, id)
    assert.equal(t.post.post.title, want.title)
    const flat = flatGolden(want.comments)
    assert.deepEqual(flatOurs(t.comments), flat, id)
    assert.equal(t.count, flat.length)
    // The comments log is read only at the blocks the thread's states name.
    assert.ok(a.read.comments - before.comments <= flat.length * 2, `${id}: ${a.read.comments} comment blocks for ${flat.length}`)
    const s = await scanThread(a, c, id)
    assert.deepEqual(flatOurs(s.comments), flat, `scan: ${id}`)
    n += flat.length
  }
  assert.ok(n >= 50, `${n} comments checked`)
  assert.equal(await thread(api(logs()), await openIndex(api(logs()), c), 'lemmy:nope/post/1'), null)
})

test('the index is a hint: a state naming another post, a bad state, a claim past the logs are Disagree', async () => {
  const id = golden.pages[0][3]
  const other = golden.pages[0][4]
  // p ‖ ID answered with the state of another post.
  const swap = api(logs(), {
    lie: (k, e) => {
      if (Buffer.from(k).equals(Buffer.from(keys.post(id)))) return { ...e, value: null }
      return e
    }
  })
  await assert.rejects(thread(swap, await openIndex(swap, c), id), Disagree)
  const l = logs()
  const a = api(l)
  const ix = await openIndex(a, c)
  const otherState = (await a.call('index.get', 'index', keys.post(other), l.index.length)).entry.value
  const liar = api(l, { lie: (k, e) => Buffer.from(k).equals(Buffer.from(keys.post(id))) ? { ...e, value: otherState } : e })
  await assert.rejects(thread(liar, ix, id), (e) => e instanceof Disagree && /not the post/.test(e.message))
  // A posts log shorter than the index claims.
  const short = logs()
  short.posts = short.posts.slice(0, 10)
  await assert.rejects((await openIndex(api(short), c)).checked, Disagree)
  await assert.rejects(page(api(short), await openIndex(api(short), c), 1), Disagree)
})

// An entry as feed.proto lays it out (the app-feed test's helpers).
const varint = (n) => { const o = []; while (n > 127) { o.push((n & 127) | 128); n = Math.floor(n / 128) } o.push(n); return o }
const str = (f, s) => { const b = [...new TextEncoder().encode(s)]; return [...varint(f * 8 + 2), ...varint(b.length), ...b] }
const num = (f, n) => [...varint(f * 8), ...varint(n)]
const msg = (f, body) => [...varint(f * 8 + 2), ...varint(body.length), ...body]
const entry = (kind, body) => Uint8Array.from([...num(1, 1), ...msg(kind, body)])

test('a lagging index: posts and comments appended after it are merged from the logs\' tails', async () => {
  const l = logs()
  const id = golden.pages[0].slice(0, 18).find((x) => golden.threads[x] && golden.threads[x].comments.length)
  const old = golden.pages[0][19]
  l.posts.push(entry(3, [...str(1, 'ph:new'), ...str(3, 'Brand new'), ...num(6, 4_000_000_000_000_000)]))
  l.posts.push(entry(6, [...str(1, old)])) // the 20th post deleted
  const parent = golden.threads[id].comments[0]
  l.comments.push(entry(4, [...str(1, 'ph:c1'), ...str(2, id), ...str(3, parent.id), ...str(5, 'a late reply')]))
  const a = api(l)
  const ix = await openIndex(a, c)
  const p1 = await page(a, ix, 1)
  assert.equal(p1.lag, 2)
  assert.deepEqual(p1.posts.map((p) => p.post.id), ['ph:new', ...golden.pages[0].slice(0, 19)])
  assert.deepEqual((await page(a, ix, 2)).posts.map((p) => p.post.id).slice(0, 2), golden.pages[1].slice(0, 2))
  const t = await thread(a, ix, id)
  const reply = t.comments[0].replies.find((r) => r.comment.id === 'ph:c1')
  assert.equal(reply.comment.body, 'a late reply')
  assert.equal(reply.depth, 2)
})

test('markdown: a strict escape-only tree; HTML stays text; only http(s) and mailto links', () => {
  const tree = parse('# Title\n\nSome **bold** and *em* and `code <b>`, a [link](https://ex.test/a?b=1) and <script>alert(1)</script>\n\n> quoted\n\n- one\n- two\n\n```\nlet x = "<img onerror=alert(1)>"\n```\n[bad](javascript:alert(1)) [data](data:text/html,hi) https://bare.test/x.')
  const json = JSON.stringify(tree)
  assert.equal(tree[0].t, 'h3')
  assert.ok(json.includes('"t":"strong","c":["bold"]'))
  assert.ok(json.includes('"t":"em","c":["em"]'))
  assert.ok(json.includes('"t":"code","c":["code <b>"]'))
  assert.ok(json.includes('"t":"a","href":"https://ex.test/a?b=1","c":["link"]'))
  assert.ok(json.includes('<script>alert(1)</script>'), 'HTML is kept as text')
  assert.ok(json.includes('"t":"blockquote"') && json.includes('"t":"ul"'))
  assert.ok(json.includes('let x = \\"<img onerror=alert(1)>\\"'))
  assert.ok(!/"href":"(javascript|data):/.test(json), 'no javascript: or data: link')
  const last = tree[tree.length - 1].c.map((n) => typeof n === 'string' ? n : '').join('')
  assert.ok(last.startsWith('[bad](javascript:alert(1)) [data](data:text/html,hi)'), last)
  assert.ok(json.includes('"href":"https://bare.test/x"'))
  // Every node is a string or one of the known tags.
  const tags = new Set()
  const walk = (ns) => ns.forEach((n) => { if (typeof n !== 'string') { tags.add(n.t); walk(n.c) } })
  walk(tree)
  for (const t of tags) assert.ok(['p', 'br', 'h3', 'h4', 'h5', 'h6', 'blockquote', 'ul', 'ol', 'li', 'pre', 'code', 'strong', 'em', 'del', 'a'].includes(t), t)
  assert.equal(plain('**a** [b](https://x.test)\n\nc'), 'a b c')
})

test('markdown: hostile input is bounded (long lines, deep nesting, many markers) and never throws', () => {
  const t0 = Date.now()
  for (const s of ['*'.repeat(50_000), '**a'.repeat(10_000), '>'.repeat(10_000) + ' x', '- '.repeat(5000), '['.repeat(20_000) + '](', '`'.repeat(30_000), 'x'.repeat(200_000), null, undefined, 42, '\r\n\r\n\u0000']) {
    assert.ok(Array.isArray(parse(s)))
  }
  assert.ok(Date.now() - t0 < 5000, `${Date.now() - t0} ms`)
})

test('relative times', () => {
  const now = Date.UTC(2026, 11, 7, 12)
  assert.equal(ago((now - 30_000) * 1000, now), 'just now')
  assert.equal(ago((now - 5 * 60_000) * 1000, now), '5 min ago')
  assert.equal(ago((now - 3 * 3600_000) * 1000, now), '3 h ago')
  assert.equal(ago((now - 2 * 86400_000) * 1000, now), '2 d ago')
  assert.equal(ago((now - 400 * 86400_000) * 1000, now), '1 y ago')
  assert.equal(ago(0, now), '')
})
