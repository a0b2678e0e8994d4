// A session: its items with outcomes, readings, notes and evidence thumbnails. Refreshed live
// when a tablet edits the document (`session` events for this session).

import { all, api } from "./api.js"
import { h, replace, badge, table, when, show } from "./dom.js"
import { subscribe, watch } from "./live.js"

export async function render(root, { id }) {
  const s = await api("GET", `/v1/tests/sessions/${id}`)
  const items = h("div", { id: "items" })
  const conflictsLink = h("a", { href: `#/sessions/${id}/conflicts`, id: "conflicts-link", class: "button" }, "Conflicts")
  replace(
    root,
    h("p", { class: "crumbs" }, h("a", { href: "#/sessions" }, "Sessions"), " / ", h("a", { href: `#/buildings/${s.building_id}/sessions` }, "Building")),
    h("div", { class: "head" }, h("h1", { id: "session-name" }, s.name), h("span", { id: "session-status" }, badge(s.status))),
    h("p", { class: "sub" }, s.frequency.replace(/_/g, " "), " · created ", when(s.created_at), s.signed_off ? ` · signed off ${when(s.signed_off.at)} (${s.signed_off.licence})` : ""),
    h("div", { class: "actions" }, conflictsLink, h("a", { href: `#/sessions/${id}/history`, class: "button" }, "History")),
    items,
  )
  const urls = []
  let unwatch = () => {}
  const thumbs = new Map()
  const load = async () => {
    const [results, evidence, doc, assets] = await Promise.all([
      all(`/v1/tests/sessions/${id}/results`),
      all(`/v1/tests/sessions/${id}/evidence`).catch(() => []),
      api("GET", `/v1/tests/sessions/${id}/document`),
      all(`/v1/buildings/${s.building_id}/assets`).catch(() => []),
      refreshConflicts(id, conflictsLink),
    ])
    unwatch = watch(id, doc.heads)
    const status = doc.document?.status
    if (status) replace(root.querySelector("#session-status"), badge(status))
    const byAsset = new Map(assets.map(a => [a.id, a]))
    const evByAsset = new Map()
    for (const e of evidence) {
      const k = e.asset_id ?? ""
      evByAsset.set(k, [...(evByAsset.get(k) ?? []), e])
    }
    replace(
      items,
      table(
        ["Asset", "Routine", "Outcome", "Readings", "Notes", "Evidence", "Recorded"],
        results.map(projected => {
          // The document is the truth and the freshest (the projection follows it): its
          // outcome, readings and notes; the projection's classification and assessment.
          const item = doc.document?.items?.[projected.asset_id] ?? {}
          const r = {
            ...projected,
            outcome: typeof item.outcome === "string" ? item.outcome : projected.outcome,
            readings: item.readings && typeof item.readings === "object" ? item.readings : projected.readings,
            notes: typeof item.notes === "string" ? item.notes : projected.notes,
          }
          const a = byAsset.get(r.asset_id)
          return [
            a ? `${show(a.identifier)} · ${a.location}` : r.asset_id,
            show(r.rule_code),
            h("span", { class: "outcome", "data-asset": r.asset_id }, badge(r.outcome ?? r.raw_outcome ?? "not_tested"), r.classification && r.classification !== "compliant" ? badge(r.classification) : null),
            readings(r),
            r.notes || "—",
            h("div", { class: "thumbs" }, (evByAsset.get(r.asset_id) ?? []).map(e => thumb(e, thumbs, urls))),
            r.recorded_at ? when(r.recorded_at) : "—",
          ]
        }),
        { caption: `${results.length} item(s)`, empty: "This session has no items." },
      ),
    )
  }
  await load()
  const off = subscribe((type, data) => {
    if (type === "lagged" || (type === "session" && data?.session_id === id)) load()
  })
  return () => {
    off()
    unwatch()
    for (const u of urls) URL.revokeObjectURL(u)
  }
}

async function refreshConflicts(id, link) {
  try {
    const c = await api("GET", `/v1/tests/sessions/${id}/conflicts`)
    const n = c.items?.length ?? c.conflicts?.length ?? 0
    replace(link, n ? `Conflicts (${n})` : "Conflicts")
    link.classList.toggle("attention", n > 0)
  } catch {}
}

function readings(r) {
  const entries = Object.entries(r.readings ?? {})
  if (!entries.length) return "—"
  const verdicts = r.assessment?.readings ?? {}
  return h(
    "ul",
    { class: "readings" },
    entries.map(([k, v]) => h("li", { class: verdicts[k]?.verdict === "outside" ? "bad" : "" }, `${k.replace(/_/g, " ")}: ${show(v)}`, verdicts[k]?.verdict ? ` (${verdicts[k].verdict.replace(/_/g, " ")})` : "")),
  )
}

/** An evidence thumbnail: the bytes fetched with the bearer token, shown from a blob URL. */
function thumb(e, cache, urls) {
  if (!e.content_type.startsWith("image/") || e.content_type === "image/heic") {
    return h("span", { class: "file" }, e.evidence_type, " ", e.filename ?? "")
  }
  const img = h("img", { alt: e.metadata?.caption ?? e.filename ?? "evidence photo", class: "thumb", width: 96, height: 72 })
  const cached = cache.get(e.id)
  if (cached) img.src = cached
  else
    api("GET", `/v1/evidence/${e.id}/content`, undefined, { blob: true })
      .then(b => {
        const u = URL.createObjectURL(b)
        urls.push(u)
        cache.set(e.id, u)
        img.src = u
      })
      .catch(() => img.replaceWith(h("span", { class: "file" }, "unavailable")))
  return img
}
