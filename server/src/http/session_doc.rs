//! A session's document: read it as JSON (optionally at past heads), record results through it,
//! read the projected result rows.

use std::collections::{BTreeMap, HashMap};

use automerge::ChangeHash;
use axum::extract::State;
use chrono::Utc;
use firemode_sync_core::{DocumentId, Outcome, ReadingValue, ResultInput};
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
use crate::domain::applicability;
use crate::domain::assess::{assess, ItemFacts, RuleView};
use crate::hub::Origin;
use crate::state::AppState;
use crate::store::rules::RuleRecord;
use crate::store::sessions::ItemRow;
use crate::store::StoreError;

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
    /// One observed condition (older clients); use `observed_conditions` for several.
    pub observed_condition: Option<String>,
    /// The observed conditions of the rule (each becomes its own defect when it is not
    /// compliant); replaces the item's list. Absent: the list stays as it is.
    pub observed_conditions: Option<Vec<String>>,
    /// Readings by name, each of the kind its rule declares: a number, `true`/`false` (or
    /// "yes"/"no") for yes/no, one of the choices, or text. Readings not named are kept.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub readings: BTreeMap<String, Value>,
    pub notes: Option<String>,
    /// Evidence of this session to attach.
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

/// Longest item notes, in characters.
const MAX_NOTES: usize = 10_000;
/// Most observed conditions on one item.
const MAX_CONDITIONS: usize = 20;

