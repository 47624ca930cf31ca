// The bundle's entry: everything a page needs to load and verify a community's logs.
//
//   import { Loader, renderPosts } from './loader.js' (the bundle: web/dist/loader.js)
//   const loader = new Loader({ peers: ['https://node1.example', 'https://node2.example'] })
//   const { blocks } = await loader.latest(POSTS_KEY, 20)
//   renderPosts(document.querySelector('#posts'), blocks)

export { Loader, PeerSet, PeerError } from './loader.js'
export { renderPosts, decodeJsonOrText } from './render.js'
export {
  VerifyError, verifyHead, verifyRange, decodeRangeProof, rangeRoots, verifierFor, verifySignature,
  decodeManifest, encodeManifest, manifestHash, leafHash, parentHash, treeHash, fromHex, toHex
} from './verify.js'
export { useEngine as useEd25519Engine, engineName as ed25519EngineName } from './ed25519.js'
