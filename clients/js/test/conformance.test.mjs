// Conformance of the FireMode sync server with UNMODIFIED automerge-repo 2.5 clients (the npm
// packages, through src/firemode.mjs). Run by tests/e2e/js_conformance.rs, which prepares the
// server and the fixture and checks the server's database afterwards.

import { test } from "node:test"
import assert from "node:assert/strict"
import { getConflicts } from "@automerge/automerge"

import { FireModeClient, recordResult } from "../src/firemode.mjs"
import { converged, loadFixture, plain, rest, serverDocument, sleep, tablet, waitFor, writeOutput } from "./helpers.mjs"

const fx = loadFixture()
const { users, assets } = fx
// A condition of the portable-extinguisher rule (AS1851-10-6M-EXT), the kind of assets[0].
const MISSING = "extinguisher_missing"

test("finds a server-created session by its document_url; a second client sees the edit", async t => {
  const s = fx.sessions.shared
  const a = tablet(fx, users.inspector1, "tablet-a")
  const b = tablet(fx, users.inspector2, "tablet-b")
  t.after(() => Promise.all([a.close(), b.close()]))

  // The session list is how a tablet learns the URL.
  const mine = await a.mySessions()
  const listed = mine.find(x => x.id === s.id)
  assert.ok(listed, "the session is listed for the assigned inspector")
  assert.equal(listed.document_url, s.document_url)

  const ha = await a.openSession(listed)
  const doc = ha.doc()
  // Strings the server wrote are scalar strings (ImmutableString in JS): compare with String().
  assert.equal(String(doc.sessionId), s.id)
  assert.equal(doc.schema, 2)
  assert.equal(String(doc.status), "in_progress")
  assert.deepEqual(Object.keys(doc.items).sort(), [...assets].sort())
  for (const id of assets) assert.equal(String(doc.items[id].outcome), "not_tested")

  recordResult(ha, assets[0], {
    outcome: "fail",
    observedCondition: MISSING,
    readings: { gross_mass_loss: 12.5 },
    note: "Bracket empty on level 0.",
    recordedBy: users.inspector1.id,
  })
  // A plain JS assignment too (a text object on the wire): the server must take it as well.
  ha.change(d => {
    d.items[assets[1]].outcome = "pass"
  })

  const hb = await b.openSession(s.document_url)
  await waitFor("client B sees client A's edits", () => {
    const item = hb.doc().items[assets[0]]
    return String(item.outcome) === "fail" && String(hb.doc().items[assets[1]].outcome) === "pass"
  })
  const itemB = hb.doc().items[assets[0]]
  assert.equal(String(itemB.observedCondition), MISSING)
  assert.equal(itemB.readings.gross_mass_loss, 12.5)
  assert.equal(String(itemB.notes), "Bracket empty on level 0.")

  const heads = await converged(fx, s.id, [ha, hb])
  const server = await serverDocument(fx, s.id)
  assert.deepEqual(server.document, plain(ha.doc()))
  writeOutput("shared", { session: s.id, heads, document: server.document })
})

