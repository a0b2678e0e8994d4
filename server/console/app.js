// The console's shell: sign-in, navigation, hash routing (`#/buildings/<id>`), so the server
// serves one page. Each screen is a module exporting `render(root, params)`, which may return a
// cleanup function (called when the user leaves the screen).

import { login, logout, me, can, onSignedOut, ApiError } from "./api.js"
import { h, replace, field, notice } from "./dom.js"
import * as live from "./live.js"

const routes = [
  [/^#?\/?$/, () => import("./buildings.js"), () => ({})],
  [/^#\/buildings$/, () => import("./buildings.js"), () => ({})],
  [/^#\/buildings\/([0-9a-f-]{36})(?:\/(\w+))?$/, () => import("./building.js"), m => ({ id: m[1], tab: m[2] ?? "assets" })],
  [/^#\/sessions$/, () => import("./sessions.js"), () => ({})],
  [/^#\/sessions\/([0-9a-f-]{36})$/, () => import("./session.js"), m => ({ id: m[1] })],
  [/^#\/sessions\/([0-9a-f-]{36})\/conflicts$/, () => import("./conflicts.js"), m => ({ id: m[1] })],
  [/^#\/sessions\/([0-9a-f-]{36})\/history$/, () => import("./history.js"), m => ({ id: m[1] })],
  [/^#\/defects$/, () => import("./defects.js"), () => ({})],
  [/^#\/users$/, () => import("./users.js"), () => ({})],
]

const main = document.getElementById("main")
let cleanup = null

function nav() {
  const links = [
    ["#/buildings", "Buildings"],
    ["#/sessions", "Sessions"],
    ["#/defects", "Defects"],
    can.admin() ? ["#/users", "Users"] : null,
  ].filter(Boolean)
  const here = location.hash || "#/buildings"
  replace(
    document.getElementById("nav"),
    links.map(([href, text]) =>
      h("a", { href, "aria-current": here.startsWith(href) ? "page" : null }, text),
    ),
  )
}

function signInScreen(message) {
  document.getElementById("top").hidden = true
  const err = h("div", { id: "signin-error" })
  const form = h(
    "form",
    { class: "signin", id: "signin", novalidate: true },
    h("h1", {}, "FireMode console"),
    h("p", {}, "Sign in with your FireMode account."),
    message ? notice(message, "info") : null,
    field("Email", h("input", { name: "email", type: "email", autocomplete: "username", required: true, id: "email" })),
    field("Password", h("input", { name: "password", type: "password", autocomplete: "current-password", required: true, id: "password" })),
    err,
    h("button", { type: "submit", class: "primary" }, "Sign in"),
  )
  form.addEventListener("submit", async e => {
    e.preventDefault()
    const fd = new FormData(form)
    const button = form.querySelector("button")
    button.disabled = true
    try {
      await login(String(fd.get("email")), String(fd.get("password")))
      signedIn()
    } catch (e) {
      const text = e instanceof ApiError && e.status === 401 ? "Wrong email or password." : e.message
      replace(err, notice(text, "error"))
      button.disabled = false
    }
  })
  replace(main, form)
  form.querySelector("input").focus()
}

function signedIn() {
  const user = me()
  document.getElementById("top").hidden = false
  replace(document.getElementById("who"), user.full_name ?? user.email, " · ", h("span", { class: "role", id: "role" }, user.role))
  live.start()
  route()
}

async function route() {
  if (!me()) return signInScreen()
  if (cleanup) {
    try {
      cleanup()
    } catch {}
    cleanup = null
  }
  nav()
  const hash = location.hash || "#/buildings"
  for (const [re, load, params] of routes) {
    const m = hash.match(re)
    if (!m) continue
    const screen = await load()
    const root = h("div", { class: "screen" })
    replace(main, root)
    try {
      cleanup = (await screen.render(root, params(m))) ?? null
    } catch (e) {
      replace(root, notice(e.message ?? String(e), "error"))
    }
    return
  }
  replace(main, h("h1", {}, "Not found"), h("p", {}, h("a", { href: "#/buildings" }, "Back to buildings")))
}

onSignedOut(() => {
  live.stop()
  if (cleanup) cleanup()
  cleanup = null
  signInScreen("You are signed out.")
})

document.getElementById("logout").addEventListener("click", () => logout())
window.addEventListener("hashchange", route)
signInScreen()
