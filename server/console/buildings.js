// Buildings at a glance: each building's compliance status, overdue routines and open critical
// defects (the list's `status`, when the server gives it; otherwise the compliance report's).

import { all, api, can } from "./api.js"
import { h, replace, badge, field, formValues, notice, table } from "./dom.js"
import { subscribe } from "./live.js"

export async function render(root) {
  const list = h("div", { id: "buildings" }, h("p", { class: "empty" }, "Loading…"))
  replace(
    root,
    h("div", { class: "head" }, h("h1", {}, "Buildings")),
    can.office() ? createForm(() => load(list)) : null,
    list,
  )
  await load(list)
  return subscribe(type => {
    if (type === "defect" || type === "session" || type === "lagged") load(list)
  })
}

async function statusOf(b) {
  if (b.status) return b.status
  // Servers without the list's status: read the report's summary.
  try {
    const r = await api("GET", `/v1/buildings/${b.id}/compliance`)
    const s = r.summary ?? {}
    return { overall: r.status, overdue: s.overdue ?? null, open_critical_defects: s.open_defects?.critical ?? null }
  } catch {
    return { overall: null, overdue: null, open_critical_defects: null }
  }
}

async function load(list) {
  const buildings = await all("/v1/buildings")
  const statuses = await Promise.all(buildings.map(statusOf))
  replace(
    list,
    table(
      ["Building", "Address", "Status", "Overdue", "Open critical defects"],
      buildings.map((b, i) => {
        const s = statuses[i]
        return [
          h("a", { href: `#/buildings/${b.id}` }, b.name),
          b.address,
          badge(s.overall ?? "unknown"),
          h("span", { class: s.overdue > 0 ? "count warn" : "count" }, s.overdue ?? "—"),
          h("span", { class: s.open_critical_defects > 0 ? "count bad" : "count" }, s.open_critical_defects ?? "—"),
        ]
      }),
      { empty: "No buildings yet." },
    ),
  )
}

function createForm(done) {
  const msg = h("div")
  const form = h(
    "form",
    { class: "inline-form", id: "create-building" },
    field("Name", h("input", { name: "name", required: true })),
    field("Address", h("input", { name: "address", required: true })),
    field("Type", h("input", { name: "building_type", required: true, placeholder: "Class 5 office" })),
    h("button", { type: "submit" }, "Add building"),
    msg,
  )
  form.addEventListener("submit", async e => {
    e.preventDefault()
    try {
      await api("POST", "/v1/buildings", formValues(form))
      form.reset()
      replace(msg, notice("Building added.", "ok"))
      await done()
    } catch (err) {
      replace(msg, notice(err.message, "error"))
    }
  })
  return h("details", {}, h("summary", {}, "Add a building"), form)
}
