// `npm run build`: three outputs.
//
// 1. dist/: what an instance serves (`peerhost serve --http ADDR --bootstrap-page web/dist`):
//    - index.html, the bootstrap document: boot/page.html with boot/inline.js bundled and
//      inlined as one module script, and its Content-Security-Policy in a <meta> (the scripts'
//      SHA-256 hashes; the instance sends the same as a header); the header's markup and
//      style (boot/shell.html) go in the runtime, which adds them;
//    - index-nortc.html, the same without the minimal WebRTC client (WITH_RTC false), which
//      the instance serves while it lists no WebRTC peer (protocol/gateway.md §7);
//    - sw.js, the Service Worker;
//    with .br / .gz next to each. The instance writes the community key and its peers into
//    the document's `#peerhost-data` block when it serves it (crates/gateway, Site).
// 2. app/dist/: the default app (web/app, each file minified, the layout kept), plus the
//    Ed25519 fallback (src/ed25519-noble.js, @noble/curves) that the bootstrap fetches from
//    the peers where WebCrypto lacks Ed25519, pinned by its SHA-256. Publish it with
//    `peerhost assets publish COMMUNITY web/app/dist`.
// 3. dist/lib/loader.js: the library (src/index.js: Loader, verifier, renderPosts) for other
//    pages, with dist/lib/ed25519-noble.js, which it imports at run time from next to itself.
// Then report the sizes raw, gzip'd and brotli'd.

