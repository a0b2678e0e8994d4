// FireMode tablet client: REST login and session listing, and session documents synced with
// the FireMode server through UNMODIFIED @automerge/automerge-repo 2.5 clients.
//
// Plain ESM with JSDoc types rather than TypeScript: Node 20 (what CI has) cannot run .ts files
// without a compile step, and this module is also what the conformance tests import, so it must
// run as-is. Editors and `tsc --checkJs` still see the types.
//
// How a tablet uses it:
//
//   const fm = new FireModeClient({ baseUrl: "https://firemode.example", deviceId })
//   await fm.login(email, password)      // REST, then opens the sync connection
//   for (const s of await fm.mySessions()) {
//     const handle = await fm.openSession(s)   // repo.find(s.document_url)
//     handle.change(d => { d.items[assetId].outcome = "fail" })
//   }
//
// Tokens: the sync socket authenticates at the upgrade. Browsers cannot set headers on a
// WebSocket, so the access token travels as `?token=` in the URL. The JS adapter reconnects
// (every few seconds after a drop) with the URL it was built with, so when the token is
// refreshed the adapter must be REPLACED: `refresh()` removes the old adapter from the repo's
// network subsystem and adds a new one built with the new URL. Automerge sync then resumes
// from what each side has: no document is sent twice.

