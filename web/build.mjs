// Bundle for browsers (`npm run build`), one minified ES module each:
// - src/index.js → dist/loader.js: the library (Loader, verifier, renderPosts);
// - src/app.js → dist/app.js: the instance's bootstrap page script, with src/page.html →
//   dist/index.html. `peerhost serve --http ADDR --bootstrap-page web/dist` serves them, and
//   sends the precompressed dist/*.br or *.gz to browsers that take them.
// Then report the sizes raw, gzip'd and brotli'd.

import { build } from 'esbuild'
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { brotliCompressSync, constants, gzipSync } from 'node:zlib'
import { fileURLToPath } from 'node:url'

const here = (p) => fileURLToPath(new URL(p, import.meta.url))
const outfile = here('./dist/loader.js')
mkdirSync(here('./dist'), { recursive: true })

const common = {
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: ['es2022'],
  minify: true,
  sourcemap: true,
  legalComments: 'eof',
  logLevel: 'warning'
}
await build({ ...common, entryPoints: [here('./src/index.js')], outfile })
// The page's script: every byte counts against the instance's budget (20 KiB brotli'd with the
// page and the bootstrap JSON), so no source map comment and the licences in one line.
await build({
  ...common,
  entryPoints: [here('./src/app.js')],
  outfile: here('./dist/app.js'),
  sourcemap: false,
  mangleProps: /^_[a-z]/, // the loader's private methods (_get, _chunk, _blame)
  legalComments: 'none',
  banner: { js: '/*! @noble/curves, @noble/hashes: MIT License (c) 2022 Paul Miller (paulmillr.com) */' }
})
copyFileSync(here('./src/page.html'), here('./dist/index.html'))

const kib = (n) => (n / 1024).toFixed(1) + ' KiB'
for (const name of ['loader.js', 'app.js', 'index.html']) {
  const path = here('./dist/' + name)
  const bytes = readFileSync(path)
  const gz = gzipSync(bytes, { level: 9 })
  const br = brotliCompressSync(bytes, {
    params: { [constants.BROTLI_PARAM_QUALITY]: 11, [constants.BROTLI_PARAM_SIZE_HINT]: bytes.length }
  })
  if (name !== 'loader.js') {
    writeFileSync(path + '.gz', gz)
    writeFileSync(path + '.br', br)
  }
  console.log(`dist/${name}: ${kib(bytes.length)} (${kib(gz.length)} gzip'd, ${kib(br.length)} brotli'd)`)
}
