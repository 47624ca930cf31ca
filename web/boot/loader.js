// The bootstrap's loader: a transport-neutral peer set, hedged requests, verified heads and
// ranges, a cache of verified blocks, and the instance as the last resort.
//
// A peer is `{url, kind, get(path, as)}` (web/README.md, "Peers"): `get` resolves to
// `{status, body}` (body: parsed JSON for as = 'json', Uint8Array for 'bytes') for the
// gateway's paths (`/v1/logs/KEY/head`, `/v1/logs/KEY/blocks?…`), or rejects on a transport
// failure. httpPeer(url) is the HTTP kind; a WebRTC peer (web/boot/transport-rtc.js) plugs in
// with the same shape. Every answer is verified here, whoever sent it.
//
// - pick: weighted at random by 1 / (latency · (1 + 2·failures)²), skipping banned peers and
//   stalled ones (a request outstanding longer than its hedge delay); with none left, the
//   instance (`fallback`), which the page then says out loud;
// - hedging: a request unanswered min(1 s, max(60 ms, 4 × the peer's latency)) after it was
//   SENT is also sent to another peer; the first verified answer wins. A peer takes at most
//   6 requests at once from this loader (the browser's own per-host limit over HTTP/1.1): the
//   rest wait here, unsent and unhedged, so a queue in the browser never looks like a stall;
// - sets of scattered blocks (blocks()): one request per up to 256 runs with one shared proof
//   (PHS1, ./set.js), large sets split over several peers; peers that do not serve sets get
//   ranges;
// - a head is asked of 3 peers at once; after the first verified one, others have a short
//   grace to offer a better one (higher fork, then longer);
// - bad data (a head or proof that does not verify) bans the peer for 10 min, doubling, with
//   a console.warn naming it; network errors and busy answers count as failures (5 → 30 s).

import { fail, sameRoots, verifyHead, verifyRange } from './verify.js'
import { encodeRuns, runsOf, runsQuery, verifySet } from './set.js'

const TIMEOUT = 8000
// Requests sent to one peer at once (Chromium opens 6 connections per host over HTTP/1.1).
const PER_PEER = 6
// A set request: at most this many runs and bytes of compact runs (a path under the WebRTC
// channel's 1024 bytes, protocol/gateway.md §3.3), and blocks (the gateway's cap).
const SET_RUNS = 256
const SET_RUN_BYTES = 600
const SET_BLOCKS = 1024

/** An HTTP gateway peer (protocol/gateway.md). */
export function httpPeer (url, kind = 'http', fetchFn = (...a) => fetch(...a)) {
  return {
    url,
    kind,
    async get (path, as) {
      const ctrl = new AbortController()
      const timer = setTimeout(() => ctrl.abort(), TIMEOUT)
      try {
        const res = await fetchFn(url + path, { signal: ctrl.signal })
        const body = res.status === 200 ? (as === 'json' ? await res.json() : new Uint8Array(await res.arrayBuffer())) : null
        return { status: res.status, body }
      } finally {
        clearTimeout(timer)
      }
    }
  }
}

export class Loader {
  /**
   * `peers`: peer objects (httpPeer, or another transport's); `instance`: the last-resort peer
   * (or null); `cache`: a block store (blockCache) or null; `log`: console-like; `now`,
   * `random` for tests; `onFallback()` when the instance is first used; `onBad(url, reason, path, peer)` when a
   * peer is demoted for bad data (`path`: the request it answered).
   */
  constructor ({ peers = [], instance = null, cache = null, log = console, now = () => performance.now(), random = Math.random, onFallback = () => {}, onBad = () => {} } = {}) {
    Object.assign(this, { cache, log, now, random, onFallback, onBad })
    this.peers = []
    for (const p of peers) this.add(p)
    if (instance) this.add(Object.assign(instance, { last: true }))
    this.fallback = false
    this.heads = new Map() // key → Map(length → verified head), the latest fork only
  }

  /** Add a peer (at most 64); its stats start empty. */
  add (p) {
    if (this.peers.length < 64 && !this.peers.some((q) => q.url === p.url)) {
      this.peers.push(Object.assign(p, { lat: 0, n: 0, fails: 0, bad: 0, ban: 0, busy: new Set(), bytes: 0, queue: [] }))
    }
  }

