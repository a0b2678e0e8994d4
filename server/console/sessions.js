// Sessions with their live status: a `session` event updates the row without a reload.
// Inspectors see only their own sessions (the API filters).

import { all } from "./api.js"
import { h, replace, badge, table, when } from "./dom.js"
import { subscribe } from "./live.js"

export async function render(root) {
  const list = h("div", { id: "sessions" })
  const filter = h("select", { id: "session-status", "aria-label": "Status" }, ["", "in_progress", "completed"].map(s => h("option", { value: s }, s ? s.replace(/_/g, " ") : "all statuses")))
  replace(root, h("div", { class: "head" }, h("h1", {}, "Sessions"), filter), list)
  const badges = new Map()
  const load = async () => {
    const q = filter.value ? `?status=${filter.value}` : ""
    const [items, buildings] = await Promise.all([all(`/v1/tests/sessions${q}`), all("/v1/buildings")])
    const names = new Map(buildings.map(b => [b.id, b.name]))
    badges.clear()
    replace(
      list,
      table(
        ["Session", "Building", "Frequency", "Status", "Updated"],
        items.map(s => {
          const b = h("span", { "data-session": s.id }, badge(s.status))
          badges.set(s.id, b)
          return [h("a", { href: `#/sessions/${s.id}` }, s.name), names.get(s.building_id) ?? "—", s.frequency.replace(/_/g, " "), b, when(s.updated_at)]
        }),
        { empty: "No sessions." },
      ),
    )
  }
  filter.addEventListener("change", load)
  await load()
  return subscribe((type, data) => {
    if (type === "lagged") return load()
    if (type !== "session") return
    const el = badges.get(data?.session_id)
    if (el && data.status) replace(el, badge(data.status), h("span", { class: "pulse" }, " updated"))
    else if (!el) load()
  })
}
