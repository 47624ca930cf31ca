// WebRTC signaling through the instance (protocol/gateway.md §7.3, protocol/webrtc.md §2.1):
// the browser POSTs its offer to the instance it came from (`POST /v1/signal {peer, sdp}`,
// same origin, no CORS); the instance relays it through the home peer's long-poll and
// returns the peer's answer with the peer's signature. The instance is not trusted with the
// answer: it carries the peer's DTLS fingerprint and ICE credentials, so a relay that swapped
// them could sit in the middle. The signature is Ed25519 by the peer's node key over
//   "peerhost/webrtc-answer/v1" ‖ 0 ‖ SHA-256(offer) ‖ SHA-256(answer)
// and is checked here, against the key the page asked for, before the answer is used.

import { cat, ed25519, unhex } from './verify.js'

export const ANSWER_CONTEXT = 'peerhost/webrtc-answer/v1'

const te = new TextEncoder()
const sha256 = async (s) => new Uint8Array(await crypto.subtle.digest('SHA-256', te.encode(s)))

/** The bytes the peer signs for `answer` to `offer` (`offer` may be its SHA-256, a promise). */
export async function answerSignable (offer, answer) {
  const offerHash = typeof offer === 'string' ? sha256(offer) : offer
  return cat(te.encode(ANSWER_CONTEXT), [0], await offerHash, await sha256(answer))
}

/** An error of the signaling path, with a short `code` (BAD_SIGNATURE, NO_PEER, …). */
export class SignalError extends Error {
  constructor (code, message) {
    super(`${code}: ${message}`)
    this.code = code
  }
}

/**
 * A `signal(offerSdp, {trickle}) → Promise<answerSdp>` function for `RtcTransport`: the offer
 * goes to `base + '/v1/signal'` for the WebRTC peer with node key `peer` (64 hex); the answer
 * is returned only if `peer` signed it. `{trickle: true}`: the offer leaves before its
 * candidates, which follow through `signal.trickle(ufrag, candidate)` (`POST
 * /v1/signal/candidate`); a peer that takes only whole offers fails it with code
 * `NO_TRICKLE`. `fetchFn` for tests; `timeoutMs` bounds the whole wait.
 */
export function instanceSignal ({ peer, base = '', fetchFn = (...a) => fetch(...a), timeoutMs = 15000 }) {
  if (!/^[0-9a-f]{64}$/.test(peer)) throw new SignalError('BAD_KEY', 'a node key is 64 lowercase hex characters')
  const key = unhex(peer)
  const signal = async (offer, { trickle = false } = {}) => {
    // The offer's hash is taken while the answer is awaited.
    const offerHash = sha256(offer)
    offerHash.catch(() => {})
    let res
    try {
      res = await fetchFn(base + '/v1/signal', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(trickle ? { peer, sdp: offer, trickle: true } : { peer, sdp: offer }),
        signal: AbortSignal.timeout(timeoutMs)
      })
    } catch (e) {
      throw new SignalError('UNREACHABLE', `the instance's signaling did not answer (${e.message || e})`)
    }
    let body = null
    try { body = await res.json() } catch {}
    if (!res.ok || !body) {
      const code = (body && body.error) || `HTTP_${res.status}`
      throw new SignalError(code, (body && body.message) || `the instance answered ${res.status}`)
    }
    const { sdp, signature } = body
    if (body.peer !== peer || typeof sdp !== 'string' || typeof signature !== 'string' || !/^[0-9a-f]{128}$/.test(signature)) {
      throw new SignalError('BAD_ANSWER', 'the signaling answer is not {peer, sdp, signature} for this peer')
    }
    if (!await ed25519(key, await answerSignable(offerHash, sdp), unhex(signature))) {
      throw new SignalError('BAD_SIGNATURE', `the answer is not signed by peer ${peer.slice(0, 8)}…: refused`)
    }
    return sdp
  }
  /** Relay one candidate (`candidate:…`) of the offer whose ICE ufrag is `ufrag`. */
  signal.trickle = async (ufrag, candidate) => {
    const res = await fetchFn(base + '/v1/signal/candidate', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ peer, ufrag, candidate }),
      signal: AbortSignal.timeout(timeoutMs)
    })
    if (!res.ok) {
      let body = null
      try { body = await res.json() } catch {}
      throw new SignalError((body && body.error) || `HTTP_${res.status}`, (body && body.message) || `the instance answered ${res.status}`)
    }
  }
  return signal
}
