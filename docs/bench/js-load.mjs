// Sync load from UNMODIFIED automerge-repo 2.5 clients (the package clients/js installs), the
// same workload against FireMode's /v1/sync and against a reference sync server, so that the
// server CPU per edit can be compared side by side. Run from the repository root:
//
//   node docs/bench/js-load.mjs --target firemode --url http://127.0.0.1:18081 \
//     --email bench@example.test --password '...' --clients 20 --docs 10 --edits 100 \
//     --rate 0 --server-pid 1234
//   node docs/bench/js-load.mjs --target reference --url http://127.0.0.1:18082 ... (same)
//
// Documents: one per session, 20 items (FireMode builds them from a 20-asset building; for the
// reference, a seeding client pushes documents of the same shape, since that server only has
// what clients send). Client i works on document i mod D and edits its own item (so the two or
// more clients of a document never write the same field): it appends one character to the
// item's notes (a collaborative text, as a tablet's typing) per edit — in a burst (`--rate 0`:
// as fast as automerge-repo takes them) or at `--rate` edits per second. Edit-to-peer: from the
// edit to another client of the document seeing that many characters. At the end every client
// of a document must hold the same heads (converged), and the server must have every edit.
//
// Prints one JSON line: edits, seconds, edits/s, edit-to-peer p50/p95/p99, converged ms, server
// CPU ms per edit (utime+stime of --server-pid from /proc, over the edit phase and
// convergence), server RSS before/after loading the documents and KiB per loaded document.

import { readFileSync } from "node:fs"
import { setTimeout as sleep } from "node:timers/promises"
import { createRequire } from "node:module"

const require = createRequire(new URL("../../clients/js/package.json", import.meta.url))
const A = await import(require.resolve("@automerge/automerge"))
const { Repo, ImmutableString } = await import(require.resolve("@automerge/automerge-repo"))
const { WebSocketClientAdapter } = await import(require.resolve("@automerge/automerge-repo-network-websocket"))
const { FireModeClient } = await import("../../clients/js/src/firemode.mjs")

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith("--") ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
)
const target = args.target ?? "firemode"
const url = args.url ?? "http://127.0.0.1:18081"
const CLIENTS = Number(args.clients ?? 20)
const DOCS = Number(args.docs ?? 10)
const EDITS = Number(args.edits ?? 100)
const RATE = Number(args.rate ?? 0)
const PID = args["server-pid"] ? Number(args["server-pid"]) : undefined
const ITEMS = 20
// The WebSocket adapter's own default. With 1 s, a server slow to accept 100 sockets at once on
// a loaded core had clients dropping half-open sockets and dialling again in a loop.
const RETRY_MS = 5000
const TICKS = 100 // USER_HZ: /proc/<pid>/stat counts CPU time in 1/100 s on Linux

function cpuMs(pid) {
  if (!pid) return 0
  const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ")
  return ((Number(f[11]) + Number(f[12])) * 1000) / TICKS
}
function rssKiB(pid) {
  if (!pid) return 0
  const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))
  return m ? Number(m[1]) : 0
}
const pct = (xs, p) => {
  if (!xs.length) return null
  const s = [...xs].sort((a, b) => a - b)
  return Number(s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))].toFixed(2))
}

async function waitFor(what, cond, timeoutMs = 60_000) {
  const until = Date.now() + timeoutMs
  while (!(await cond())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`)
    await sleep(10)
  }
}

async function rest(method, path, token, body) {
  const r = await fetch(new URL(path, url), {
    method,
    headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${await r.text()}`)
  return r.status === 204 ? null : r.json()
}

/** FireMode: a building of 20 extinguishers and DOCS sessions; clients log in as the admin. */
async function firemodeSetup() {
  const login = await rest("POST", "/v1/auth/login", null, { email: args.email, password: args.password })
  const token = login.access_token
  const b = await rest("POST", "/v1/buildings", token, { name: "JS bench", address: "1 Bench St, Sydney NSW", building_type: "Class 5" })
  for (let i = 0; i < ITEMS; i++) {
    await rest("POST", `/v1/buildings/${b.id}/assets`, token, { asset_type: "portable_extinguisher", location: `Level ${i}`, identifier: `EXT-${i}` })
  }
  const docs = []
  for (let d = 0; d < DOCS; d++) {
    const s = await rest("POST", "/v1/tests/sessions", token, { building_id: b.id, name: `JS bench ${d}`, frequency: "six_monthly" })
    docs.push(s.document_url)
  }
  const clients = []
  for (let i = 0; i < CLIENTS; i++) {
    const c = new FireModeClient({ baseUrl: url, deviceId: `jsbench-${i}`, retryMs: RETRY_MS, autoRefresh: false })
    c.useTokens(login)
    clients.push({ repo: c.repo, close: () => c.close(), open: u => c.openSession(u) })
  }
  return { docs, clients }
}

