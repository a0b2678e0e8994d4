// DOM helpers. API strings are untrusted: everything is built with createElement and
// textContent, so no API value is ever parsed as markup.

/**
 * An element: `h("button", { class: "primary", onclick: fn }, "Save")`.
 * Attributes starting with "on" are listeners; `dataset`, `style` objects are not supported
 * (CSP forbids inline styles anyway: use classes). Children: nodes, strings, numbers, arrays,
 * null/undefined/false (skipped).
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag)
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === undefined || v === null || v === false) continue
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v)
    else if (k === "class") el.className = v
    else if (k === "value") el.value = v
    else if (k === "checked") el.checked = Boolean(v)
    else if (v === true) el.setAttribute(k, "")
    else el.setAttribute(k, String(v))
  }
  append(el, children)
  return el
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue
    if (Array.isArray(c)) append(el, c)
    else if (c instanceof Node) el.appendChild(c)
    else el.appendChild(document.createTextNode(String(c)))
  }
}

/** Replace the children of `el`. */
export function replace(el, ...children) {
  el.replaceChildren()
  append(el, children)
  return el
}

/** A value for display: dates shortened, null as a dash, objects as JSON text. */
export function show(v) {
  if (v === null || v === undefined || v === "") return "—"
  if (typeof v === "object") return JSON.stringify(v)
  return String(v)
}

/** "2026-12-06T10:11:12Z" → "2026-12-06 10:11" (UTC, as the server stores it). */
export function when(iso) {
  if (!iso) return "—"
  const s = typeof iso === "number" ? new Date(iso * 1000).toISOString() : String(iso)
  return s.replace("T", " ").slice(0, 16)
}

/** A table: headers and rows of cells (each cell a node or text). */
export function table(headers, rows, { caption, empty = "Nothing here yet." } = {}) {
  if (!rows.length) return h("p", { class: "empty" }, empty)
  return h(
    "table",
    {},
    caption ? h("caption", {}, caption) : null,
    h("thead", {}, h("tr", {}, headers.map(x => h("th", { scope: "col" }, x)))),
    h("tbody", {}, rows.map(r => h("tr", {}, r.map(c => h("td", {}, c))))),
  )
}

/** A status badge, coloured by a class named after the value (`badge-overdue`). */
export function badge(value, extra = "") {
  const v = value ?? "unknown"
  return h("span", { class: `badge badge-${String(v).replace(/[^a-z0-9_]/gi, "")} ${extra}` }, String(v).replace(/_/g, " "))
}

/** A labelled form control. */
export function field(label, control, hint) {
  return h("label", { class: "field" }, h("span", { class: "label" }, label), control, hint ? h("span", { class: "hint" }, hint) : null)
}

/** Form values as an object (empty strings left out). */
export function formValues(form) {
  const out = {}
  for (const [k, v] of new FormData(form).entries()) if (v !== "") out[k] = v
  return out
}

/** A message line for errors and confirmations (role=status so screen readers hear it). */
export function notice(text, kind = "info") {
  return h("p", { class: `notice notice-${kind}`, role: kind === "error" ? "alert" : "status" }, text)
}
