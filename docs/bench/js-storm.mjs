// The morning reconnect storm, with UNMODIFIED automerge-repo 2.5 tablets (clients/js):
// TABLETS tablets, each with its own on-device storage (an in-memory storage adapter per
// tablet, as IndexedDB would be), open their sessions (SESSIONS sessions, several tablets per
// session), go offline, each makes EDITS edits offline, and all reconnect within one second
// (each at a random moment of that second).
//
// The tablets that stay online meanwhile run in a process of their own, docs/bench/js-online.mjs
// (in this process, the storm tablets' event loop delayed them by hundreds of milliseconds):
// start it first, wait for its --ready-file, and pass its pid and report file here; this
// script tells it when the quiet 5 s before the storm and the storm begin (SIGUSR2) and ends
// (SIGTERM: at convergence), then includes its report. docs/bench/side-by-side.sh
// (WORKLOADS=storm) does all of that:
//
//   node docs/bench/js-online.mjs --url http://127.0.0.1:18081 --email … --password … \
//     --online 20 --ready-file /tmp/on.ready --report /tmp/on.json &
//   node docs/bench/js-storm.mjs --url http://127.0.0.1:18081 --email … --password … \
//     --tablets 1000 --sessions 500 --edits 5 --server-pid 1234 \
//     --online-pid $! --online-report /tmp/on.json
//
// Prints one JSON line: time from the first reconnect until every session's tablets and the
// server agree (converged: the same heads everywhere, every offline edit present), the server's
// CPU seconds, the seconds its threads waited for a CPU, and its peak RSS over the storm (/proc), and the online tablets' report (edit-to-peer
// p50/p99 before and during the storm). Tablets cut off by the server for being slow are
// counted from the server log (`--server-log`, lines "slow or closed connection dropped").

import { existsSync, readFileSync, readdirSync } from "node:fs"
import { setTimeout as sleep } from "node:timers/promises"
import { createRequire } from "node:module"

const require = createRequire(new URL("../../clients/js/package.json", import.meta.url))
const A = await import(require.resolve("@automerge/automerge"))
const { FireModeClient } = await import("../../clients/js/src/firemode.mjs")

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith("--") ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
)
const url = args.url ?? "http://127.0.0.1:18081"
const TABLETS = Number(args.tablets ?? 1000)
const SESSIONS = Number(args.sessions ?? 500)
const EDITS = Number(args.edits ?? 5)
const ONLINE_PID = args["online-pid"] ? Number(args["online-pid"]) : undefined
const PID = args["server-pid"] ? Number(args["server-pid"]) : undefined
const ITEMS = 20

/** On-device storage: what automerge-repo's IndexedDB adapter keeps, in memory. */
class DeviceStorage {
  constructor() {
    this.data = new Map()
  }
  async load(key) {
    return this.data.get(key.join("/"))
  }
  async save(key, value) {
    this.data.set(key.join("/"), value)
  }
  async remove(key) {
    this.data.delete(key.join("/"))
  }
  async loadRange(prefix) {
    const p = prefix.join("/")
    return [...this.data].filter(([k]) => k.startsWith(p)).map(([k, data]) => ({ key: k.split("/"), data }))
  }
  async removeRange(prefix) {
    const p = prefix.join("/")
    for (const k of [...this.data.keys()]) if (k.startsWith(p)) this.data.delete(k)
  }
}

const stat = pid => readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ")
const cpuS = pid => (pid ? (Number(stat(pid)[11]) + Number(stat(pid)[12])) / 100 : 0)
// Time the server's threads were ready to run but waited for a CPU (the run queue), summed
// over its threads (/proc/<pid>/task/*/schedstat, second field, ns): on a shared machine, what
// the server lost to other processes. (Threads that ended meanwhile are not counted.)
const runQueueWaitS = pid => {
  if (!pid) return 0
  let ns = 0
  for (const t of readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${t}/schedstat`, "utf8").split(" ")[1])
    } catch {
      // the thread ended
    }
  }
  return ns / 1e9
}
const rssMiB = pid => {
  if (!pid) return 0
  const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))
  return m ? Number(m[1]) / 1024 : 0
}
async function rest(method, path, token, body) {
  const r = await fetch(new URL(path, url), {
    method,
    headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${await r.text()}`)
  return r.json()
}

