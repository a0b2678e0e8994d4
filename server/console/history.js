// History of a session: every change (author, device, time, items touched); pick a point to
// see the document then, and two points to see what changed between them.

import { all, api } from "./api.js"
import { h, replace, notice, table, show, when } from "./dom.js"

export async function render(root, { id }) {
  const s = await api("GET", `/v1/tests/sessions/${id}`)
  const [hist, assets] = await Promise.all([
    api("GET", `/v1/tests/sessions/${id}/history`),
    all(`/v1/buildings/${s.building_id}/assets`).catch(() => []),
  ])
  const names = new Map(assets.map(a => [a.id, a.identifier ?? a.location]))
  const view = h("div", { id: "history-view" })
  const changes = hist.changes ?? []
  let from = null
  let to = null
  const row = (c, i) => {
    const pickFrom = h("input", { type: "radio", name: "from", value: c.hash, "aria-label": `From change ${i + 1}` })
    const pickTo = h("input", { type: "radio", name: "to", value: c.hash, "aria-label": `To change ${i + 1}` })
    pickFrom.addEventListener("change", () => (from = c.hash))
    pickTo.addEventListener("change", () => (to = c.hash))
    return [
      String(i + 1),
      h("span", { class: "nowrap" }, when(c.author?.received_at ?? c.time)),
      [c.author?.user_name ?? (c.author?.user_id ? c.author.user_id.slice(0, 8) : "server"), c.author?.device_id ? ` · ${c.author.device_id}` : ""].join(""),
      h("span", { class: "touched" }, touched(c.touched ?? [], names)),
      h("button", { type: "button", class: "quiet", onclick: () => showAt(id, c.hash, i + 1, view) }, "View"),
      pickFrom,
      pickTo,
    ]
  }
  const compare = h("button", { type: "button", id: "compare" }, "Compare the two points")
  compare.addEventListener("click", () => {
    if (!from || !to) return replace(view, notice("Choose a ‘from’ and a ‘to’ change first.", "error"))
    showDiff(id, from, to, view)
  })
  replace(
    root,
    h("p", { class: "crumbs" }, h("a", { href: "#/sessions" }, "Sessions"), " / ", h("a", { href: `#/sessions/${id}` }, s.name), " / "),
    h("h1", {}, "History"),
    table(["#", "Time", "Author", "Touched", "Document", "From", "To"], changes.map(row), { caption: `${changes.length} change(s)`, empty: "No changes." }),
    h("div", { class: "actions" }, compare),
    view,
  )
}

async function showAt(id, hash, n, view) {
  try {
    const d = await api("GET", `/v1/tests/sessions/${id}/document?at=${encodeURIComponent(hash)}`)
    replace(view, h("h2", {}, `The document after change ${n}`), h("pre", { class: "doc" }, JSON.stringify(d.document, null, 2)))
  } catch (e) {
    replace(view, notice(e.message, "error"))
  }
}

async function showDiff(id, from, to, view) {
  try {
    const d = await api("GET", `/v1/tests/sessions/${id}/diff?from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}`)
    replace(
      view,
      h("h2", {}, "Differences"),
      table(["Path", "Item", "Before", "After"], (d.changes ?? []).map(c => [c.path, show(c.identifier), show(c.before), show(c.after)]), { empty: "No differences." }),
    )
  } catch (e) {
    replace(view, notice(e.message, "error"))
  }
}

/** Paths touched, per item by identifier: "EXT-101: outcome, notes · session: name". */
function touched(paths, names) {
  const groups = new Map()
  for (const p of paths) {
    const m = p.match(/^\/items\/([^/]+)(?:\/([^/]+))?/)
    const key = m ? names.get(m[1]) ?? `item ${m[1].slice(0, 8)}` : "session"
    const fieldName = m ? m[2] : p.replace(/^\//, "").split("/")[0]
    const set = groups.get(key) ?? new Set()
    if (fieldName) set.add(fieldName)
    groups.set(key, set)
  }
  const parts = [...groups].map(([k, f]) => (f.size > 3 ? `${k}: ${f.size} fields` : f.size ? `${k}: ${[...f].join(", ")}` : k))
  return parts.length > 4 ? `${parts.slice(0, 4).join(" · ")} · +${parts.length - 4} more` : parts.join(" · ")
}
