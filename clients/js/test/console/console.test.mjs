// The back-office console (server/console, served under /console) driven in a real Chromium
// (Debian's, through playwright-core) against a real FireMode server started by
// tests/e2e/console.rs, with real, unmodified automerge-repo tablets (src/firemode.mjs) editing
// the same sessions. The fixture (FIREMODE_FIXTURE) has the server URL, users and a building;
// results for the Rust side go to FIREMODE_OUTPUT.
//
// Every request to an origin other than the server is aborted and recorded (the console must
// work with no internet), and every CSP violation and console error fails the run.

import { test, after, before } from "node:test"
import assert from "node:assert/strict"
import { mkdirSync } from "node:fs"
import { join } from "node:path"

import { chromium } from "playwright-core"

import { loadFixture, writeOutput, tablet, waitFor, rest, plain, converged, sleep } from "../helpers.mjs"
import { recordResult } from "../../src/firemode.mjs"

const fx = loadFixture()
const origin = new URL(fx.base_url).origin
const shots = fx.screenshots
mkdirSync(shots, { recursive: true })

/** Requests to other origins (must stay empty), CSP violations and console errors. */
const foreign = []
const violations = []
const consoleErrors = []
/** Console errors we cause on purpose (the auditor's forced write): [url substring]. */
const expectedErrors = []

let browser
/** @type {Record<string, any>} */
const out = {}

before(async () => {
  browser = await chromium.launch({
    executablePath: fx.chromium,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  })
})

after(async () => {
  await browser?.close()
  writeOutput("console", { ...out, foreign, violations, console_errors: consoleErrors })
})

/** A fresh browser context (no shared memory: a new sign-in) with the network guard. */
async function newPage(width = 1280) {
  const context = await browser.newContext({ viewport: { width, height: 900 } })
  await context.route("**/*", route => {
    const url = route.request().url()
    if (url.startsWith("blob:") || url.startsWith("data:")) return route.continue()
    if (new URL(url).origin !== origin) {
      foreign.push(url)
      return route.abort()
    }
    return route.continue()
  })
  // Listening for violations is not page script: injected by the driver, not subject to CSP.
  await context.addInitScript(() => {
    window.__violations = []
    document.addEventListener("securitypolicyviolation", e =>
      window.__violations.push(`${e.violatedDirective} ${e.blockedURI}`),
    )
  })
  const page = await context.newPage()
  page.on("console", msg => {
    if (msg.type() !== "error") return
    const url = msg.location()?.url ?? ""
    if (expectedErrors.some(x => url.includes(x) || msg.text().includes(x))) return
    consoleErrors.push(`${msg.text()} @ ${url}`)
  })
  page.on("pageerror", e => consoleErrors.push(`page error: ${e.message}`))
  page.on("request", req => {
    const u = req.url()
    if (!u.startsWith("blob:") && !u.startsWith("data:") && new URL(u).origin !== origin) foreign.push(u)
  })
  return page
}

async function collectViolations(page) {
  const v = await page.evaluate(() => window.__violations ?? [])
  violations.push(...v)
}

async function signIn(page, user) {
  await page.goto(`${fx.base_url}/`)
  assert.equal(new URL(page.url()).pathname, "/console/", "/ redirects to the console")
  await page.fill("#email", user.email)
  await page.fill("#password", user.password)
  await page.click("#signin button[type=submit]")
  await page.waitForSelector("#role")
}

async function shot(page, name) {
  for (const width of [768, 1280]) {
    await page.setViewportSize({ width, height: 900 })
    await sleep(150)
    await page.screenshot({ path: join(shots, `${name}-${width}.png`), fullPage: true })
  }
  await page.setViewportSize({ width: 1280, height: 900 })
}

const CSV = [
  "identifier,asset_type,location,install_date",
  "EXT-101,portable_extinguisher,Level 1 lobby,2021-03-15",
  "HR-101,fire_hose_reel,Level 1 stair,2020-06-01",
  "EL-101,emergency_lighting,Level 1 corridor,2019-11-02",
].join("\n")

let page
let sessionId
let assetId

