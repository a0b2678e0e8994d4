// Users of the organisation (admin): create, change role, sign out everywhere (revoke tokens),
// unlock a throttled login, deactivate.

import { all, api, me } from "./api.js"
import { h, replace, field, formValues, notice, table } from "./dom.js"

const ROLES = ["admin", "office", "inspector", "auditor"]

export async function render(root) {
  const list = h("div", { id: "users" })
  const msg = h("div", { id: "users-message" })
  const load = async () => {
    const users = await all("/v1/users")
    replace(
      list,
      table(
        ["User", "Role", "Active", "Actions"],
        users.map(u => {
          const self = u.id === me().id
          const role = h("select", { "aria-label": `Role of ${u.email}`, disabled: self }, ROLES.map(r => h("option", { value: r, selected: r === u.role }, r)))
          role.addEventListener("change", () => act(() => api("PATCH", `/v1/users/${u.id}`, { role: role.value }), `${u.email} is now ${role.value}`))
          return [
            h("span", {}, u.full_name ? `${u.full_name} · ` : "", u.email),
            role,
            u.active ? "yes" : "no",
            h(
              "div",
              { class: "actions" },
              h("button", { type: "button", "aria-label": `Sign ${u.email} out everywhere`, onclick: () => act(() => api("POST", `/v1/users/${u.id}/revoke-tokens`, {}), `${u.email} is signed out everywhere`) }, "Sign out everywhere"),
              h("button", { type: "button", "aria-label": `Unlock ${u.email}`, onclick: () => act(() => api("POST", `/v1/users/${u.id}/unlock`, {}), `${u.email} can sign in again`) }, "Unlock"),
              self ? null : h("button", { type: "button", onclick: () => act(() => api("PATCH", `/v1/users/${u.id}`, { active: !u.active }), `${u.email} ${u.active ? "deactivated" : "reactivated"}`) }, u.active ? "Deactivate" : "Reactivate"),
            ),
          ]
        }),
      ),
    )
  }
  const act = async (call, done) => {
    try {
      await call()
      replace(msg, notice(done, "ok"))
      await load()
    } catch (e) {
      replace(msg, notice(e.message, "error"))
    }
  }
  const form = h(
    "form",
    { class: "inline-form", id: "create-user" },
    field("Email", h("input", { name: "email", type: "email", required: true })),
    field("Name", h("input", { name: "full_name" })),
    field("Role", h("select", { name: "role" }, ROLES.map(r => h("option", { value: r, selected: r === "inspector" }, r)))),
    field("Initial password", h("input", { name: "password", type: "password", required: true, autocomplete: "new-password" }), "At least 12 characters."),
    h("button", { type: "submit", class: "primary" }, "Create user"),
  )
  form.addEventListener("submit", e => {
    e.preventDefault()
    act(() => api("POST", "/v1/users", formValues(form)).then(() => form.reset()), "User created")
  })
  replace(root, h("h1", {}, "Users"), h("details", {}, h("summary", {}, "Add a user"), form), msg, list)
  await load()
}
