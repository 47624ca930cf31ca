// The bootstrap page's script (bundled as dist/app.js): the instance sends only this page, this
// script and a small JSON; posts and app files come from the peers, verified block by block.
//
// 1. GET /v1/bootstrap from the instance: the community's log keys and the healthy peers;
// 2. the latest 20 posts through the Loader (heads and range proofs from the peers);
// 3. the community's published app files the same way: `style.css` applied, `banner.*` shown.
// The loader and what happened are on `window.peerhost` (tests and curious readers).
// Signatures are checked with the browser's WebCrypto Ed25519; a browser without it fetches
// ed25519-noble.js (from the instance, next to this script) the first time.

import { Loader } from './loader.js'
import { decodeEntry, decodePost } from './feed.js'
import { engineName } from './ed25519.js'

const $ = (s) => document.querySelector(s)
const state = (window.peerhost = {})

// The app's files: the asset index is the assets log's last block; a file is the chunks of
// its block range, each block verified against the assets log's head.
async function assets (loader, key) {
  const head = await loader.head(key)
  if (!head.length) return
  const [last] = await loader.range(key, head, head.length - 1, head.length)
  const files = (decodeEntry(last) || {}).index || []
  const file = async (f) => new Blob((await loader.range(key, head, f.start, f.start + f.blocks))
    .map((b) => (decodeEntry(b) || {}).chunk || ''), { type: f.type })
  state.assets = files.map((f) => f.path)
  await Promise.all(files.map(async (f) => {
    if (f.path === 'style.css') {
      const el = document.createElement('style')
      el.textContent = await (await file(f)).text()
      document.head.appendChild(el)
    } else if (/^banner\./.test(f.path)) {
      const img = document.createElement('img')
      img.className = 'banner'
      img.alt = ''
      img.src = URL.createObjectURL(await file(f))
      $('h1').before(img)
    }
  }))
}

async function main () {
  const boot = await (await fetch('/v1/bootstrap')).json()
  const c = boot.communities[0]
  if (!c || !c.posts) throw new Error('this instance publishes no community')
  const peers = boot.peers.length ? boot.peers : [location.origin]
  const loader = (state.loader = new Loader({ peers }))
  state.community = c
  document.title = $('h1').textContent = c.title || c.name
  const { head, blocks } = await loader.latest(c.posts, 20)
  // Text only (textContent): block bytes are untrusted even once verified.
  let n = 0
  for (const { index, value } of blocks) {
    const p = decodePost(value)
    if (!p) continue
    const a = $('main').appendChild(document.createElement('article'))
    a.dataset.index = index
    for (const [tag, text, cls] of [['h2', p.title], ['p', [p.author, p.time].filter(Boolean).join(' · '), 'meta'], ['p', p.body]]) {
      if (!text) continue
      const el = a.appendChild(document.createElement(tag))
      el.textContent = text
      if (cls) el.className = cls
    }
    n++
  }
  state.firstPostMs = performance.now() // since the navigation started
  $('#status').textContent = `${n} latest of ${head.length} posts, each verified, from ${head.peers.length} of ${peers.length} peers`
  document.body.dataset.state = 'loaded'
  state.ed25519 = await engineName() // 'webcrypto', or 'noble' from ed25519-noble.js
  if (c.assets) await assets(loader, c.assets).catch((e) => console.warn('peerhost: app assets:', e.message))
  document.body.dataset.assets = 'loaded'
}

main().catch((e) => {
  $('#status').textContent = 'failed: ' + e.message
  document.body.dataset.state = 'failed'
})