/** The reference: a seeding client pushes DOCS documents of the same shape, then stays. */
async function referenceSetup() {
  const wsUrl = url.replace(/^http/, "ws")
  const newRepo = i => new Repo({ network: [new WebSocketClientAdapter(wsUrl, RETRY_MS)], peerId: `jsbench-${i}`, sharePolicy: async () => true })
  const seeder = newRepo("seed")
  const docs = []
  for (let d = 0; d < DOCS; d++) {
    const items = {}
    for (let i = 0; i < ITEMS; i++) {
      const id = crypto.randomUUID()
      items[id] = { assetId: new ImmutableString(id), ruleCode: new ImmutableString("AS1851-10-6M-EXT"), outcome: new ImmutableString("not_tested"), readings: {}, notes: "", evidence: [] }
    }
    const h = seeder.create({ schema: 1, sessionId: new ImmutableString(crypto.randomUUID()), frequency: new ImmutableString("six_monthly"), status: new ImmutableString("in_progress"), name: `JS bench ${d}`, items, notes: "" })
    docs.push(h.url)
  }
  // The server has them once a fresh client can fetch each. A server that gets the request
  // before the seeder's first sync message answers "unavailable" (samod does; a repo does not
  // ask again), so ask again with a fresh client until it has it.
  for (const u of docs) {
    for (let attempt = 1; ; attempt++) {
      const probe = newRepo(`probe-${attempt}`)
      await waitFor("the server to answer join", () => probe.peers.length > 0)
      const found = await probe.find(u).then(() => true, e => { if (attempt >= 50) throw e; return false })
      await probe.shutdown()
      if (found) break
      await sleep(200)
    }
  }
  const clients = []
  for (let i = 0; i < CLIENTS; i++) {
    const r = newRepo(i)
    clients.push({ repo: r, close: () => r.shutdown(), open: u => r.find(u) })
  }
  return { docs, clients, seeder }
}

const setup = target === "firemode" ? await firemodeSetup() : await referenceSetup()
const { docs, clients } = setup
// FireMode loaded each document to create it: let the hub unload them (2 s idle by default)
// so that the baseline holds none. (The allocator may keep some of that memory: the figure
// per loaded document is then low, never high.)
if (target === "firemode") await sleep(3000)
const rssBefore = rssKiB(PID)

// Every client waits for the server's answer to its join first: automerge-repo declares a
// document unavailable when no peer answered within 1 s (a server answering 100 joins at once
// on a loaded core can take longer), and that is not what is measured here.
await Promise.all(clients.map(c => waitFor("the server to answer join", () => c.repo.peers.length > 0)))
// Every client opens its document and picks its own item.
const handles = await Promise.all(clients.map((c, i) => c.open(docs[i % DOCS])))
const itemOf = handles.map((h, i) => Object.keys(h.doc().items).sort()[Math.floor(i / DOCS) % ITEMS])
await sleep(500)
const rssLoaded = rssKiB(PID)

// Edit-to-peer: send times per (client, n), and what each peer has seen of each client.
const sent = clients.map(() => [])
const latencies = []
const seen = clients.map(() => new Map())
handles.forEach((h, i) => {
  h.on("change", ({ doc }) => {
    const now = performance.now()
    for (let j = i % DOCS; j < CLIENTS; j += DOCS) {
      if (j === i) continue
      const n = (doc.items[itemOf[j]]?.notes ?? "").length
      const before = seen[i].get(j) ?? 0
      for (let k = before + 1; k <= n; k++) if (sent[j][k] !== undefined) latencies.push(now - sent[j][k])
      if (n > before) seen[i].set(j, n)
    }
  })
})

const cpu0 = cpuMs(PID)
const t0 = performance.now()
await Promise.all(
  handles.map(async (h, i) => {
    const start = performance.now()
    for (let n = 1; n <= EDITS; n++) {
      if (RATE > 0) {
        const due = start + ((n - 1) * 1000) / RATE
        const wait = due - performance.now()
        if (wait > 0) await sleep(wait)
      } else if (n % 10 === 0) {
        await sleep(0) // let the network run between bursts of ten
      }
      sent[i][n] = performance.now()
      h.change(d => {
        const notes = d.items[itemOf[i]].notes
        A.splice(d, ["items", itemOf[i], "notes"], notes.length, 0, "x")
      })
    }
  }),
)
const editPhase = performance.now() - t0

// Converged: every client of a document has every other client's edits and the same heads.
const t1 = performance.now()
await waitFor("convergence", () => {
  for (let d = 0; d < DOCS; d++) {
    const ours = handles.filter((_, i) => i % DOCS === d)
    const heads = ours.map(h => JSON.stringify([...A.getHeads(h.doc())].sort()))
    if (new Set(heads).size !== 1) return false
    for (const h of ours) {
      for (let j = d; j < CLIENTS; j += DOCS) if ((h.doc().items[itemOf[j]].notes ?? "").length !== EDITS) return false
    }
  }
  return true
}, 120_000)
const converged = performance.now() - t1
// The server has every edit: a fresh client fetches each document (FireMode: after commit).
await sleep(200)
const cpu1 = cpuMs(PID)
const total = CLIENTS * EDITS

console.log(JSON.stringify({
  target, clients: CLIENTS, docs: DOCS, edits_per_client: EDITS, rate: RATE, edits: total,
  seconds: Number(((editPhase + converged) / 1000).toFixed(2)),
  edits_per_s: Math.round(total / ((editPhase + converged) / 1000)),
  edit_to_peer_ms: { p50: pct(latencies, 50), p95: pct(latencies, 95), p99: pct(latencies, 99), n: latencies.length },
  converged_ms: Math.round(converged),
  server_cpu_ms_per_edit: PID ? Number(((cpu1 - cpu0) / total).toFixed(3)) : null,
  server_rss_kib: { before_docs: rssBefore, docs_loaded: rssLoaded, after: rssKiB(PID) },
  kib_per_loaded_doc: PID ? Math.round((rssLoaded - rssBefore) / DOCS) : null,
}))
await Promise.all(clients.map(c => c.close()))
if (setup.seeder) await setup.seeder.shutdown()
process.exit(0)
