#!/usr/bin/env node
'use strict'
// A generated community at the scale of issue 13's acceptance 2: POSTS posts and COMMENTS
// comments imported through `peerhost import` (Lemmy 0.19 JSON, written and imported in chunks
// of 50 000 so neither the JSON nor the importer holds it all), into STORE. One post (the
// "hot" one, id 1 000 000 + POSTS/2) gets THREAD comments, nested (each reply to one of the
// thread's last few comments, every 6th top level), published in a window where the whole
// community comments ten times as fast (so its comments lie about 10 blocks apart in the
// comments log, as a busy day's would); the rest go to random posts, top level.
//
//   node scripts/scale-community.js STORE [POSTS=100000] [COMMENTS=1000000] [THREAD=300]
//
// Prints the community key, the hot post's id and the logs' sizes as JSON on the last line.
// Needs PEERHOST_BIN (default target/release/peerhost). Deterministic. Takes minutes.

const { execFileSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

const [store, posts = 100000, comments = 1000000, thread = 300] = [process.argv[2], ...process.argv.slice(3).map(Number)]
if (!store) { console.error('usage: scale-community.js STORE [POSTS] [COMMENTS] [THREAD]'); process.exit(2) }
const BIN = process.env.PEERHOST_BIN || path.join(__dirname, '..', 'target', 'release', 'peerhost')
const run = (...a) => execFileSync(BIN, [...a, '--storage', store], { encoding: 'utf8', env: { ...process.env, PEERHOST_LOG: 'warn' }, maxBuffer: 1 << 26 }).trim()
const tmp = fs.mkdtempSync(path.join(store + '-json-'))
const iso = (ms) => new Date(ms).toISOString()
const person = (i) => ({ name: `user${i}`, display_name: `User ${i}`, actor_id: `https://scale.test/u/user${i}` })
let seed = 7
const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8)
const words = 'peer hypercore index thread block proof mirror reader signed log tree verify browser nat relay swarm'.split(' ')
const text = (n) => Array.from({ length: n }, () => words[rnd() % words.length]).join(' ')

const t0 = Date.now()
const key = run('community', 'create', 'scale', '--no-app').split('\n')[0]
const base = Date.UTC(2025, 0, 1)
const postTime = (i) => base + i * 300_000 // one post every 5 min
const hot = Math.floor(posts / 2)
const hotId = 1_000_000 + hot
{
  const list = []
  for (let i = 0; i < posts; i++) {
    list.push({ post: { id: 1_000_000 + i, name: `Post ${i}: ${text(6)}`, body: text(30), published: iso(postTime(i)), ap_id: `https://scale.test/post/${1_000_000 + i}` }, creator: person(rnd() % 5000) })
  }
  fs.writeFileSync(path.join(tmp, 'posts.json'), JSON.stringify({ posts: list }))
  run('import', 'scale', path.join(tmp, 'posts.json'), '--instance', 'scale.test')
  fs.rmSync(path.join(tmp, 'posts.json'))
  console.error(`${posts} posts imported in ${((Date.now() - t0) / 1000).toFixed(1)} s`)
}
// Comments: in time order over the span of the posts; comment k at time cbase + k·step, on a
// random earlier post. The hot thread: every 10th comment from `hotStart` on.
const span = postTime(posts) - postTime(0)
const step = Math.max(1, Math.floor(span / comments))
const hotStart = Math.max(0, Math.floor(comments * 0.5) + 1)
const cbase = postTime(hot) + 60_000 - hotStart * step
const tree = []
let inThread = 0
const CHUNK = 50_000
for (let s = 0; s < comments; s += CHUNK) {
  const list = []
  for (let k = s; k < Math.min(comments, s + CHUNK); k++) {
    const id = 10_000_000 + k
    const at = cbase + k * step
    let postId, p
    if (k >= hotStart && (k - hotStart) % 10 === 0 && inThread < thread) {
      postId = hotId
      const parent = inThread % 6 === 0 || !tree.length ? null : tree[tree.length - 1 - (rnd() % Math.min(3, tree.length))]
      p = parent ? `${parent.path}.${id}` : `0.${id}`
      tree.push({ id, path: p })
      inThread++
    } else {
      // A post published before the comment.
      const newest = Math.max(0, Math.min(posts - 1, Math.floor((at - base) / 300_000)))
      postId = 1_000_000 + (rnd() % (newest + 1))
      if (postId === hotId) postId--
      p = `0.${id}`
    }
    list.push({ comment: { id, post_id: postId, content: `Comment ${k}: ${text(12)}`, published: iso(Math.max(at, base)), ap_id: `https://scale.test/comment/${id}`, path: p }, creator: person(rnd() % 5000) })
  }
  const f = path.join(tmp, `comments-${s}.json`)
  fs.writeFileSync(f, JSON.stringify({ comments: list }))
  run('import', 'scale', f, '--instance', 'scale.test')
  fs.rmSync(f)
  console.error(`${Math.min(comments, s + CHUNK)} comments imported, ${((Date.now() - t0) / 1000).toFixed(1)} s`)
}
fs.rmSync(tmp, { recursive: true, force: true })
const info = (n) => JSON.parse(run('log', 'info', n, '--json'))
const out = { key, hotPost: `lemmy:scale.test/post/${hotId}`, threadComments: inThread, seconds: (Date.now() - t0) / 1000 }
for (const n of ['posts', 'comments', 'index']) { const i = info(`scale.${n}`); out[n] = { keyHex: i.keyHex, length: i.length, byteLength: i.byteLength } }
console.log(JSON.stringify(out))