/// Record results as an automerge change by the server's actor: they merge with tablet edits,
/// and connected tablets receive them at once. `Idempotency-Key` required. Each result is
/// checked against its rule before anything is written: readings must be readings of the rule
/// and of its kind, conditions must be the rule's, and outcome and conditions must agree (a
/// pass with a defect condition, or a fail whose conditions are all compliant, is refused with
/// 422 naming both). A completed session answers 409.
#[utoipa::path(post, path = "/v1/tests/sessions/{id}/results", tag = "sessions", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("Idempotency-Key" = String, Header)), request_body = RecordResults,
    responses((status = 200, body = RecordedResults), (status = 403, body = Problem), (status = 404, body = Problem),
              (status = 409, body = Problem), (status = 422, body = Problem)))]
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
    // The rule and conditions of each item named, as the document has them now (only those
    // items are read: projecting the whole document cost more than the rest of the request).
    let wanted: Vec<String> = req.results.iter().map(|r| r.asset_id.to_string()).collect();
    let doc_items: HashMap<String, (Option<String>, Vec<String>)> = state
        .hub
        .read(id, move |doc| {
            let keys: Vec<&str> = wanted.iter().map(String::as_str).collect();
            firemode_sync_core::project_items(doc, &keys)
                .into_iter()
                .flatten()
                .map(|i| (i.asset_id, (i.rule_code, i.observed_conditions)))
                .collect()
        })
        .await
        .map_err(hub_error)?;
    let mut assets = None;
    let building = state
        .store
        .get_building(user.org_id, session.row.building_id)
        .await?;
    // The rules of the items the document has, in one read (new items' rules are read below).
    let mut known_rules = crate::projection::item_rules(
        state.store.as_ref(),
        &building,
        doc_items.values().filter_map(|(code, _)| code.as_deref()),
    )
    .await
    .map_err(ApiError::Internal)?;
    let mut rules: HashMap<String, RuleView> = HashMap::new();
    let now = Utc::now();
    let mut inputs = Vec::with_capacity(req.results.len());
    let mut seen = std::collections::HashSet::new();
    for (n, r) in req.results.into_iter().enumerate() {
        let at = |field: &str| format!("results[{n}].{field}");
        if !seen.insert(r.asset_id) {
            return Err(ApiError::unprocessable(
                "invalid_body",
                format!(
                    "{}: asset {} appears twice in this request",
                    at("asset_id"),
                    r.asset_id
                ),
            ));
        }
        let key = r.asset_id.to_string();
        let (rule_code, new_item) = match doc_items.get(&key) {
            Some((Some(code), _)) => (code.clone(), false),
            Some((None, _)) => {
                return Err(ApiError::unprocessable(
                    "no_rule",
                    format!(
                        "{}: the item has no rule code in the document",
                        at("asset_id")
                    ),
                ))
            }
            None => {
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
                                "{}: asset {} is not in this session's building",
                                at("asset_id"),
                                r.asset_id
                            ),
                        )
                    })?;
                let candidates = crate::rules::building_rules(
                    state.store.as_ref(),
                    &building,
                    Some(&session.row.frequency),
                )
                .await?;
                let code = applicability::session_rule(
                    &asset.facts(),
                    &session.row.frequency,
                    &candidates,
                    RuleRecord::facts,
                )
                .map(|r| r.code.clone())
                .ok_or_else(|| {
                    ApiError::unprocessable(
                        "no_rule",
                        format!(
                            "{}: no rule applies to asset {} at this frequency",
                            at("asset_id"),
                            r.asset_id
                        ),
                    )
                })?;
                (code, true)
            }
        };
        if !rules.contains_key(&rule_code) {
            let found = match known_rules.remove(&rule_code) {
                Some(known) => known.map(|(_, view)| view),
                None => {
                    match crate::rules::item_rule(state.store.as_ref(), &building, &rule_code).await
                    {
                        Ok(rule) => Some(rule.view()),
                        Err(StoreError::NotFound) => None,
                        Err(e) => return Err(e.into()),
                    }
                }
            };
            let Some(rule) = found else {
                return Err(ApiError::unprocessable(
                    "unknown_rule",
                    format!(
                        "{}: the item's rule {rule_code} is not an active rule",
                        at("asset_id")
                    ),
                ));
            };
            rules.insert(rule_code.clone(), rule);
        }
        let rule = &rules[&rule_code];

        let conditions = match (r.observed_condition, r.observed_conditions) {
            (Some(_), Some(_)) => {
                return Err(ApiError::unprocessable(
                    "invalid_field",
                    format!(
                        "{}: give observed_condition or observed_conditions, not both",
                        at("observed_conditions")
                    ),
                ))
            }
            (Some(one), None) => Some(vec![one]),
            (None, many) => many,
        };
        let conditions = match conditions {
            None => None,
            Some(list) => {
                if list.len() > MAX_CONDITIONS {
                    return Err(ApiError::unprocessable(
                        "invalid_field",
                        format!("{}: at most {MAX_CONDITIONS}", at("observed_conditions")),
                    ));
                }
                let mut canonical: Vec<String> = Vec::new();
                for (i, c) in list.iter().enumerate() {
                    let (name, _) = rule.classify(c).ok_or_else(|| {
                        ApiError::unprocessable(
                            "unknown_condition",
                            format!(
                                "{}: '{}' is not an observed condition of rule {}; known: {}",
                                at(&format!("observed_conditions[{i}]")),
                                c.chars().take(100).collect::<String>(),
                                rule.code,
                                rule.known_conditions().join(", ")
                            ),
                        )
                    })?;
                    if !canonical.iter().any(|k| k == name) {
                        canonical.push(name.to_owned());
                    }
                }
                Some(canonical)
            }
        };

        let mut readings = BTreeMap::new();
        for (name, raw) in r.readings {
            let field = at(&format!(
                "readings.{}",
                name.chars().take(100).collect::<String>()
            ));
            let spec = rule.reading(&name).ok_or_else(|| {
                let known: Vec<&str> = rule.readings.iter().map(|s| s.name.as_str()).collect();
                ApiError::unprocessable(
                    "unknown_reading",
                    format!(
                        "{field}: not a reading of rule {}; known: {}",
                        rule.code,
                        known.join(", ")
                    ),
                )
            })?;
            let value = match raw {
                Value::Bool(b) => ReadingValue::Bool(b),
                Value::Number(x) => ReadingValue::Number(x.as_f64().unwrap_or(f64::NAN)),
                Value::String(t) => ReadingValue::Text(t),
                _ => {
                    return Err(ApiError::unprocessable(
                        "invalid_reading",
                        format!("{field}: must be a number, true/false or a string"),
                    ))
                }
            };
            let value = spec.accept(&value).map_err(|why| {
                ApiError::unprocessable(
                    "invalid_reading",
                    format!("{field} ({} reading): {why}", spec.kind.as_str()),
                )
            })?;
            readings.insert(name, value);
        }

        if let Some(notes) = &r.notes {
            if notes.chars().count() > MAX_NOTES {
                return Err(ApiError::unprocessable(
                    "invalid_field",
                    format!("{}: at most {MAX_NOTES} characters", at("notes")),
                ));
            }
        }
        for (i, e) in r.evidence.iter().enumerate() {
            match state.store.get_evidence(user.org_id, *e).await {
                Ok(rec) if rec.session_id == id => {}
                Ok(_) | Err(StoreError::NotFound) => {
                    return Err(ApiError::unprocessable(
                        "unknown_evidence",
                        format!(
                            "{}: no evidence {e} in this session",
                            at(&format!("evidence[{i}]"))
                        ),
                    ))
                }
                Err(other) => return Err(other.into()),
            }
        }

        // Outcome and conditions as the item will hold them must agree.
        let effective: Vec<String> = match &conditions {
            Some(c) => c.clone(),
            None => doc_items
                .get(&key)
                .map(|(_, c)| c.clone())
                .unwrap_or_default(),
        };
        let assessment = assess(
            Some(rule),
            ItemFacts {
                outcome: Some(r.outcome),
                conditions: &effective,
                readings: &BTreeMap::new(),
            },
            |_, _| None,
        );
        if let Some(contradiction) = assessment.contradiction {
            return Err(ApiError::unprocessable(
                "contradictory_result",
                format!(
                    "{} and {}: {contradiction}",
                    at("outcome"),
                    at("observed_conditions")
                ),
            ));
        }

        inputs.push(ResultInput {
            asset_id: r.asset_id,
            rule_code: new_item.then_some(rule_code),
            outcome: r.outcome,
            observed_conditions: conditions,
            readings,
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
        on_completed: false,
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
    /// The first observed condition (see `observed_conditions`).
    pub observed_condition: Option<String>,
    pub observed_conditions: Vec<String>,
    /// The worst classification of the item's findings (critical_defect, non_critical_defect,
    /// non_conformance), or compliant for a pass without any.
    pub classification: Option<String>,
    /// Each reading's verdict (within, outside, no_baseline, no_design_value, not_evaluated)
    /// with what it was compared against; the outcome the readings suggest; whether the
    /// recorded outcome overrides that suggestion; the findings (future defects); a
    /// contradiction between outcome and conditions.
    #[schema(value_type = Object)]
    pub assessment: Value,
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
            observed_conditions: i.observed_conditions.0,
            classification: i.classification,
            assessment: i.assessment.0,
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
