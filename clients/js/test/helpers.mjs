// Shared by the conformance tests. They are driven by Rust tests (tests/e2e/js_conformance.rs,
// tests/e2e/convergence.rs) that start a FireMode server, create users, a building and sessions
// through the REST API, and pass them here as a JSON fixture file (FIREMODE_FIXTURE). Results the
// Rust side checks afterwards (against the server and its database) go to FIREMODE_OUTPUT.

import { readFileSync, writeFileSync, existsSync } from "node:fs"
import { setTimeout as sleep } from "node:timers/promises"

import { FireModeClient } from "../src/firemode.mjs"

export { sleep }

/** The fixture the Rust side wrote. */
export function loadFixture() {
  const path = process.env.FIREMODE_FIXTURE
  if (!path) throw new Error("FIREMODE_FIXTURE is not set: these tests are run by `cargo test` (tests/e2e)")
  return JSON.parse(readFileSync(path, "utf8"))
}

/** Write what the Rust side should check (merged into the output file). */
export function writeOutput(key, value) {
  const path = process.env.FIREMODE_OUTPUT
  if (!path) return
  const all = existsSync(path) ? JSON.parse(readFileSync(path, "utf8")) : {}
  all[key] = value
  writeFileSync(path, JSON.stringify(all, null, 2))
}

/**
 * A logged-in tablet for a fixture user: the real automerge-repo Repo with the real
 * WebSocketClientAdapter, through src/firemode.mjs.
 */
export function tablet(fx, user, deviceId, { retryMs = 1000 } = {}) {
  const c = new FireModeClient({ baseUrl: fx.base_url, deviceId, retryMs, autoRefresh: false })
  c.useTokens({ access_token: user.token, refresh_token: user.refresh, expires_in: 900 })
  return c
}

/** Poll `cond` (sync or async) until true; fail with `what` after `timeoutMs`. */
export async function waitFor(what, cond, { timeoutMs = 10_000, everyMs = 25 } = {}) {
  const until = Date.now() + timeoutMs
  let last
  for (;;) {
    try {
      if (await cond()) return
    } catch (e) {
      last = e
    }
    if (Date.now() > until) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}${last ? ` (last error: ${last})` : ""}`)
    }
    await sleep(everyMs)
  }
}

/** A document as plain JSON, as the server's `GET .../document` shows it. */
export function plain(doc) {
  return JSON.parse(JSON.stringify(doc))
}

/**
 * A plain REST call to the fixture's server: `{status, body}` (body parsed when JSON).
 * @param {string} [token] bearer token, the office user's by default
 */
export async function rest(fx, method, path, body, token = fx.users.office.token) {
  const res = await fetch(new URL(path, fx.base_url), {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body === undefined ? {} : { "content-type": "application/json" }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  const text = await res.text()
  let parsed = text
  try {
    parsed = JSON.parse(text)
  } catch {}
  return { status: res.status, body: parsed }
}

/** The server's copy of a session document: `{heads, document}`. */
export async function serverDocument(fx, sessionId, token = fx.users.office.token) {
  const res = await rest(fx, "GET", `/v1/tests/sessions/${sessionId}/document`, undefined, token)
  if (res.status !== 200) throw new Error(`GET document ${sessionId}: ${res.status} ${JSON.stringify(res.body)}`)
  return res.body
}

export function sameHeads(a, b) {
  return JSON.stringify([...a].sort()) === JSON.stringify([...b].sort())
}

/** Wait until every handle and the server hold the same heads for the session; returns them. */
export async function converged(fx, sessionId, handles, opts = {}) {
  let heads
  await waitFor(
    `clients and server converge on session ${sessionId}`,
    async () => {
      const server = await serverDocument(fx, sessionId)
      heads = server.heads
      return handles.every(h => sameHeads(h.heads(), server.heads))
    },
    opts,
  )
  return heads
}

/** A small seeded PRNG (mulberry32) so a failing run can be replayed with the same seed. */
export function rng(seed) {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const OUTCOMES = ["pass", "fail", "not_tested", "not_accessible"]

/**
 * A random result for `recordResult` whose note carries the edit's id ("[c1-17]"): the notes
 * are a collaborative text, so a test can find every edit in the merged document.
 * @param {() => number} random
 * @param {string} id
 */
export function randomResult(random, id) {
  const pick = xs => xs[Math.floor(random() * xs.length)]
  const r = { note: `[${id}]` }
  switch (Math.floor(random() * 4)) {
    case 0:
      r.outcome = pick(OUTCOMES)
      break
    case 1:
      r.observedCondition = "serviceable"
      r.outcome = "pass"
      break
    case 2:
      r.readings = { [pick(["pressure_gauge", "flow_rate", "battery_voltage"])]: Math.round(random() * 1000) / 10 }
      break
    default:
      break
  }
  return r
}
