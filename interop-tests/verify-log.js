#!/usr/bin/env node
'use strict'

// JS verifies a log made by someone else (the Rust side).
//
//   node interop-tests/verify-log.js FILE.json [--expect-reject] [--verbose]
//
// FILE.json has the shape of one entry of fixtures/hypercore-*/cores.json
// (a bare core object, or {"cores": [...]} / {"core": {...}} with exactly one
// core, or --core NAME to pick one). The real hypercore 11 package accepts it
// the way a replicating peer would: for every proof entry, the `data` hex is
// decoded as a wire `data` message and handed to hypercore's own verification
// path (Core#verify, or Core#verifyReorg + ReorgBatch#update + Core#reorg for
// a newer fork) in an empty Hypercore opened with only the key, in a temp dir.
// Afterwards length, fork, tree hash, signature and every held block are
// compared with the document. See lib/common.js replayDocument.
//
// Exit codes: 0 ok (or, with --expect-reject, JS rejected the document);
// 1 JS rejected it (or, with --expect-reject, JS accepted it);
// 2 usage error / unreadable or malformed document.

const fs = require('fs')
const { replayDocument, Rejection, DocError } = require('./lib/common')

function usage(msg) {
  if (msg) console.error('error: ' + msg)
  console.error('usage: node verify-log.js FILE.json [--expect-reject] [--core NAME] [--verbose]')
  process.exit(2)
}

function pickCore(json, name) {
  if (Array.isArray(json.cores)) {
    if (name) {
      const found = json.cores.find((c) => c.name === name)
      if (!found) usage('no core named ' + JSON.stringify(name))
      return found
    }
    if (json.cores.length !== 1) usage('document holds ' + json.cores.length + ' cores, pass --core NAME')
    return json.cores[0]
  }
  if (json.core && typeof json.core === 'object') return json.core
  return json
}

async function main() {
  const args = process.argv.slice(2)
  let file = null
  let expectReject = false
  let verbose = false
  let coreName = null

  for (let i = 0; i < args.length; i++) {
    const a = args[i]
    if (a === '--expect-reject') expectReject = true
    else if (a === '--verbose' || a === '-v') verbose = true
    else if (a === '--core') coreName = args[++i] || usage('--core needs a name')
    else if (a.startsWith('-')) usage('unknown option ' + a)
    else if (file === null) file = a
    else usage('more than one file given')
  }
  if (file === null) usage('no file given')

  let json
  try {
    json = JSON.parse(fs.readFileSync(file, 'utf8'))
  } catch (err) {
    usage('cannot read ' + file + ': ' + err.message)
  }

  const doc = pickCore(json, coreName)
  const log = verbose ? (line) => console.error(line) : null

  let result
  try {
    result = await replayDocument(doc, { log })
  } catch (err) {
    if (err instanceof DocError) usage('malformed document: ' + err.message)
    if (!(err instanceof Rejection)) {
      // anything else thrown from inside hypercore while verifying counts as
      // a rejection too, but say so
      err = new Rejection('unexpected error: ' + (err && err.stack ? err.stack : err))
    }
    if (expectReject) {
      console.log('ok: rejected as expected: ' + err.message)
      process.exit(0)
    }
    console.error('rejected: ' + err.message)
    process.exit(1)
  }

  if (expectReject) {
    console.error(
      'error: --expect-reject given but JS accepted the document (' +
        result.proofs + ' proofs verified, length ' + result.length + ')'
    )
    process.exit(1)
  }

  console.log('ok: ' + result.proofs + ' proofs verified, length ' + result.length)
  process.exit(0)
}

main()