test("1. sign in, import assets from CSV (preview, then apply), create a session, open it", async () => {
  page = await newPage()
  await page.goto(`${fx.base_url}/`)
  await shot(page, "signin")
  // A wrong password is refused on the page.
  await page.fill("#email", fx.users.admin.email)
  await page.fill("#password", "not-the-password")
  expectedErrors.push("/v1/auth/login")
  await page.click("#signin button[type=submit]")
  await page.waitForSelector("#signin-error .notice-error")
  await signIn(page, fx.users.admin)
  assert.equal(await page.textContent("#role"), "admin")
  await page.waitForSelector(`a[href="#/buildings/${fx.building_id}"]`)
  await shot(page, "buildings")

  await page.click(`a[href="#/buildings/${fx.building_id}"]`)
  await page.waitForSelector("#assets")
  await page.click("details.import summary")
  await page.fill("#import-csv", CSV)
  assert.equal(await page.isDisabled("#import-apply"), true, "apply waits for a preview")
  await page.click("#import-preview")
  await page.waitForSelector("#import-result .plan")
  const previewText = await page.textContent("#import-result")
  assert.match(previewText, /3 to create/)
  // The dry run wrote nothing.
  const before = await rest(fx, "GET", `/v1/buildings/${fx.building_id}/assets`)
  assert.equal(before.body.items.length, 0, "a preview imports nothing")
  await shot(page, "building-import-preview")
  await page.click("#import-apply")
  await page.waitForSelector("#import-result .notice-ok")
  await waitFor("the imported assets are listed", async () => (await page.textContent("#assets")).includes("EXT-101"))
  const assets = await rest(fx, "GET", `/v1/buildings/${fx.building_id}/assets`)
  assert.equal(assets.body.items.length, 3)
  assetId = assets.body.items.find(a => a.identifier === "EXT-101").id
  out.imported = assets.body.items.map(a => a.identifier).sort()

  // Filter by identifier.
  await page.fill("#asset-filters input[name=identifier]", "HR-101")
  await page.click("#asset-filters button")
  await waitFor("the filter applies", async () => !(await page.textContent("#assets")).includes("EXT-101"))
  await shot(page, "building-assets")

  await page.click(`a[href="#/buildings/${fx.building_id}/sessions"]`)
  await page.waitForSelector("#create-session", { state: "attached" })
  await page.click("#tab-sessions details summary")
  await page.fill("#new-session-name", "Console round")
  await page.selectOption("#new-session-frequency", "six_monthly")
  for (const who of ["inspector1", "inspector2"]) {
    await page.check(`#create-session input[value="${fx.users[who].id}"]`)
  }
  await page.click("#create-session button[type=submit]")
  await page.waitForSelector("#session-name")
  sessionId = page.url().match(/#\/sessions\/([0-9a-f-]{36})/)[1]
  assert.equal(await page.textContent("#session-name"), "Console round")
  await waitFor("the session's items are listed", async () => (await page.textContent("#items")).includes("EXT-101"))
  out.session_id = sessionId
  await collectViolations(page)
})

let tablets = []
let handles = []

test("2. two offline tablets conflict; the console groups it and resolves it for both", async () => {
  const session = (await rest(fx, "GET", `/v1/tests/sessions/${sessionId}`)).body
  const a = tablet(fx, fx.users.inspector1, "tablet-a")
  const b = tablet(fx, fx.users.inspector2, "tablet-b")
  tablets = [a, b]
  handles = [await a.openSession(session), await b.openSession(session)]
  await converged(fx, sessionId, handles)
  a.goOffline()
  b.goOffline()
  recordResult(handles[0], assetId, { outcome: "pass" })
  recordResult(handles[1], assetId, { outcome: "not_accessible" })
  a.goOnline()
  b.goOnline()
  await converged(fx, sessionId, handles, { timeoutMs: 20_000 })

  await page.click("#conflicts-link")
  await page.waitForSelector(`section.conflict[data-asset="${assetId}"]`)
  const cards = await page.$$("section.conflict")
  assert.equal(cards.length, 1, "one grouped conflict")
  const text = await cards[0].textContent()
  assert.match(text, /EXT-101/, "the asset by identifier")
  assert.match(text, /Level 1 lobby/, "and location")
  assert.match(text, /tablet-a/, "side of tablet A with its device")
  assert.match(text, /tablet-b/, "side of tablet B with its device")
  await shot(page, "conflicts")

  // Keyboard only: Tab to the first "Keep" button and press Enter.
  const keep = await page.$("section.conflict .side button.keep")
  const kept = await keep.evaluate(el =>
    [...el.closest(".side").querySelectorAll(".values div")].find(d => d.querySelector("dt")?.textContent === "outcome")?.querySelector("dd")?.textContent,
  )
  assert.ok(["pass", "not_accessible"].includes(kept), `the side shows its outcome: ${kept}`)
  await keep.focus()
  await page.keyboard.press("Enter")
  await page.waitForSelector("#no-conflicts")
  for (const h of handles) {
    await waitFor("the tablet sees the resolved value", () => String(plain(h.doc()).items[assetId].outcome) === kept, { timeoutMs: 15_000 })
  }
  out.resolved_outcome = kept
  out.tablet_outcomes = handles.map(h => String(plain(h.doc()).items[assetId].outcome))
  await collectViolations(page)
})

test("6. live: a tablet edit shows on the open session screen without a reload", async () => {
  await page.evaluate(h => (location.hash = h), `#/sessions/${sessionId}`)
  // A reload signs out: tokens live in memory only.
  await page.reload()
  await page.waitForSelector("#signin")
  await page.fill("#email", fx.users.admin.email)
  await page.fill("#password", fx.users.admin.password)
  await page.click("#signin button[type=submit]")
  await page.waitForSelector("#items")
  // The event stream, or (a server without /v1/events) polling of the watched session.
  await page.waitForSelector("#live-state.live-on, #live-state.live-polling", { timeout: 10_000 })
  out.live_mode = (await page.getAttribute("#live-state", "class")).replace("live live-", "")
  const marker = `live-${Date.now()}`
  await page.evaluate(() => (window.__sameDocument = true))
  recordResult(handles[0], assetId, { note: marker })
  try {
    await waitFor("the edit appears on the screen", async () => (await page.textContent("#items")).includes(marker), { timeoutMs: 10_000 })
  } catch (e) {
    const server = await rest(fx, "GET", `/v1/tests/sessions/${sessionId}/document`)
    console.error("live diagnostics:", await page.getAttribute("#live-state", "class"), JSON.stringify(server.body).includes(marker), await page.textContent("#items"))
    throw e
  }
  assert.equal(await page.evaluate(() => window.__sameDocument), true, "no reload")
  out.live = true
  await shot(page, "session")
  await collectViolations(page)
})

test("3. the defects board moves a defect along", async () => {
  const d = await rest(fx, "POST", "/v1/defects", {
    building_id: fx.building_id,
    asset_id: assetId,
    severity: "critical",
    title: "Extinguisher missing from its bracket",
    description: "Found by the console test",
  })
  assert.equal(d.status, 201, JSON.stringify(d.body))
  const id = d.body.id
  await page.click('a[href="#/defects"]')
  const card = `[data-defect="${id}"]`
  await page.waitForSelector(`.column[data-status="open"] ${card}`)
  assert.match(await page.textContent(card), /critical/i)
  await shot(page, "defects")
  // Tab/Enter: focus the card's button and press Enter, twice.
  for (const next of ["acknowledged", "repair_scheduled"]) {
    await page.focus(`${card} button.advance`)
    await page.keyboard.press("Enter")
    await page.waitForSelector(`.column[data-status="${next}"] ${card}`)
  }
  // Severity override with a reason.
  await page.click(`${card} details:has(form.severity) > summary`)
  await page.selectOption(`${card} form.severity select`, "non_critical")
  await page.fill(`${card} form.severity input[name=reason]`, "Another extinguisher covers the space")
  await page.click(`${card} form.severity button`)
  await waitFor("the override shows", async () => (await page.textContent(card)).includes("Another extinguisher covers the space"))
  const now = await rest(fx, "GET", `/v1/defects/${id}`)
  assert.equal(now.body.status, "repair_scheduled")
  assert.equal(now.body.severity, "non_critical")
  out.defect = { id, status: now.body.status, severity: now.body.severity }
  await collectViolations(page)
})

test("7a. screenshots of the other screens", async () => {
  for (const [hash, sel, name] of [
    [`#/buildings/${fx.building_id}/report`, "#download-pdf", "report"],
    [`#/buildings/${fx.building_id}/schedule`, "#tab-schedule h2", "schedule"],
    ["#/sessions", "#sessions table", "sessions"],
    [`#/sessions/${sessionId}/history`, "#compare", "history"],
    ["#/users", "#users table", "users"],
  ]) {
    await page.evaluate(h => (location.hash = h), hash)
    await page.waitForSelector(sel)
    await shot(page, name)
  }
  // A download: fetched with the bearer token, saved from a blob URL.
  await page.evaluate(h => (location.hash = h), `#/buildings/${fx.building_id}/report`)
  await page.waitForSelector("#download-csv")
  const [dl] = await Promise.all([page.waitForEvent("download"), page.click("#download-csv")])
  assert.match(dl.suggestedFilename(), /\.csv$/)
  // History: the document at a point, and the difference between two points.
  await page.evaluate(h => (location.hash = h), `#/sessions/${sessionId}/history`)
  await page.waitForSelector("#compare")
  await page.click("table tbody tr:first-child button")
  await page.waitForSelector("#history-view pre")
  out.history_document = true
  await page.check("table tbody tr:first-child input[name=from]")
  await page.check("table tbody tr:last-child input[name=to]")
  await page.click("#compare")
  await page.waitForSelector("#history-view table")
  const diff = await page.textContent("#history-view")
  assert.match(diff, /EXT-101/, "the difference names the item by identifier")
  assert.match(diff, /outcome/, "and the field that changed")
  await shot(page, "history-diff")
  await collectViolations(page)
})

test("4. an auditor cannot change anything", async () => {
  const p = await newPage()
  await signIn(p, fx.users.auditor)
  assert.equal(await p.textContent("#role"), "auditor")
  const screens = [
    ["#/buildings", "#buildings table"],
    [`#/buildings/${fx.building_id}/assets`, "#assets table"],
    [`#/buildings/${fx.building_id}/sessions`, "#building-sessions table"],
    [`#/sessions/${sessionId}`, "#items table"],
    [`#/sessions/${sessionId}/conflicts`, "#conflicts"],
    ["#/defects", "#board .column"],
  ]
  const writeControls = [
    "#create-building", "#create-session", "#import-preview", "#import-apply",
    "button.keep", "button.advance", "form.severity", "form.edit", "#create-user",
  ]
  for (const [hash, ready] of screens) {
    await p.evaluate(h => (location.hash = h), hash)
    await p.waitForSelector(ready)
    for (const sel of writeControls) {
      assert.equal(await p.$(sel), null, `no ${sel} for an auditor on ${hash}`)
    }
  }
  assert.equal(await p.$('a[href="#/users"]'), null, "no users screen")
  await shot(p, "auditor-defects")
  // The server refuses a write anyway.
  expectedErrors.push("/v1/buildings")
  const status = await p.evaluate(async t => {
    const r = await fetch("/v1/buildings", {
      method: "POST",
      headers: { authorization: `Bearer ${t}`, "content-type": "application/json" },
      body: JSON.stringify({ name: "Forced", address: "1 Forced St", building_type: "office" }),
    })
    return r.status
  }, fx.users.auditor.token)
  assert.equal(status, 403)
  out.auditor_forced_write = status
  await collectViolations(p)
  await p.context().close()
})

test("5. nothing but the server is contacted, no CSP violation, no console error", async () => {
  // The detector works: an inline style is refused by the policy and the violation is seen.
  const p = await newPage()
  expectedErrors.push("inline style")
  await p.goto(`${fx.base_url}/console/`)
  await p.waitForSelector("#signin")
  const probe = await p.evaluate(async () => {
    const s = document.createElement("style")
    s.textContent = "body { color: red }"
    document.head.appendChild(s)
    await new Promise(r => setTimeout(r, 200))
    return window.__violations.slice()
  })
  assert.ok(probe.some(v => v.startsWith("style-src")), `the CSP refuses inline styles: ${probe}`)
  await p.context().close()
  for (const t of tablets) await t.close()
  out.foreign = foreign
  assert.deepEqual(foreign, [], "no request to another origin")
  assert.deepEqual(violations, [], "no CSP violation")
  assert.deepEqual(consoleErrors, [], "no console error")
})
