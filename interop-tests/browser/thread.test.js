'use strict'
// Issue 13 in Chromium: the default app reads the community's index log sparsely. Real
// peerhost processes on loopback (an instance and 3 mirrors), a community imported from Lemmy
// JSON: the samples of crates/feed/tests/data (titles, threads, deleted comments) plus 300
// generated posts and 2 000 generated comments, 80 of them one deep thread (lemmy-gen.js).
//
// 1. `#/page/5` on a fresh page: the 20 posts 81..100 by publication time; "older" reaches
//    page 6, "newer" page 4, Back returns.
// 2. A thread opened from the community page: the comment tree nested as Lemmy's paths say
//    (DOM nesting and depth), collapsible; a Lemmy sample thread with its titles, nesting and
//    deleted placeholders.
// 3. A deep link `#/post/ID` on a fresh page renders the thread; the comments log's bytes it
//    fetched (Chromium's network log) are far below the log's size.
//
// Needs what e2e.test.js needs (PEERHOST_BIN, web/dist, web/app/dist, Chromium).

const test = require('node:test')
const assert = require('node:assert')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const lib = require('./lib.js')
const gen = require('./lemmy-gen.js')

const SHOTS = path.join(__dirname, 'screenshots')
let dir, storage, g, info, instance, mirrors, chrome

test.before(async () => {
  fs.mkdirSync(SHOTS, { recursive: true })
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'peerhost-thread-'))
  storage = path.join(dir, 'instance')
  fs.mkdirSync(path.join(dir, 'json'))
  g = gen.generate({ posts: 300, comments: 2000, thread: 80, threadPost: 150 })
  const key = lib.run(storage, ['community', 'create', 'rust_p2p', '--app', lib.APP])
  lib.run(storage, ['import', 'rust_p2p', ...gen.write(path.join(dir, 'json'), g)])
  info = lib.communityInfo(storage, 'rust_p2p')
  info.key = key
  info.comments = JSON.parse(lib.run(storage, ['log', 'info', 'rust_p2p.comments', '--json']))
  instance = await lib.startInstance(storage)
  mirrors = await Promise.all([1, 2, 3].map((i) => lib.startMirror(dir, i, key, instance)))
  await lib.waitPeers(instance, mirrors.map((m) => m.url))
  chrome = await lib.launch()
})

test.after(async () => {
  if (chrome) await chrome.close()
  for (const m of mirrors || []) lib.stop(m)
  lib.stop(instance)
  if (dir) fs.rmSync(dir, { recursive: true, force: true })
})

const titles = (frame) => frame.$$eval('article.post h2', (hs) => hs.map((h) => h.textContent))
const waitView = (frame, view, extra = '') => frame.waitForSelector(`body[data-view="${view}"]${extra}`, { timeout: 30_000 })

test('page 5 on a fresh page: posts 81..100 by time; older, newer and Back', async () => {
  const p = await lib.countingPage(chrome.browser)
  const got = await lib.loadPage(p, instance.url, { url: instance.url + '/#/page/5' })
  await waitView(got.frame, 'page', '[data-page="5"]')
  assert.deepStrictEqual(await titles(got.frame), g.byTime.slice(80, 100))
  assert.match(await got.frame.textContent('#status'), /page 5 .*indexed/)
  await p.page.screenshot({ path: path.join(SHOTS, 'page-5.png') })
  await got.frame.click('a[rel=next]')
  await waitView(got.frame, 'page', '[data-page="6"]')
  assert.deepStrictEqual(await titles(got.frame), g.byTime.slice(100, 120))
  assert.ok(p.page.url().endsWith('#/page/6'), p.page.url())
  await p.page.goBack()
  await waitView(got.frame, 'page', '[data-page="5"]')
  assert.deepStrictEqual(await titles(got.frame), g.byTime.slice(80, 100))
  await got.frame.click('a[rel=prev]')
  await waitView(got.frame, 'page', '[data-page="4"]')
  assert.deepStrictEqual(await titles(got.frame), g.byTime.slice(60, 80))
  await p.context.close()
})

// The comments of the generated thread as the DOM shows them: [id, depth, parent's id].
// (Sorted by id: the DOM shows them in tree order, each after its parent.)
const idOrder = (a, b) => (a[0] < b[0] ? -1 : a[0] > b[0])
const tree = (frame) => frame.$$eval('details.comment', (ds) => ds.map((d) => {
  const up = d.parentElement.closest('details.comment')
  return [d.dataset.id, +d.dataset.depth, up ? up.dataset.id : null]
})).then((t) => t.sort(idOrder))

function expectedThread () {
  const byId = new Map(g.thread.comments.map((c) => [c.id, c]))
  return g.thread.comments.map((c) => {
    const parts = c.path.split('.')
    const parent = parts.length > 2 ? `lemmy:example-lemmy.test/comment/${parts[parts.length - 2]}` : null
    assert.ok(!parent || byId.has(+parts[parts.length - 2]))
    return [`lemmy:example-lemmy.test/comment/${c.id}`, c.depth, parent]
  }).sort(idOrder)
}

