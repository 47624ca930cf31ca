// The Service Worker (scope /): it keeps the bootstrap document, so a repeat visit asks the
// instance for nothing. The first time, the page stored the document it was parsed from; an
// update (a new sw.js: a new bootstrap) takes it fresh from the instance. Verified blocks and
// the pinned runtime live in the same origin's Cache Storage, written by the bootstrap.
const C = 'peerhost-boot'
self.oninstall = (e) => e.waitUntil((async () => {
  const c = await caches.open(C)
  if (self.registration.active || !(await c.match('/'))) {
    const r = await fetch('/', { cache: 'no-cache' })
    if (r.ok) await c.put('/', r)
  }
  await self.skipWaiting()
})())
self.onactivate = (e) => e.waitUntil(self.clients.claim())
self.onfetch = (e) => {
  const r = e.request
  if (r.mode === 'navigate' && new URL(r.url).pathname === '/') {
    e.respondWith(caches.open(C).then((c) => c.match('/')).then((hit) => hit || fetch(r)))
  }
}
