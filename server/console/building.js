// A building: its assets (filters, CSV import with a dry-run preview before applying), its
// compliance report (CSV/PDF downloads), its schedule and its sessions.

import { all, api, can, download } from "./api.js"
import { h, replace, badge, field, formValues, notice, table, when, show } from "./dom.js"
import { subscribe } from "./live.js"

const TABS = [
  ["assets", "Assets"],
  ["report", "Compliance report"],
  ["schedule", "Schedule"],
  ["sessions", "Sessions"],
]

export async function render(root, { id, tab }) {
  const b = await api("GET", `/v1/buildings/${id}`)
  const body = h("section", { id: `tab-${tab}`, "aria-labelledby": "tab-title" })
  replace(
    root,
    h("p", { class: "crumbs" }, h("a", { href: "#/buildings" }, "Buildings"), " / "),
    h("div", { class: "head" }, h("h1", { id: "building-name" }, b.name), b.status ? badge(b.status.overall) : null),
    h("p", { class: "sub" }, b.address, " · ", b.building_type, b.state ? ` · ${b.state}` : ""),
    h(
      "nav",
      { class: "tabs", "aria-label": "Building" },
      TABS.map(([t, label]) =>
        h("a", { href: `#/buildings/${id}/${t}`, "aria-current": t === tab ? "page" : null }, label),
      ),
    ),
    body,
  )
  const screens = { assets, report, schedule, sessions }
  await (screens[tab] ?? assets)(body, b)
  return subscribe((type, data) => {
    if (tab === "sessions" && (type === "lagged" || (type === "session" && data?.building_id === id))) sessions(body, b)
  })
}

async function assets(root, b) {
  const list = h("div", { id: "assets" })
  const filters = h(
    "form",
    { class: "inline-form", id: "asset-filters", role: "search" },
    field("Type", h("input", { name: "asset_type", placeholder: "portable_extinguisher" })),
    field("Identifier", h("input", { name: "identifier" })),
    h("button", { type: "submit" }, "Filter"),
  )
  const load = async () => {
    const q = new URLSearchParams(formValues(filters))
    const items = await all(`/v1/buildings/${b.id}/assets?${q}`)
    replace(
      list,
      table(
        ["Identifier", "Type", "Location", "Installed", "Rules"],
        items.map(a => [show(a.identifier), a.asset_type.replace(/_/g, " "), a.location, show(a.install_date), a.rule_codes.join(", ") || "all for its kind"]),
        { caption: `${items.length} asset(s)`, empty: "No assets (with these filters)." },
      ),
    )
  }
  filters.addEventListener("submit", e => {
    e.preventDefault()
    load()
  })
  replace(root, h("h2", { id: "tab-title" }, "Assets"), filters, can.office() ? importer(b, load) : null, list)
  await load()
}

/** CSV import: choose a file (or paste), preview the dry run, then apply the same text. */
function importer(b, reload) {
  const out = h("div", { id: "import-result" })
  const text = h("textarea", { name: "csv", id: "import-csv", rows: 5, placeholder: "identifier,asset_type,location\nEXT-0001,portable_extinguisher,Level 1 lobby" })
  const file = h("input", { type: "file", accept: ".csv,text/csv", id: "import-file" })
  file.addEventListener("change", async () => {
    if (file.files?.[0]) text.value = await file.files[0].text()
  })
  const apply = h("button", { type: "button", id: "import-apply", class: "primary", disabled: true }, "Apply import")
  let previewed = null
  const preview = h("button", { type: "button", id: "import-preview" }, "Preview")
  preview.addEventListener("click", async () => {
    apply.disabled = true
    try {
      const r = await api("POST", `/v1/buildings/${b.id}/assets/import?dry_run=true`, text.value, { raw: true, contentType: "text/csv" })
      previewed = r.valid ? text.value : null
      apply.disabled = !r.valid
      replace(out, plan(r))
    } catch (e) {
      replace(out, notice(e.message, "error"))
    }
  })
  text.addEventListener("input", () => {
    apply.disabled = text.value !== previewed
  })
  apply.addEventListener("click", async () => {
    try {
      const r = await api("POST", `/v1/buildings/${b.id}/assets/import`, previewed, { raw: true, contentType: "text/csv" })
      replace(out, notice(`Imported: ${r.imported} created, ${r.updated} updated, ${r.unchanged} unchanged, ${r.history_added} services added.`, "ok"))
      apply.disabled = true
      previewed = null
      await reload()
    } catch (e) {
      replace(out, notice(e.message, "error"), e.problem?.errors ? errors(e.problem.errors) : null)
    }
  })
  return h(
    "details",
    { class: "import" },
    h("summary", {}, "Import assets from CSV"),
    h("p", { class: "hint" }, "Preview shows what the file would do; nothing is written until you apply it."),
    field("CSV file", file),
    field("or paste CSV", text),
    h("div", { class: "actions" }, preview, apply),
    out,
  )
}

function plan(r) {
  return h(
    "div",
    { class: "plan" },
    notice(
      r.valid
        ? `Preview: ${r.rows} row(s) — ${r.imported} to create, ${r.updated} to update, ${r.unchanged} unchanged, ${r.history_added} services to add.`
        : `${r.errors.length} problem(s): nothing can be imported until the file is fixed.`,
      r.valid ? "info" : "error",
    ),
    r.errors?.length ? errors(r.errors) : null,
    table(
      ["Row", "Action", "Identifier", "Changes", "Services"],
      (r.items ?? []).map(i => [
        String(i.row),
        badge(i.action),
        show(i.identifier),
        (i.changes ?? []).map(c => `${c.field}: ${show(c.old)} → ${show(c.new)}`).join("; ") || "—",
        (i.history ?? []).map(s => `${s.rule_code} ${s.serviced_on}`).join("; ") || "—",
      ]),
      { empty: "" },
    ),
  )
}

