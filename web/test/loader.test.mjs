// The loader over fake gateways: verification on every response, retries on other peers,
// demotion (and a console.warn naming the peer) for data that does not verify, latency-weighted
// peer choice, prefixes, forks. Plus the JS proof builder against the Rust gateway's bytes.

import { test } from 'node:test'
import assert from 'node:assert/strict'

import { Loader, PeerSet } from '../src/loader.js'
import { renderPosts } from '../src/render.js'
import { fromHex, toHex } from '../src/verify.js'
import { fakeFetch, fakePeer, golden, prove, seeded } from './helpers.mjs'

const log = golden.logs.find((l) => l.name === 'default')
const blocks = log.blocks.map(fromHex)

function setup (peers, opts = {}) {
  const warnings = []
  const loader = new Loader({
    peers: Object.keys(peers),
    fetch: fakeFetch(peers),
    random: seeded(7),
    log: { warn: (m) => warnings.push(m) },
    chunk: 8,
    ...opts
  })
  return { loader, warnings }
}

test('the JS proof builder produces the Rust gateway\'s exact bytes', () => {
  let n = 0
  for (const l of golden.logs) {
    const all = l.blocks.map(fromHex)
    for (const r of l.ranges.filter((r) => r.status === 200)) {
      // Against an older head of a forked log the blocks differ; build from the log as it was.
      if (l.name === 'forked' && r.fork === 0) continue
      assert.equal(toHex(prove(all, r.length, r.fork, r.start, r.servedEnd)), r.body, r.url)
      n++
    }
  }
  assert.ok(n >= 20)
})

test('latest(n): verified blocks, newest first, from several peers', async () => {
  const peers = { 'https://a': fakePeer(log), 'https://b': fakePeer(log), 'https://c': fakePeer(log) }
  const { loader, warnings } = setup(peers)
  const { head, blocks: got } = await loader.latest(log.key, 20)
  assert.equal(head.length, blocks.length)
  assert.equal(got.length, 20)
  assert.equal(got[0].index, blocks.length - 1)
  for (const { index, value } of got) assert.deepEqual(value, blocks[index])
  assert.deepEqual(warnings, [])
  // The work was spread: more than one peer served ranges.
  assert.ok(Object.values(peers).filter((p) => p.ranges > 0).length >= 2)
})

test('a peer serving a bad proof is named, demoted, and the range comes from elsewhere', async () => {
  const peers = { 'https://good': fakePeer(log), 'https://evil': fakePeer(log, { mode: 'tamper' }) }
  const { loader, warnings } = setup(peers, { random: () => 0.99 }) // the last candidate first
  const head = await loader.head(log.key)
  const got = await loader.range(log.key, head, 0, head.length)
  assert.deepEqual(got, blocks)
  assert.ok(peers['https://evil'].ranges >= 1)
  assert.equal(warnings.length, 1)
  assert.match(warnings[0], /https:\/\/evil/)
  const evil = loader.peers.list().find((p) => p.url === 'https://evil')
  assert.equal(evil.bad, 1)
  assert.ok(evil.bannedUntil > Date.now())
  // Banned: later requests go to the good peer only.
  const before = peers['https://evil'].calls
  await loader.range(log.key, head, 0, 8)
  assert.equal(peers['https://evil'].calls, before)
})

test('a peer serving a bad head is demoted; the longest valid head wins', async () => {
  const peers = {
    'https://bad': fakePeer(log, { mode: 'badhead' }),
    'https://old': fakePeer(log, { headIndex: 0 }),
    'https://new': fakePeer(log)
  }
  const { loader, warnings } = setup(peers)
  const head = await loader.head(log.key)
  assert.equal(head.length, log.heads[1].length)
  assert.deepEqual(head.peers, ['https://new'])
  assert.equal(warnings.length, 1)
  assert.match(warnings[0], /https:\/\/bad.*INVALID_SIGNATURE/)
})

