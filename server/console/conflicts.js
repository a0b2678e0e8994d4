// The conflict inspector: concurrent edits grouped per item (asset by identifier and location),
// each candidate side with its author, device and time; an item is resolved in one action
// (keep a side, or write values by hand). Works with Tab and Enter alone: every choice is a
// button or a form control.

import { all, api, can } from "./api.js"
import { h, replace, field, notice, show, when } from "./dom.js"
import { subscribe, watch } from "./live.js"

export async function render(root, { id }) {
  const s = await api("GET", `/v1/tests/sessions/${id}`)
  const body = h("div", { id: "conflicts" })
  const msg = h("div", { id: "conflicts-message" })
  replace(
    root,
    h("p", { class: "crumbs" }, h("a", { href: "#/sessions" }, "Sessions"), " / ", h("a", { href: `#/sessions/${id}` }, s.name), " / "),
    h("h1", {}, "Conflicts"),
    h("p", { class: "sub" }, "Two tablets changed the same item while apart. Keep one side, or enter the right values; tablets receive the resolution when they sync."),
    msg,
    body,
  )
  const assets = new Map((await all(`/v1/buildings/${s.building_id}/assets`).catch(() => [])).map(a => [a.id, a]))
  // A live event re-reads the conflicts but redraws only when they changed: redrawing the
  // same cards would take the keyboard focus from the button a user is on.
  let shown = null
  const load = async () => {
    const c = await api("GET", `/v1/tests/sessions/${id}/conflicts`)
    const key = JSON.stringify(c)
    if (key === shown) return
    shown = key
    const groups = c.items ?? groupFlat(c.conflicts ?? [])
    for (const g of groups) {
      const a = assets.get(g.asset_id)
      if (a) {
        g.identifier ??= a.identifier
        g.location ??= a.location
        g.asset_type ??= a.asset_type
      }
    }
    if (!groups.length && !(c.document ?? []).length) {
      replace(body, h("p", { class: "empty", id: "no-conflicts" }, "No conflicts in this session."))
      return
    }
    replace(
      body,
      groups.map(g => itemCard(id, g, msg, load)),
      (c.document ?? []).length ? documentFields(c.document) : null,
    )
  }
  await load()
  const off = subscribe((type, data) => {
    if (type === "lagged" || (type === "session" && data?.session_id === id)) load()
  })
  const unwatch = watch(id)
  return () => {
    off()
    unwatch()
  }
}

/** The flat list of an older server, grouped by item path (no sides: values per field). */
function groupFlat(conflicts) {
  const byItem = new Map()
  for (const c of conflicts) {
    const m = c.path.match(/^\/items\/([^/]+)\/(.+)$/)
    if (!m) continue
    const g = byItem.get(m[1]) ?? { asset_id: m[1], identifier: null, location: null, fields: [], sides: [] }
    g.fields.push({ field: m[2], path: c.path, kind: c.kind, winner: c.winner, problem: c.problem, values: c.values })
    byItem.set(m[1], g)
  }
  return [...byItem.values()]
}

function author(a) {
  if (!a) return "unknown"
  return [a.user_name ?? (a.user_id ? `user ${a.user_id.slice(0, 8)}` : "unknown"), a.device_id ? `on ${a.device_id}` : null, a.received_at ? `at ${when(a.received_at)}` : null]
    .filter(Boolean)
    .join(" ")
}

function itemCard(sessionId, g, msg, reload) {
  const title = `${g.identifier ?? "(no identifier)"} · ${g.location ?? g.asset_id}`
  const writable = can.work()
  const resolve = async (body, label) => {
    try {
      if (g.sides?.length || body.values) {
        await api("POST", `/v1/tests/sessions/${sessionId}/conflicts/resolve-item`, { asset_id: g.asset_id, ...body })
      } else {
        // Older server: one resolve per field, each keeping the chosen side's value.
        for (const f of g.fields) {
          const v = f.values[body.side]
          if (v) await api("POST", `/v1/tests/sessions/${sessionId}/conflicts/resolve`, { path: f.path, value: v.value })
        }
      }
      replace(msg, notice(`Resolved ${g.identifier ?? g.asset_id}: ${label}.`, "ok"))
      await reload()
    } catch (e) {
      replace(msg, notice(e.message, "error"))
    }
  }
  const sides = g.sides?.length
    ? g.sides.map((side, i) =>
        h(
          "div",
          { class: "side", "data-side": String(side.side ?? i) },
          h("h3", {}, `Side ${i + 1}`),
          h("p", { class: "author" }, author(side.author)),
          h("dl", { class: "values" }, Object.entries(side.values ?? {}).map(([k, v]) => h("div", {}, h("dt", {}, k), h("dd", {}, show(v))))),
          writable ? h("button", { type: "button", class: "primary keep", onclick: () => resolve({ side: side.side ?? i }, `kept side ${i + 1} (${author(side.author)})`) }, `Keep side ${i + 1}`) : null,
        ),
      )
    : // Without sides: a side per candidate value index.
      [...Array(Math.max(...g.fields.map(f => f.values.length)))].map((_, i) =>
        h(
          "div",
          { class: "side", "data-side": String(i) },
          h("h3", {}, `Side ${i + 1}`),
          h("p", { class: "author" }, author(g.fields[0].values[i]?.author)),
          h("dl", { class: "values" }, g.fields.map(f => h("div", {}, h("dt", {}, f.field), h("dd", {}, show(f.values[i]?.value))))),
          writable ? h("button", { type: "button", class: "primary keep", onclick: () => resolve({ side: i }, `kept side ${i + 1}`) }, `Keep side ${i + 1}`) : null,
        ),
      )
  const edit = writable ? editForm(g, values => resolve({ values }, "values entered by hand")) : null
  return h(
    "section",
    { class: "conflict card", "data-asset": g.asset_id, "aria-label": title },
    h("h2", {}, title, g.asset_type ? h("span", { class: "sub" }, ` ${g.asset_type.replace(/_/g, " ")}`) : null),
    h("p", { class: "fields" }, "Fields in conflict: ", g.fields.map(f => f.field).join(", ")),
    g.fields.some(f => f.problem) ? notice(g.fields.map(f => f.problem).filter(Boolean).join("; "), "error") : null,
    h("div", { class: "sides" }, sides),
    edit,
  )
}

function editForm(g, submit) {
  const form = h(
    "form",
    { class: "inline-form edit" },
    g.fields.map(f =>
      field(f.field, h("input", { name: f.field, value: typeof f.winner === "object" ? JSON.stringify(f.winner) : show(f.winner === null ? "" : f.winner) })),
    ),
    h("button", { type: "submit" }, "Resolve with these values"),
  )
  form.addEventListener("submit", e => {
    e.preventDefault()
    const values = {}
    for (const f of g.fields) {
      const raw = String(new FormData(form).get(f.field) ?? "")
      // Numbers and booleans stay what they were.
      values[f.field] = typeof f.winner === "number" && raw !== "" && !isNaN(Number(raw)) ? Number(raw) : typeof f.winner === "boolean" ? raw === "true" : raw
    }
    submit(values)
  })
  return h("details", {}, h("summary", {}, "Enter values instead"), form)
}

function documentFields(list) {
  return h(
    "section",
    { class: "card" },
    h("h2", {}, "Session fields"),
    h("ul", {}, list.map(f => h("li", {}, `${f.path ?? f.field}: `, (f.values ?? []).map(v => `${show(v.value)} (${author(v.author)})`).join(" / ")))),
  )
}
