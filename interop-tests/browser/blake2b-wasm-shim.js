// For rtc-bench.js only (RTC_PAGE_HASH=wasm): stands in for `@noble/hashes/blake2.js` in the
// test page's bundle, so the page verifies with hash-wasm's WebAssembly BLAKE2b (pinned in
// ../package.json): a yardstick for web/'s own (boot/blake2b-wasm.js) in the same bench. Same
// call shape as the one use in web/src/verify.js: blake2b(bytes, { dkLen }). Until the module is
// compiled (asynchronously, right after the page loads), and for anything else, noble's.
import { createBLAKE2b } from 'hash-wasm'
import { blake2b as js } from '../../web/node_modules/@noble/hashes/blake2.js'

const hashers = new Map()
for (const bits of [256, 512]) createBLAKE2b(bits).then((h) => hashers.set(bits / 8, h))
const calls = { wasm: 0, js: 0 }
globalThis.blake2bCalls = calls

export function blake2b (data, opts = {}) {
  const h = hashers.get(opts.dkLen || 64)
  if (!h || opts.key || opts.salt || opts.personalization) {
    calls.js++
    return js(data, opts)
  }
  calls.wasm++
  h.init()
  h.update(data)
  return h.digest('binary')
}
