// The interactive part of /docs: the page itself is rendered by the server (it reads without
// scripts); this module reads /openapi.json and adds, under each operation, its parameters,
// the fields of its request body, an example, its responses, and a form that sends the request
// to this server with a token held in memory. Same-origin only (the page's CSP allows no other
// connection); every value from the document is set as text, never parsed as HTML.

const state = { token: "", spec: null }

const el = (tag, attrs = {}, ...children) => {
  const e = document.createElement(tag)
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v
    else if (k === "text") e.textContent = v
    else e.setAttribute(k, v)
  }
  for (const c of children) if (c != null) e.append(c)
  return e
}

/** Follow a local `$ref`. */
function deref(schema) {
  let s = schema
  for (let i = 0; s && s.$ref && i < 10; i++) {
    const name = s.$ref.split("/").pop()
    s = state.spec.components.schemas[name]
  }
  return s || {}
}

/** A short text for a schema's type: `string (date)`, `one of: a, b`, `SessionView[]`. */
function typeText(schema) {
  if (!schema) return ""
  if (schema.$ref) return schema.$ref.split("/").pop()
  if (schema.oneOf) return schema.oneOf.map(typeText).filter(t => t !== "null").join(" | ") + " | null"
  if (schema.enum) return "one of: " + schema.enum.map(v => (v === null ? "null" : v)).join(", ")
  const t = Array.isArray(schema.type) ? schema.type.join(" | ") : schema.type || "object"
  if (schema.type === "array" || (Array.isArray(schema.type) && schema.type.includes("array"))) {
    return `${typeText(schema.items)}[]`
  }
  return schema.format ? `${t} (${schema.format})` : t
}

function fieldsTable(schema) {
  const s = deref(schema)
  const props = s.properties || {}
  const required = new Set(s.required || [])
  if (!Object.keys(props).length) return el("p", { text: typeText(schema) })
  const rows = Object.entries(props).map(([name, p]) =>
    el("tr", {},
      el("td", {}, el("code", { text: name }), required.has(name) ? el("span", { class: "req", text: " required" }) : null),
      el("td", { text: typeText(p.oneOf ? p : (p.$ref ? p : p)) }),
      el("td", { text: (p.description || deref(p).description || "").replace(/\n/g, " ") })))
  return el("table", {}, el("thead", {}, el("tr", {}, el("th", { text: "field" }), el("th", { text: "type" }), el("th", { text: "description" }))), el("tbody", {}, ...rows))
}

function paramsTable(params) {
  const rows = params.map(p =>
    el("tr", {},
      el("td", {}, el("code", { text: p.name }), p.required ? el("span", { class: "req", text: " required" }) : null),
      el("td", { text: p.in }),
      el("td", { text: typeText(p.schema) }),
      el("td", { text: (p.description || "").replace(/\n/g, " ") })))
  return el("table", {}, el("thead", {}, el("tr", {}, el("th", { text: "parameter" }), el("th", { text: "in" }), el("th", { text: "type" }), el("th", { text: "description" }))), el("tbody", {}, ...rows))
}