import * as A from "@automerge/automerge"
import { Repo, ImmutableString, interpretAsDocumentId } from "@automerge/automerge-repo"
import { WebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket"

// The REST types are generated from the server's /openapi.json (`npm run generate`, into
// generated/api.d.ts; the server's test suite regenerates them and runs `tsc` over this file,
// so a change of the API that breaks this client fails the build).
/** @typedef {import("../generated/api.js").components["schemas"]} Schemas */
/** A test session as the REST API lists it (`document_url` is what `repo.find()` takes). @typedef {Schemas["SessionView"]} Session */
/** @typedef {Schemas["TokenPair"]} Tokens */

/**
 * Record a result on a session item the way the server writes it: enumerations and ids as
 * scalar strings (ImmutableString; a plain JS string would become a text object), readings of
 * their rule's kind (a number, a boolean for yes/no, a string for a choice or text), and a note
 * APPENDED to the item's collaborative text so concurrent notes merge.
 * @param {import("@automerge/automerge-repo").DocHandle<any>} handle
 * @param {string} assetId
 * @param {object} r
 * @param {"pass"|"fail"|"not_tested"|"not_accessible"} [r.outcome]
 * @param {string} [r.observedCondition]  a condition of the item's rule, e.g. "extinguisher_missing"
 *                                         (schema 1 apps; counted with the list)
 * @param {string[]} [r.observedConditions] the item's conditions (schema 2), each its own defect
 * @param {Record<string, number|boolean|string>} [r.readings]
 * @param {string} [r.note]
 * @param {string} [r.recordedBy]          the user id
 */
export function recordResult(handle, assetId, { outcome, observedCondition, observedConditions, readings, note, recordedBy }) {
  handle.change(d => {
    const item = d.items[assetId]
    if (!item) throw new Error(`no item for asset ${assetId} in this session`)
    if (outcome !== undefined) item.outcome = new ImmutableString(outcome)
    // Schema 1 apps set one `observedCondition`; schema 2 keeps a list (each becomes a defect).
    if (observedCondition !== undefined) item.observedCondition = new ImmutableString(observedCondition)
    if (observedConditions !== undefined) item.observedConditions = observedConditions.map(c => new ImmutableString(c))
    for (const [name, value] of Object.entries(readings ?? {})) item.readings[name] = value
    if (note) {
      if (typeof item.notes !== "string") item.notes = ""
      A.splice(d, ["items", assetId, "notes"], item.notes.length, 0, note)
    }
    if (recordedBy) {
      item.recordedBy = new ImmutableString(recordedBy)
      item.recordedAt = new ImmutableString(new Date().toISOString())
    }
  })
}

/** An error answer of the REST API (RFC 9457 problem+json). */
export class ApiError extends Error {
  /**
   * @param {number} status
   * @param {any} problem
   */
  constructor(status, problem) {
    super(`${status} ${problem?.code ?? ""}: ${problem?.detail ?? problem?.title ?? "request failed"}`)
    this.status = status
    this.problem = problem
  }
}

/** The ws:// or wss:// sync URL for an http(s) base URL, with the token in the query. */
export function syncUrl(baseUrl, token) {
  const u = new URL("/v1/sync", baseUrl)
  u.protocol = u.protocol === "https:" ? "wss:" : "ws:"
  u.searchParams.set("token", token)
  return u.toString()
}

/** The user id in an access token (`sub`), without verifying it (the server does). */
export function tokenSubject(token) {
  const b64 = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")
  const json = atob(b64.padEnd(b64.length + ((4 - (b64.length % 4)) % 4), "="))
  return JSON.parse(json).sub
}

export class FireModeClient {
  /**
   * @param {object} opts
   * @param {string} opts.baseUrl        e.g. "https://firemode.example" (REST and sync)
   * @param {string} opts.deviceId       stable per installation; the peer id is `<user id>:<deviceId>`
   * @param {number} [opts.retryMs]      how soon the adapter reconnects after a drop (default 5000)
   * @param {boolean} [opts.autoRefresh] refresh the access token before it expires (default true)
   * @param {import("@automerge/automerge-repo").StorageAdapterInterface} [opts.storage]
   *        persistent storage for offline work (IndexedDB in a browser); none = in memory
   */
  constructor({ baseUrl, deviceId, retryMs = 5000, autoRefresh = true, storage }) {
    if (!deviceId || deviceId.includes(":")) throw new Error("deviceId must be a non-empty string without ':'")
    this.baseUrl = baseUrl
    this.deviceId = deviceId
    this.retryMs = retryMs
    this.autoRefresh = autoRefresh
    this.storage = storage
    /** @type {Tokens | undefined} */
    this.tokens = undefined
    /** @type {string | undefined} */
    this.userId = undefined
    /** @type {Repo | undefined} */
    this.repo = undefined
    /** @type {WebSocketClientAdapter | undefined} */
    this.adapter = undefined
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.refreshTimer = undefined
  }

  /** Log in with email and password, then start syncing. */
  async login(email, password) {
    /** @type {Schemas["LoginRequest"]} */
    const body = { email, password }
    /** @type {Tokens} */
    const tokens = await this.#post("/v1/auth/login", body, null)
    this.useTokens(tokens)
    return this
  }

  /**
   * Start from tokens obtained elsewhere (e.g. kept from an earlier run). Opens the repo on
   * first use; afterwards it replaces the network adapter so the new token is used.
   * @param {Tokens} tokens
   */
  useTokens(tokens) {
    this.tokens = tokens
    const user = tokenSubject(tokens.access_token)
    if (this.userId && this.userId !== user) throw new Error("tokens of another user: create a new client")
    this.userId = user
    if (!this.repo) {
      this.adapter = this.#newAdapter()
      this.repo = new Repo({
        network: [this.adapter],
        storage: this.storage,
        // The server refuses any other peer id: it must be the authenticated user's id.
        peerId: /** @type {any} */ (`${user}:${this.deviceId}`),
        // Offer every document we hold to the server; it decides what we may sync.
        sharePolicy: async () => true,
      })
    } else {
      this.reconnect()
    }
    this.#scheduleRefresh()
  }

  /**
   * Replace the sync connection: a new adapter with the current token. Used after a token
   * refresh, and to make the server look again at documents it answered "unavailable" (a
   * session the tablet created offline, once registered).
   */
  reconnect() {
    // Retire first: the old adapter must announce "peer-disconnected" before the new one
    // announces the server again, or the network subsystem keeps routing to the old one.
    this.#retireAdapter()
    this.adapter = this.#newAdapter()
    this.#repo().networkSubsystem.addNetworkAdapter(this.adapter)
  }

  /** Go offline (the tablet's edits stay local until `goOnline`). */
  goOffline() {
    this.#retireAdapter()
  }

  /** The sync adapter, with a URL carrying the current token. */
  #newAdapter() {
    const adapter = new WebSocketClientAdapter(syncUrl(this.baseUrl, this.#token()), this.retryMs)
    // In Node, WebSocketClientAdapter 2.5 rethrows every connection error but ECONNREFUSED from
    // the socket's error listener: an uncaught exception that ends the process when a server
    // resets a connection during a restart ("socket hang up") or answers the upgrade with
    // 401/503. Browsers never get there (their error events carry no error). Do what the
    // browser path does: the "close" event that follows schedules the retry.
    adapter.onError = () => {}
    return adapter
  }

  #retireAdapter() {
    const old = this.adapter
    this.adapter = undefined
    if (!old) return
    // WebSocketClientAdapter 2.5 `disconnect()` does not cancel the reconnect its close
    // handler may already have scheduled (after a server restart, say): the retired adapter
    // would dial again with the old token and, the server replacing a peer's earlier socket,
    // the two adapters would keep evicting each other. So make sure it can never dial again.
    old.connect = () => {}
    const repo = this.#repo()
    if (old.socket) {
      // Closing a socket that is still connecting makes Node's `ws` emit "error" after the
      // adapter removed its listeners, an uncaught exception there (browsers just close).
      old.socket.addEventListener("error", () => {})
      repo.networkSubsystem.removeNetworkAdapter(old)
    } else {
      // Never connected: nothing to close (disconnect() would assert).
      repo.networkSubsystem.adapters = repo.networkSubsystem.adapters.filter(a => a !== old)
    }
  }

  /** Come back online with the current token. */
  goOnline() {
    this.reconnect()
  }

  /** Exchange the refresh token for a new pair and rebuild the sync connection with it. */
  async refresh() {
    if (!this.tokens) throw new Error("not logged in")
    /** @type {Schemas["RefreshRequest"]} */
    const body = { refresh_token: this.tokens.refresh_token }
    /** @type {Tokens} */
    const tokens = await this.#post("/v1/auth/refresh", body, null)
    this.useTokens(tokens)
    return tokens
  }

  /** Sessions assigned to the logged-in user (every page). @returns {Promise<Session[]>} */
  async mySessions() {
    /** @type {Session[]} */
    const all = []
    let cursor = null
    do {
      const q = new URLSearchParams({ assigned_to: "me", limit: "100" })
      if (cursor) q.set("cursor", cursor)
      /** @type {Schemas["Paginated_SessionView"]} */
      const page = await this.api("GET", `/v1/tests/sessions?${q}`)
      all.push(...page.items)
      cursor = page.next_cursor
    } while (cursor)
    return all
  }

  /**
   * The session's document handle, synced with the server. Rejects ("Document ... is
   * unavailable") when the server will not share it with this user.
   * @param {Session | string} session a session from `mySessions()` or a document URL
   */
  async openSession(session) {
    const url = typeof session === "string" ? session : session.document_url
    return this.#repo().find(/** @type {import("@automerge/automerge-repo").AutomergeUrl} */ (url))
  }

  /**
   * Create a session document on the tablet while offline. The session UUID is generated here
   * and is the document id (same 16 bytes), so the server can register it later
   * (`registerSession`). Returns the handle, the session id and the document id.
   * @param {object} init
   * @param {string} init.buildingId
   * @param {string} init.orgId
   * @param {string} init.name
   * @param {string} init.frequency            e.g. "six_monthly"
   * @param {{code: string, version: string}} init.ruleSet
   * @param {Record<string, string>} init.items asset id -> rule code
   */
  createOfflineSession({ buildingId, orgId, name, frequency, ruleSet, items }) {
    const sessionId = crypto.randomUUID()
    const documentId = interpretAsDocumentId(/** @type {any} */ (sessionId))
    const s = (/** @type {string} */ v) => new ImmutableString(v)
    const doc = A.from({
      schema: 1,
      sessionId: s(sessionId),
      buildingId: s(buildingId),
      orgId: s(orgId),
      ruleSet: { code: s(ruleSet.code), version: s(ruleSet.version) },
      frequency: s(frequency),
      name: s(name),
      status: s("in_progress"),
      items: Object.fromEntries(
        Object.entries(items).map(([assetId, ruleCode]) => [
          assetId,
          { assetId: s(assetId), ruleCode: s(ruleCode), outcome: s("not_tested"), readings: {}, notes: "", evidence: [] },
        ]),
      ),
      notes: "",
    })
    // `import` with our document id: the repo treats it like any document it holds.
    const handle = this.#repo().import(A.save(doc), { docId: documentId })
    return { handle, sessionId, documentId, url: handle.url }
  }

  /**
   * Register a document created offline as a session (office, admin, or the inspector who
   * created it). The server answers "unavailable" for it until then, so reconnect afterwards
   * to have it synced at once.
   */
  async registerSession({ buildingId, name, frequency, documentId, assignedTo = [] }) {
    /** @type {Schemas["CreateSession"]} */
    const body = {
      building_id: buildingId,
      name,
      frequency,
      assigned_to: assignedTo,
      document_id: documentId,
    }
    /** @type {Session} */
    const session = await this.api("POST", "/v1/tests/sessions", body)
    this.reconnect()
    return session
  }

  /**
   * A REST call with the access token; refreshes once on 401 (expired token).
   * @param {string} method
   * @param {string} path
   * @param {any} [body]
   * @param {Record<string, string>} [headers]
   */
  async api(method, path, body, headers = {}) {
    const first = await this.#fetch(method, path, body, headers, this.#token())
    if (first.status !== 401 || !this.tokens) return this.#json(first)
    await this.refresh()
    return this.#json(await this.#fetch(method, path, body, headers, this.#token()))
  }

  /** Stop syncing and release the repo. */
  async close() {
    clearTimeout(this.refreshTimer)
    this.refreshTimer = undefined
    if (this.repo) await this.repo.shutdown()
    this.repo = undefined
    this.adapter = undefined
  }

  #scheduleRefresh() {
    clearTimeout(this.refreshTimer)
    if (!this.autoRefresh || !this.tokens) return
    // Well before expiry: the server closes a socket when its token expires.
    const ms = Math.max(5_000, this.tokens.expires_in * 1000 * 0.8)
    this.refreshTimer = setTimeout(() => {
      this.refresh().catch(() => this.#scheduleRetryRefresh())
    }, ms)
    this.refreshTimer.unref?.()
  }

  #scheduleRetryRefresh() {
    this.refreshTimer = setTimeout(() => this.refresh().catch(() => this.#scheduleRetryRefresh()), 10_000)
    this.refreshTimer.unref?.()
  }

  #repo() {
    if (!this.repo) throw new Error("log in first")
    return this.repo
  }

  #token() {
    if (!this.tokens) throw new Error("log in first")
    return this.tokens.access_token
  }

  async #post(path, body, token) {
    return this.#json(await this.#fetch("POST", path, body, {}, token))
  }

  async #fetch(method, path, body, headers, token) {
    /** @type {Record<string, string>} */
    const h = { ...headers }
    if (token) h.authorization = `Bearer ${token}`
    if (body !== undefined) h["content-type"] = "application/json"
    return fetch(new URL(path, this.baseUrl), {
      method,
      headers: h,
      body: body === undefined ? undefined : JSON.stringify(body),
    })
  }

  async #json(res) {
    const text = await res.text()
    const value = text ? JSON.parse(text) : null
    if (!res.ok) throw new ApiError(res.status, value)
    return value
  }
}
