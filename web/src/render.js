// Minimal rendering of a log's latest posts. Posts will be protobuf entries of
// protocol/feed.proto; until that decoder lands, `decodePost` is a hook: it gets a block's bytes
// and returns `{title, body, author, time}` (any field optional) or null to skip the block.
// The default hook reads JSON blocks, and shows anything else as text.

/** The default `decodePost`: a JSON object with `title`/`body`, else the bytes as text. */
export function decodeJsonOrText (bytes) {
  const text = new TextDecoder('utf-8', { fatal: false }).decode(bytes)
  try {
    const v = JSON.parse(text)
    if (v && typeof v === 'object') {
      return {
        title: v.title != null ? String(v.title) : '',
        body: v.body != null ? String(v.body) : '',
        author: v.author != null ? String(v.author) : '',
        time: v.time != null ? String(v.time) : ''
      }
    }
  } catch {}
  return { title: '', body: text, author: '', time: '' }
}

/**
 * Render `blocks` (`[{index, value}]`, newest first, from `Loader.latest`) into `container`
 * as `<article>`s. Text goes in through `textContent` only: block bytes are untrusted.
 * Returns the number of posts rendered.
 */
export function renderPosts (container, blocks, { decodePost = decodeJsonOrText, document = globalThis.document } = {}) {
  container.textContent = ''
  let n = 0
  for (const { index, value } of blocks) {
    let post
    try {
      post = decodePost(value, index)
    } catch {
      post = null
    }
    if (!post) continue
    const article = document.createElement('article')
    article.dataset.index = String(index)
    if (post.title) {
      const h = document.createElement('h2')
      h.textContent = post.title
      article.appendChild(h)
    }
    if (post.author || post.time) {
      const meta = document.createElement('p')
      meta.className = 'meta'
      meta.textContent = [post.author, post.time].filter(Boolean).join(' · ')
      article.appendChild(meta)
    }
    const body = document.createElement('p')
    body.textContent = post.body || ''
    article.appendChild(body)
    container.appendChild(article)
    n++
  }
  return n
}
