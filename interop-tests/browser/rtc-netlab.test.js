'use strict'
// Chromium behind a NAT reads from a home peer behind another NAT over WebRTC (issue 11): three
// cells of the NAT lab by plain ICE, mDNS on, signaled through the instance (https, the home
// peer's long-poll across its NAT), no HTTP gateway anywhere but the instance (rtc-netlab.js, which
// BENCHMARKS.md's 16-cell table comes from; the birthday-search cells are probabilistic and
// stay in that script). Each row is checked: connected, the latest 20 posts verified, bytes
// from the peer counted by Chromium's getStats.
//
// The home peer is `peerhost mirror --register` and the instance `peerhost serve` (rtc-netlab.js).
// Needs root, the NAT lab's tools (interop-tests/netlab/install.sh), target/release/peerhost,
// web/node_modules, /usr/bin/chromium.

const test = require('node:test')
const assert = require('node:assert')
const path = require('node:path')
const { execFile } = require('node:child_process')

const CELLS = 'port:port,symmetric:restricted,restricted:symmetric'

test('the NAT lab: a browser behind a NAT reads from a home peer behind another', { timeout: 240_000 }, async () => {
  const out = await new Promise((resolve, reject) => {
    execFile('node', [path.join(__dirname, 'rtc-netlab.js'), CELLS, '--no-birthday-pass'],
      { timeout: 230_000, maxBuffer: 1 << 20 }, (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout)))
  })
  const rows = out.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l))
  assert.strictEqual(rows.length, 3, out)
  for (const r of rows) {
    console.log(`# ${r.peerNat} peer, ${r.browserNat} browser (the bootstrap page): connected in ${r.connectMs} ms, first post ${r.firstPostMs} ms, ` +
      `${r.bytesFromPeer} B from the peer (${r.localType}/${r.remoteType}), ${r.bytesFromInstance} B from the instance`)
    assert.ok(r.connected, `${r.peerNat}:${r.browserNat} did not connect: ${r.error}`)
    assert.ok(r.bytesFromPeer > 4000, `getStats counted ${r.bytesFromPeer} B from the peer`)
    // Signaled through the instance across both NATs (the peer's long-poll), checked and
    // listed by it; the instance sent the page, its script and the signaling, no log data.
    assert.ok(r.listed, `${r.peerNat}:${r.browserNat}: the instance did not list the peer`)
    assert.deepStrictEqual([...r.instancePaths].sort(), ['/', '/sw.js', '/v1/signal'])
    assert.ok(r.bytesFromInstance <= 6000, `the instance served ${r.bytesFromInstance} B`)
  }
})
