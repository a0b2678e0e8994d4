//! The difference between two points of a session document's history: which values changed,
//! each named by its path and, under an item, by its asset's tag.

use std::collections::HashMap;

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::error::{ApiError, ApiResult, Problem};
use super::extract::{Json, Path, Query};
use super::session_doc::parse_heads;
use super::sessions::{hub_error, visible_session};
use crate::auth::AuthUser;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(diff))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DiffQuery {
    /// Heads of the earlier point, comma-separated (bs58check or hex), as `?at=` of
    /// `/document`; empty or absent: the empty document.
    pub from: Option<String>,
    /// Heads of the later point; absent or empty: now.
    pub to: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct DiffChange {
    /// JSON pointer, e.g. `/items/<assetId>/outcome`.
    pub path: String,
    /// For paths under `/items`: the asset's tag (identifier), if it has one.
    pub identifier: Option<String>,
    /// The value at `from` (`null`: absent).
    #[schema(value_type = Option<Object>)]
    pub before: Option<serde_json::Value>,
    /// The value at `to` (`null`: absent).
    #[schema(value_type = Option<Object>)]
    pub after: Option<serde_json::Value>,
}

#[derive(Serialize, ToSchema)]
pub struct Diff {
    pub session_id: Uuid,
    /// Heads of the earlier point (bs58check); empty for the empty document.
    pub from: Vec<String>,
    /// Heads of the later point (bs58check).
    pub to: Vec<String>,
    /// Every value that differs, in path order. Lists are compared whole.
    pub changes: Vec<DiffChange>,
}

fn heads_param(raw: Option<&str>) -> ApiResult<Option<Vec<automerge::ChangeHash>>> {
    match raw.map(str::trim) {
        None | Some("") => Ok(None),
        Some(raw) => parse_heads(raw).map(Some),
    }
}

/// What changed between two points of the session document (`from` defaults to the empty
/// document, `to` to now), from the JSON views at both. Same visibility as `/history`.
#[utoipa::path(get, path = "/v1/tests/sessions/{id}/diff", tag = "sessions", security(("bearer" = [])),
    params(("id" = Uuid, Path), DiffQuery),
    responses((status = 200, body = Diff), (status = 400, body = Problem), (status = 404, body = Problem)))]
async fn diff(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Query(q): Query<DiffQuery>,
) -> ApiResult<Json<Diff>> {
    let session = visible_session(&state, &user, id).await?;
    let from = heads_param(q.from.as_deref())?;
    let to = heads_param(q.to.as_deref())?;
    let computed = state
        .hub
        .read(id, move |doc| {
            let known = |h: &Option<Vec<automerge::ChangeHash>>| {
                h.as_ref()
                    .is_none_or(|h| firemode_sync_core::heads_known(doc, h))
            };
            if !known(&from) || !known(&to) {
                return None;
            }
            let before = match &from {
                Some(h) => firemode_sync_core::to_json(doc, Some(h)),
                None => serde_json::Value::Object(Default::default()),
            };
            let to = to.unwrap_or_else(|| doc.get_heads());
            let after = firemode_sync_core::to_json(doc, Some(&to));
            let changes = firemode_sync_core::history::json_diff(&before, &after);
            Some((from.unwrap_or_default(), to, changes))
        })
        .await
        .map_err(hub_error)?
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_heads",
                "the document has no change with these heads",
            )
        })?;
    let (from, to, changes) = computed;
    let identifiers: HashMap<String, Option<String>> = state
        .store
        .building_assets(user.org_id, session.row.building_id)
        .await?
        .into_iter()
        .map(|a| (a.id.to_string(), a.identifier))
        .collect();
    let changes = changes
        .into_iter()
        .map(|c| {
            let identifier = c
                .path
                .strip_prefix("/items/")
                .map(|rest| rest.split('/').next().unwrap_or(rest))
                .and_then(|key| identifiers.get(key).cloned().flatten());
            DiffChange {
                path: c.path,
                identifier,
                before: c.before,
                after: c.after,
            }
        })
        .collect();
    let text = |h: &[automerge::ChangeHash]| -> Vec<String> {
        h.iter()
            .map(|h| firemode_sync_core::encode_heads(std::slice::from_ref(h)))
            .collect()
    };
    Ok(Json(Diff {
        session_id: id,
        from: text(&from),
        to: text(&to),
        changes,
    }))
}
