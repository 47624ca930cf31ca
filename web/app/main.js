// The community's default app: the latest posts as they stand (edits and deletions applied),
// kept live. Runs in the bootstrap's sandboxed iframe and reaches data only through the data
// API (`peerhost`, protocol/app-api.md), which verifies everything it returns.

import { latestPosts } from './feed.js'

/* global peerhost */
const $ = (s) => document.querySelector(s)
const N = 20

const time = (us) => (us ? new Date(us / 1000).toISOString().slice(0, 16).replace('T', ' ') : '')

// Text only, through textContent: block bytes are untrusted even once verified.
function article ({ index, post, editedUs }) {
  const a = document.createElement('article')
  a.dataset.index = index
  const by = post.author ? post.author.displayName || post.author.name : ''
  const meta = [by, time(post.publishedUs), editedUs || post.updatedUs ? 'edited' : ''].filter(Boolean).join(' · ')
  for (const [tag, text, cls] of [['h2', post.title], ['p', meta, 'meta'], ['p', post.link, 'link'], ['p', post.body]]) {
    if (!text) continue
    const el = a.appendChild(document.createElement(tag))
    el.textContent = text
    if (cls) el.className = cls
  }
  return a
}

async function show (c) {
  const { head, posts } = await latestPosts(peerhost, c.posts, N)
  $('#posts').replaceChildren(...posts.map(article))
  const peers = (await peerhost.peers()).filter((p) => p.answers && !p.instance).length
  $('#status').textContent = `${posts.length} latest posts of ${head.length} entries, each block verified, from ${peers} peer${peers === 1 ? '' : 's'}`
  return posts.length
}

async function main () {
  const c = await peerhost.community()
  $('h1').textContent = c.title || c.name
  if (c.description) $('#about').textContent = c.description
  if (!c.posts) throw new Error('this community has no posts log')
  const n = await show(c)
  await peerhost.ready({ posts: n })
  peerhost.watch(c.posts)
  peerhost.on((e) => { if (e.event === 'head' && e.key === c.posts) show(c) })
}

main().catch((e) => {
  $('#status').textContent = 'failed: ' + e.message
  peerhost.ready({ error: e.message })
})
