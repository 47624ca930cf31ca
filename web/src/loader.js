// The loader: asks several peerhost gateways for a log's signed head and its blocks, verifies
// everything (verify.js), and spreads the work over the peers that answer well.
//
// - PeerSet: per-peer latency (EWMA) and failure score; picks peers at random weighted by
//   how good they look, so load spreads and slow or failing peers get little of it. A peer
//   that serves a head or proof that does not verify is demoted hard (banned for a while,
//   doubling each time) and named in a console.warn.
// - Loader.head(key): a verified head from a few peers asked at once: the first one that
//   verifies, or a better one (higher fork, then longer) that verifies within a short grace
//   after it; answers that come later are still checked (a bad one still demotes its peer).
// - Loader.range(key, head, start, end): the verified blocks, fetched in aligned chunks
//   (stable URLs, so HTTP caches share them), several chunks in parallel, each retried on
//   another peer after a failure or a bad proof.

import { VerifyError, toHex, fromHex, verifyHead, verifyRange } from './verify.js'

const DEFAULTS = {
  timeoutMs: 8000, // per request
  chunk: 64, // blocks per range request (aligned to multiples of this)
  parallel: 4, // range requests in flight per range() call
  headPeers: 3, // peers asked for a head at once
  headGraceMs: 100, // after the first verified head, how long a better one may still arrive
  attempts: 4, // peers tried per chunk before giving up
  maxPeers: 64
}

/** Why a fetch from a peer did not yield verified data. */
export class PeerError extends Error {
  constructor (kind, peer, message, cause) {
    super(`${kind} from ${peer}: ${message}`)
    this.name = 'PeerError'
    this.kind = kind // 'network' | 'busy' | 'unavailable' | 'invalid'
    this.peer = peer
    if (cause) this.cause = cause
  }
}

/** Peers and what we learned about them. */
export class PeerSet {
  constructor (urls = [], { now = () => Date.now(), random = Math.random, maxPeers = DEFAULTS.maxPeers, log = console } = {}) {
    this.now = now
    this.random = random
    this.maxPeers = maxPeers
    this.log = log
    this.peers = new Map()
    for (const u of urls) this.add(u)
  }

  /** Add a gateway base URL (e.g. `https://node.example:8080`); at most `maxPeers` are kept. */
  add (url) {
    const base = String(url).replace(/\/+$/, '')
    if (this.peers.has(base) || this.peers.size >= this.maxPeers) return
    this.peers.set(base, { url: base, latency: 300, failures: 0, bad: 0, bannedUntil: 0, ok: 0 })
  }

  list () {
    return [...this.peers.values()].map((p) => ({ ...p }))
  }

  /** How attractive a peer is: higher is better; 0 while banned. */
  weight (p) {
    if (p.bannedUntil > this.now()) return 0
    return 1 / (p.latency * (1 + 2 * p.failures) ** 2)
  }

  /** A peer not in `exclude`, chosen at random in proportion to its weight; null if none. */
  pick (exclude = new Set()) {
    const candidates = [...this.peers.values()].filter((p) => !exclude.has(p.url))
    let ready = candidates.filter((p) => this.weight(p) > 0)
    // If every peer is banned, the least recently banned one still gets a chance.
    if (ready.length === 0 && candidates.length > 0) {
      ready = [candidates.reduce((a, b) => (a.bannedUntil <= b.bannedUntil ? a : b))]
      return ready[0].url
    }
    if (ready.length === 0) return null
    const weights = ready.map((p) => this.weight(p))
    let r = this.random() * weights.reduce((a, b) => a + b, 0)
    for (let i = 0; i < ready.length; i++) {
      r -= weights[i]
      if (r <= 0) return ready[i].url
    }
    return ready[ready.length - 1].url
  }

  /** A verified answer after `ms`. */
  success (url, ms) {
    const p = this.peers.get(url)
    if (!p) return
    p.latency = p.latency * 0.7 + Math.max(1, ms) * 0.3
    p.failures *= 0.5
    p.ok++
  }

  /** A network error, timeout or busy answer. */
  failure (url) {
    const p = this.peers.get(url)
    if (!p) return
    p.failures += 1
    if (p.failures >= 5) p.bannedUntil = this.now() + 30_000
  }