  /** The peer table: what the app API's peers() returns. */
  list () {
    return this.peers.map(({ url, kind, last, lat, n, fails, bad, ban, busy, bytes }) =>
      ({ url, kind, instance: !!last, latencyMs: n ? Math.round(lat) : null, answers: n, failures: fails, bad, banned: ban > this.now(), inFlight: busy.size, bytes }))
  }

  // A peer's latency estimate: its own, or the best known when it has none yet.
  _lat (p) {
    if (p.n) return p.lat
    const known = this.peers.filter((q) => q.n).map((q) => q.lat)
    return known.length ? Math.min(...known) : 250
  }

  _hedge (p) {
    return Math.min(1000, Math.max(60, 4 * this._lat(p)))
  }

  // A peer to ask, not in `tried`; the instance only when `last` and no peer is left.
  _pick (tried, last = true) {
    const t = this.now()
    const ok = this.peers.filter((p) => !p.last && !tried.has(p) && p.ban <= t &&
      !(p.busy.size && t - Math.min(...p.busy) > this._hedge(p)))
    if (!ok.length) {
      const inst = last && this.peers.find((p) => p.last && !tried.has(p))
      if (inst && !this.fallback) {
        this.fallback = true
        this.onFallback()
      }
      return inst
    }
    const w = ok.map((p) => 1 / (this._lat(p) * (1 + 2 * p.fails) ** 2))
    let r = this.random() * w.reduce((a, b) => a + b)
    return ok.find((p, i) => (r -= w[i]) <= 0) || ok[ok.length - 1]
  }

  // One request to one peer, verified by `check`; records the outcome for the peer. It waits
  // for one of the peer's PER_PEER slots first; `sent()` is called when it is actually sent.
  async _ask (p, path, as, check, sent = () => {}) {
    if (p.busy.size >= (p.max || PER_PEER)) await new Promise((resolve) => p.queue.push(resolve))
    let t0 = this.now()
    while (p.busy.has(t0)) t0 += 1e-6 // one entry per request, even within one clock tick
    p.busy.add(t0)
    sent()
    let res
    try {
      res = await p.get(path, as)
    } catch (e) {
      this._fail(p)
      throw e
    } finally {
      p.busy.delete(t0)
      const next = p.queue.shift()
      if (next) next()
    }
    if (res.status !== 200) {
      // 404, 409, 416: not held here, another fork, behind: no fault of the peer.
      if (![404, 409, 416].includes(res.status)) this._fail(p)
      fail('UNAVAILABLE', `HTTP ${res.status} from ${p.url}`)
    }
    let v
    try {
      v = await check(res.body)
    } catch (e) {
      if (e.code && e.code !== 'UNAVAILABLE') this._bad(p, e.message, path)
      throw e
    }
    const ms = this.now() - t0
    p.lat = p.n++ ? p.lat * 0.7 + ms * 0.3 : ms
    p.fails /= 2
    p.bytes += res.body.length || JSON.stringify(res.body).length
    return v
  }

  _fail (p) {
    if (++p.fails >= 5) p.ban = this.now() + 30_000
  }

  _bad (p, reason, path) {
    if (p.ban > this.now()) return // answers in flight when it was banned
    p.fails += 2
    p.ban = this.now() + 600_000 * 2 ** Math.min(p.bad++, 6)
    this.log.warn(`peerhost: peer ${p.url} served data that does not verify (${reason}); demoted`)
    this.onBad(p.url, reason, path, p)
  }