test('head(): the first verified head suffices; a longer one within the grace wins; later answers are still checked', async () => {
  // Fast and short, a longer one 30 ms later (within the grace), a bad one 300 ms later, a
  // longer one still later than that: head() waits for neither of the last two.
  const peers = {
    'https://short': fakePeer(log, { headIndex: 0 }),
    'https://long': fakePeer(log, { delay: 30 }),
    'https://bad': fakePeer(log, { mode: 'badhead', delay: 300 })
  }
  const { loader, warnings } = setup(peers, { headGraceMs: 100 })
  const t0 = Date.now()
  const head = await loader.head(log.key)
  const ms = Date.now() - t0
  assert.equal(head.length, log.heads[1].length)
  assert.deepEqual(head.peers, ['https://long'])
  assert.ok(ms < 250, `head() took ${ms} ms`)
  assert.deepEqual(warnings, [])
  // The bad head still arrives, is verified and blamed.
  await new Promise((resolve) => setTimeout(resolve, 400))
  assert.equal(warnings.length, 1)
  assert.match(warnings[0], /https:\/\/bad.*INVALID_SIGNATURE/)
  assert.equal(loader.peers.list().find((p) => p.url === 'https://bad').bad, 1)
})

test('head(): past the grace, the first verified head is used; a late equal head joins its peers', async () => {
  const peers = {
    'https://a': fakePeer(log),
    'https://b': fakePeer(log, { delay: 200 }),
    'https://c': fakePeer(log, { headIndex: 0, delay: 200 })
  }
  const { loader } = setup(peers, { headGraceMs: 20 })
  const t0 = Date.now()
  const head = await loader.head(log.key)
  assert.ok(Date.now() - t0 < 150, `head() took ${Date.now() - t0} ms`)
  assert.deepEqual(head.peers, ['https://a'])
  await new Promise((resolve) => setTimeout(resolve, 300))
  assert.deepEqual(head.peers, ['https://a', 'https://b'])
})

test('head(): when a whole batch fails, the next peers are asked', async () => {
  const peers = {
    'https://down': fakePeer(log, { mode: 'down' }),
    'https://bad': fakePeer(log, { mode: 'badhead' }),
    'https://ok': fakePeer(log)
  }
  const { loader, warnings } = setup(peers, { headPeers: 2, random: () => 0 }) // in order
  const head = await loader.head(log.key)
  assert.deepEqual(head.peers, ['https://ok'])
  assert.equal(warnings.length, 1)
})

test('down and busy peers are retried elsewhere and lose weight', async () => {
  const peers = {
    'https://down': fakePeer(log, { mode: 'down' }),
    'https://busy': fakePeer(log, { mode: 'busy' }),
    'https://ok': fakePeer(log)
  }
  const { loader, warnings } = setup(peers)
  const { blocks: got } = await loader.latest(log.key, blocks.length)
  assert.equal(got.length, blocks.length)
  assert.deepEqual(warnings, [], 'failures are not bad data')
  const stats = Object.fromEntries(loader.peers.list().map((p) => [p.url, p]))
  assert.ok(stats['https://down'].failures > 0)
  assert.ok(stats['https://ok'].ok > 0)
  assert.ok(loader.peers.weight(stats['https://down']) < loader.peers.weight(stats['https://ok']))
})

test('peers on another fork or behind are skipped without blame', async () => {
  const peers = { 'https://fork': fakePeer(log, { mode: 'oldfork' }), 'https://ok': fakePeer(log) }
  const { loader, warnings } = setup(peers, { random: () => 0 }) // the first candidate first
  const head = await loader.head(log.key)
  const got = await loader.range(log.key, head, 3, 11)
  assert.deepEqual(got, blocks.slice(3, 11))
  const fork = loader.peers.list().find((p) => p.url === 'https://fork')
  assert.equal(fork.failures, 0)
  assert.deepEqual(warnings, [])
})

test('prefixes: a gateway capping ranges is asked again from where it stopped', async () => {
  const peers = { 'https://tiny': fakePeer(log, { maxBlocks: 3 }) }
  const { loader } = setup(peers, { chunk: 64 })
  const head = await loader.head(log.key)
  assert.deepEqual(await loader.range(log.key, head, 0, head.length), blocks)
  assert.equal(peers['https://tiny'].ranges, Math.ceil(blocks.length / 3))
})