  /** Data that did not verify: ban for 10 minutes, doubling with each offence. */
  bad (url, reason) {
    const p = this.peers.get(url)
    // Answers that were in flight when the peer was banned do not ban it again.
    if (!p || p.bannedUntil > this.now()) return
    p.bad++
    p.failures += 2
    p.bannedUntil = this.now() + 600_000 * 2 ** Math.min(p.bad - 1, 6)
    this.log.warn(`peerhost: peer ${url} served data that does not verify (${reason}); demoted`)
  }
}

function keyHex (key) {
  return typeof key === 'string' ? toHex(fromHex(key)) : toHex(key)
}

/** The loader. `opts`: `peers` (gateway base URLs), `fetch`, `timeoutMs`, `chunk`, `parallel`,
 * `headPeers`, `headGraceMs`, `attempts`, `now`, `random`, `log` (console by default). */
export class Loader {
  constructor (opts = {}) {
    this.opts = { ...DEFAULTS, ...opts }
    this.fetch = opts.fetch || globalThis.fetch.bind(globalThis)
    this.log = opts.log || console
    this.peers = opts.peerSet || new PeerSet(opts.peers || [], { now: opts.now, random: opts.random, maxPeers: this.opts.maxPeers, log: this.log })
  }

  async _get (peer, path, as) {
    const ctrl = new AbortController()
    const timer = setTimeout(() => ctrl.abort(), this.opts.timeoutMs)
    const t0 = this.peers.now()
    try {
      let res
      try {
        res = await this.fetch(peer + path, { signal: ctrl.signal })
      } catch (e) {
        throw new PeerError('network', peer, e && e.message ? e.message : String(e), e)
      }
      if (res.status === 429 || res.status === 503) throw new PeerError('busy', peer, `HTTP ${res.status}`)
      if (res.status === 404 || res.status === 409 || res.status === 416) {
        let body = null
        try { body = await res.json() } catch {}
        const err = new PeerError('unavailable', peer, `HTTP ${res.status} ${body && body.error ? body.error : ''}`.trim())
        err.status = res.status
        err.body = body
        throw err
      }
      if (res.status !== 200) throw new PeerError('network', peer, `HTTP ${res.status}`)
      try {
        const data = as === 'json' ? await res.json() : new Uint8Array(await res.arrayBuffer())
        return { data, ms: this.peers.now() - t0 }
      } catch (e) {
        throw new PeerError(as === 'json' ? 'invalid' : 'network', peer, 'unreadable body', e)
      }
    } finally {
      clearTimeout(timer)
    }
  }

  /** Record the outcome of an error for its peer. */
  _blame (err) {
    if (!(err instanceof PeerError)) return
    if (err.kind === 'invalid') this.peers.bad(err.peer, err.message)
    else if (err.kind === 'network' || err.kind === 'busy') this.peers.failure(err.peer)
    // 'unavailable' (not held, other fork, shorter log) is no fault of the peer.
  }

  /**
   * A verified head of `key` (hex or bytes): asks up to `headPeers` peers at once and keeps
   * asking others until one verifies. Once one has, waits at most `headGraceMs` for the
   * others, then takes the best verified so far (highest fork, then longest); `peers` lists
   * those that served that head (later ones are added as they verify). Answers that arrive
   * later are still verified and blamed. Throws if no peer gives a valid head.
   */
  async head (key) {
    const hex = keyHex(key)
    const tried = new Set()
    const heads = []
    const errors = []
    let best = null
    const same = (a, b) => a.fork === b.fork && a.length === b.length
    const ask = async (peer) => {
      try {
        const { data, ms } = await this._get(peer, `/v1/logs/${hex}/head`, 'json')
        let head
        try {
          head = await verifyHead(data, hex)
        } catch (e) {
          if (e instanceof VerifyError) throw new PeerError('invalid', peer, e.message, e)
          throw e
        }
        this.peers.success(peer, ms)
        heads.push({ head, peer })
        if (best && same(best, head)) best.peers.push(peer)
        return true
      } catch (e) {
        errors.push(e)
        this._blame(e)
        return false
      }
    }
    const choose = () => {
      if (heads.length === 0) return null
      const top = heads.reduce((a, b) => (b.head.fork - a.head.fork || b.head.length - a.head.length) > 0 ? b : a).head
      top.peers = heads.filter((h) => same(h.head, top)).map((h) => h.peer)
      return top
    }
    while (!best) {
      const batch = []
      while (batch.length < this.opts.headPeers) {
        const p = this.peers.pick(new Set([...tried, ...batch]))
        if (!p) break
        batch.push(p)
      }
      if (batch.length === 0) break
      for (const p of batch) tried.add(p)
      best = await new Promise((resolve) => {
        let pending = batch.length
        let timer = null
        let settled = false
        const done = () => {
          clearTimeout(timer)
          if (!settled) resolve(choose())
          settled = true
        }
        for (const p of batch) {
          ask(p).then((ok) => {
            if (--pending === 0) done()
            else if (ok && timer === null) timer = setTimeout(done, this.opts.headGraceMs)
          })
        }
      })
    }
    if (!best) {
      const err = new Error(`no peer served a valid head for ${hex} (${errors.map((e) => e.message).join('; ') || 'no peers'})`)
      err.errors = errors
      throw err
    }
    return best
  }

