// The community's default app: a reader that feels like Lemmy. Runs in the bootstrap's
// sandboxed iframe and reaches data only through the data API (`peerhost`,
// protocol/app-api.md), which verifies everything it returns.
//
// Routes (the page's fragment, through peerhost.route / navigate, so deep links and Back work):
//   #/ or #/page/N   the community's posts, newest first, 20 a page (the index log's `t` keys)
//   #/post/ID        one post and its threaded comments (collapsible), from the index log
// Without an index log (an older descriptor) or when it disagrees with the logs: the latest
// posts from the end of the posts log, and a post's thread by scanning the logs; the page
// says so.

import { latestPosts } from './feed.js'
import { Disagree, openIndex, page, scanThread, thread } from './index.js'
import { parse, plain, toDom } from './markdown.js'

/* global peerhost */
const $ = (s) => document.querySelector(s)
const N = 20
const el = (tag, props = {}, ...kids) => {
  const e = document.createElement(tag)
  for (const [k, v] of Object.entries(props)) {
    if (k === 'text') e.textContent = v
    else if (k === 'data') Object.assign(e.dataset, v)
    else e.setAttribute(k, v)
  }
  for (const k of kids) if (k) e.append(k)
  return e
}

const iso = (us) => (us ? new Date(us / 1000).toISOString().slice(0, 16).replace('T', ' ') + ' UTC' : '')
/** "5 min ago", "3 d ago"… (and the exact time as the title). */
export function ago (us, now = Date.now()) {
  if (!us) return ''
  const s = Math.round((now - us / 1000) / 1000)
  if (s < 0) return 'in the future'
  for (const [n, unit] of [[31536000, 'y'], [2592000, 'mo'], [86400, 'd'], [3600, 'h'], [60, 'min']]) if (s >= n) return `${Math.floor(s / n)} ${unit} ago`
  return 'just now'
}
const time = (us) => el('time', { text: ago(us), title: iso(us), datetime: us ? new Date(us / 1000).toISOString() : '' })
const who = (a) => el('span', { class: 'author', text: a ? a.displayName || a.name : 'the community', title: a ? a.name : '' })
// "42 points" (up − down, as Lemmy shows it), with the counts as its title; null when not counted.
const score = (v) => {
  if (!v) return null
  const n = v.up - v.down
  return el('span', { class: 'score', text: `${n} point${n === 1 || n === -1 ? '' : 's'}`, title: `+${v.up} / −${v.down}` })
}
const dot = (x) => (x ? [' · ', x] : [])
const md = (text, cls) => toDom(parse(text), el('div', { class: cls || 'md' }))
const postHref = (id) => '#/post/' + encodeURIComponent(id)

let community = null
let ix = null // the opened index, or null (none, or it disagreed)
let why = '' // why the index is not used

// --- the community page ---

function postItem ({ index, post, editedUs }) {
  const meta = el('p', { class: 'meta' }, ...(post.votes ? [score(post.votes), ' · '] : []), 'by ', who(post.author), ' · ', time(post.publishedUs), editedUs || post.updatedUs ? ' · edited' : '')
  const a = el('article', { class: 'post', data: { index, id: post.id } },
    el('h2', {}, el('a', { href: postHref(post.id), text: post.title || '(untitled)' })),
    meta,
    post.link ? el('p', { class: 'link', text: post.link }) : null,
    post.body ? el('p', { class: 'excerpt', text: plain(post.body) }) : null)
  return a
}

async function showPage (n) {
  const token = routes
  const render = (posts, more, note, source) => {
    if (token !== routes) return // the reader went elsewhere meanwhile
    $('#posts').replaceChildren(...posts.map(postItem), pager(n, more))
    Object.assign(document.body.dataset, { view: 'page', page: String(n), source })
    status(note)
  }
  const indexed = ix && page(peerhost, ix, n, N).then((r) => {
    render(r.posts, r.more, `page ${n} · ${ix.posts.length} posts log entries, indexed${r.lag ? ` (the last ${r.lag} read from the log: the index lags)` : ''}`, 'index')
    return r.posts.length
  }, (e) => {
    if (!(e instanceof Disagree)) throw e
    ix = null
    why = e.message
    return null
  })
  // Page 1 is also the end of the posts log: shown at once from there (one head, one range),
  // then replaced by the index's page (publication time order; the same posts unless history
  // was imported out of order) when it is there.
  const quick = n === 1 && latestPosts(peerhost, community.posts, N)
  if (indexed && quick) {
    const first = await Promise.race([indexed.then((k) => ({ k })), quick.then((r) => ({ r }))])
    if (first.k != null) return first.k
    if (first.r && !document.body.dataset.source) render(first.r.posts, true, 'the latest posts; reading the index…', 'log')
    if (first.r) {
      indexed.then((k) => { if (k == null) render(first.r.posts, false, `the latest ${first.r.posts.length} posts only: ${why}`, 'log') }).catch(fail)
      return first.r.posts.length
    }
  }
  const k = indexed ? await indexed : null
  if (k != null) return k
  if (n > 1) {
    if (token === routes) {
      $('#posts').replaceChildren(el('p', { class: 'notice', text: `Older pages need the community's index (${why}).` }), pager(1, false))
      Object.assign(document.body.dataset, { view: 'page', page: String(n), source: 'none' })
    }
    return 0
  }
  const r = await (quick || latestPosts(peerhost, community.posts, N))
  render(r.posts, false, `the latest ${r.posts.length} posts only: ${why}`, 'log')
  return r.posts.length
}

