// Ed25519 signature verification for heads, with hypercore's acceptance rules (libsodium's
// crypto_sign_verify_detached, which hypercore-crypto calls).
//
// Two engines behind one strict front:
// - 'webcrypto': the platform's `crypto.subtle` (Chromium, Firefox, Safari, Node ≥ 20 ship
//   Ed25519): no code to send to the browser;
// - 'noble': @noble/curves' point arithmetic, in ./ed25519-noble.js, imported only when the
//   platform lacks Ed25519 (built as dist/ed25519-noble.js, a file of its own).
// The first use picks one ('auto'): WebCrypto if it verifies an RFC 8032 vector and rejects it
// for another message, else noble. Before either engine runs, `strict` applies what libsodium
// checks and the engines may not (WebCrypto in Node and Chromium accepts small-order keys):
// S < L, a canonical public key, neither the key nor R of small order. Both engines then check
// the cofactorless equation, as libsodium does (web/README.md, "Ed25519").

const P = 2n ** 255n - 19n
const L = 2n ** 252n + 27742317777372353535851937790883648493n
// The y of the order-8 points (libsodium ed25519_ref10.c `blacklist`); the other is P - Y8.
const Y8 = 0x05fc536d880238b13933c6d305acdfd5f098eff289f4c345b027b2c28f95e826n
// Every y of a point of order 1, 2, 4 or 8, and the non-canonical encodings that fit 255 bits.
const SMALL = [0n, 1n, Y8, P - Y8, P - 1n, P, P + 1n]

/** The little-endian integer of `bytes`. */
function le (bytes) {
  let n = 0n
  for (let i = bytes.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(bytes[i])
  return n
}

const y = (point) => le(point) & (2n ** 255n - 1n)
const smallOrder = (point) => SMALL.includes(y(point))

/**
 * libsodium's checks before the curve equation: lengths, S < L (no malleable signature), the
 * public key canonical (y < P) and not of small order, R not of small order.
 */
export function strict (publicKey, signature) {
  return publicKey.length === 32 && signature.length === 64 &&
    le(signature.subarray(32)) < L &&
    y(publicKey) < P && !smallOrder(publicKey) && !smallOrder(signature.subarray(0, 32))
}

// An invalid key or signature (or no Ed25519 at all) is `false`.
async function webcrypto (publicKey, message, signature) {
  try {
    const subtle = globalThis.crypto.subtle
    const key = await subtle.importKey('raw', publicKey, { name: 'Ed25519' }, false, ['verify'])
    return await subtle.verify({ name: 'Ed25519' }, key, signature, message)
  } catch {
    return false
  }
}

// Rejects only when the chunk does not load; an invalid key or signature is `false`.
async function noble (publicKey, message, signature) {
  return (await import('./ed25519-noble.js')).verify(publicKey, message, signature)
}

// RFC 8032 §7.1 test 1: the public key and its signature of the empty message.
const hex = (s) => Uint8Array.from(s.match(/../g), (b) => parseInt(b, 16))
const RFC_KEY = hex('d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a')
const RFC_SIG = hex('e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b')

async function pick () {
  const ok = await webcrypto(RFC_KEY, new Uint8Array(0), RFC_SIG) &&
    !(await webcrypto(RFC_KEY, Uint8Array.of(1), RFC_SIG))
  return ok ? webcrypto : noble
}

/** The engines themselves, without `strict` (tests compare them). */
export const ENGINES = { webcrypto, noble }
let engine = null // a Promise of the engine in use

/** Use `name` ('webcrypto', 'noble' or 'auto', the default: pick at the next use) from now on;
 * for tests. */
export function useEngine (name) {
  if (name !== 'auto' && !ENGINES[name]) throw new TypeError(`unknown Ed25519 engine ${name}`)
  engine = name === 'auto' ? null : Promise.resolve(ENGINES[name])
}

/** The name of the engine verification uses (picking it if not yet picked). */
export async function engineName () {
  const e = await (engine ||= pick())
  return e === webcrypto ? 'webcrypto' : 'noble'
}

/**
 * Whether `signature` is `publicKey`'s Ed25519 signature of `message`, under the rules above.
 * An invalid key or signature is `false`; a failure to load the fallback engine rejects (no
 * fault of whoever sent the signature).
 */
export async function ed25519Verify (publicKey, message, signature) {
  if (!strict(publicKey, signature)) return false
  const e = await (engine ||= pick())
  return e(publicKey, message, signature)
}