  /** Fetch and verify blocks `start..end` of one chunk, retrying on other peers. */
  async _chunk (hex, head, start, end) {
    const tried = new Set()
    const out = []
    let at = start
    const errors = []
    while (at < end) {
      if (tried.size >= this.opts.attempts) break
      const peer = this.peers.pick(tried)
      if (!peer) break
      const path = `/v1/logs/${hex}/blocks?start=${at}&end=${end}&length=${head.length}&fork=${head.fork}`
      try {
        const { data, ms } = await this._get(peer, path, 'bytes')
        let got
        try {
          got = verifyRange(data, head, at, end)
        } catch (e) {
          if (e instanceof VerifyError) throw new PeerError('invalid', peer, e.message, e)
          throw e
        }
        this.peers.success(peer, ms)
        out.push(...got.blocks)
        at = got.end // a gateway may serve a prefix: continue where it stopped
      } catch (e) {
        tried.add(peer)
        errors.push(e)
        this._blame(e)
      }
    }
    if (at < end) {
      const err = new Error(`blocks ${at}..${end} of ${hex}: no peer served them (${errors.map((e) => e.message).join('; ') || 'no peers'})`)
      err.errors = errors
      throw err
    }
    return out
  }

  /**
   * The verified blocks `start..end` of `key` against the trusted `head` (from `head()`), as
   * an array of Uint8Array. Chunks are aligned to `chunk` blocks; up to `parallel` are in
   * flight, each on a peer picked for it.
   */
  async range (key, head, start, end) {
    if (!(Number.isSafeInteger(start) && Number.isSafeInteger(end) && start >= 0 && start <= end && end <= head.length)) {
      throw new RangeError(`range ${start}..${end} is not within the head's ${head.length} blocks`)
    }
    const hex = keyHex(key)
    const size = this.opts.chunk
    const chunks = []
    for (let s = start; s < end;) {
      const e = Math.min(end, (Math.floor(s / size) + 1) * size)
      chunks.push([s, e])
      s = e
    }
    const results = new Array(chunks.length)
    let next = 0
    const worker = async () => {
      while (next < chunks.length) {
        const i = next++
        results[i] = await this._chunk(hex, head, chunks[i][0], chunks[i][1])
      }
    }
    await Promise.all(Array.from({ length: Math.min(this.opts.parallel, chunks.length) }, worker))
    return results.flat()
  }

  /** The latest `n` blocks of `key`, newest first: `{head, blocks: [{index, value}]}`. */
  async latest (key, n = 20) {
    const head = await this.head(key)
    const start = Math.max(0, head.length - n)
    const blocks = await this.range(key, head, start, head.length)
    return { head, blocks: blocks.map((value, i) => ({ index: start + i, value })).reverse() }
  }

  /** Blocks `start..end` of `key` joined into one byte array: a published asset (script,
   * style, image) stored as consecutive blocks, verified like everything else. With no `head`,
   * the current one is fetched first. */
  async asset (key, start, end, head = null) {
    head = head || await this.head(key)
    const blocks = await this.range(key, head, start, end)
    let n = 0
    for (const b of blocks) n += b.length
    const out = new Uint8Array(n)
    let o = 0
    for (const b of blocks) {
      out.set(b, o)
      o += b.length
    }
    return out
  }
}
