// The esbuild bundle (dist/loader.js) builds, stays small, and verifies like the sources.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { gzipSync } from 'node:zlib'
import { fileURLToPath } from 'node:url'

const golden = JSON.parse(readFileSync(new URL('./golden/gateway.json', import.meta.url), 'utf8'))

test('npm run build: one ES module under 32 KiB gzip\'d that verifies the golden logs', async () => {
  const out = execFileSync(process.execPath, [fileURLToPath(new URL('../build.mjs', import.meta.url))], { encoding: 'utf8' })
  assert.match(out, /dist\/loader\.js: .* gzip'd/)
  const file = new URL('../dist/loader.js', import.meta.url)
  const gz = gzipSync(readFileSync(file)).length
  assert.ok(gz < 32 * 1024, `${gz} bytes gzip'd`)
  const bundle = await import(file.href)
  for (const name of ['Loader', 'PeerSet', 'renderPosts', 'verifyHead', 'verifyRange']) assert.equal(typeof bundle[name], 'function', name)
  for (const log of golden.logs) {
    const head = bundle.verifyHead(log.heads[1], log.key)
    const r = log.ranges.find((r) => r.status === 200 && r.length === head.length)
    const got = bundle.verifyRange(bundle.fromHex(r.body), head, r.start, r.end)
    assert.equal(got.end, r.servedEnd)
  }
})
