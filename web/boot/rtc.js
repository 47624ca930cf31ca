// WebRTC peers for the bootstrap's loader (protocol/webrtc.md): a home peer behind NAT, named
// by its node key in the document's data block (`rtcPeers`, listed by the instance once it
// passed the instance's health check), reached over a data channel signaled through the
// instance (signal.js: the answer is used only if that key signed it). A peer here has the
// loader's shape, `{url, kind, get(path, as)}` (web/README.md, "Peers"): the loader verifies,
// scores, hedges and bans it exactly like an HTTP gateway.

import { RtcTransport } from './transport-rtc.js'
import { instanceSignal } from './signal.js'

const td = new TextDecoder()

/**
 * The WebRTC peer with node key `key` (64 hex). `connect()` opens its data channel (once; again
 * after it closed); `get` waits for it. `iceServers`: the instance's (the data block's).
 */
export function rtcPeer (key, { iceServers = [], connectTimeoutMs = 10000, timeoutMs = 8000, base = '' } = {}) {
  let transport = null
  let opening = null
  const peer = {
    url: `rtc://${key}`,
    kind: 'webrtc',
    key,
    connect () {
      if (transport && !transport.closed) return Promise.resolve(transport)
      opening ||= new RtcTransport({ signal: instanceSignal({ peer: key, base }), iceServers, connectTimeoutMs, timeoutMs })
        .open()
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
