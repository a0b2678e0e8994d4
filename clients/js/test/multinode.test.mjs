// Several nodes, one truth (driven by tests/e2e/multinode.rs): unmodified automerge-repo
// clients spread over three FireMode nodes that share one PostgreSQL database make random
// concurrent edits at mixed rates, with random disconnects. Mid-run the Rust side kills one
// node with SIGKILL (and restarts it); that node's clients move to another node and carry on.
// At the end every client and every node hold the same documents, and every edit any client
// made is in them: each edit appends its id ("[c1-17]") to an item's notes, a collaborative
// text, so no edit can hide another.

import { test } from "node:test"
import assert from "node:assert/strict"
import { existsSync, writeFileSync } from "node:fs"
import { join } from "node:path"

import { recordResult } from "../src/firemode.mjs"
import { loadFixture, plain, randomResult, rng, sameHeads, serverDocument, sleep, tablet, waitFor, writeOutput } from "./helpers.mjs"

const fx = loadFixture()


test("clients on three nodes, a node killed mid-run: every node and client converge with every edit", async t => {
  const random = rng(fx.seed)
  const pick = xs => xs[Math.floor(random() * xs.length)]
  const nodeFx = n => ({ ...fx, base_url: fx.nodes[n] })
  console.log(`seed ${fx.seed}: ${fx.clients.length} clients on ${fx.nodes.length} nodes, ${fx.sessions.length} sessions`)

  const clients = fx.clients.map((c, i) => ({
    name: `c${i}`,
    node: c.node,
    // Mixed rates: some tablets edit in bursts, some every few hundred milliseconds.
    pauseMs: c.pause_ms,
    fm: tablet(nodeFx(c.node), fx.users[c.user], c.device),
    handles: {},
    edits: [],
    online: true,
    disconnects: 0,
    moved: false,
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
  let killed = false

  // The kill, mid-run: ask the Rust side; when it is done, the killed node's clients move on.
  const kill = (async () => {
    await sleep(fx.duration_ms * 0.4)
    writeFileSync(join(control, "kill-request"), "")
    await waitFor("the node kill", () => existsSync(join(control, "kill-done")), { timeoutMs: 30_000 })
    killed = true
    for (const c of clients) {
      if (c.node !== fx.kill_node) continue
      c.node = (fx.kill_node + 1) % fx.nodes.length
      c.fm.baseUrl = fx.nodes[c.node]
      c.moved = true
      if (c.online) c.fm.reconnect()
    }
    console.log(`node ${fx.kill_node} killed at ${Date.now() - start} ms; its clients moved`)
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
      const r = randomResult(random, id)
      recordResult(c.handles[s.id], asset, r)
      c.edits.push({ id, session: s.id, asset })

      if (c.online && random() < 0.03) {
        c.online = false
        c.disconnects++
        c.fm.goOffline()
        const back = 50 + random() * 400
        const timer = setTimeout(() => {
          timers.delete(timer)
          c.fm.goOnline()
          c.online = true
        }, back)
        timers.add(timer)
      }
      await sleep(c.pauseMs * (0.5 + random()))
    }
  }
  await Promise.all(clients.map(run))
  await kill
  assert.ok(killed)
  await waitFor("every client back online", () => clients.every(c => c.online))

  const total = clients.reduce((n, c) => n + c.edits.length, 0)
  console.log(`${total} edits, ${clients.reduce((n, c) => n + c.disconnects, 0)} random disconnects`)

  // Every client and every node (the restarted one too) converge on each session.
  const sessions = {}
  for (const s of fx.sessions) {
    let final
    await waitFor(
      `clients and all nodes converge on session ${s.id}`,
      async () => {
        const docs = []
        for (let n = 0; n < fx.nodes.length; n++) docs.push(await serverDocument(nodeFx(n), s.id))
        final = docs[0]
        return (
          docs.every(d => sameHeads(d.heads, final.heads)) &&
          clients.every(c => sameHeads(c.handles[s.id].heads(), final.heads))
        )
      },
      { timeoutMs: 30_000, everyMs: 100 },
    )
    for (const c of clients) {
      assert.deepEqual(plain(c.handles[s.id].doc()), final.document, `${c.name} holds the nodes' document ${s.id}`)
    }
    sessions[s.id] = { heads: final.heads, document: final.document }
  }

  const missing = []
  for (const c of clients) {
    for (const e of c.edits) {
      const notes = sessions[e.session].document.items[e.asset].notes
      if (!notes.includes(`[${e.id}]`)) missing.push(e.id)
    }
  }
  assert.deepEqual(missing, [], "edits missing from the nodes' documents")

  writeOutput("multinode", { sessions, edits: clients.flatMap(c => c.edits), total })
})
