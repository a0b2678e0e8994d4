// PostgreSQL restarted under load: what clients see, and that nothing acknowledged is lost.
//
//   node docs/bench/pg-restart.mjs <base url> <admin email> <admin password> [clients] [seconds]
//
// Run from the repository root against a `firemode serve` on PostgreSQL (see the section in
// docs/benchmarks.md), as a user allowed to run `pg_ctlcluster`. Unmodified automerge-repo
// tablets (clients/js) edit one session at 5 edits/s each while an office user posts REST
// results every 250 ms; at 40 % of the run the script restarts PostgreSQL. It prints what the
// clients saw (sync disconnects, REST answers by status) and checks, once everything has
// reconnected, that every tablet edit and every acknowledged REST write is in the server's
// document. Not part of the test suite: it restarts the machine's PostgreSQL.

import { exec, execSync } from "node:child_process"
import { promisify } from "node:util"
import { randomUUID } from "node:crypto"
import { setTimeout as sleep } from "node:timers/promises"

import { FireModeClient, recordResult } from "../../clients/js/src/firemode.mjs"

const [base, email, password, nClients = "20", seconds = "20"] = process.argv.slice(2)
if (!password) throw new Error("usage: pg-restart.mjs <base url> <email> <password> [clients] [seconds]")
const N = Number(nClients)
const RUN_MS = Number(seconds) * 1000
const cluster = execSync("ls /etc/postgresql").toString().trim().split("\n")[0]

async function api(token, method, path, body, headers = {}) {
  const res = await fetch(new URL(path, base), {
    method,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json", ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  const text = await res.text()
  let json
  try {
    json = JSON.parse(text)
  } catch {}
  return { status: res.status, json }
}

const login = await (
  await fetch(new URL("/v1/auth/login", base), {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ email, password }),
  })
).json()
const token = login.access_token
const b = await api(token, "POST", "/v1/buildings", { name: "Restart Tower", address: "1 Test St", building_type: "office" })
const asset = await api(token, "POST", `/v1/buildings/${b.json.id}/assets`, { asset_type: "portable_extinguisher", location: "L1" })
const s = await api(token, "POST", "/v1/tests/sessions", { building_id: b.json.id, name: "Restart", frequency: "six_monthly" })
const session = s.json
const assetId = asset.json.id

const clients = []
for (let i = 0; i < N; i++) {
  const fm = new FireModeClient({ baseUrl: base, deviceId: `restart-${i}`, retryMs: 500, autoRefresh: false })
  fm.useTokens(login)
  clients.push({ fm, handle: await fm.openSession(session.document_url), edits: [] })
}
let disconnects = 0
for (const c of clients) {
  c.fm.repo.networkSubsystem.on("peer-disconnected", () => disconnects++)
}

const restStatus = {}
let restFirstError
const restAcked = []
const start = Date.now()
let restartedAt
const restart = (async () => {
  await sleep(RUN_MS * 0.4)
  restartedAt = Date.now() - start
  // Asynchronous: the tablets and the office keep working while PostgreSQL is down.
  await promisify(exec)(`pg_ctlcluster --skip-systemctl-redirect ${cluster} main restart`)
  console.log(`PostgreSQL restarted at ${restartedAt} ms, took ${Date.now() - start - restartedAt} ms`)
})()
const office = (async () => {
  let n = 0
  while (Date.now() - start < RUN_MS) {
    // Each REST write adds a reading of its own (REST notes would replace the tablets' text).
    const note = `rest_${++n}`
    const r = await api(
      token,
      "POST",
      `/v1/tests/sessions/${session.id}/results`,
      { results: [{ asset_id: assetId, outcome: "pass", readings: { [note]: n } }] },
      { "idempotency-key": randomUUID() },
    ).catch(() => ({ status: "transport" }))
    restStatus[r.status] = (restStatus[r.status] ?? 0) + 1
    if (r.status !== 200 && r.status !== 201 && !restFirstError) restFirstError = { at_ms: Date.now() - start, status: r.status, code: r.json?.code }
    if (r.status === 200 || r.status === 201) restAcked.push(note)
    await sleep(250)
  }
})()
await Promise.all(
  clients.map(async (c, i) => {
    let n = 0
    while (Date.now() - start < RUN_MS) {
      const id = `[t${i}-${++n}]`
      recordResult(c.handle, assetId, { note: id })
      c.edits.push(id)
      await sleep(200)
    }
  }),
)
await restart
await office

// Converge: every tablet holds the server's heads.
const until = Date.now() + 60_000
let doc
for (;;) {
  const d = await api(token, "GET", `/v1/tests/sessions/${session.id}/document`)
  doc = d.json
  const same = d.status === 200 && clients.every(c => JSON.stringify([...c.handle.heads()].sort()) === JSON.stringify([...doc.heads].sort()))
  if (same) break
  if (Date.now() > until) throw new Error("tablets and server did not converge within 60 s")
  await sleep(200)
}
const item = doc.document.items[assetId]
const missingTablet = clients.flatMap(c => c.edits).filter(id => !item.notes.includes(id))
const missingRest = restAcked.filter(name => !(name in item.readings))
console.log(
  JSON.stringify({
    clients: N,
    run_ms: RUN_MS,
    restarted_at_ms: restartedAt,
    converged_after_run_ms: Date.now() - start - RUN_MS,
    tablet_edits: clients.reduce((n, c) => n + c.edits.length, 0),
    sync_disconnects_seen: disconnects,
    rest_answers_by_status: restStatus,
    rest_acknowledged: restAcked.length,
    rest_first_error: restFirstError,
    missing_tablet_edits: missingTablet.length,
    missing_acknowledged_rest_writes: missingRest.length,
  }),
)
await Promise.all(clients.map(c => c.fm.close()))
process.exit(missingTablet.length + missingRest.length === 0 ? 0 : 1)