  /**
   * `path` from `fan` peers at once (more as requests fail or stall); resolves with the first
   * verified answer, or with the best (`better`) of those verified within `grace` ms of it.
   */
  _race (path, as, check, fan = 1, better = (a) => a, grace = 0) {
    return new Promise((resolve, reject) => {
      const tried = new Set()
      const wins = []
      const errors = []
      let live = 0
      let over = false
      let hedge = null
      let graceTimer = null
      const end = () => {
        if (over) return
        over = true
        clearTimeout(hedge)
        clearTimeout(graceTimer)
        if (wins.length) resolve(wins.reduce(better))
        else reject(Object.assign(new Error(`no peer served ${path}: ${errors.map((e) => e.message).join('; ') || 'no peers'}`), { errors }))
      }
      // The instance is asked only when no peer request is running, or they all stalled and
      // the request is 600 ms old (a busy page also delays answers).
      const started = this.now()
      const launch = (stalled) => {
        if (over || wins.length) return
        const late = this.now() - started >= 600
        const p = this._pick(tried, !live || (stalled === true && late))
        if (!p) {
          if (stalled === true && live && !late) hedge = setTimeout(() => launch(true), 600 - (this.now() - started))
          return live || end()
        }
        tried.add(p)
        live++
        clearTimeout(hedge)
        // The hedge delay runs from the moment the request is sent, not while it waits for
        // one of the peer's slots.
        const sent = () => {
          if (over || wins.length) return
          clearTimeout(hedge)
          hedge = setTimeout(() => launch(true), this._hedge(p))
        }
        this._ask(p, path, as, check, sent).then((v) => {
          wins.push(v)
          if (fan < 2) end()
          else graceTimer ||= setTimeout(end, grace)
        }, (e) => {
          errors.push(e)
          launch()
        }).finally(() => {
          if (!--live && (wins.length || !this._pick(tried))) end()
        })
      }
      for (let k = 0; k < fan; k++) launch()
    })
  }

  /** A verified head of `key` (lowercase hex), with `peers`: the URLs that served it. */
  async head (key) {
    const t0 = this.now()
    const served = new Map()
    const better = (a, b) => (b.fork - a.fork || b.length - a.length) > 0 ? b : a
    const head = await this._race(`/v1/logs/${key}/head`, 'json', async (j) => {
      const h = await verifyHead(j, key)
      served.set(h, j)
      return h
    }, 3, better, Math.max(20, 2 * (this.now() - t0)))
    let byLength = this.heads.get(key)
    const any = byLength && byLength.values().next().value
    if (!any || any.fork !== head.fork) this.heads.set(key, (byLength = new Map()))
    // The same head verified again: keep the first object (its peers grow).
    const known = byLength.get(head.length)
    if (known && known.treeHash.every((x, i) => x === head.treeHash[i])) return known
    byLength.set(head.length, head)
    return head
  }

  /** A head of `key` verified earlier at `length`, if any. */
  known (key, length) {
    const m = this.heads.get(key)
    return m && m.get(length)
  }

  // Blocks start..end (one request's worth, continued on prefixes) against `head`; with
  // `prefix` (an older head's roots at `start`), the proof must show that head as a prefix.
  async _fetch (head, start, end, prefix) {
    const out = []
    while (start < end) {
      const s = start // a hedged answer may arrive after the loop moved on
      const got = await this._race(`/v1/logs/${head.key}/blocks?start=${s}&end=${end}&length=${head.length}&fork=${head.fork}`,
        'bytes', (body) => verifyRange(body, head, s, end))
      if (prefix && !sameRoots(prefix, got.left)) prefix = false
      prefix = prefix && null
      out.push(...got.blocks)
      start = got.end
    }
    return { blocks: out, consistent: prefix !== false }
  }

