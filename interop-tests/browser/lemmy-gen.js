'use strict'
// Lemmy 0.19 API JSON (GET /api/v3/post/list, /api/v3/comment/list) for `peerhost import`:
// the samples of crates/feed/tests/data, plus `posts` generated posts (cloned from the
// samples' shapes: new ids, titles, times) and `comments` generated comments spread over them,
// of which `thread` form one deep tree under the generated post `threadPost`. Deterministic.

const fs = require('node:fs')
const path = require('node:path')

const DATA = path.resolve(__dirname, '..', '..', 'crates', 'feed', 'tests', 'data')
const read = (f) => JSON.parse(fs.readFileSync(path.join(DATA, f), 'utf8'))
const iso = (ms) => new Date(ms).toISOString()

function generate ({ posts = 300, comments = 2000, thread = 80, threadPost = 150 } = {}) {
  const sample = read('posts.json').posts
  const sampleComments = read('comments.json').comments
  const base = Date.UTC(2026, 10, 1)
  const genPosts = []
  for (let i = 0; i < posts; i++) {
    const t = structuredClone(sample[i % sample.length])
    const id = 60000 + i
    Object.assign(t.post, {
      id,
      name: `Generated post ${i}: ${sample[i % sample.length].post.name}`.slice(0, 200),
      published: iso(base + i * 60_000),
      ap_id: `https://example-lemmy.test/post/${id}`,
      removed: false,
      deleted: false
    })
    delete t.post.updated
    if (t.counts) Object.assign(t.counts, { post_id: id, published: t.post.published })
    genPosts.push(t)
  }
  let rnd = 12345
  const next = () => ((rnd = (rnd * 1103515245 + 12345) >>> 0) >>> 8)
  const genComments = []
  const tree = [] // the thread: {id, path, depth}
  const tpost = genPosts[threadPost].post
  const cbase = base + posts * 60_000
  for (let k = 0; k < comments; k++) {
    const c = structuredClone(sampleComments[k % sampleComments.length])
    const id = 900000 + k
    let postObj, pathStr
    if (k < thread) {
      postObj = tpost
      // Every 6th a new top-level comment; else a reply to one of the last few (nesting).
      const parent = k % 6 === 0 || !tree.length ? null : tree[tree.length - 1 - (next() % Math.min(3, tree.length))]
      pathStr = parent ? `${parent.path}.${id}` : `0.${id}`
      tree.push({ id, path: pathStr, depth: parent ? parent.depth + 1 : 1, body: `Thread comment ${k} (reply depth ${parent ? parent.depth + 1 : 1})` })
    } else {
      postObj = genPosts[next() % posts].post
      pathStr = `0.${id}`
    }
    Object.assign(c.comment, {
      id,
      post_id: postObj.id,
      content: k < thread ? tree[k].body : `Comment ${k} on post ${postObj.id}. ` + 'Some words to give it the size of a real comment. '.repeat(3),
      path: pathStr,
      published: iso(cbase + k * 1000),
      ap_id: `https://example-lemmy.test/comment/${id}`,
      removed: false,
      deleted: false
    })
    delete c.comment.updated
    c.post = { ...c.post, ...postObj }
    if (c.counts) Object.assign(c.counts, { comment_id: id, published: c.comment.published, child_count: 0 })
    genComments.push(c)
  }
  const allPosts = [...sample, ...genPosts]
  const byTime = [...allPosts].sort((a, b) => Date.parse(b.post.published) - Date.parse(a.post.published)).map((p) => p.post.name)
  return {
    posts: { posts: allPosts },
    comments: { comments: [...sampleComments, ...genComments] },
    byTime,
    thread: { post: tpost, comments: tree }
  }
}

/** Write the generated JSON into `dir`: [posts.json, comments.json, community.json]. */
function write (dir, g) {
  const files = [['posts.json', g.posts], ['comments.json', g.comments]].map(([f, v]) => {
    fs.writeFileSync(path.join(dir, f), JSON.stringify(v))
    return path.join(dir, f)
  })
  return [path.join(DATA, 'community.json'), ...files]
}

module.exports = { generate, write, DATA }