import { build, transform } from 'esbuild'
import { createHash } from 'node:crypto'
import { copyFileSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { brotliCompressSync, constants, gzipSync } from 'node:zlib'
import { fileURLToPath } from 'node:url'

const here = (p) => fileURLToPath(new URL(p, import.meta.url))
for (const d of ['./dist', './app/dist']) rmSync(here(d), { recursive: true, force: true })
for (const d of ['./dist/lib', './app/dist']) mkdirSync(here(d), { recursive: true })

const sha256 = (s) => createHash('sha256').update(s).digest()
const bundle = async (entry, opts = {}) => (await build({
  entryPoints: [here(entry)],
  bundle: true,
  write: false,
  format: 'esm',
  platform: 'browser',
  target: ['es2022'],
  minify: true,
  legalComments: 'none',
  logLevel: 'warning',
  ...opts
})).outputFiles[0].text.trim()

// The library and its Ed25519 fallback (dist/lib).
const common = {
  bundle: true,
  format: 'esm',
  outdir: here('./dist/lib'),
  external: ['./ed25519-noble.js'],
  platform: 'browser',
  target: ['es2022'],
  minify: true,
  legalComments: 'eof',
  logLevel: 'warning'
}
await build({ ...common, entryPoints: { loader: here('./src/index.js') }, sourcemap: true })
await build({ ...common, entryPoints: { 'ed25519-noble': here('./src/ed25519-noble.js') } })

// The app (app/dist): every file minified on its own (ES modules keep their imports), and
// the fallback engine the bootstrap looks for by hash.
for (const name of readdirSync(here('./app'))) {
  const from = here('./app/' + name)
  if (name === 'dist') continue
  if (/\.(js|css)$/.test(name)) {
    const out = await transform(readFileSync(from, 'utf8'), { loader: name.endsWith('.js') ? 'js' : 'css', minify: true, format: name.endsWith('.js') ? 'esm' : undefined, target: 'es2022', legalComments: 'none' })
    writeFileSync(here('./app/dist/' + name), out.code)
  } else copyFileSync(from, here('./app/dist/' + name))
}
copyFileSync(here('./dist/lib/ed25519-noble.js'), here('./app/dist/ed25519-noble.js'))
const noble = sha256(readFileSync(here('./app/dist/ed25519-noble.js'))).toString('hex')

// The bootstrap document: the iframe's shim and CSP, then the bootstrap with them inlined.
const shim = await bundle('./boot/shim.js', { format: 'iife' })
const hash = (s) => `'sha256-${sha256(s).toString('base64')}'`
const appCsp = `default-src 'none'; script-src ${hash(shim)} blob:; style-src 'unsafe-inline' blob:; img-src blob: data:; font-src blob: data:; media-src blob:; connect-src 'none'; form-action 'none'; base-uri 'none'`
// The bootstrap runtime, published with the app and pinned (by SHA-256) in the document.
// The header's markup and style (boot/shell.html: before and after `#note`), which the
// runtime adds: the document holds only `#note` (for a failure before the runtime runs).
const shell = readFileSync(here('./boot/shell.html'), 'utf8').trim().split('<!--NOTE-->')
const runtime = await bundle('./boot/main.js', {
  define: { SHIM: JSON.stringify(shim), APP_CSP: JSON.stringify(appCsp), NOBLE_SHA256: JSON.stringify(noble), SHELL: JSON.stringify(shell) },
  mangleProps: /^_[a-z]/
})
writeFileSync(here('./app/dist/peerhost-runtime.js'), runtime)
// Two documents: index.html with the minimal WebRTC client (the runtime can come from a home
// peer), index-nortc.html without it, which the instance serves while it lists no WebRTC peer.
const template = readFileSync(here('./boot/page.html'), 'utf8')
let boot
for (const [file, rtc] of [['index.html', true], ['index-nortc.html', false]]) {
  const script = await bundle('./boot/inline.js', { define: { RUNTIME_SHA256: JSON.stringify(sha256(runtime).toString('hex')), WITH_RTC: String(rtc) } })
  if (/<\/script/i.test(script)) throw new Error('the bootstrap contains </script')
  if (!rtc && /RTCPeerConnection/.test(script)) throw new Error('index-nortc.html holds the WebRTC client')
  const csp = `default-src 'none'; script-src ${hash(script)} ${hash(shim)} blob: 'wasm-unsafe-eval'; style-src 'unsafe-inline' blob:; img-src blob: data:; font-src blob: data:; media-src blob:; connect-src 'self' http: https:; worker-src 'self'; base-uri 'none'; form-action 'none'`
  writeFileSync(here('./dist/' + file), template
    .replace('<!--CSP-->', `<meta http-equiv="Content-Security-Policy" content="${csp}">`)
    .replace('/*BOOT*/', () => script))
  boot ??= script
}
writeFileSync(here('./dist/sw.js'), (await bundle('./boot/sw.js')) + '\n')

const kib = (n) => (n / 1024).toFixed(1) + ' KiB'
const sizes = {}
for (const name of ['dist/index.html', 'dist/index-nortc.html', 'dist/sw.js', 'dist/lib/loader.js', 'app/dist/ed25519-noble.js', ...readdirSync(here('./app/dist')).filter((n) => n !== 'ed25519-noble.js').sort().map((n) => 'app/dist/' + n)]) {
  const path = here('./' + name)
  const bytes = readFileSync(path)
  const gz = gzipSync(bytes, { level: 9 })
  const br = brotliCompressSync(bytes, {
    params: { [constants.BROTLI_PARAM_QUALITY]: 11, [constants.BROTLI_PARAM_SIZE_HINT]: bytes.length }
  })
  if (/^dist\/[^/]+$/.test(name)) { // what the instance serves
    writeFileSync(path + '.gz', gz)
    writeFileSync(path + '.br', br)
  }
  sizes[name] = { raw: bytes.length, gzip: gz.length, br: br.length }
  console.log(`${name}: ${kib(bytes.length)} (${kib(gz.length)} gzip'd, ${kib(br.length)} brotli'd)`)
}
console.log(`inline script ${boot.length} B, runtime ${runtime.length} B, shim ${shim.length} B; Ed25519 fallback SHA-256 ${noble}`)
writeFileSync(here('./dist/lib/sizes.json'), JSON.stringify(sizes, null, 2) + '\n')
