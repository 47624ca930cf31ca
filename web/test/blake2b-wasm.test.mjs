// The WebAssembly BLAKE2b (boot/blake2b-wasm.js) gives the same bytes as @noble/hashes and the
// bootstrap's JavaScript one (boot/blake2b.js) for every length 0..1100 (every padding and
// block boundary), inputs across its 64 KiB buffer, any split into parts, and the RFC 7693
// vector; the verifiers use it once compiled, and their fixture tests (verify.test.mjs,
// boot.test.mjs) pass the same either way (the last test runs them with it).
import test from 'node:test'
import assert from 'node:assert'
import crypto from 'node:crypto'
import { blake2b } from '@noble/hashes/blake2.js'
import { b2wasm, moduleBytes, wasmReady } from '../boot/blake2b-wasm.js'
import { b2 as b2js } from '../boot/blake2b.js'
import { b2 } from '../boot/verify.js'
import { blake2b256 } from '../src/verify.js'

const hex = (u) => Buffer.from(u).toString('hex')
const noble = (d) => hex(blake2b(d, { dkLen: 32 }))

test('the module compiles, and answers null only until then', async () => {
  assert.strictEqual(await wasmReady, true)
  assert.ok(WebAssembly.validate(moduleBytes()))
  assert.ok(moduleBytes().length < 10_000, `${moduleBytes().length} bytes`)
})

test('every length 0..1100: the same digest as @noble/hashes and boot/blake2b.js', async () => {
  await wasmReady
  const data = crypto.randomBytes(1100)
  for (let n = 0; n <= 1100; n++) {
    const d = data.subarray(0, n)
    const want = noble(d)
    assert.strictEqual(hex(b2wasm(d)), want, `length ${n}`)
    assert.strictEqual(hex(b2js(d)), want, `length ${n} (js)`)
  }
})

test('inputs across the 64 KiB buffer, in parts of any size', async () => {
  await wasmReady
  for (const n of [65535, 65536, 65537, 65536 + 128, 131072 - 128, 131072, 131073, 200_000, 1 << 20]) {
    const d = crypto.randomBytes(n)
    const want = noble(d)
    assert.strictEqual(hex(b2wasm(d)), want, `length ${n}`)
    const cuts = [0, 1, 127, 65535, 65536, 100_000].filter((c) => c <= n)
    for (const c of cuts) assert.strictEqual(hex(b2wasm(d.subarray(0, c), d.subarray(c))), want, `length ${n} cut at ${c}`)
    assert.strictEqual(hex(b2wasm([2], d, [1, 2, 3])), noble(Buffer.concat([Buffer.from([2]), d, Buffer.from([1, 2, 3])])))
  }
})

test('RFC 7693 appendix A ("abc", 512-bit there): the 256-bit digest of libsodium', async () => {
  await wasmReady
  // crypto_generichash("abc"), 32 bytes (the same function hypercore hashes with).
  assert.strictEqual(hex(b2wasm(Buffer.from('abc'))), 'bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319')
})

test('the verifiers hash with it once compiled (same bytes as before)', async () => {
  await wasmReady
  const d = crypto.randomBytes(5000)
  assert.strictEqual(hex(b2([0], d)), noble(Buffer.concat([Buffer.from([0]), d])))
  assert.strictEqual(hex(blake2b256(Buffer.from([1]), d)), noble(Buffer.concat([Buffer.from([1]), d])))
  // The fixture suites, now with the WebAssembly hash ready.
  await import('./verify.test.mjs')
  await import('./boot.test.mjs')
})
