// The fallback Ed25519 engine (./ed25519.js imports it only where WebCrypto lacks Ed25519, so
// the bundles carry @noble/curves as a separate chunk that most browsers never fetch).

import { ed25519 } from '@noble/curves/ed25519.js'

/** Strict RFC 8032 verification (zip215 off: canonical encodings only, small-order keys
 * refused); the equation is the cofactored one. Malformed input is `false`. */
export function verify (publicKey, message, signature) {
  try {
    return ed25519.verify(signature, message, publicKey, { zip215: false })
  } catch {
    return false
  }
}
