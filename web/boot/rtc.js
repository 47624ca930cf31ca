// WebRTC peers for the bootstrap's loader (protocol/webrtc.md): a home peer behind NAT, named
// by its node key in the document's data block (`rtcPeers`, listed by the instance once it
// passed the instance's health check), reached over a data channel signaled through the
// instance (signal.js: the answer is used only if that key signed it). A peer here has the
// loader's shape, `{url, kind, get(path, as)}` (web/README.md, "Peers"): the loader verifies,
// scores, hedges and bans it exactly like an HTTP gateway.

import { RtcTransport } from './transport-rtc.js'
import { answerSignable, instanceSignal } from './signal.js'
import { ed25519, unhex } from './verify.js'

const td = new TextDecoder()

/**
 * The WebRTC peer with node key `key` (64 hex). `connect()` opens its data channel (once; again
 * after it closed); `get` waits for it. `iceServers`: the instance's (the data block's).
 * `adopt`: a channel to it that is already open (from the document), used first once the
 * answer's signature is checked.
 */
export function rtcPeer (key, { iceServers = [], connectTimeoutMs = 10000, timeoutMs = 8000, base = '', adopt = null } = {}) {
  let transport = null
  let opening = null
  const make = () => new RtcTransport({ signal: instanceSignal({ peer: key, base }), iceServers, connectTimeoutMs, timeoutMs })
  // `adopt`: {pc, dc, hello, offer, answer, signature}, the channel the document opened to this
  // peer: used if the answer it got is signed by `key` (else closed, and a new one opened).
  const adopted = async (a) => {
    try {
      if (typeof a.signature === 'string' && /^[0-9a-f]{128}$/.test(a.signature) &&
        await ed25519(unhex(key), await answerSignable(a.offer, a.answer), unhex(a.signature))) {
        return make().adopt(a.pc, a.dc, a.hello, a.at)
      }
    } catch {}
    a.pc.close()
    return make().open()
  }
  const peer = {
    url: `rtc://${key}`,
    kind: 'webrtc',
    key,
    connect () {
      if (transport && !transport.closed) return Promise.resolve(transport)
      const a = adopt
      adopt = null
      opening ||= (a ? adopted(a) : make().open())
        .then((t) => (transport = t))
        .finally(() => { opening = null })
      return opening
    },
    async get (path, as) {
      const t = await peer.connect()
      const r = await t.request(path)
      const body = r.status !== 200 ? null : as === 'json' ? JSON.parse(td.decode(r.body)) : r.body
      return { status: r.status, body }
    },
    /** Chromium's counters for the connection (getStats), or null. */
    stats: () => (transport ? transport.stats() : null),
    close: () => transport && transport.close()
  }
  return peer
}

/**
 * Open `peers` (rtcPeer objects) at once; each joins `loader` as soon as its channel is open.
 * Resolves when the first one joined, or when all failed or `waitMs` passed (then the loader
 * goes on with what it has: HTTP peers, then the instance).
 */
export function joinAll (loader, peers, { waitMs = 5000, log = console } = {}) {
  const opened = peers.map((p) => p.connect().then(() => loader.add(p), (e) => {
    log.warn(`peerhost: WebRTC peer ${p.key.slice(0, 8)}… not reachable (${e.message})`)
    throw e
  }))
  return Promise.race([Promise.any(opened).catch(() => {}), new Promise((resolve) => setTimeout(resolve, waitMs))])
}
