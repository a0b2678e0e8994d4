//! A session's document: read it as JSON (optionally at past heads), record results through it,
//! read the projected result rows.

use std::collections::{BTreeMap, HashMap};

use automerge::ChangeHash;
use axum::extract::State;
use chrono::Utc;
use firemode_sync_core::{DocumentId, Outcome, ResultInput};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::error::{ApiError, ApiResult, Problem};
use super::extract::{Json, Path, Query};
use super::sessions::{hub_error, require_writer, visible_session};
use crate::audit::Target;
use crate::auth::AuthUser;
use crate::hub::Origin;
use crate::state::AppState;
use crate::store::sessions::ItemRow;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(document))
        .routes(routes!(record_results, list_results))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DocumentQuery {
    /// Heads to read at, comma-separated (bs58check or hex change hashes).
    pub at: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct DocumentView {
    pub session_id: Uuid,
    pub document_url: String,
    /// Heads of the version shown (bs58check).
    pub heads: Vec<String>,
    #[schema(value_type = Object)]
    pub document: Value,
}

/// Parse `a,b` heads, each bs58check (as in automerge URLs) or 64 hex digits.
pub fn parse_heads(raw: &str) -> ApiResult<Vec<ChangeHash>> {
    let mut heads = Vec::new();
    for part in raw
        .split([',', '|'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let h = if part.len() == 64 && part.chars().all(|c| c.is_ascii_hexdigit()) {
            hex::decode(part)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .map(ChangeHash)
        } else {
            firemode_sync_core::decode_heads(part)
                .ok()
                .and_then(|v| v.into_iter().next())
        };
        heads.push(h.ok_or_else(|| {
            ApiError::bad_request("invalid_heads", format!("'{part}' is not a change hash"))
        })?);
    }
    if heads.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_heads",
            "at= needs at least one head",
        ));
    }
    Ok(heads)
}

fn heads_text(heads: &[ChangeHash]) -> Vec<String> {
    heads
        .iter()
        .map(|h| firemode_sync_core::encode_heads(std::slice::from_ref(h)))
        .collect()
}

/// The session document as JSON, now or at past heads (`?at=`); 400 for heads it does not have.
#[utoipa::path(get, path = "/v1/tests/sessions/{id}/document", tag = "sessions", security(("bearer" = [])),
    params(("id" = Uuid, Path), DocumentQuery),
    responses((status = 200, body = DocumentView), (status = 400, body = Problem), (status = 404, body = Problem)))]
