// The REST client of the console. Tokens live in memory only (no cookie, no storage): nothing
// for another site to ride on (no CSRF surface) and nothing left behind; a reload signs out.
// The access token is refreshed with the refresh token before it expires, and once on a 401.

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail ?? problem?.title ?? `request failed (${status})`)
    this.status = status
    this.problem = problem
  }
}

const session = {
  access: null,
  refresh: null,
  timer: null,
  /** The signed-in user (GET /v1/users/me). */
  me: null,
  onSignedOut: () => {},
}

export function me() {
  return session.me
}

export function token() {
  return session.access
}

/** Role checks for what the screens show; the server decides anyway. */
export const can = {
  /** Buildings, assets, imports, sessions, defect follow-up. */
  office: () => ["admin", "office"].includes(session.me?.role),
  /** Users. */
  admin: () => session.me?.role === "admin",
  /** Resolving conflicts and moving defects: office staff and inspectors (their sessions). */
  work: () => ["admin", "office", "inspector"].includes(session.me?.role),
}

export function onSignedOut(fn) {
  session.onSignedOut = fn
}

function useTokens(t) {
  session.access = t.access_token
  session.refresh = t.refresh_token
  clearTimeout(session.timer)
  // Well before expiry; at least 5 s so a tiny TTL cannot spin.
  const ms = Math.max(5000, (t.expires_in ?? 900) * 1000 * 0.8)
  session.timer = setTimeout(() => refresh().catch(() => signedOut()), ms)
}

export async function login(email, password) {
  const res = await fetch("/v1/auth/login", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ email, password }),
  })
  const body = await parse(res)
  if (!res.ok) throw new ApiError(res.status, body)
  useTokens(body)
  session.me = await api("GET", "/v1/users/me")
  return session.me
}

let refreshing = null

async function refresh() {
  if (!session.refresh) throw new ApiError(401, { detail: "signed out" })
  // One refresh at a time: concurrent 401s share it.
  refreshing ??= (async () => {
    try {
      const res = await fetch("/v1/auth/refresh", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ refresh_token: session.refresh }),
      })
      const body = await parse(res)
      if (!res.ok) throw new ApiError(res.status, body)
      useTokens(body)
    } finally {
      refreshing = null
    }
  })()
  return refreshing
}

function signedOut() {
  clearTimeout(session.timer)
  session.access = session.refresh = session.me = null
  session.onSignedOut()
}

export async function logout() {
  const t = session.access
  signedOut()
  if (t) {
    // Revokes the access and refresh tokens server-side.
    await fetch("/v1/auth/logout", {
      method: "POST",
      headers: { authorization: `Bearer ${t}`, "content-type": "application/json" },
      body: "{}",
    }).catch(() => {})
  }
}

async function parse(res) {
  const text = await res.text()
  if (!text) return null
  try {
    return JSON.parse(text)
  } catch {
    return text
  }
}

/**
 * An authenticated request. `body` is JSON unless `opts.raw` (then it is sent as is with
 * `opts.contentType`). `opts.blob` answers a Blob (downloads, images).
 */
export async function api(method, path, body, opts = {}) {
  const go = () => {
    const headers = { authorization: `Bearer ${session.access}`, ...(opts.headers ?? {}) }
    let payload
    if (body !== undefined) {
      if (opts.raw) {
        headers["content-type"] = opts.contentType ?? "text/plain"
        payload = body
      } else {
        headers["content-type"] = "application/json"
        payload = JSON.stringify(body)
      }
    }
    if (["POST", "PUT", "PATCH", "DELETE"].includes(method) && opts.idempotent) {
      headers["idempotency-key"] = crypto.randomUUID()
    }
    return fetch(path, { method, headers, body: payload })
  }
  if (!session.access) throw new ApiError(401, { detail: "signed out" })
  let res = await go()
  if (res.status === 401 && session.refresh) {
    try {
      await refresh()
    } catch {
      signedOut()
      throw new ApiError(401, { detail: "your sign-in has ended; sign in again" })
    }
    res = await go()
  }
  if (opts.blob && res.ok) return res.blob()
  const parsed = await parse(res)
  if (!res.ok) throw new ApiError(res.status, parsed)
  return parsed
}

/** Every page of a paginated list (`items`, `next_cursor`), up to `max` items. */
export async function all(path, max = 2000) {
  const items = []
  let cursor = null
  do {
    const u = new URL(path, location.origin)
    u.searchParams.set("limit", "100")
    if (cursor) u.searchParams.set("cursor", cursor)
    const page = await api("GET", u.pathname + u.search)
    items.push(...(page.items ?? []))
    cursor = page.next_cursor
  } while (cursor && items.length < max)
  return items
}

/** Download an authenticated file: fetch with the bearer → Blob → object URL → click. */
export async function download(path, filename) {
  const blob = await api("GET", path, undefined, { blob: true })
  const url = URL.createObjectURL(blob)
  const a = document.createElement("a")
  a.href = url
  a.download = filename
  document.body.appendChild(a)
  a.click()
  a.remove()
  setTimeout(() => URL.revokeObjectURL(url), 60_000)
}
