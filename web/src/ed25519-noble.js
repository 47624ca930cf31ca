// The fallback Ed25519 engine (./ed25519.js imports it only where WebCrypto lacks Ed25519, so
// the bundles carry @noble/curves as a separate file that most browsers never fetch).
//
// noble's own `ed25519.verify` checks the cofactored equation ([8]S·B = [8]R + [8]k·A), which
// accepts some signatures by a key with a torsion component that libsodium (hypercore) and
// WebCrypto refuse. So the equation is checked here as libsodium does, cofactorless, on noble's
// point arithmetic: R must be exactly the encoding of S·B − k·A.

import { ed25519 } from '@noble/curves/ed25519.js'
import { sha512 } from '@noble/hashes/sha2.js'

const L = 2n ** 252n + 27742317777372353535851937790883648493n
const { Point } = ed25519

function le (bytes) {
  let n = 0n
  for (let i = bytes.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(bytes[i])
  return n
}

/** RFC 8032 §5.1.7 verification, cofactorless (libsodium crypto_sign_verify_detached); keys
 * and R in canonical encodings only. ./ed25519.js has checked S < L and small orders first.
 * Malformed input is `false`. */
export function verify (publicKey, message, signature) {
  try {
    const A = Point.fromBytes(publicKey, false) // false: no non-canonical encoding (zip215)
    const r = signature.subarray(0, 32)
    const s = le(signature.subarray(32))
    if (s >= L) return false
    const h = new Uint8Array(64 + message.length)
    h.set(r)
    h.set(publicKey, 32)
    h.set(message, 64)
    const k = le(sha512(h)) % L
    const R = Point.BASE.multiplyUnsafe(s).subtract(A.multiplyUnsafe(k))
    const got = R.toBytes()
    let d = 0
    for (let i = 0; i < 32; i++) d |= got[i] ^ r[i]
    return d === 0
  } catch {
    return false
  }
}
