// The esbuild bundles (npm run build) build, stay small, and verify like the sources: the
// library (dist/loader.js), the page's script (dist/app.js), and the Ed25519 fallback they
// import only where WebCrypto lacks Ed25519 (dist/ed25519-noble.js).

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { gzipSync } from 'node:zlib'
import { fileURLToPath } from 'node:url'

const golden = JSON.parse(readFileSync(new URL('./golden/gateway.json', import.meta.url), 'utf8'))
// Edwards25519's d, as noble writes it: a marker of the curve code.
const CURVE_D = /52036cee2b6ffe738cc740797779e898/
const dist = (name) => new URL('../dist/' + name, import.meta.url)

test('npm run build: small ES modules that verify the golden logs with either Ed25519 engine', async () => {
  const out = execFileSync(process.execPath, [fileURLToPath(new URL('../build.mjs', import.meta.url))], { encoding: 'utf8' })
  assert.match(out, /dist\/loader\.js: .* gzip'd/)
  const gz = gzipSync(readFileSync(dist('loader.js'))).length
  assert.ok(gz < 16 * 1024, `loader.js: ${gz} bytes gzip'd`)
  // The page's script, as the instance sends it (its .br), leaves room in the 20 000-byte
  // budget for the page and the bootstrap JSON; the curve code is not in it.
  const app = readFileSync(dist('app.js'))
  assert.ok(readFileSync(dist('app.js.br')).length < 14_000, `app.js.br: ${readFileSync(dist('app.js.br')).length} bytes`)
  for (const file of ['app.js', 'loader.js']) {
    const js = readFileSync(dist(file), 'utf8')
    assert.doesNotMatch(js, CURVE_D, `${file} carries no curve code`)
    assert.match(js, /import\("\.\/ed25519-noble\.js"\)/, `${file} imports the fallback at run time`)
    assert.doesNotMatch(js.replace(/import\("\.\/ed25519-noble\.js"\)/g, ''), /\bimport\b[^.]*from\s*"/, `${file} has no static imports`)
  }
  assert.match(readFileSync(dist('ed25519-noble.js'), 'utf8'), CURVE_D)

  const bundle = await import(dist('loader.js').href)
  for (const name of ['Loader', 'PeerSet', 'renderPosts', 'verifyHead', 'verifyRange', 'useEd25519Engine']) assert.equal(typeof bundle[name], 'function', name)
  for (const engine of ['webcrypto', 'noble']) {
    bundle.useEd25519Engine(engine)
    for (const log of golden.logs) {
      const head = await bundle.verifyHead(log.heads[1], log.key)
      const r = log.ranges.find((r) => r.status === 200 && r.length === head.length)
      const got = bundle.verifyRange(bundle.fromHex(r.body), head, r.start, r.end)
      assert.equal(got.end, r.servedEnd)
      const bad = { ...log.heads[1], signature: log.heads[1].signature.replace(/^(.{20})(.)/, (_, a, c) => a + (c === '0' ? '1' : '0')) }
      await assert.rejects(bundle.verifyHead(bad, log.key), /INVALID_SIGNATURE/, `${engine}: ${log.name}`)
    }
  }
})
