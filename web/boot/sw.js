// The Service Worker (scope /): it keeps the bootstrap document, so a repeat visit asks the
// instance for nothing. Installing takes the document from the HTTP cache (the page was just
// loaded: no second download); an update (a new sw.js) takes it fresh. Verified blocks live in
// the same origin's Cache Storage, written by the bootstrap itself.
const C = 'peerhost-boot'
self.oninstall = (e) => e.waitUntil((async () => {
  const r = await fetch('/', { cache: self.registration.active ? 'no-cache' : 'force-cache' })
  if (r.ok) await (await caches.open(C)).put('/', r)
  await self.skipWaiting()
})())
self.onactivate = (e) => e.waitUntil(self.clients.claim())
self.onfetch = (e) => {
  const r = e.request
  if (r.mode === 'navigate' && new URL(r.url).pathname === '/') {
    e.respondWith(caches.open(C).then((c) => c.match('/')).then((hit) => hit || fetch(r)))
  }
}
