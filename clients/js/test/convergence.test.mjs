// Convergence under churn (issue 4, "Done when"): several real automerge-repo clients make
// random concurrent edits to shared sessions, drop off and come back at random, and the server
// is restarted in the middle (by the Rust side, tests/e2e/convergence.rs, on the same database
// and port, when this side asks for it). At the end every client and the server hold the same
// documents, and every edit any client made is in the server's copy: each edit appends its id
// ("[c1-17]") to the item's notes, a collaborative text, so none can be overwritten by another.

import { test } from "node:test"
import assert from "node:assert/strict"
import { existsSync, writeFileSync } from "node:fs"
import { join } from "node:path"

import { recordResult } from "../src/firemode.mjs"
import { converged, loadFixture, plain, randomResult, rng, serverDocument, sleep, tablet, waitFor, writeOutput } from "./helpers.mjs"

const fx = loadFixture()


test("random concurrent edits, random disconnects and a server restart converge", async t => {
  const random = rng(fx.seed)
  const pick = xs => xs[Math.floor(random() * xs.length)]
  console.log(`seed ${fx.seed}: ${fx.clients.length} clients, ${fx.sessions.length} sessions, ${fx.duration_ms} ms`)

  const clients = fx.clients.map((c, i) => ({
    name: `c${i}`,
    fm: tablet(fx, fx.users[c.user], c.device),
    handles: {},
    edits: [],
    online: true,
    disconnects: 0,
  }))
  const timers = new Set()
  t.after(() => {
    for (const timer of timers) clearTimeout(timer)
    return Promise.all(clients.map(c => c.fm.close()))
  })
  for (const c of clients) {
    for (const s of fx.sessions) c.handles[s.id] = await c.fm.openSession(s.document_url)
  }

  const control = process.env.FIREMODE_CONTROL
  const start = Date.now()
  let restarted = false

  // The restart, mid-run: ask the Rust side, keep editing meanwhile, note when it is done.
  const restart = (async () => {
    await sleep(fx.duration_ms * 0.4)
    writeFileSync(join(control, "restart-request"), "")
    await waitFor("the server restart", () => existsSync(join(control, "restart-done")), { timeoutMs: 30_000 })
    restarted = true
    console.log(`server restarted at ${Date.now() - start} ms`)
  })()

  // Edit for the fixture's duration, and on a starved machine (fewer edits in that time) on
  // until `min_edits` were made, within four times the duration.
  let made = 0
  const editing = () => {
    const t = Date.now() - start
    return t < fx.duration_ms || (made < (fx.min_edits ?? 0) && t < 4 * fx.duration_ms)
  }
  async function run(c) {
    let n = 0
    while (editing()) {
      made++
      const s = pick(fx.sessions)
      const asset = pick(fx.assets)
      const id = `${c.name}-${++n}`
      const h = c.handles[s.id]
      const r = randomResult(random, id)
      recordResult(h, asset, r)
      c.edits.push({ id, session: s.id, asset })

      if (c.online && random() < 0.04) {
        c.online = false
        c.disconnects++
        c.fm.goOffline()
        const back = 50 + random() * 500
        const timer = setTimeout(() => {
          timers.delete(timer)
          c.fm.goOnline()
          c.online = true
        }, back)
        timers.add(timer)
      }
      await sleep(5 + random() * 40)
    }
  }
  await Promise.all(clients.map(run))
  await restart
  assert.ok(restarted)
  // Let the last random disconnects end.
  await waitFor("every client back online", () => clients.every(c => c.online))

  const total = clients.reduce((n, c) => n + c.edits.length, 0)
  console.log(`${total} edits, ${clients.reduce((n, c) => n + c.disconnects, 0)} random disconnects`)

  const sessions = {}
  for (const s of fx.sessions) {
    const handles = clients.map(c => c.handles[s.id])
    const heads = await converged(fx, s.id, handles, { timeoutMs: 20_000 })
    const server = await serverDocument(fx, s.id)
    for (const c of clients) {
      assert.deepEqual(plain(c.handles[s.id].doc()), server.document, `${c.name} holds the server's document ${s.id}`)
    }
    sessions[s.id] = { heads, document: server.document }
  }

  // No edit is missing: every id is in its item's notes on the server.
  const missing = []
  for (const c of clients) {
    for (const e of c.edits) {
      const notes = sessions[e.session].document.items[e.asset].notes
      if (!notes.includes(`[${e.id}]`)) missing.push(e.id)
    }
  }
  assert.deepEqual(missing, [], "edits missing from the server's documents")

  writeOutput("convergence", {
    sessions,
    edits: clients.flatMap(c => c.edits),
    total,
  })
})