test('a thread opened from the community page: nested as Lemmy\'s paths, collapsible; a Lemmy sample thread with its deleted comments', async () => {
  const p = await lib.countingPage(chrome.browser)
  const got = await lib.loadPage(p, instance.url, { url: instance.url + '/#/page/8' })
  await waitView(got.frame, 'page', '[data-page="8"]')
  const title = g.thread.post.name
  assert.ok((await titles(got.frame)).includes(title), 'the thread\'s post is on page 8')
  await got.frame.click(`article.post h2 a >> text=${JSON.stringify(title)}`)
  await waitView(got.frame, 'post')
  assert.strictEqual(await got.frame.textContent('article.full h2'), title)
  const shown = await tree(got.frame)
  const want = expectedThread()
  const ours = shown.filter(([id]) => want.some((w) => w[0] === id))
  assert.deepStrictEqual(ours, want)
  const onPost = g.comments.comments.filter((c) => c.comment.post_id === g.thread.post.id).length
  assert.strictEqual(shown.length, onPost)
  assert.ok(Math.max(...want.map((w) => w[1])) >= 5, 'a deep thread')
  assert.match(await got.frame.textContent('.comments-title'), new RegExp(`^${onPost} comments`))
  await p.page.screenshot({ path: path.join(SHOTS, 'thread.png'), fullPage: true })
  // Collapsing a comment hides its replies.
  const first = `details.comment[data-id="${want[0][0]}"]`
  assert.ok(await got.frame.isVisible(`details.comment[data-id="${want[1][0]}"] > summary`))
  await got.frame.click(`${first} > summary`)
  assert.strictEqual(await got.frame.$eval(first, (d) => d.open), false)
  assert.ok(!(await got.frame.isVisible(`details.comment[data-id="${want[1][0]}"] > summary`)))
  // A Lemmy sample thread: "[Meta] Should we allow crypto-project announcements?" (49054).
  await got.frame.click('a.back')
  await waitView(got.frame, 'page', '[data-page="1"]')
  await p.page.evaluate(() => { location.hash = '#/post/' + encodeURIComponent('lemmy:example-lemmy.test/post/49054') })
  await got.frame.waitForSelector('article.full[data-id="lemmy:example-lemmy.test/post/49054"]')
  const sample = gen.DATA && JSON.parse(fs.readFileSync(path.join(gen.DATA, 'comments.json'), 'utf8')).comments.filter((c) => c.comment.post_id === 49054)
  const meta = await tree(got.frame)
  assert.strictEqual(meta.length, sample.length)
  for (const c of sample) {
    const id = `lemmy:example-lemmy.test/comment/${c.comment.id}`
    const row = meta.find((m) => m[0] === id)
    assert.ok(row, id)
    assert.strictEqual(row[1], c.comment.path.split('.').length - 1, `${id} depth`)
    const gone = c.comment.deleted || c.comment.removed
    const text = await got.frame.textContent(`details.comment[data-id="${id}"] > :not(summary):not(.replies)`)
    if (gone) assert.strictEqual(text, '[deleted]')
    else assert.ok(text.includes(c.comment.content.replace(/[*`_]/g, '').slice(0, 12).trim().split(/\s+/)[0]), `${id}: ${text}`)
    // Scores: Lemmy's counts (score = upvotes - downvotes), shown beside the author.
    if (!gone) {
      const summary = await got.frame.textContent(`details.comment[data-id="${id}"] > summary`)
      const n = c.counts.upvotes - c.counts.downvotes
      assert.match(summary, new RegExp(`(^|[^0-9-])${n} points? ·`), `${id} score`)
    }
  }
  const spost = JSON.parse(fs.readFileSync(path.join(gen.DATA, 'posts.json'), 'utf8')).posts.find((x) => x.post.id === 49054)
  const points = spost.counts.upvotes - spost.counts.downvotes
  assert.strictEqual(await got.frame.textContent('article.full .meta .score'), `${points} point${points === 1 ? '' : 's'}`)
  await p.context.close()
})

test('a deep link #/post/ID on a fresh page renders the thread, fetching a small part of the comments log', async () => {
  const p = await lib.countingPage(chrome.browser)
  const url = instance.url + '/#/post/' + encodeURIComponent(`lemmy:example-lemmy.test/post/${g.thread.post.id}`)
  const t0 = Date.now()
  const got = await lib.loadPage(p, instance.url, { url })
  await waitView(got.frame, 'post')
  await got.frame.waitForSelector('details.comment')
  const ms = Date.now() - t0
  assert.deepStrictEqual((await tree(got.frame)).filter(([id]) => expectedThread().some((w) => w[0] === id)), expectedThread())
  await p.page.waitForTimeout(300)
  const sizes = await p.sizes()
  const logKey = info.comments.keyHex
  const idx = JSON.parse(lib.run(storage, ['log', 'info', 'rust_p2p.index', '--json']))
  // Bytes of the comments and index logs that came over the network (Chromium's count, all peers).
  // (Ranges and sets of blocks: `/blocks` and `/set`.)
  const of = (k) => sizes.filter(([u]) => u.includes(`/v1/logs/${k}/blocks`) || u.includes(`/v1/logs/${k}/set`)).reduce((n, [, b]) => n + b, 0)
  const comments = of(logKey)
  const index = of(idx.keyHex)
  console.log(`# deep link: ${ms} ms; comments log ${comments} B of ${info.comments.byteLength} B; index log ${index} B of ${idx.byteLength} B`)
  assert.ok(comments > 0, 'the comments were fetched')
  assert.ok(comments < info.comments.byteLength / 4, `${comments} B of a ${info.comments.byteLength} B comments log`)
  await p.context.close()
})