function pager (n, more) {
  return el('nav', { class: 'pager' },
    n > 1 ? el('a', { href: n === 2 ? '#/' : `#/page/${n - 1}`, rel: 'prev', text: '← newer' }) : null,
    el('span', { text: ` page ${n} ` }),
    more ? el('a', { href: `#/page/${n + 1}`, rel: 'next', text: 'older →' }) : null)
}

// --- a post and its thread ---

function commentNode (n) {
  const c = n.comment
  const body = n.deleted ? el('p', { class: 'deleted', text: '[deleted]' }) : md(c.body)
  const summary = el('summary', {},
    n.deleted ? el('span', { class: 'author', text: '[deleted]' }) : who(c.author), ...dot(n.deleted ? null : score(c.votes)), ' · ', time(c.publishedUs),
    n.editedUs || c.updatedUs ? ' · edited' : '',
    n.replies.length ? el('span', { class: 'count', text: ` · ${n.replies.length} repl${n.replies.length === 1 ? 'y' : 'ies'}` }) : null)
  const d = el('details', { open: '', class: 'comment', data: { id: c.id, depth: n.depth, parent: c.parent || '', index: n.index } }, summary, body)
  if (n.replies.length) d.append(el('div', { class: 'replies' }, ...n.replies.map(commentNode)))
  return d
}

async function showPost (id) {
  const token = routes
  let t = null
  let note = ''
  if (ix) {
    try {
      t = await thread(peerhost, ix, id)
      note = t ? `${t.count} comments, from the index${t.lag ? ` (and the last ${t.lag} log entries: the index lags)` : ''}` : ''
    } catch (e) {
      if (!(e instanceof Disagree)) throw e
      ix = null
      why = e.message
    }
  }
  if (!t) {
    t = await scanThread(peerhost, community, id)
    if (t) note = `${t.count} comments, found by reading the logs: ${ix ? 'the index does not have this post' : why}`
  }
  if (token !== routes) return 0 // the reader went elsewhere meanwhile
  document.body.dataset.view = 'post'
  if (!t) {
    $('#posts').replaceChildren(el('p', { class: 'notice', text: 'No such post.' }), el('a', { href: '#/', text: '← back to the community' }))
    status('not found')
    return 0
  }
  const { post } = t
  const p = post.post
  $('#posts').replaceChildren(
    el('p', {}, el('a', { href: '#/', class: 'back', text: '← ' + (community.title || community.name) })),
    el('article', { class: 'post full', data: { index: post.index, id: p.id } },
      el('h2', { text: post.deleted ? '[deleted]' : p.title || '(untitled)' }),
      el('p', { class: 'meta' }, ...(post.deleted || !p.votes ? [] : [score(p.votes), ' · ']), 'by ', who(p.author), ' · ', time(p.publishedUs), post.editedUs || p.updatedUs ? ' · edited' : ''),
      p.link && !post.deleted ? el('p', { class: 'link' }, el('a', { href: /^https?:\/\//i.test(p.link) ? p.link : '#', rel: 'noopener noreferrer nofollow ugc', target: '_blank', text: p.link })) : null,
      post.deleted ? null : md(p.body)),
    el('h3', { class: 'comments-title', text: `${t.count} comment${t.count === 1 ? '' : 's'}` }),
    el('section', { id: 'comments' }, ...t.comments.map(commentNode)))
  status(note)
  return 1
}

// --- routing ---

const status = (t) => { $('#status').textContent = t }

let routes = 0 // bumped by each route: a page still loading does not draw over the next
async function route (r) {
  routes++
  delete document.body.dataset.source
  const m = /^\/post\/(.+)$/.exec(r || '')
  const pg = /^\/page\/(\d{1,6})$/.exec(r || '')
  window.scrollTo(0, 0)
  if (m) {
    let id
    try { id = decodeURIComponent(m[1]) } catch { id = m[1] }
    return showPost(id)
  }
  return showPage(pg ? Math.max(1, +pg[1]) : 1)
}

async function main () {
  community = await peerhost.community()
  $('h1').textContent = community.title || community.name
  if (community.description) $('#about').replaceChildren(md(community.description, 'about'))
  if (!community.posts) throw new Error('this community has no posts log')
  // Links inside the app change the page's route (the fragment of the page around the frame).
  document.addEventListener('click', (e) => {
    const a = e.target.closest && e.target.closest('a[href^="#"]')
    if (!a || e.button || e.metaKey || e.ctrlKey) return
    e.preventDefault()
    peerhost.navigate(a.getAttribute('href').slice(1))
  })
  $('h1').onclick = () => peerhost.navigate('/')
  if (community.index) {
    try {
      ix = await openIndex(peerhost, community)
    } catch (e) {
      if (!(e instanceof Disagree) && !/^BEE_/.test(e.code || '')) throw e
      why = e.message
    }
  } else why = 'this community has no index log (its descriptor predates it)'
  let current = await peerhost.route()
  const n = await route(current)
  await peerhost.ready({ posts: n })
  // Kept live: a longer posts log re-reads the first page (and the index, which follows it).
  peerhost.watch(community.posts)
  peerhost.on((e) => {
    if (e.event === 'route' && e.route !== current) {
      current = e.route
      route(current).catch(fail)
    } else if (e.event === 'head' && e.key === community.posts && document.body.dataset.page === '1' && document.body.dataset.view === 'page') {
      ;(community.index && !why ? openIndex(peerhost, community).then((x) => { ix = x }) : Promise.resolve())
        .then(() => route(current)).catch(fail)
    }
  })
}

function fail (e) {
  status('failed: ' + e.message)
  document.body.dataset.view = 'failed'
}

if (typeof peerhost !== 'undefined') {
  main().catch((e) => {
    fail(e)
    peerhost.ready({ error: e.message })
  })
}
