// Bundle for browsers (`npm run build`), one minified ES module each:
// - src/index.js → dist/loader.js: the library (Loader, verifier, renderPosts);
// - src/app.js → dist/app.js: the instance's bootstrap page script, with src/page.html →
//   dist/index.html. `peerhost serve --http ADDR --bootstrap-page web/dist` serves them, and
//   sends the precompressed dist/*.br or *.gz to browsers that take them.
// - src/ed25519-noble.js → dist/ed25519-noble.js: @noble/curves, which src/ed25519.js imports
//   only where WebCrypto lacks Ed25519 (the instance serves it too; most browsers never ask).
//   It is a build of its own, external to the others: esbuild's `splitting` would move the
//   code it shares with them (@noble/hashes' utils) into a third file that every page loads.
// Then report the sizes raw, gzip'd and brotli'd.

import { build } from 'esbuild'
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { brotliCompressSync, constants, gzipSync } from 'node:zlib'
import { fileURLToPath } from 'node:url'

const here = (p) => fileURLToPath(new URL(p, import.meta.url))
const outdir = here('./dist')
rmSync(outdir, { recursive: true, force: true }) // no stale chunks
mkdirSync(outdir, { recursive: true })

const common = {
  bundle: true,
  format: 'esm',
  outdir,
  external: ['./ed25519-noble.js'], // imported at run time, from next to the importer
  platform: 'browser',
  target: ['es2022'],
  minify: true,
  sourcemap: true,
  legalComments: 'eof',
  logLevel: 'warning'
}
await build({ ...common, entryPoints: { loader: here('./src/index.js') } })
await build({ ...common, entryPoints: { 'ed25519-noble': here('./src/ed25519-noble.js') }, sourcemap: false })
// The page's script: every byte counts against the instance's budget (20 KiB brotli'd with the
// page and the bootstrap JSON), so no source map comment and the licences in one line.
await build({
  ...common,
  entryPoints: { app: here('./src/app.js') },
  sourcemap: false,
  mangleProps: /^_[a-z]/, // the loader's private methods (_get, _chunk, _blame)
  legalComments: 'none',
  banner: { js: '/*! @noble/hashes (@noble/curves in ed25519-noble.js): MIT License (c) 2022 Paul Miller (paulmillr.com) */' }
})
copyFileSync(here('./src/page.html'), here('./dist/index.html'))

const kib = (n) => (n / 1024).toFixed(1) + ' KiB'
for (const name of ['loader.js', 'app.js', 'index.html', 'ed25519-noble.js']) {
  const path = here('./dist/' + name)
  const bytes = readFileSync(path)
  const gz = gzipSync(bytes, { level: 9 })
  const br = brotliCompressSync(bytes, {
    params: { [constants.BROTLI_PARAM_QUALITY]: 11, [constants.BROTLI_PARAM_SIZE_HINT]: bytes.length }
  })
  if (name !== 'loader.js') { // what the instance serves
    writeFileSync(path + '.gz', gz)
    writeFileSync(path + '.br', br)
  }
  console.log(`dist/${name}: ${kib(bytes.length)} (${kib(gz.length)} gzip'd, ${kib(br.length)} brotli'd)`)
}
