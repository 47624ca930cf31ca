// The Service Worker (scope /): it keeps the bootstrap document, so a repeat visit asks the
// instance for nothing. The first time, the page stored the document it was parsed from; an
// update (a new sw.js: a new bootstrap) takes it fresh from the instance. Verified blocks and
// the pinned runtime live in the same origin's Cache Storage (`peerhost-boot`), written by the
// bootstrap. (Small on purpose: the instance sends it on every first visit. It does not claim
// the page that registered it: it serves navigations only, and that page has navigated.)
self.oninstall = (e) => e.waitUntil((async () => {
  const c = await caches.open('peerhost-boot')
  if (self.registration.active || !(await c.match('/'))) {
    const r = await fetch('/', { cache: 'no-cache' })
    if (r.ok) await c.put('/', r)
  }
  self.skipWaiting()
})())
self.onfetch = (e) => {
  const r = e.request
  if (r.mode === 'navigate' && new URL(r.url).pathname === '/') e.respondWith(caches.match('/').then((hit) => hit || fetch(r)))
}
