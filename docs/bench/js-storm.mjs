// The morning reconnect storm, with UNMODIFIED automerge-repo 2.5 tablets (clients/js):
// TABLETS tablets, each with its own on-device storage (an in-memory storage adapter per
// tablet, as IndexedDB would be), open their sessions (SESSIONS sessions, several tablets per
// session), go offline, each makes EDITS edits offline, and all reconnect within one second
// (each at a random moment of that second). Meanwhile ONLINE other tablets stay connected and
// edit once a second; their edit-to-peer latency is measured before and during the storm.
//
//   node docs/bench/js-storm.mjs --url http://127.0.0.1:18081 --email … --password … \
//     --tablets 1000 --sessions 500 --edits 5 --online 20 --server-pid 1234
//
// Prints one JSON line: time from the first reconnect until every session's tablets and the
// server agree (converged: the same heads everywhere, every offline edit present), the server's
// CPU seconds and peak RSS over the storm (/proc), and the online tablets' edit-to-peer p50/p99
// before and during the storm. Tablets cut off by the server for being slow are counted from
// the server log (`--server-log`, lines "slow or closed connection dropped").

import { readFileSync } from "node:fs"
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
const ONLINE = Number(args.online ?? 20)
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
const rssMiB = pid => {
  if (!pid) return 0
  const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))
  return m ? Number(m[1]) / 1024 : 0
}
const pct = (xs, p) => {
  if (!xs.length) return null
  const s = [...xs].sort((a, b) => a - b)
  return Number(s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))].toFixed(2))
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
for (let s = 0; s < SESSIONS + Math.ceil(ONLINE / 2); s++) {
  sessions.push((await rest("POST", "/v1/tests/sessions", token, { building_id: b.id, name: `Storm ${s}`, frequency: "six_monthly" })).document_url)
}
const tablet = i => {
  const c = new FireModeClient({ baseUrl: url, deviceId: `storm-${i}`, retryMs: 1000, autoRefresh: false, storage: new DeviceStorage() })
  c.useTokens(login)
  return c
}

// The storm's tablets: open their session (synced), then go offline.
const storm = []
for (let i = 0; i < TABLETS; i += 50) {
  const batch = []
  for (let j = i; j < Math.min(TABLETS, i + 50); j++) {
    const c = tablet(j)
    batch.push(c.openSession(sessions[j % SESSIONS]).then(h => ({ c, h, session: j % SESSIONS })))
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

// The online tablets: pairs on their own sessions, one edit per second each.
const online = []
for (let i = 0; i < ONLINE; i++) {
  const c = tablet(TABLETS + i)
  const h = await c.openSession(sessions[SESSIONS + Math.floor(i / 2)])
  online.push({ c, h })
}
const lat = { before: [], during: [] }
let phase = "before"
const sent = online.map(() => [])
online.forEach((t, i) => {
  const peer = i ^ 1
  if (peer >= ONLINE) return
  let seen = 0
  const item = Object.keys(t.h.doc().items).sort()[peer % 2]
  t.h.on("change", ({ doc }) => {
    const n = (doc.items[item]?.notes ?? "").length
    for (let k = seen + 1; k <= n; k++) if (sent[peer][k] !== undefined) lat[phase].push(performance.now() - sent[peer][k])
    if (n > seen) seen = n
  })
})
let ticking = true
const ticker = (async () => {
  let n = 0
  while (ticking) {
    n++
    online.forEach((t, i) => {
      const item = Object.keys(t.h.doc().items).sort()[i % 2]
      sent[i][n] = performance.now()
      t.h.change(d => A.splice(d, ["items", item, "notes"], d.items[item].notes.length, 0, "l"))
    })
    await sleep(1000)
  }
})()
await sleep(5000)

// The storm: every offline tablet reconnects within one second.
phase = "during"
const cpu0 = cpuS(PID)
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
await sleep(1000)
clearInterval(sampler)
ticking = false
await ticker
const cpu1 = cpuS(PID)
let slowCuts = null
if (args["server-log"]) {
  slowCuts = readFileSync(args["server-log"], "utf8").split("\n").filter(l => l.includes("slow or closed connection dropped")).length
}
console.log(JSON.stringify({
  tablets: TABLETS, sessions: SESSIONS, edits_per_tablet: EDITS, online_tablets: ONLINE,
  converged, converged_ms: Math.round(convergedMs),
  server_cpu_s: Number((cpu1 - cpu0).toFixed(2)), server_peak_rss_mib: Math.round(peak),
  slow_cuts: slowCuts,
  online_edit_to_peer_ms: {
    before: { p50: pct(lat.before, 50), p99: pct(lat.before, 99), n: lat.before.length },
    during: { p50: pct(lat.during, 50), p99: pct(lat.during, 99), n: lat.during.length },
  },
}))
await Promise.all([...storm, ...online].map(t => t.c.close()))
process.exit(converged ? 0 : 1)
