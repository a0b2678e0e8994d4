// JS tablets under the `kill -9` loop (driven by tests/e2e/attack.rs, `kill9_loop`): unmodified
// automerge-repo clients, each editing its own session document one change after another,
// until the Rust side has killed the server with SIGKILL and says "stop" (a file in
// FIREMODE_CONTROL). What counts as acknowledged is what docs/protocol.md promises: a change
// the client has seen in the server's heads is stored. automerge-repo keeps the heads the
// server last announced for each document per storage id (`handle.getSyncInfo(storageId)`, the
// storage id the server gave in its `peer` message); the history is linear (one writer per
// document), so the server's heads are one of the states this tablet went through, and every
// change up to that state is acknowledged. The Rust side checks, after the restart, that each
// acknowledged change is in the document.

import { test } from "node:test"
import assert from "node:assert/strict"
import { existsSync, renameSync, writeFileSync } from "node:fs"
import { join } from "node:path"

import * as A from "@automerge/automerge"
import { decodeHeads, ImmutableString } from "@automerge/automerge-repo"

import { loadFixture, sleep, tablet, writeOutput } from "./helpers.mjs"

const fx = loadFixture()
const control = process.env.FIREMODE_CONTROL ?? "."
// "stop" from the Rust side; also when its control folder is gone (the Rust test ended
// without saying so) or after two minutes, so that no tablet outlives its test.
const started = Date.now()
const stopped = () => existsSync(join(control, "stop")) || !existsSync(control) || Date.now() - started > 120_000
const key = heads => [...heads].sort().join(",")

/** The heads the server last announced for this tablet's document, as hex hashes. */
function serverHeads(t) {
  const meta = Object.values(t.fm.repo?.peerMetadataByPeerId ?? {}).find(m => m?.storageId)
  const info = meta && t.handle.getSyncInfo(meta.storageId)
  return info ? decodeHeads(info.lastHeads) : undefined
}

function noteAcks(t) {
  const heads = serverHeads(t)
  const state = heads && t.states.get(key(heads))
  if (state && state.edits > t.ackedEdits) {
    t.ackedEdits = state.edits
    t.ackedHeads = state.heads
  }
}

test("JS tablets edit until the server is killed; what they saw acknowledged is reported", async () => {
  const tablets = fx.tablets.map(tb => ({
    ...tb,
    fm: tablet(fx, fx.user, tb.device, { retryMs: 500 }),
    handle: undefined,
    states: new Map(),
    edits: 0,
    ackedEdits: 0,
    ackedHeads: [],
  }))
  for (const t of tablets) t.handle = await t.fm.openSession(t.document_url)
  const progress = () => {
    // Written whole, then renamed: the Rust side never reads half a file.
    const tmp = join(control, "progress.tmp")
    writeFileSync(tmp, JSON.stringify(tablets.map(t => t.ackedEdits)))
    renameSync(tmp, join(control, "progress"))
  }
  await Promise.all(
    tablets.map(async t => {
      while (!stopped()) {
        t.handle.change(d => {
          d.items[t.asset].observedCondition = new ImmutableString(`js-${fx.cycle}-${t.device}-${t.edits}`)
        })
        t.edits += 1
        const heads = A.getHeads(t.handle.doc())
        t.states.set(key(heads), { edits: t.edits, heads })
        // Give the change time to travel and the answer to come back, noting acks meanwhile.
        for (let i = 0; i < 4 && !stopped(); i++) {
          await sleep(10)
          noteAcks(t)
        }
        progress()
      }
      noteAcks(t)
    }),
  )
  writeOutput(
    "tablets",
    tablets.map(t => ({
      document_url: t.document_url,
      device: t.device,
      edits: t.edits,
      acked_edits: t.ackedEdits,
      acked_heads: t.ackedHeads,
    })),
  )
  for (const t of tablets) {
    assert.ok(t.edits > 0, `${t.device} made no edit`)
    // The server is gone: shutting the repo down must not wait for it.
    await Promise.race([t.fm.close(), sleep(2000)])
  }
  // The adapters keep dialling the dead server (their retry timers are not ours to cancel):
  // end the process once the result has been reported.
  setTimeout(() => process.exit(0), 500)
})
