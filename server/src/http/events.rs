//! `GET /v1/events`: live events as Server-Sent Events (see `crate::live`), for the caller's
//! organisation and only what the caller may see.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde::Deserialize;
use tokio::sync::{broadcast, mpsc};
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::error::{ApiError, ApiResult, Problem};
use super::extract::Query;
use crate::auth::AuthUser;
use crate::live::{LiveEvent, SessionEvent};
use crate::state::AppState;
use crate::store::Role;

/// Streams one user may hold open at once (tabs of the console, say).
pub const MAX_STREAMS_PER_USER: usize = 8;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(events))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Only events of this session (and its defects).
    pub session_id: Option<Uuid>,
    /// Only events of this building's sessions and defects.
    pub building_id: Option<Uuid>,
}

/// Live events of the caller's organisation as `text/event-stream`: `session` (a session's
/// results, defects or status changed: `{session_id, building_id, status, heads}`), `defect`
/// (a defect was created or changed: `{defect_id, session_id, building_id, status}`) and
/// `lagged` (events were dropped for this slow stream: reload). Inspectors get only their
/// sessions and the defects they may see. Events follow the change within about a second, on
/// any node. The stream ends when the token expires or is revoked, and at shutdown; at most
/// 8 streams per user (429 beyond). Authenticate with `Authorization: Bearer` (read the stream
/// with `fetch`).
#[utoipa::path(get, path = "/v1/events", tag = "sessions", security(("bearer" = [])), params(EventsQuery),
    responses((status = 200, description = "Server-Sent Events", content_type = "text/event-stream", body = String),
              (status = 429, body = Problem, description = "too many open streams for this user")))]
async fn events(
    State(state): State<AppState>,
    user: AuthUser,
    Query(q): Query<EventsQuery>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let Some(guard) = state.live.open_stream(user.user_id, MAX_STREAMS_PER_USER) else {
        return Err(ApiError::TooManyRequests {
            retry_after_secs: 5,
        });
    };
    let mut rx = state
        .live
        .subscribe(user.org_id, &state.store, &state.tasks, &state.shutdown);
    let (tx, out) = mpsc::channel::<Event>(64);
    let shutdown = state.shutdown.clone();
    let mut revoked = state.revocations.subscribe();
    let until_exp =
        Duration::from_secs((user.claims.exp - chrono::Utc::now().timestamp()).max(0) as u64);
    let st = state.clone();
    state.tasks.spawn(async move {
        let _guard = guard;
        let expiry = tokio::time::sleep(until_exp);
        tokio::pin!(expiry);
        loop {
            let ev = tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = &mut expiry => break,
                _ = tx.closed() => break,
                r = revoked.recv() => {
                    let _ = r;
                    if st.revocations.is_revoked(&user.claims) { break }
                    continue;
                }
                ev = rx.recv() => ev,
            };
            let event = match ev {
                Ok(LiveEvent::Session(s)) => {
                    if !wanted(&q, s.session_id, s.building_id) || !sees_session(&user, &s) {
                        continue;
                    }
                    Event::default().event("session").json_data(&s)
                }
                Ok(LiveEvent::Defect(d)) => {
                    let of_session = d.session_id.unwrap_or(Uuid::nil());
                    if q.session_id.is_some_and(|s| s != of_session)
                        || q.building_id.is_some_and(|b| b != d.building_id)
                    {
                        continue;
                    }
                    // Inspectors: what `GET /v1/defects/{id}` would show them.
                    if user.role == Role::Inspector
                        && st
                            .store
                            .get_defect(user.org_id, d.defect_id, Some(user.user_id))
                            .await
                            .is_err()
                    {
                        continue;
                    }
                    Event::default().event("defect").json_data(&d)
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    Ok(Event::default().event("lagged").data(n.to_string()))
                }
                Err(broadcast::error::RecvError::Closed) => break,
            };
            let Ok(event) = event else { continue };
            if tx.send(event).await.is_err() {
                break;
            }
        }
    });
    let stream = futures_util::stream::unfold(out, |mut out| async move {
        out.recv().await.map(|e| (Ok(e), out))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

fn wanted(q: &EventsQuery, session: Uuid, building: Uuid) -> bool {
    q.session_id.is_none_or(|s| s == session) && q.building_id.is_none_or(|b| b == building)
}

/// As `GET /v1/tests/sessions/{id}`: inspectors see the sessions assigned to them.
fn sees_session(user: &AuthUser, s: &SessionEvent) -> bool {
    user.role != Role::Inspector || s.assigned_to.contains(&user.user_id)
}