  /**
   * Verified blocks `start..end` of the log of `head` (from head()), as Uint8Arrays. Blocks
   * already verified on an earlier visit come from the cache when this head provably extends
   * the cached one; the rest from the peers, in chunks aligned to 64 blocks, 4 at once.
   */
  async range (head, start, end) {
    if (!(Number.isSafeInteger(start) && Number.isSafeInteger(end) && start >= 0 && start <= end && end <= head.length)) {
      throw new RangeError(`range ${start}..${end} is not within the head's ${head.length} blocks`)
    }
    const out = new Array(end - start)
    const c = this.cache && await this.cache.open(head)
    let store = !!c
    if (c && c.length) {
      let ok = false
      if (c.length === head.length) ok = c.tree === head.treeHash.join()
      else if (c.length < head.length && start < c.length) {
        // The cached blocks were verified with an older head: usable if a proof of blocks
        // from its length on shows its roots on the left.
        const got = await this._fetch(head, c.length, Math.max(end, c.length + 1), c.roots)
        if ((ok = got.consistent)) {
          got.blocks.forEach((b, k) => { if (c.length + k < end) out[c.length + k - start] = b })
          await c.put(head, c.length, got.blocks)
        }
      } else if (c.length > head.length) store = false // an older head than the cache's
      if (ok) (await c.get(start, Math.min(end, c.length))).forEach((b, k) => { if (b) out[k] = b })
      else if (store) {
        // Nothing reusable: start the cache over at this head (once the writes behind
        // earlier answers are done, so none lands after it).
        await this._later()
        await c.reset(head)
      }
    }
    // Whatever is still missing, in chunks aligned to 64 blocks (the same URLs for every
    // reader of a head, so HTTP caches share them), 4 in flight.
    const chunks = []
    for (let s = start; s < end;) {
      if (out[s - start]) { s++; continue }
      let e = s + 1
      while (e < end && e % 64 && !out[e - start]) e++
      chunks.push([s, e])
      s = e
    }
    let next = 0
    await Promise.all(Array.from({ length: Math.min(4, chunks.length) }, async () => {
      while (next < chunks.length) {
        const [s, e] = chunks[next++]
        const { blocks } = await this._fetch(head, s, e)
        blocks.forEach((b, k) => { out[s + k - start] = b })
        if (store) this._later(() => c.put(head, s, blocks)) // behind the answer (blocks())
      }
    }))
    return out
  }

  /**
   * Verified blocks `indices` (any order, repeats fine) of the log of `head`: a Map from index
   * to Uint8Array. Scattered blocks come in set requests (PHS1: one proof for all the blocks
   * of a request), at most SET_RUNS runs each, several at once on different peers; blocks
   * verified earlier at this very head come from the cache. Peers that do not serve sets, or
   * a set no peer serves, get ranges instead.
   */
  async blocks (head, indices) {
    const want = runsOf(indices)
    if (want.length && want[want.length - 1][1] > head.length) {
      throw new RangeError(`a block past the head's ${head.length} blocks`)
    }
    const out = new Map()
    const c = this.cache && await this.cache.open(head)
    // Cached blocks only of this very head (or an empty cache, which this head then starts).
    const same = c && c.length === head.length && c.tree === head.treeHash.join()
    const store = c && (same || !c.length)
    if (same) {
      await Promise.all(want.map(async ([s, e]) => {
        (await c.get(s, e)).forEach((b, k) => { if (b) out.set(s + k, b) })
      }))
    }
    const missing = runsOf(want.flatMap(([s, e]) => Array.from({ length: e - s }, (_, k) => s + k)).filter((i) => !out.has(i)))
    // Requests: consecutive runs up to the caps; a large set in several parts at once.
    const parts = []
    let cur = []
    let blocks = 0
    for (const r of missing) {
      if (cur.length && (cur.length >= SET_RUNS || blocks + r[1] - r[0] > SET_BLOCKS || encodeRuns([...cur, r]).length > SET_RUN_BYTES)) {
        parts.push(cur)
        cur = []
        blocks = 0
      }
      cur.push(r)
      blocks += r[1] - r[0]
    }
    if (cur.length) parts.push(cur)
    const spread = Math.max(1, Math.min(4, this.peers.filter((p) => !p.last).length))
    if (parts.length < spread) {
      // Fewer parts than peers: split the larger ones (at least 64 blocks each) to use them.
      for (let k = 0; k < parts.length && parts.length < spread; k++) {
        const p = parts[k]
        const n = p.reduce((t, [s, e]) => t + e - s, 0)
        if (p.length >= 2 && n >= 128) parts.splice(k--, 1, p.slice(0, p.length >> 1), p.slice(p.length >> 1))
      }
    }
    let next = 0
    await Promise.all(Array.from({ length: Math.min(4, parts.length) }, async () => {
      while (next < parts.length) {
        const got = await this._set(head, parts[next++])
        for (const [i, b] of got) out.set(i, b)
        // Into the cache behind the answer, not before it: scattered blocks are one cache
        // entry each, and writing them one run after another took longer than the request.
        if (store) this._later(() => Promise.all(runsOf([...got.keys()]).map(([s, e]) => c.put(head, s, Array.from({ length: e - s }, (_, k) => got.get(s + k))))))
      }
    }))
    return out
  }

