// The defects board: one column per lifecycle status, deadlines shown and overdue highlighted;
// move a defect one step (the server's `next_status`), override its severity with a reason,
// and see the notices sent to the owner. Keyboard: every action is a button or form control.

import { all, api, can } from "./api.js"
import { h, replace, badge, field, notice, when, show } from "./dom.js"
import { subscribe } from "./live.js"

const COLUMNS = ["open", "acknowledged", "repair_scheduled", "repaired", "verified", "closed"]
const SEVERITIES = ["critical", "non_critical", "non_conformance"]

export async function render(root) {
  const board = h("div", { class: "board", id: "board" })
  const msg = h("div", { id: "defects-message" })
  const buildingFilter = h("select", { id: "defect-building", "aria-label": "Building" }, h("option", { value: "" }, "all buildings"))
  const buildings = await all("/v1/buildings")
  for (const b of buildings) buildingFilter.appendChild(h("option", { value: b.id }, b.name))
  const names = new Map(buildings.map(b => [b.id, b.name]))
  replace(root, h("div", { class: "head" }, h("h1", {}, "Defects"), buildingFilter), msg, board)
  // Redrawn only when the defects changed (a live event for a change already shown would
  // otherwise take the keyboard focus from the card a user is on).
  let shown = null
  const load = async () => {
    const q = buildingFilter.value ? `?building_id=${buildingFilter.value}` : ""
    const defects = await all(`/v1/defects${q}`)
    const key = q + JSON.stringify(defects)
    if (key === shown) return
    shown = key
    replace(
      board,
      COLUMNS.map(col => {
        const cards = defects.filter(d => (col === "closed" ? ["closed", "cancelled", "duplicate"].includes(d.status) : d.status === col))
        return h(
          "section",
          { class: "column", "data-status": col, "aria-label": col.replace(/_/g, " ") },
          h("h2", {}, col.replace(/_/g, " "), h("span", { class: "count" }, ` ${cards.length}`)),
          cards.map(d => card(d, names, msg, load)),
        )
      }),
    )
  }
  buildingFilter.addEventListener("change", load)
  await load()
  return subscribe(type => {
    if (type === "defect" || type === "lagged") load()
  })
}

function card(d, names, msg, reload) {
  const act = async (body, what) => {
    try {
      await api("PATCH", `/v1/defects/${d.id}`, body)
      replace(msg, notice(`${d.title}: ${what}.`, "ok"))
      await reload()
      // Keep the keyboard where the defect went.
      document.querySelector(`[data-defect="${d.id}"] button`)?.focus()
    } catch (e) {
      replace(msg, notice(e.message, "error"))
    }
  }
  const notices = h("div", { class: "notices" })
  const showNotices = async () => {
    try {
      const list = await all(`/v1/notices?defect_id=${d.id}`)
      replace(
        notices,
        list.length
          ? h("ul", {}, list.map(n => h("li", {}, `${String(n.kind).replace(/_/g, " ")} ${when(n.created_at)}: `, n.deliveries.map(x => `${x.channel} ${x.recipient} ${x.status}`).join("; ") || "not delivered yet")))
          : h("p", { class: "hint" }, "No notices yet."),
      )
    } catch (e) {
      replace(notices, notice(e.message, "error"))
    }
  }
  return h(
    "article",
    { class: `defect card ${d.overdue ? "is-overdue" : ""}`, "data-defect": d.id, tabindex: "-1" },
    h("h3", {}, d.title),
    h("p", {}, badge(d.severity), d.severity_overridden ? h("span", { class: "hint" }, ` set by hand: ${d.severity_reason ?? ""}`) : null, d.status !== "open" && !COLUMNS.includes(d.status) ? badge(d.status) : null),
    h("p", { class: "sub" }, names.get(d.building_id) ?? "", d.asset ? ` · ${show(d.asset.identifier)} · ${show(d.asset.location)}` : ""),
    h("p", { class: d.overdue ? "deadline overdue" : "deadline" }, d.overdue ? "Overdue: " : "Notify by ", when(d.notify_by), d.notified_at ? ` · notified ${when(d.notified_at)}` : ""),
    can.work() && d.next_status
      ? h("button", { type: "button", class: "primary advance", onclick: () => act({ status: d.next_status }, `moved to ${d.next_status.replace(/_/g, " ")}`) }, `Move to ${d.next_status.replace(/_/g, " ")}`)
      : null,
    can.work() ? severityForm(d, act) : null,
    h("details", { ontoggle: e => e.target.open && showNotices() }, h("summary", {}, "Notices"), notices),
  )
}

function severityForm(d, act) {
  const form = h(
    "form",
    { class: "severity" },
    field("Severity", h("select", { name: "severity" }, SEVERITIES.map(s => h("option", { value: s, selected: s === d.severity }, s.replace(/_/g, " "))))),
    field("Reason", h("input", { name: "reason", required: true })),
    h("button", { type: "submit" }, "Change severity"),
  )
  form.addEventListener("submit", e => {
    e.preventDefault()
    const fd = new FormData(form)
    act({ severity: fd.get("severity"), reason: fd.get("reason") }, `severity ${fd.get("severity")}`)
  })
  return h("details", {}, h("summary", {}, "Override severity"), form)
}
