// `npm run build`: the bootstrap document (dist/index.html, small, its one script inline and
// hashed in its CSP), the runtime and the Ed25519 fallback in the app (app/dist), each pinned
// by SHA-256 where it is loaded from, and the library (dist/lib/loader.js) verifying like the
// sources with either Ed25519 engine.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { readFileSync, readdirSync } from 'node:fs'
import { gzipSync } from 'node:zlib'
import { fileURLToPath } from 'node:url'

const golden = JSON.parse(readFileSync(new URL('./golden/gateway.json', import.meta.url), 'utf8'))
// Edwards25519's d, as noble writes it: a marker of the curve code.
const CURVE_D = /52036cee2b6ffe738cc740797779e898/
const at = (name) => new URL('../' + name, import.meta.url)
const sha256 = (b, enc = 'hex') => createHash('sha256').update(b).digest(enc)

test('npm run build: a bootstrap document under 4 KiB brotli\'d, pinning what it loads', async () => {
  const out = execFileSync(process.execPath, [fileURLToPath(at('build.mjs'))], { encoding: 'utf8' })
  assert.match(out, /dist\/index\.html: .* brotli'd/)
  const doc = readFileSync(at('dist/index.html'), 'utf8')
  const br = readFileSync(at('dist/index.html.br')).length
  assert.ok(br <= 4096, `index.html.br: ${br} bytes`)
  assert.ok(readFileSync(at('dist/sw.js.br')).length < 512)
  // Exactly one executable script, inline, and its hash is the CSP's.
  const scripts = [...doc.matchAll(/<script([^>]*)>([\s\S]*?)<\/script>/g)]
  const code = scripts.filter((m) => !/application\/json/.test(m[1]))
  assert.equal(code.length, 1)
  assert.doesNotMatch(code[0][1], /src=/)
  const csp = doc.match(/http-equiv="Content-Security-Policy" content="([^"]+)"/)[1]
  assert.ok(csp.includes(`'sha256-${sha256(code[0][2], 'base64')}'`), csp)
  assert.match(csp, /default-src 'none'/)
  assert.match(doc, /<script id="peerhost-data" type="application\/json">null<\/script>/)
  // The runtime and the fallback are pinned by their hashes; the runtime is not in the page.
  const runtime = readFileSync(at('app/dist/peerhost-runtime.js'))
  assert.ok(code[0][2].includes(sha256(runtime)), 'the document pins the runtime')
  assert.ok(runtime.toString().includes(sha256(readFileSync(at('app/dist/ed25519-noble.js')))), 'the runtime pins the fallback')
  assert.doesNotMatch(runtime.toString(), CURVE_D)
  assert.match(readFileSync(at('app/dist/ed25519-noble.js'), 'utf8'), CURVE_D)
  assert.deepEqual(readdirSync(at('app/dist')).sort(), ['ed25519-noble.js', 'feed.js', 'index.html', 'index.js', 'main.js', 'markdown.js', 'peerhost-runtime.js', 'style.css'])
})

test('index-nortc.html: the same document without the WebRTC client, smaller, pinning the same runtime', () => {
  // (dist/ as the test above built it.)
  const page = (name) => {
    const doc = readFileSync(at('dist/' + name), 'utf8')
    const code = [...doc.matchAll(/<script([^>]*)>([\s\S]*?)<\/script>/g)].filter((m) => !/application\/json/.test(m[1]))
    assert.equal(code.length, 1, name)
    const csp = doc.match(/http-equiv="Content-Security-Policy" content="([^"]+)"/)[1]
    assert.ok(csp.includes(`'sha256-${sha256(code[0][2], 'base64')}'`), `${name}: ${csp}`)
    assert.match(doc, /<script id="peerhost-data" type="application\/json">null<\/script>/)
    return { code: code[0][2], br: readFileSync(at(`dist/${name}.br`)).length }
  }
  const full = page('index.html')
  const plain = page('index-nortc.html')
  assert.match(full.code, /RTCPeerConnection/)
  assert.doesNotMatch(plain.code, /RTCPeerConnection|createDataChannel|\/v1\/signal/)
  const runtime = sha256(readFileSync(at('app/dist/peerhost-runtime.js')))
  assert.ok(plain.code.includes(runtime) && full.code.includes(runtime))
  assert.ok(plain.br + 400 <= full.br, `${plain.br} B against ${full.br} B brotli'd`)
})

test('the library bundle verifies (and rejects) golden heads with either engine', async () => {
  const gz = gzipSync(readFileSync(at('dist/lib/loader.js'))).length
  assert.ok(gz < 16 * 1024, `loader.js: ${gz} bytes gzip'd`)
  const js = readFileSync(at('dist/lib/loader.js'), 'utf8')
  assert.doesNotMatch(js, CURVE_D)
  assert.match(js, /import\("\.\/ed25519-noble\.js"\)/)
  const bundle = await import(at('dist/lib/loader.js').href)
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