test('no valid source: head() and range() fail with every reason', async () => {
  const peers = { 'https://evil': fakePeer(log, { mode: 'tamper' }), 'https://down': fakePeer(log, { mode: 'down' }) }
  const { loader } = setup(peers)
  const head = await loader.head(log.key) // heads are fine, proofs are not
  await assert.rejects(loader.range(log.key, head, 0, 4), /no peer served them.*does not hash|fetch failed/)
  const none = setup({ 'https://bad': fakePeer(log, { mode: 'badhead' }) }).loader
  await assert.rejects(none.head(log.key), /no peer served a valid head/)
  await assert.rejects(new Loader({ peers: [], fetch: fakeFetch({}) }).head(log.key), /no peers/)
  await assert.rejects(new Loader({ peers: ['https://x'], fetch: fakeFetch({}) }).range(log.key, head, 0, head.length + 1), RangeError)
})

test('latency: the faster peer gets most of the work', async () => {
  let clock = 0
  const slowDelay = { 'https://fast': 10, 'https://slow': 400 }
  const peers = { 'https://fast': fakePeer(log), 'https://slow': fakePeer(log) }
  const fetch = fakeFetch(peers)
  const loader = new Loader({
    peers: Object.keys(peers),
    fetch: async (url) => {
      clock += slowDelay[new URL(url).origin]
      return fetch(url)
    },
    now: () => clock,
    random: seeded(3),
    chunk: 1,
    parallel: 1,
    log: { warn: () => {} }
  })
  const head = await loader.head(log.key)
  await loader.range(log.key, head, 0, head.length)
  await loader.range(log.key, head, 0, head.length)
  assert.ok(peers['https://fast'].ranges > 3 * peers['https://slow'].ranges,
    `fast ${peers['https://fast'].ranges}, slow ${peers['https://slow'].ranges}`)
})

test('PeerSet: bounded, deduplicated, bans expire', () => {
  let now = 0
  const set = new PeerSet(['https://a/', 'https://a', 'https://b'], { now: () => now, random: () => 0, maxPeers: 2, log: { warn () {} } })
  set.add('https://c')
  assert.deepEqual(set.list().map((p) => p.url), ['https://a', 'https://b'])
  set.bad('https://a', 'test')
  assert.equal(set.pick(), 'https://b')
  assert.equal(set.pick(new Set(['https://b'])), 'https://a', 'a banned peer is the last resort')
  now += 600_001
  assert.ok(set.weight(set.peers.get('https://a')) > 0)
})

test('asset(): consecutive blocks joined, verified', async () => {
  const { loader } = setup({ 'https://a': fakePeer(log) })
  const bytes = await loader.asset(log.key, 2, 5)
  const want = blocks.slice(2, 5)
  assert.equal(bytes.length, want.reduce((s, b) => s + b.length, 0))
  assert.deepEqual(bytes.subarray(0, want[0].length), want[0])
})

test('renderPosts: text only, decodePost hook, undecodable blocks skipped', () => {
  const el = (tag) => ({ tag, children: [], dataset: {}, textContent: '', appendChild (c) { this.children.push(c) } })
  const document = { createElement: el }
  const container = el('div')
  const posts = [
    { index: 2, value: new TextEncoder().encode('{"title":"<b>hi</b>","body":"x","author":"ann"}') },
    { index: 1, value: new TextEncoder().encode('plain text') },
    { index: 0, value: new Uint8Array([0xff]) }
  ]
  assert.equal(renderPosts(container, posts, { document }), 3)
  const [first, second] = container.children
  assert.equal(first.dataset.index, '2')
  assert.equal(first.children[0].textContent, '<b>hi</b>')
  assert.equal(first.children[1].textContent, 'ann')
  assert.equal(second.children[0].textContent, 'plain text')
  const n = renderPosts(container, posts, { document, decodePost: (b, i) => (i === 1 ? null : { body: String(i) }) })
  assert.equal(n, 2)
})
