// Bundle the loader for browsers: src/index.js → dist/loader.js (one ES module, minified),
// then report its size raw and gzip'd. `npm run build`.

import { build } from 'esbuild'
import { readFileSync } from 'node:fs'
import { gzipSync } from 'node:zlib'
import { fileURLToPath } from 'node:url'

const here = (p) => fileURLToPath(new URL(p, import.meta.url))
const outfile = here('./dist/loader.js')

await build({
  entryPoints: [here('./src/index.js')],
  outfile,
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: ['es2022'],
  minify: true,
  sourcemap: true,
  legalComments: 'eof',
  logLevel: 'warning'
})

const bytes = readFileSync(outfile)
const gz = gzipSync(bytes, { level: 9 }).length
const kib = (n) => (n / 1024).toFixed(1) + ' KiB'
console.log(`dist/loader.js: ${kib(bytes.length)} (${kib(gz)} gzip'd)`)