function errors(list) {
  return table(["Row", "Column", "Problem"], list.map(e => [String(e.row), show(e.field), e.message]))
}

async function report(root, b) {
  const r = await api("GET", `/v1/buildings/${b.id}/compliance`)
  const s = r.summary
  const msg = h("div")
  const dl = (fmt, type) =>
    h("button", {
      type: "button",
      id: `download-${fmt}`,
      onclick: () => download(`/v1/buildings/${b.id}/compliance?format=${fmt}`, `compliance-${b.name.replace(/[^\w-]+/g, "_")}.${fmt}`).catch(e => replace(msg, notice(e.message, "error"))),
    }, `Download ${type}`)
  replace(
    root,
    h("h2", { id: "tab-title" }, "Compliance report ", badge(r.status)),
    h("div", { class: "actions" }, dl("csv", "CSV"), dl("pdf", "PDF")),
    msg,
    h(
      "dl",
      { class: "summary" },
      [
        ["Assets", s.assets],
        ["Checks", s.checks],
        ["Overdue", s.overdue],
        ["Never serviced", s.never_serviced],
        ["Failed", s.failed],
        ["Open critical defects", s.open_defects.critical],
        ["Open other defects", s.open_defects.non_critical + s.open_defects.non_conformance],
      ].map(([k, v]) => h("div", {}, h("dt", {}, k), h("dd", {}, String(v)))),
    ),
    table(
      ["Asset", "Routine", "Last service", "Outcome", "Next due", "Status"],
      r.items.map(i => [
        `${show(i.identifier)} · ${i.location}`,
        show(i.rule_code),
        when(i.last_service),
        show(i.outcome),
        h("span", { class: i.overdue ? "overdue" : "" }, show(i.next_due)),
        badge(i.status),
      ]),
      { caption: `As of ${r.as_of}`, empty: "No routines apply yet." },
    ),
  )
}

async function schedule(root, b) {
  const today = new Date()
  const to = new Date(today.getTime() + 180 * 86400_000)
  const iso = d => d.toISOString().slice(0, 10)
  const r = await api("GET", `/v1/schedule?building_id=${b.id}&from=${iso(today)}&to=${iso(to)}&limit=500`)
  replace(
    root,
    h("h2", { id: "tab-title" }, "Schedule (next six months)"),
    h("p", {}, `${r.total} routine(s) due, ${r.overdue ?? 0} overdue.`),
    table(
      ["Due", "Due by", "Asset", "Routine", ""],
      (r.items ?? []).map(i => [
        show(i.next_due),
        show(i.due_by),
        `${show(i.identifier)} · ${show(i.location)}`,
        show(i.rule_code),
        i.overdue ? badge("overdue") : "",
      ]),
      { empty: "Nothing due in the next six months." },
    ),
  )
}

async function sessions(root, b) {
  const list = h("div", { id: "building-sessions" })
  const load = async () => {
    const items = await all(`/v1/tests/sessions?building_id=${b.id}`)
    replace(
      list,
      table(
        ["Session", "Frequency", "Status", "Created"],
        items.map(s => [h("a", { href: `#/sessions/${s.id}` }, s.name), s.frequency.replace(/_/g, " "), badge(s.status), when(s.created_at)]),
        { empty: "No sessions yet." },
      ),
    )
  }
  replace(root, h("h2", { id: "tab-title" }, "Sessions"), can.office() ? await createSession(b, load) : null, list)
  await load()
}

const FREQUENCIES = ["monthly", "three_monthly", "six_monthly", "yearly", "five_yearly", "ten_yearly", "twenty_five_yearly", "thirty_yearly", "weekly"]

async function createSession(b, reload) {
  const msg = h("div")
  let users = []
  try {
    if (can.admin()) users = (await all("/v1/users")).filter(u => u.role === "inspector" && u.active)
  } catch {}
  const assign = users.length
    ? h("fieldset", {}, h("legend", {}, "Assign inspectors"), users.map(u => h("label", { class: "check" }, h("input", { type: "checkbox", name: "assigned_to", value: u.id }), u.full_name ?? u.email)))
    : field("Assign (user ids, comma separated)", h("input", { name: "assigned_ids", id: "session-assign" }))
  const form = h(
    "form",
    { class: "inline-form", id: "create-session" },
    field("Name", h("input", { name: "name", required: true, id: "new-session-name" })),
    field("Frequency", h("select", { name: "frequency", id: "new-session-frequency" }, FREQUENCIES.map(f => h("option", { value: f, selected: f === "six_monthly" }, f.replace(/_/g, " "))))),
    assign,
    h("button", { type: "submit", class: "primary" }, "Create session"),
    msg,
  )
  form.addEventListener("submit", async e => {
    e.preventDefault()
    const fd = new FormData(form)
    const assigned = [
      ...fd.getAll("assigned_to").map(String),
      ...String(fd.get("assigned_ids") ?? "").split(",").map(s => s.trim()).filter(Boolean),
    ]
    try {
      const s = await api("POST", "/v1/tests/sessions", { building_id: b.id, name: fd.get("name"), frequency: fd.get("frequency"), assigned_to: assigned })
      location.hash = `#/sessions/${s.id}`
    } catch (err) {
      replace(msg, notice(err.message, "error"))
    }
  })
  return h("details", {}, h("summary", {}, "New test session"), form)
}
