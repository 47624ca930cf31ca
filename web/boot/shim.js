// Runs first inside the app's sandboxed iframe (an opaque origin: no storage, no cookies, no
// access to the page around it). It is untrusted-side code: the app could replace it, and
// gains nothing by doing so. It
// 1. takes the MessagePort the bootstrap hands over (once, from the parent only) and exposes
//    the data API on it as `window.peerhost` (protocol/app-api.md): `peerhost.OP(...args)`
//    returns a promise; `peerhost.on(f)` receives events;
// 2. builds the app from its files, each verified by the bootstrap: index.html with its
//    `src` / `href` attributes, CSS `url()` / `@import` and ES module specifiers (static
//    `import … from`, `export … from`, `import("…")` with a literal) that name an app file
//    replaced by blob: URLs made here, then written as this document.
;(() => {
  let port
  let n = 0
  const calls = new Map()
  const subs = []
  const call = (op, ...args) => new Promise((resolve, reject) => {
    calls.set(++n, [resolve, reject])
    port.postMessage({ id: n, op, args })
  })
  onmessage = async (e) => {
    if (port || e.source !== parent || !e.ports[0]) return
    port = e.ports[0]
    port.onmessage = ({ data: d }) => {
      const c = calls.get(d.id)
      if (!c) return subs.forEach((f) => f(d))
      calls.delete(d.id)
      if (d.error) c[1](Object.assign(new Error(d.error.message), { code: d.error.code }))
      else c[0](d.value)
    }
    const own = { on: (f) => subs.push(f), call }
    window.peerhost = new Proxy(own, { get: (t, op) => t[op] || (op === 'then' ? undefined : (...a) => call(op, ...a)) })
    try {
      const paths = new Set((await call('files')).map((f) => f.path))
      // An app file named by `ref` from the file `base`, or null.
      const resolve = (ref, base) => {
        const u = new URL(ref, 'http://app/' + base)
        const p = decodeURIComponent(u.pathname.slice(1))
        return u.origin === 'http://app' && paths.has(p) ? p : null
      }
      const urls = {}
      const url = (p) => (urls[p] ||= call('file', p).then(async (f) => {
        let body = f.bytes
        const js = /javascript/.test(f.type)
        if (js || /css/.test(f.type)) {
          const text = new TextDecoder().decode(body)
          const re = js ? /((?:\bfrom|\bimport)\s*\(?\s*)(["'])([^"'\n]+)\2/g : /(url\(\s*|@import\s*)(["']?)([^"')\s]+)\2/g
          const got = await Promise.all([...text.matchAll(re)].map((m) => resolve(m[3], p) && url(resolve(m[3], p))))
          let k = 0
          body = text.replace(re, (m, a, q) => { const u = got[k++]; return u ? a + q + u + q : m })
        }
        return URL.createObjectURL(new Blob([body], { type: f.type }))
      }))
      const doc = new DOMParser().parseFromString(new TextDecoder().decode((await call('file', 'index.html')).bytes), 'text/html')
      await Promise.all([...doc.querySelectorAll('[src],[href]')].map(async (el) => {
        for (const a of ['src', 'href']) {
          const p = el.hasAttribute(a) && resolve(el.getAttribute(a), 'index.html')
          if (p) el.setAttribute(a, await url(p))
        }
      }))
      doc.head.prepend(document.querySelector('meta').cloneNode()) // the app's CSP, again
      document.open()
      document.write('<!doctype html>' + doc.documentElement.outerHTML)
      document.close()
    } catch (e) {
      call('ready', { error: String(e.message || e) })
    }
  }
})()
