'use strict'
// A tiny static file server for the WebRTC browser tests (the "instance" that sends the test
// page): `node rtc-static.js HOST:PORT DIR`; prints {"event":"ready","url":…}. Run inside a
// network namespace by rtc-lib.js. Only the files in DIR, GET only.

const http = require('node:http')
const fs = require('node:fs')
const path = require('node:path')

const [hostPort, dir] = process.argv.slice(2)
const i = hostPort.lastIndexOf(':')
const host = hostPort.slice(0, i)
const port = Number(hostPort.slice(i + 1))
const types = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.map': 'application/json' }

const server = http.createServer((req, res) => {
  const name = req.url === '/' ? 'index.html' : path.basename(req.url.split('?')[0])
  const file = path.join(dir, name)
  if (req.method !== 'GET' || !fs.existsSync(file)) {
    res.writeHead(404)
    return res.end()
  }
  res.writeHead(200, { 'content-type': types[path.extname(file)] || 'application/octet-stream', 'cache-control': 'no-store' })
  fs.createReadStream(file).pipe(res)
})
server.listen(port, host, () => {
  const a = server.address()
  console.log(JSON.stringify({ event: 'ready', url: `http://${a.address}:${a.port}` }))
})
process.stdin.on('end', () => process.exit(0))
process.stdin.resume()