const login = await rest("POST", "/v1/auth/login", null, { email: args.email, password: args.password })
const token = login.access_token
const b = await rest("POST", "/v1/buildings", token, { name: "Storm", address: "1 Storm St, Sydney NSW", building_type: "Class 5" })
for (let i = 0; i < ITEMS; i++) {
  await rest("POST", `/v1/buildings/${b.id}/assets`, token, { asset_type: "portable_extinguisher", location: `Level ${i}`, identifier: `EXT-${i}` })
}
const sessions = []
for (let s = 0; s < SESSIONS; s++) {
  sessions.push((await rest("POST", "/v1/tests/sessions", token, { building_id: b.id, name: `Storm ${s}`, frequency: "six_monthly" })).document_url)
}
const tablet = i => {
  const c = new FireModeClient({ baseUrl: url, deviceId: `storm-${i}`, retryMs: 1000, autoRefresh: false, storage: new DeviceStorage() })
  c.useTokens(login)
  return c
}
// A tablet opens its session once the server answered its join: automerge-repo declares a
// document unavailable when no peer answered within 1 s, which a server answering 50 joins at
// once on a loaded core can exceed (setup, not what is measured).
async function whenConnected(c) {
  const until = performance.now() + 60_000
  while (c.repo.peers.length === 0) {
    if (performance.now() > until) throw new Error("the server did not answer join within 60 s")
    await sleep(20)
  }
  return c
}

// The storm's tablets: open their session (synced), then go offline.
const storm = []
for (let i = 0; i < TABLETS; i += 50) {
  const batch = []
  for (let j = i; j < Math.min(TABLETS, i + 50); j++) {
    batch.push(whenConnected(tablet(j)).then(c => c.openSession(sessions[j % SESSIONS]).then(h => ({ c, h, session: j % SESSIONS }))))
  }
  storm.push(...(await Promise.all(batch)))
}
await sleep(1000)
for (const t of storm) t.c.goOffline()
const itemOf = (t, i) => Object.keys(t.h.doc().items).sort()[Math.floor(i / SESSIONS) % ITEMS]
storm.forEach((t, i) => {
  for (let n = 0; n < EDITS; n++) {
    t.h.change(d => A.splice(d, ["items", itemOf(t, i), "notes"], d.items[itemOf(t, i)].notes.length, 0, "o"))
  }
})

// The online tablets (their own process): measure a quiet 5 s before the storm.
const nextPhase = () => ONLINE_PID && process.kill(ONLINE_PID, "SIGUSR2")
nextPhase()
await sleep(5000)

// The storm: every offline tablet reconnects within one second.
nextPhase()
const cpu0 = cpuS(PID)
const wait0 = runQueueWaitS(PID)
let peak = rssMiB(PID)
const sampler = setInterval(() => (peak = Math.max(peak, rssMiB(PID))), 50)
const t0 = performance.now()
for (const t of storm) setTimeout(() => t.c.goOnline(), Math.random() * 1000)

// Converged: for every session, each of its storm tablets has every storm tablet's edits of
// that session, and they all hold the same heads.
const bySession = new Map()
for (const [i, t] of storm.entries()) {
  if (!bySession.has(t.session)) bySession.set(t.session, [])
  bySession.get(t.session).push([i, t])
}
const done = () => {
  for (const group of bySession.values()) {
    const heads = new Set(group.map(([, t]) => JSON.stringify([...A.getHeads(t.h.doc())].sort())))
    if (heads.size !== 1) return false
    const doc = group[0][1].h.doc()
    for (const [i, t] of group) if ((doc.items[itemOf(t, i)].notes ?? "").length < EDITS) return false
  }
  return true
}
const deadline = t0 + 120_000
while (!done() && performance.now() < deadline) await sleep(20)
const convergedMs = performance.now() - t0
const converged = done()
if (ONLINE_PID) process.kill(ONLINE_PID, "SIGTERM")
await sleep(1000)
clearInterval(sampler)
const cpu1 = cpuS(PID)
const wait1 = runQueueWaitS(PID)
let slowCuts = null
if (args["server-log"]) {
  slowCuts = readFileSync(args["server-log"], "utf8").split("\n").filter(l => l.includes("slow or closed connection dropped")).length
}
// The online tablets write their report 2 s after SIGTERM (receipts still in flight).
let online = null
if (args["online-report"]) {
  const until = performance.now() + 15_000
  while (!existsSync(args["online-report"]) && performance.now() < until) await sleep(100)
  online = existsSync(args["online-report"]) ? JSON.parse(readFileSync(args["online-report"], "utf8")) : { failed: "no report from the online tablets" }
}
console.log(JSON.stringify({
  tablets: TABLETS, sessions: SESSIONS, edits_per_tablet: EDITS,
  converged, converged_ms: Math.round(convergedMs),
  server_cpu_s: Number((cpu1 - cpu0).toFixed(2)), server_runqueue_wait_s: Number((wait1 - wait0).toFixed(2)),
  server_peak_rss_mib: Math.round(peak),
  slow_cuts: slowCuts,
  online,
}))
await Promise.all(storm.map(t => t.c.close()))
process.exit(converged ? 0 : 1)