  // Cache writes behind the answers: `f` runs after those queued before it (its failure
  // ignored: the cache is an optimisation); resolves when all queued so far are done.
  _later (f) {
    this.writes = (this.writes || Promise.resolve()).then(f).catch(() => {})
    return this.writes
  }

  // One part of a set (runs), continued on served prefixes; ranges where sets fail.
  async _set (head, runs) {
    const out = new Map()
    let rest = runs
    while (rest.length) {
      const asked = rest
      let got
      try {
        if (this.noSets) fail('UNAVAILABLE', 'no peer serves sets')
        got = await this._race(`/v1/logs/${head.key}/set?runs=${runsQuery(asked)}&length=${head.length}&fork=${head.fork}`,
          'bytes', (body) => verifySet(body, head, asked))
      } catch (e) {
        // A gateway without the route answers 404 (so do sparse ones): ask in ranges, and
        // when every peer asked said 404, in ranges from now on.
        if (e.errors && e.errors.length && e.errors.every((x) => / 404 /.test(x.message))) this.noSets = true
        for (const [s, e] of asked) (await this.range(head, s, e)).forEach((b, k) => out.set(s + k, b))
        return out
      }
      for (const [i, b] of got.blocks) out.set(i, b)
      const k = got.runs.length - 1
      const e = got.runs[k][1]
      rest = e < asked[k][1] ? [[e, asked[k][1]], ...asked.slice(k + 1)] : asked.slice(k + 1)
    }
    return out
  }

  /** The latest `n` blocks of `key`, newest first: `{head, blocks: [{index, value}]}`. */
  async latest (key, n) {
    const head = await this.head(key)
    const start = Math.max(0, head.length - n)
    const blocks = await this.range(head, start, head.length)
    return { head, blocks: blocks.map((value, k) => ({ index: start + k, value })).reverse() }
  }
}

/**
 * Verified blocks in the origin's Cache Storage (the Service Worker's): per log, the head they
 * were verified against (fork, length, roots) and the blocks, one entry each. `open(head)`
 * gives `{length, tree, roots, get(s, e), put(head, start, blocks), reset(head)}`.
 */
export function blockCache (caches, name = 'peerhost-blocks') {
  const store = caches.open(name)
  const url = (key, what) => `/_peerhost/${key}/${what}`
  return {
    async open (head) {
      const c = await store
      const r = await c.match(url(head.key, 'head'))
      const meta = r ? await r.json() : null
      const usable = meta && meta.fork === head.fork ? meta : null
      let saved = null
      const roots = usable && usable.roots.map((x) => ({ i: x[0], s: x[1], h: Uint8Array.from(x[2]) }))
      const save = (h) => c.put(url(h.key, 'head'), new Response(JSON.stringify({
        fork: h.fork, length: h.length, tree: h.treeHash.join(), roots: h.roots.map((x) => [x.i, x.s, Array.from(x.h)])
      })))
      return {
        length: usable ? usable.length : 0,
        tree: usable && usable.tree,
        roots,
        async get (s, e) {
          return Promise.all(Array.from({ length: e - s }, async (_, k) => {
            const b = await c.match(url(head.key, s + k))
            return b && new Uint8Array(await b.arrayBuffer())
          }))
        },
        // Blocks verified against `h`, which extends (or is) the head the cache holds.
        async put (h, s, blocks) {
          await Promise.all(blocks.map((b, k) => c.put(url(h.key, s + k), new Response(b))))
          if (saved !== h) await save((saved = h))
        },
        async reset (h) {
          for (const req of await c.keys()) if (req.url.includes(`/_peerhost/${h.key}/`)) await c.delete(req)
          await save((saved = h))
        }
      }
    }
  }
}