function tryForm(method, path, op) {
  const params = (op.parameters || []).filter(p => p.in === "path" || p.in === "query")
  const inputs = params.map(p => {
    const id = `${op.operationId}-${p.in}-${p.name}`
    const input = el("input", { id, name: p.name, "data-in": p.in, autocomplete: "off" })
    return el("label", { for: id }, `${p.name} (${p.in}) `, input)
  })
  const json = op.requestBody?.content?.["application/json"]
  const body = json ? el("textarea", { rows: "8", "aria-label": "request body (JSON)" }) : null
  if (body) body.value = JSON.stringify(json.example ?? {}, null, 2)
  const send = el("button", { type: "submit", text: `Send ${method.toUpperCase()}` })
  const out = el("pre", { class: "out", "aria-live": "polite" })
  const form = el("form", { class: "try" }, ...inputs, body, send, out)
  form.addEventListener("submit", async ev => {
    ev.preventDefault()
    let url = path
    const query = new URLSearchParams()
    for (const i of form.querySelectorAll("input[data-in]")) {
      if (i.dataset.in === "path") url = url.replace(`{${i.name}}`, encodeURIComponent(i.value))
      else if (i.value !== "") query.set(i.name, i.value)
    }
    if ([...query].length) url += `?${query}`
    const headers = {}
    if (state.token) headers.authorization = `Bearer ${state.token}`
    if (body) headers["content-type"] = "application/json"
    if (method !== "get") headers["idempotency-key"] = crypto.randomUUID()
    out.textContent = "…"
    try {
      const r = await fetch(url, { method: method.toUpperCase(), headers, body: body ? body.value : undefined })
      const type = r.headers.get("content-type") || ""
      let text
      if (type.includes("json")) text = JSON.stringify(await r.json(), null, 2)
      else if (type.startsWith("text/")) text = await r.text()
      else text = `(${type}, ${(await r.blob()).size} bytes)`
      out.textContent = `${r.status} ${r.statusText}\n${text}`
    } catch (e) {
      out.textContent = `request failed: ${e}`
    }
  })
  return form
}

function enhance(div, method, path, op) {
  const details = el("details", {}, el("summary", { text: "Fields, responses, try it" }))
  if (op.description && op.description !== op.summary) details.append(el("p", { class: "desc", text: op.description }))
  if (op.parameters?.length) details.append(el("h4", { text: "Parameters" }), paramsTable(op.parameters))
  const content = op.requestBody?.content || {}
  for (const [media, c] of Object.entries(content)) {
    details.append(el("h4", { text: `Request body (${media})` }))
    if (media === "application/json") details.append(fieldsTable(c.schema))
    else if (c.schema?.description) details.append(el("p", { text: c.schema.description }))
    if (c.example !== undefined) details.append(el("pre", { text: JSON.stringify(c.example, null, 2) }))
  }
  details.append(el("h4", { text: "Responses" }))
  const list = el("ul")
  for (const [status, r] of Object.entries(op.responses || {})) {
    const schemas = Object.entries(r.content || {}).map(([m, c]) => `${m}: ${typeText(c.schema)}`)
    list.append(el("li", {}, el("code", { text: status }), ` ${r.description || ""}${schemas.length ? ` (${schemas.join("; ")})` : ""}`))
  }
  details.append(list)
  if (path !== "/v1/sync") details.append(el("h4", { text: "Try it" }), tryForm(method, path, op))
  div.append(details)
}

function tokenBar() {
  const email = el("input", { id: "login-email", type: "email", autocomplete: "username" })
  const password = el("input", { id: "login-password", type: "password", autocomplete: "current-password" })
  const status = el("span", { class: "who", "aria-live": "polite", text: "not signed in" })
  const form = el("form", { class: "login" },
    el("label", { for: "login-email" }, "Email ", email),
    el("label", { for: "login-password" }, "Password ", password),
    el("button", { type: "submit", text: "Sign in" }), status)
  form.addEventListener("submit", async ev => {
    ev.preventDefault()
    const r = await fetch("/v1/auth/login", { method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ email: email.value, password: password.value }) })
    const j = await r.json().catch(() => ({}))
    if (r.ok) {
      state.token = j.access_token
      password.value = ""
      status.textContent = `signed in as ${email.value}: requests below carry the token`
    } else {
      status.textContent = `${r.status} ${j.code || ""} ${j.detail || ""}`
    }
  })
  return form
}

async function main() {
  const r = await fetch("/openapi.json")
  state.spec = await r.json()
  const byId = new Map()
  for (const [path, item] of Object.entries(state.spec.paths)) {
    for (const [method, op] of Object.entries(item)) if (op && op.operationId) byId.set(op.operationId, [method, path, op])
  }
  document.querySelector("h1").after(tokenBar())
  for (const div of document.querySelectorAll(".op[data-op]")) {
    const found = byId.get(div.dataset.op)
    if (found) enhance(div, ...found)
  }
  document.body.dataset.ready = "true"
}

main()
