// The tablets that are already online during the morning reconnect storm, in a Node process of
// their own (docs/bench/js-storm.mjs runs the reconnecting tablets): with the 1,000 storm
// tablets in the same process, their event loop delayed these tablets' edits and receipts by
// hundreds of milliseconds, and the figure measured the generator, not the server.
//
// ONLINE unmodified automerge-repo 2.5 tablets (clients/js), in pairs on sessions of their own
// (created here over REST), each edit RATE times a second (appending to its own item's notes);
// edit-to-peer = from the edit to the other tablet of the pair seeing it. Run from the
// repository root; docs/bench/side-by-side.sh (WORKLOADS=storm) starts it beside js-storm.mjs:
//
//   node docs/bench/js-online.mjs --url http://127.0.0.1:18081 --email … --password … \
//     --online 20 --rate 1 --ready-file /tmp/online.ready --report /tmp/online.json
//
// Phases, switched by signals (js-storm.mjs --online-pid sends them; SIGUSR1 is Node's
// debugger signal, so SIGUSR2 steps through the phases):
//   (start)      connecting and editing; not measured
//   1st SIGUSR2  "before": the storm tablets are offline and idle
//   2nd SIGUSR2  "during": from the first reconnect until every session converged
//   SIGTERM      stop editing, wait 2 s for receipts still in flight, write the report, exit
// An edit counts in the phase in which it was made. Edits of a phase never seen by the peer by
// the end are counted as `lost`. The report (one JSON line, to --report and stdout) also gives
// this process's own event-loop delay p99 per phase (node:perf_hooks): how late this process
// itself ran, which would show up in the latency without being the server's doing.

import { renameSync, writeFileSync } from "node:fs"
import { setTimeout as sleep } from "node:timers/promises"
import { monitorEventLoopDelay } from "node:perf_hooks"
import { createRequire } from "node:module"

const require = createRequire(new URL("../../clients/js/package.json", import.meta.url))
const A = await import(require.resolve("@automerge/automerge"))
const { FireModeClient } = await import("../../clients/js/src/firemode.mjs")

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith("--") ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
)
const url = args.url ?? "http://127.0.0.1:18081"
const ONLINE = Number(args.online ?? 20)
const RATE = Number(args.rate ?? 1)
const ITEMS = 20
if (!(ONLINE >= 2 && ONLINE % 2 === 0)) throw new Error("--online must be an even number ≥ 2 (tablets work in pairs)")
if (!(RATE > 0)) throw new Error("--rate must be > 0 edits per second")

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

// Signals may come before setup is done: the phase is a plain variable from the start.
let phase = "setup"
const loopDelay = monitorEventLoopDelay({ resolution: 10 })
const delays = {}
const switchTo = next => {
  if (phase !== "setup" && phase !== "stopped") delays[phase] = loopDelay.percentile(99) / 1e6
  loopDelay.reset()
  phase = next
}
let stop
const stopped = new Promise(resolve => (stop = resolve))
process.on("SIGUSR2", () => switchTo(phase === "setup" ? "before" : "during"))
process.on("SIGTERM", () => stop())

const login = await rest("POST", "/v1/auth/login", null, { email: args.email, password: args.password })
const token = login.access_token
const b = await rest("POST", "/v1/buildings", token, { name: "Online tablets", address: "2 Storm St, Sydney NSW", building_type: "Class 5" })
for (let i = 0; i < ITEMS; i++) {
  await rest("POST", `/v1/buildings/${b.id}/assets`, token, { asset_type: "portable_extinguisher", location: `Level ${i}`, identifier: `ON-${i}` })
}
const sessions = []
for (let s = 0; s < ONLINE / 2; s++) {
  sessions.push((await rest("POST", "/v1/tests/sessions", token, { building_id: b.id, name: `Online ${s}`, frequency: "six_monthly" })).document_url)
}
const online = []
for (let i = 0; i < ONLINE; i++) {
  const c = new FireModeClient({ baseUrl: url, deviceId: `online-${i}`, retryMs: 1000, autoRefresh: false })
  c.useTokens(login)
  // Open once the server answered join (automerge-repo gives up on a document after 1 s without
  // a peer).
  for (const until = performance.now() + 60_000; c.repo.peers.length === 0; ) {
    if (performance.now() > until) throw new Error("the server did not answer join within 60 s")
    await sleep(20)
  }
  const h = await c.openSession(sessions[Math.floor(i / 2)])
  online.push({ c, h, item: Object.keys(h.doc().items).sort()[i % 2] })
}

// sent[i][n] = { t, phase } of tablet i's n-th edit; seen by its peer i ^ 1.
const sent = online.map(() => [])
const lat = { before: [], during: [] }
const received = { before: 0, during: 0 }
online.forEach((t, i) => {
  const peer = i ^ 1
  let seen = 0
  t.h.on("change", ({ doc }) => {
    const now = performance.now()
    const n = (doc.items[online[peer].item]?.notes ?? "").length
    for (let k = seen + 1; k <= n; k++) {
      const e = sent[peer][k]
      if (e && e.phase in lat) {
        lat[e.phase].push(now - e.t)
        received[e.phase]++
      }
    }
    if (n > seen) seen = n
  })
})

let ticking = true
const ticker = (async () => {
  const start = performance.now()
  for (let n = 1; ticking; n++) {
    online.forEach((t, i) => {
      sent[i][n] = { t: performance.now(), phase }
      t.h.change(d => A.splice(d, ["items", t.item, "notes"], d.items[t.item].notes.length, 0, "l"))
    })
    const wait = start + (n * 1000) / RATE - performance.now()
    if (wait > 0) await sleep(wait)
  }
})()
loopDelay.enable()
if (args["ready-file"]) writeFileSync(args["ready-file"], `${process.pid}\n`)

await stopped
ticking = false
await ticker
switchTo("stopped")
await sleep(2000)
const made = { before: 0, during: 0 }
for (const edits of sent) for (const e of edits) if (e && e.phase in made) made[e.phase]++
const summary = ph => ({
  p50: pct(lat[ph], 50),
  p99: pct(lat[ph], 99),
  max: lat[ph].length ? Number(Math.max(...lat[ph]).toFixed(2)) : null,
  n: lat[ph].length,
  lost: made[ph] - received[ph],
  event_loop_delay_p99_ms: delays[ph] === undefined ? null : Number(delays[ph].toFixed(2)),
})
const report = JSON.stringify({ online_tablets: ONLINE, rate: RATE, before: summary("before"), during: summary("during") })
if (args.report) {
  // Whole or not at all: js-storm.mjs reads it as soon as it exists.
  writeFileSync(`${args.report}.tmp`, report + "\n")
  renameSync(`${args.report}.tmp`, args.report)
}
console.log(report)
await Promise.all(online.map(t => t.c.close()))
process.exit(0)
