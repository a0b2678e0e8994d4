// Live updates: `GET /v1/events` (server-sent events) read with fetch streaming, because
// EventSource cannot send the Authorization header. Screens subscribe; on `lagged` (the server
// dropped events for us) or a reconnect they reload their data.

import { api, token } from "./api.js"

const listeners = new Set()
let controller = null
let retry = null
let state = "off"

/** Listen to events: `fn(type, data)`. Returns the unsubscribe function. */
export function subscribe(fn) {
  listeners.add(fn)
  return () => listeners.delete(fn)
}

export function liveState() {
  return state
}

function emit(type, data) {
  for (const fn of [...listeners]) {
    try {
      fn(type, data)
    } catch (e) {
      console.warn("live listener failed", e)
    }
  }
}

function setState(s) {
  state = s
  const el = document.getElementById("live-state")
  if (el) {
    el.textContent = { on: "Live", polling: "Live (polling)", connecting: "Connecting…" }[s] ?? "Offline"
    el.className = `live live-${s}`
  }
}

/** Start (or restart) the stream with the current token. */
export function start() {
  stop()
  controller = new AbortController()
  run(controller.signal)
}

export function stop() {
  clearTimeout(retry)
  clearTimeout(pollTimer)
  controller?.abort()
  controller = null
  setState("off")
}

/** Does this server have the event stream? (Its OpenAPI document says; asking it would log a 404.) */
let hasEvents = null

async function eventsAvailable() {
  if (hasEvents === null) {
    try {
      const spec = await (await fetch("/openapi.json")).json()
      hasEvents = Boolean(spec.paths?.["/v1/events"])
    } catch {
      hasEvents = false
    }
  }
  return hasEvents
}

// Without the stream (an older server), the sessions a screen watches are polled instead: a
// `session` event when their document's heads change.
const watched = new Map()
let pollTimer = null

/**
 * Watch a session (polled when there is no event stream), `heads` being what the screen shows
 * (so a change landing before the first poll is not missed). Returns the unwatch function.
 */
export function watch(sessionId, heads = null) {
  watched.set(sessionId, heads ? JSON.stringify([...heads].sort()) : watched.get(sessionId) ?? null)
  return () => watched.delete(sessionId)
}

async function poll(signal) {
  for (const [id, heads] of [...watched]) {
    try {
      const d = await api("GET", `/v1/tests/sessions/${id}/document`)
      const now = JSON.stringify([...(d.heads ?? [])].sort())
      if (heads !== null && heads !== now) emit("session", { session_id: id, heads: d.heads, status: d.document?.status })
      if (watched.has(id)) watched.set(id, now)
    } catch {}
  }
  if (!signal.aborted) pollTimer = setTimeout(() => poll(signal), 2000)
}

async function run(signal) {
  setState("connecting")
  if (!(await eventsAvailable())) {
    if (signal.aborted) return
    setState("polling")
    clearTimeout(pollTimer)
    poll(signal)
    return
  }
  let wasOpen = false
  try {
    const t = token()
    if (!t) return
    const res = await fetch("/v1/events", {
      headers: { authorization: `Bearer ${t}`, accept: "text/event-stream" },
      signal,
    })
    if (!res.ok || !res.body) throw new Error(`events: ${res.status}`)
    wasOpen = true
    setState("on")
    // After a gap, what we missed is unknown: have screens reload.
    emit("lagged", {})
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader()
    let buf = ""
    for (;;) {
      const { value, done } = await reader.read()
      if (done) break
      buf += value
      let i
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, i)
        buf = buf.slice(i + 2)
        dispatch(block)
      }
    }
  } catch (e) {
    if (signal.aborted) return
  }
  if (signal.aborted) return
  setState("off")
  // Reconnect (a fresh token is picked up then).
  retry = setTimeout(() => {
    if (controller?.signal === signal) run(signal)
  }, wasOpen ? 1000 : 5000)
}

function dispatch(block) {
  let type = "message"
  const data = []
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) continue
    const [k, ...rest] = line.split(":")
    const v = rest.join(":").replace(/^ /, "")
    if (k === "event") type = v
    else if (k === "data") data.push(v)
  }
  let parsed = null
  try {
    parsed = data.length ? JSON.parse(data.join("\n")) : null
  } catch {
    parsed = data.join("\n")
  }
  emit(type, parsed)
}