test("two clients edit while disconnected, reconnect and converge with the server", async t => {
  const s = fx.sessions.offline_edits
  const a = tablet(fx, users.inspector1, "tablet-a2")
  const b = tablet(fx, users.inspector2, "tablet-b2")
  t.after(() => Promise.all([a.close(), b.close()]))
  const ha = await a.openSession(s.document_url)
  const hb = await b.openSession(s.document_url)
  await converged(fx, s.id, [ha, hb])

  a.goOffline()
  b.goOffline()
  // Both edit the same item (a conflict on outcome, concurrent notes) and different items.
  recordResult(ha, assets[0], { outcome: "pass", note: "[A: gauge in green]", readings: { pressure_gauge: 1 } })
  recordResult(hb, assets[0], { outcome: "fail", note: "[B: seal broken]", readings: { tag_stamp: 0 } })
  recordResult(ha, assets[1], { outcome: "not_accessible", note: "[A: locked plant room]" })
  recordResult(hb, assets[2], { outcome: "pass", note: "[B: all lamps lit]" })
  ha.change(d => {
    d.notes = "Offline round by A."
  })
  // Nothing reaches the server while they are offline.
  await sleep(300)
  const before = await serverDocument(fx, s.id)
  assert.equal(before.document.items[assets[0]].outcome, "not_tested")

  a.goOnline()
  b.goOnline()
  const heads = await converged(fx, s.id, [ha, hb], { timeoutMs: 15_000 })
  const docA = plain(ha.doc())
  assert.deepEqual(plain(hb.doc()), docA, "both clients hold the same document")
  const server = await serverDocument(fx, s.id)
  assert.deepEqual(server.document, docA, "the server holds it too")

  const item0 = docA.items[assets[0]]
  assert.ok(["pass", "fail"].includes(item0.outcome), "one outcome wins the conflict")
  assert.ok(item0.notes.includes("[A: gauge in green]") && item0.notes.includes("[B: seal broken]"), item0.notes)
  assert.deepEqual(item0.readings, { pressure_gauge: 1, tag_stamp: 0 })
  assert.equal(docA.items[assets[1]].outcome, "not_accessible")
  assert.equal(docA.items[assets[2]].outcome, "pass")

  // The back office sees the conflict, with who wrote each value from which tablet ...
  const path = `/items/${assets[0]}/outcome`
  for (const h of [ha, hb]) {
    assert.equal(Object.keys(getConflicts(h.doc().items[assets[0]], "outcome") ?? {}).length, 2)
  }
  const listed = await conflicts(fx, s.id)
  const conflict = listed.find(c => c.path === path)
  assert.ok(conflict, JSON.stringify(listed))
  assert.equal(conflict.kind, "concurrent_edits")
  const authors = conflict.values
    .map(v => `${v.value} ${v.author.user_id} ${v.author.device_id}`)
    .sort()
  assert.deepEqual(authors, [
    `fail ${users.inspector2.id} tablet-b2`,
    `pass ${users.inspector1.id} tablet-a2`,
  ])
  assert.equal(conflict.values.filter(v => v.winner).length, 1)

  // ... and resolves it; both tablets get the resolution without doing anything.
  const res = await rest(fx, "POST", `/v1/tests/sessions/${s.id}/conflicts/resolve`, { path, value: "fail" })
  assert.equal(res.status, 200, JSON.stringify(res.body))
  for (const [name, h] of [["A", ha], ["B", hb]]) {
    await waitFor(`tablet ${name} receives the resolution`, () => {
      const item = h.doc().items[assets[0]]
      return String(item.outcome) === "fail" && getConflicts(item, "outcome") === undefined
    })
  }
  assert.ok(!(await conflicts(fx, s.id)).some(c => c.path === path), "the conflict is gone on the server")
  const after = await converged(fx, s.id, [ha, hb])
  writeOutput("offline_edits", { session: s.id, heads: after, document: (await serverDocument(fx, s.id)).document })
})

async function conflicts(fx, sessionId) {
  const res = await rest(fx, "GET", `/v1/tests/sessions/${sessionId}/conflicts`)
  assert.equal(res.status, 200, JSON.stringify(res.body))
  return res.body.conflicts
}

test("another organisation's user and an unassigned inspector get 'unavailable'", async t => {
  const s = fx.sessions.shared
  const outsider = tablet(fx, users.outsider, "tablet-x")
  const unassigned = tablet(fx, users.unassigned, "tablet-u")
  t.after(() => Promise.all([outsider.close(), unassigned.close()]))
  await assert.rejects(outsider.openSession(s.document_url), /unavailable/)
  await assert.rejects(unassigned.openSession(s.document_url), /unavailable/)
  // An id nobody registered looks exactly the same.
  await assert.rejects(unassigned.openSession(fx.unknown_document_url), /unavailable/)
  // And they still are not allowed after asking again on the same connection.
  await assert.rejects(outsider.openSession(fx.sessions.offline_edits.document_url), /unavailable/)
})

test("an auditor reads a session but their writes never land on the server", async t => {
  const s = fx.sessions.audited
  const inspector = tablet(fx, users.inspector1, "tablet-a3")
  const auditor = tablet(fx, users.auditor, "tablet-audit")
  t.after(() => Promise.all([inspector.close(), auditor.close()]))

  const hi = await inspector.openSession(s.document_url)
  recordResult(hi, assets[0], { outcome: "pass", note: "checked by the inspector" })
  await converged(fx, s.id, [hi])

  const hx = await auditor.openSession(s.document_url)
  await waitFor("the auditor reads the inspector's result", () => String(hx.doc().items[assets[0]].outcome) === "pass")
  recordResult(hx, assets[0], { outcome: "fail", note: "AUDITOR WAS HERE" })
  hx.change(d => {
    d.notes = "auditor note"
  })
  // The inspector keeps editing; the auditor keeps receiving, but nothing of theirs is kept.
  recordResult(hi, assets[1], { outcome: "fail", observedCondition: "hose_damaged_or_leaking" })
  await waitFor("the auditor still receives new edits", () => String(hx.doc().items[assets[1]].outcome) === "fail")
  await sleep(500)

  const server = await serverDocument(fx, s.id)
  assert.equal(server.document.items[assets[0]].outcome, "pass")
  assert.ok(!JSON.stringify(server.document).includes("AUDITOR WAS HERE"), "the auditor's note is not on the server")
  assert.notEqual(server.document.notes, "auditor note")
  // The inspector never sees the auditor's change either.
  assert.equal(String(hi.doc().items[assets[0]].outcome), "pass")
  assert.ok(!JSON.stringify(plain(hi.doc())).includes("AUDITOR"))
  writeOutput("audited", { session: s.id, heads: server.heads, document: server.document })
})