async fn document(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Query(q): Query<DocumentQuery>,
) -> ApiResult<Json<DocumentView>> {
    visible_session(&state, &user, id).await?;
    let at = q.at.as_deref().map(parse_heads).transpose()?;
    let view = state
        .hub
        .read(id, move |doc| match &at {
            Some(heads) if !firemode_sync_core::heads_known(doc, heads) => None,
            Some(heads) => Some((firemode_sync_core::to_json(doc, Some(heads)), heads.clone())),
            None => Some((firemode_sync_core::to_json(doc, None), doc.get_heads())),
        })
        .await
        .map_err(hub_error)?
        .ok_or_else(|| {
            ApiError::bad_request(
                "unknown_heads",
                "the document has no change with these heads",
            )
        })?;
    Ok(Json(DocumentView {
        session_id: id,
        document_url: DocumentId::from_uuid(id).url(),
        heads: heads_text(&view.1),
        document: view.0,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResultIn {
    pub asset_id: Uuid,
    /// pass, fail, not_tested or not_accessible.
    #[schema(value_type = String)]
    pub outcome: Outcome,
    pub observed_condition: Option<String>,
    #[serde(default)]
    pub readings: BTreeMap<String, f64>,
    pub notes: Option<String>,
    #[serde(default)]
    pub evidence: Vec<Uuid>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordResults {
    pub results: Vec<ResultIn>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct RecordedResults {
    pub session_id: Uuid,
    /// How many results were applied.
    pub applied: usize,
    /// Document heads after the change (bs58check).
    pub heads: Vec<String>,
}

/// Record results as an automerge change by the server's actor: they merge with tablet edits,
/// and connected tablets receive them at once. `Idempotency-Key` required.
#[utoipa::path(post, path = "/v1/tests/sessions/{id}/results", tag = "sessions", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("Idempotency-Key" = String, Header)), request_body = RecordResults,
    responses((status = 200, body = RecordedResults), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn record_results(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Json(req): Json<RecordResults>,
) -> ApiResult<Json<RecordedResults>> {
    let session = visible_session(&state, &user, id).await?;
    require_writer(&user, &session)?;
    if req.results.is_empty() || req.results.len() > 1000 {
        return Err(ApiError::unprocessable(
            "invalid_body",
            "results must hold 1-1000 entries",
        ));
    }
    // Which rule each asset is tested against: the document's item, else the building's asset.
    let doc_rules: HashMap<String, Option<String>> = state
        .hub
        .read(id, |doc| {
            firemode_sync_core::project(doc)
                .items
                .into_iter()
                .map(|i| (i.asset_id, i.rule_code))
                .collect()
        })
        .await
        .map_err(hub_error)?;
    let mut assets = None;
    let now = Utc::now();
    let mut inputs = Vec::with_capacity(req.results.len());
    for (n, r) in req.results.into_iter().enumerate() {
        let mut rule_code = doc_rules.get(&r.asset_id.to_string()).cloned().flatten();
        let mut new_item_rule = None;
        if !doc_rules.contains_key(&r.asset_id.to_string()) {
            if assets.is_none() {
                assets = Some(
                    state
                        .store
                        .building_assets(user.org_id, session.row.building_id)
                        .await?,
                );
            }
            let asset = assets
                .as_ref()
                .and_then(|a| a.iter().find(|a| a.id == r.asset_id))
                .ok_or_else(|| {
                    ApiError::unprocessable(
                        "unknown_asset",
                        format!(
                            "results[{n}]: asset {} is not in this session's building",
                            r.asset_id
                        ),
                    )
                })?;
            let rules = state
                .store
                .latest_rules(
                    user.org_id,
                    Some(&asset.asset_type),
                    Some(&session.row.frequency),
                )
                .await?;
            let code = rules
                .iter()
                .map(|r| r.code.clone())
                .filter(|c| asset.rule_codes.0.is_empty() || asset.rule_codes.0.contains(c))
                .min()
                .ok_or_else(|| {
                    ApiError::unprocessable(
                        "no_rule",
                        format!(
                            "results[{n}]: no rule applies to asset {} at this frequency",
                            r.asset_id
                        ),
                    )
                })?;
            rule_code = Some(code.clone());
            new_item_rule = Some(code);
        }
        if let (Some(cond), Some(code)) = (&r.observed_condition, &rule_code) {
            if let Ok(rule) = state.store.latest_rule(user.org_id, code).await {
                if crate::rules::classify(&rule, cond).is_none() {
                    return Err(ApiError::unprocessable(
                        "unknown_condition",
                        format!(
                            "results[{n}]: '{cond}' is not a condition of rule {code}; known: {}",
                            crate::rules::known_conditions(&rule).join(", ")
                        ),
                    ));
                }
            }
        }
        if let Some((name, _)) = r.readings.iter().find(|(_, v)| !v.is_finite()) {
            return Err(ApiError::unprocessable(
                "invalid_reading",
                format!("results[{n}]: reading '{name}' is not a number"),
            ));
        }
        inputs.push(ResultInput {
            asset_id: r.asset_id,
            rule_code: new_item_rule,
            outcome: r.outcome,
            observed_condition: r.observed_condition,
            readings: r.readings,
            notes: r.notes,
            evidence: r.evidence,
            recorded_by: user.user_id,
            recorded_at: now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        });
    }
    let applied = inputs.len();
    let origin = Origin {
        user_id: user.user_id,
        request_id: super::error::current_request_id(),
    };
    let (_, heads) = state
        .hub
        .write(id, origin, move |doc, actor| {
            firemode_sync_core::apply_results(doc, &inputs, actor, now.timestamp())
                .map_err(|e| crate::hub::HubError::Rejected(e.to_string()))
        })
        .await
        .map_err(hub_error)?;
    state.hub.project_now(id).await;
    state
        .audit(
            &user,
            "session.results",
            Some(Target::new("session", id)),
            json!({ "applied": applied }),
        )
        .await?;
    Ok(Json(RecordedResults {
        session_id: id,
        applied,
        heads: heads_text(&heads),
    }))
}

#[derive(Serialize, ToSchema)]
pub struct ResultView {
    pub asset_id: String,
    pub rule_code: Option<String>,
    pub rule_version: Option<String>,
    pub outcome: Option<String>,
    /// The outcome as written when it is not one of the four known ones.
    pub raw_outcome: Option<String>,
    pub observed_condition: Option<String>,
    /// critical_defect, non_critical_defect, non_conformance or compliant, from the rule library.
    pub classification: Option<String>,
    #[schema(value_type = Object)]
    pub readings: Value,
    pub notes: String,
    #[schema(value_type = Vec<String>)]
    pub evidence: Value,
    pub recorded_by: Option<String>,
    pub recorded_at: Option<String>,
    /// Where the item departs from the document schema.
    #[schema(value_type = Vec<Object>)]
    pub problems: Value,
}

impl From<ItemRow> for ResultView {
    fn from(i: ItemRow) -> Self {
        Self {
            asset_id: i.asset_id,
            rule_code: i.rule_code,
            rule_version: i.rule_version,
            outcome: i.outcome,
            raw_outcome: i.raw_outcome,
            observed_condition: i.observed_condition,
            classification: i.classification,
            readings: i.readings.0,
            notes: i.notes,
            evidence: i.evidence.0,
            recorded_by: i.recorded_by,
            recorded_at: i.recorded_at,
            problems: i.problems.0,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ResultList {
    pub session_id: Uuid,
    pub items: Vec<ResultView>,
}

/// The projected result rows, each with its classification from the rule library.
#[utoipa::path(get, path = "/v1/tests/sessions/{id}/results", tag = "sessions", security(("bearer" = [])),
    params(("id" = Uuid, Path)), responses((status = 200, body = ResultList), (status = 404, body = Problem)))]
async fn list_results(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<ResultList>> {
    visible_session(&state, &user, id).await?;
    state.hub.settled(id).await;
    let rows = state.store.list_items(id).await?;
    Ok(Json(ResultList {
        session_id: id,
        items: rows.into_iter().map(ResultView::from).collect(),
    }))
}
