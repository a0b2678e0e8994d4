// Every reading of the shipped rule library, recorded from a tablet with UNMODIFIED
// automerge-repo 2.5 clients: numbers as numbers, yes/no as booleans, choices and text as
// strings. Run by tests/e2e/readings.rs, which plans the values (one per reading, of its kind)
// and checks each reading's verdict through REST afterwards.

import { test } from "node:test"
import assert from "node:assert/strict"

import { recordResult } from "../src/firemode.mjs"
import { loadFixture, rest, tablet, waitFor } from "./helpers.mjs"

const fx = loadFixture()

test("a tablet records every reading of every rule, each of its kind", async t => {
  const c = tablet(fx, fx.users.inspector, "tablet-readings")
  t.after(() => c.close())
  for (const s of fx.sessions) {
    const h = await c.openSession(s)
    for (const [asset, plan] of Object.entries(s.plan)) {
      recordResult(h, asset, {
        outcome: plan.outcome,
        observedConditions: plan.observed_conditions,
        readings: plan.readings,
        recordedBy: fx.users.inspector.id,
      })
    }
  }
  // The server has every session's edits once its results show every planned reading.
  for (const s of fx.sessions) {
    await waitFor(
      `session ${s.id} projected`,
      async () => {
        const r = await rest(fx, "GET", `/v1/tests/sessions/${s.id}/results`, undefined, fx.users.inspector.token)
        assert.equal(r.status, 200)
        return r.body.items.every(i => {
          const planned = s.plan[i.asset_id]
          return !planned || Object.keys(i.readings).length === Object.keys(planned.readings).length
        })
      },
      { timeoutMs: 30_000 },
    )
  }
})