test("a session created offline on a tablet syncs once it is registered", async t => {
  const a = tablet(fx, users.inspector1, "tablet-a4")
  const b = tablet(fx, users.office, "office-pc")
  t.after(() => Promise.all([a.close(), b.close()]))

  const created = a.createOfflineSession({
    buildingId: fx.building_id,
    orgId: fx.org_id,
    name: "Tablet-created six-monthly round",
    frequency: "six_monthly",
    ruleSet: fx.rule_set,
    items: { [assets[0]]: fx.rule_codes[0] },
  })
  recordResult(created.handle, assets[0], {
    outcome: "fail",
    observedCondition: MISSING,
    note: "recorded before the session existed on the server",
    recordedBy: users.inspector1.id,
  })
  // Not registered yet: the server answers unavailable to everyone, the tablet keeps its copy.
  await assert.rejects(b.openSession(created.url), /unavailable/)
  await sleep(300)
  assert.equal(String(created.handle.doc().items[assets[0]].outcome), "fail")

  // The tablet registers it (an inspector may register the sessions they created).
  const session = await a.registerSession({
    buildingId: fx.building_id,
    name: "Tablet-created six-monthly round",
    frequency: "six_monthly",
    documentId: created.documentId,
  })
  assert.equal(session.id, created.sessionId)
  assert.equal(session.document_url, created.url)
  const heads = await converged(fx, session.id, [created.handle], { timeoutMs: 15_000 })
  const server = await serverDocument(fx, session.id)
  assert.deepEqual(server.document, plain(created.handle.doc()))
  assert.equal(server.document.items[assets[0]].observedCondition, MISSING)

  // B was told "unavailable" earlier and its repo remembers that; it retries by reconnecting.
  b.reconnect()
  let hb
  await waitFor("B finds the session after reconnecting", async () => {
    hb = await b.openSession(created.url).catch(() => undefined)
    return hb !== undefined
  })
  assert.equal(String(hb.doc().items[assets[0]].outcome), "fail")
  // A fresh client finds it at once.
  const c = tablet(fx, users.office, "office-pc-2")
  t.after(() => c.close())
  const hc = await c.openSession(created.url)
  assert.equal(String(hc.doc().items[assets[0]].outcome), "fail")
  writeOutput("offline_created", { session: session.id, heads, document: server.document })
})

test("logs in over REST, refreshes its token by rebuilding the adapter, and keeps syncing", async t => {
  const fm = new FireModeClient({ baseUrl: fx.base_url, deviceId: "tablet-refresh", retryMs: 1000, autoRefresh: false })
  t.after(() => fm.close())
  await fm.login(users.inspector2.email, users.inspector2.password)
  assert.equal(fm.userId, users.inspector2.id)
  const listed = (await fm.mySessions()).find(x => x.id === fx.sessions.refresh.id)
  assert.ok(listed, "the session is listed for its inspector")
  const h = await fm.openSession(listed)
  recordResult(h, assets[0], { outcome: "pass", note: "before the refresh" })
  await converged(fx, listed.id, [h])

  const oldToken = fm.tokens.access_token
  const oldAdapter = fm.adapter
  await fm.refresh()
  assert.notEqual(fm.tokens.access_token, oldToken)
  assert.notEqual(fm.adapter, oldAdapter, "a new adapter")
  assert.ok(fm.adapter.url.includes(fm.tokens.access_token), "with the new token in its URL")
  // Revoke the old token: a socket still using it would be closed, and could not come back.
  const out = await rest(fx, "POST", "/v1/auth/logout", undefined, oldToken)
  assert.equal(out.status, 204)

  recordResult(h, assets[1], { outcome: "fail", observedCondition: "hose_damaged_or_leaking", note: "after the refresh" })
  const heads = await converged(fx, listed.id, [h])
  const server = await serverDocument(fx, listed.id)
  assert.equal(server.document.items[assets[1]].outcome, "fail")
  assert.deepEqual(server.document, plain(h.doc()))
  writeOutput("refresh", { session: listed.id, heads, document: server.document })
})
