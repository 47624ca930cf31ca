// A strict, escape-only Markdown renderer for untrusted post and comment bodies. It never
// parses HTML: the text is split into a small tree of known nodes (`parse`), and `toDom` builds
// elements from a fixed list of tags with `textContent` for every string, so `<script>`,
// `<img onerror>` or an HTML entity in a body stays visible text. Links keep only http(s) and
// mailto URLs (no `javascript:`, `data:`…), with rel="noopener noreferrer nofollow ugc"; the app's
// sandbox does not allow popups, so they show where they lead rather than open.
//
// Supported: paragraphs, line breaks, # headings, > quotes, - * + and 1. lists, fenced and
// indented code, `code`, **strong**, *em* / _em_, ~~strike~~, [text](url), <url> and bare
// http(s) URLs. Everything else (tables, HTML, images, footnotes) is shown as its text.

const TAGS = new Set(['p', 'br', 'h3', 'h4', 'h5', 'h6', 'blockquote', 'ul', 'ol', 'li', 'pre', 'code', 'strong', 'em', 'del', 'a'])
const SAFE_URL = /^(https?:\/\/|mailto:)[^\s\x00-\x1f]*$/i
const MAX = 100_000 // characters rendered; the rest is cut (a post body is at most 1 MiB)

/** Markdown text → `[node]`, node = string | {t: tag, c: [node], href?}. */
export function parse (md) {
  const text = String(md ?? '').slice(0, MAX).replace(/\r\n?/g, '\n')
  return blocks(text.split('\n'), 0)
}

function blocks (lines, depth) {
  const out = []
  let i = 0
  while (i < lines.length) {
    const l = lines[i]
    if (!l.trim()) { i++; continue }
    let m
    if ((m = /^ {0,3}(```|~~~)/.exec(l))) {
      const fence = m[1]
      const body = []
      i++
      while (i < lines.length && !lines[i].trimStart().startsWith(fence)) body.push(lines[i++])
      i++
      out.push({ t: 'pre', c: [{ t: 'code', c: [body.join('\n')] }] })
    } else if (/^( {4}|\t)/.test(l)) {
      const body = []
      while (i < lines.length && (/^( {4}|\t)/.test(lines[i]) || !lines[i].trim())) body.push(lines[i++].replace(/^( {4}|\t)/, ''))
      out.push({ t: 'pre', c: [{ t: 'code', c: [body.join('\n').replace(/\n+$/, '')] }] })
    } else if ((m = /^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$/.exec(l))) {
      out.push({ t: 'h' + Math.min(6, m[1].length + 2), c: inline(m[2]) })
      i++
    } else if (/^ {0,3}>/.test(l) && depth < 8) {
      const body = []
      while (i < lines.length && /^ {0,3}>/.test(lines[i])) body.push(lines[i++].replace(/^ {0,3}> ?/, ''))
      out.push({ t: 'blockquote', c: blocks(body, depth + 1) })
    } else if ((m = /^ {0,3}([-*+]|\d{1,9}[.)])\s+/.exec(l)) && depth < 8) {
      const ordered = /\d/.test(m[1])
      const items = []
      while (i < lines.length) {
        const im = /^ {0,3}([-*+]|\d{1,9}[.)])\s+(.*)$/.exec(lines[i])
        if (!im || /\d/.test(im[1]) !== ordered) break
        const body = [im[2]]
        i++
        while (i < lines.length && /^\s{2,}\S/.test(lines[i]) && !/^ {0,3}([-*+]|\d{1,9}[.)])\s+/.test(lines[i])) body.push(lines[i++].trim())
        items.push({ t: 'li', c: inline(body.join('\n')) })
      }
      out.push({ t: ordered ? 'ol' : 'ul', c: items })
    } else {
      const body = []
      while (i < lines.length && lines[i].trim() && !/^ {0,3}(```|~~~|#{1,6}\s|>|([-*+]|\d{1,9}[.)])\s)/.test(lines[i])) body.push(lines[i++])
      if (!body.length) body.push(lines[i++])
      out.push({ t: 'p', c: inline(body.join('\n')) })
    }
  }
  return out
}

// Inline spans, left to right; the earliest match wins, its inside parsed again (depth-bounded).
const SPANS = [
  ['code', /`([^`\n]+)`/],
  ['link', /\[([^\]\n]{1,500})\]\(\s*<?([^)\s>]{1,2000})>?(?:\s+"[^"\n]*")?\s*\)/],
  ['auto', /<((?:https?:\/\/|mailto:)[^>\s]{1,2000})>/i],
  ['bare', /\bhttps?:\/\/[^\s<>()"']{1,2000}[^\s<>()"'.,;:!?]/i],
  ['strong', /\*\*(?=\S)([^\n]*?\S)\*\*|__(?=\S)([^\n]*?\S)__/],
  ['del', /~~(?=\S)([^\n]*?\S)~~/],
  ['em', /\*(?=[^\s*])([^*\n]*?[^\s*])\*|(?<![\w])_(?=[^\s_])([^_\n]*?[^\s_])_(?![\w])/],
  ['br', /\n/]
]

function inline (s, depth = 0) {
  const out = []
  // Bounded work: a very long paragraph stays plain text (the patterns are linear per match,
  // but each is tried again after every span).
  if (s.length > 4000) return [s]
  while (s) {
    let best = null
    if (depth < 6) {
      for (const [kind, re] of SPANS) {
        const m = re.exec(s)
        if (m && (!best || m.index < best.m.index)) best = { kind, m }
      }
    } else {
      const m = /\n/.exec(s)
      if (m) best = { kind: 'br', m }
    }
    if (!best) { out.push(s); break }
    const { kind, m } = best
    if (m.index) out.push(s.slice(0, m.index))
    s = s.slice(m.index + m[0].length)
    if (kind === 'code') out.push({ t: 'code', c: [m[1]] })
    else if (kind === 'br') out.push({ t: 'br', c: [] })
    else if (kind === 'link') out.push(link(m[2], inline(m[1], depth + 1), m[0]))
    else if (kind === 'auto') out.push(link(m[1], [m[1]], m[0]))
    else if (kind === 'bare') out.push(link(m[0], [m[0]], m[0]))
    else out.push({ t: kind, c: inline(m[1] ?? m[2], depth + 1) })
  }
  return out
}

const link = (href, c, raw) => SAFE_URL.test(href) ? { t: 'a', href, c } : raw

/** Render the tree under `parent` (a DOM element), text through text nodes only. */
export function toDom (nodes, parent, doc = parent.ownerDocument) {
  for (const n of nodes) {
    if (typeof n === 'string') { parent.appendChild(doc.createTextNode(n)); continue }
    if (!TAGS.has(n.t)) continue
    const el = doc.createElement(n.t)
    if (n.t === 'a') {
      if (!SAFE_URL.test(n.href)) continue
      el.setAttribute('href', n.href)
      el.setAttribute('rel', 'noopener noreferrer nofollow ugc')
      el.setAttribute('target', '_blank')
      el.title = n.href
    }
    toDom(n.c, el, doc)
    parent.appendChild(el)
  }
  return parent
}

/** The text of a body without markup, cut at `n` characters (for excerpts). */
export function plain (md, n = 240) {
  const walk = (ns) => ns.map((x) => typeof x === 'string' ? x : x.t === 'br' ? ' ' : walk(x.c)).join('')
  const t = parse(String(md ?? '').slice(0, n * 4)).map((b) => walk([b])).join(' ').replace(/\s+/g, ' ').trim()
  return t.length > n ? t.slice(0, n - 1) + '…' : t
}
