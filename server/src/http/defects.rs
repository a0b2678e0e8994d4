//! `/v1/defects`: defects found by sessions (automatic, one per asset and observed condition,
//! reconfirmed when found again) or recorded by hand, their lifecycle (one step at a time,
//! cancel, duplicate, reopen) and severity overrides. The rules are `crate::domain::defects`.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::error::{ApiError, ApiResult, Problem};
use super::extract::{Json, Path, Query};
use super::pagination::{PageQuery, Paginated};
use crate::audit::Target;
use crate::auth::AuthUser;
use crate::domain::defects::{self as rules, Move, Severity, STATUSES};
use crate::state::AppState;
use crate::store::defects::{
    DefectEvent, DefectFilter, DefectRecord, SeverityOverride, Sighting, Transition,
};
use crate::store::{Role, StoreError};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(get, update))
}

/// The asset a defect is about, as lists show it.
#[derive(Serialize, ToSchema)]
pub struct DefectAsset {
    pub id: Uuid,
    pub identifier: Option<String>,
    /// The equipment kind (`portable_extinguisher`) and its name.
    pub asset_type: Option<String>,
    pub asset_type_name: Option<String>,
    pub location: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct DefectView {
    pub id: Uuid,
    pub building_id: Uuid,
    pub asset_id: Option<Uuid>,
    /// The asset's identifier, type and location.
    pub asset: Option<DefectAsset>,
    /// The session that found it first.
    pub session_id: Option<Uuid>,
    pub rule_code: Option<String>,
    pub rule_version: Option<String>,
    /// critical, non_critical or non_conformance (AS 1851 cl. 1.5.6).
    #[schema(value_type = Severity)]
    pub severity: String,
    /// The severity was set by hand, for `severity_reason`.
    pub severity_overridden: bool,
    pub severity_reason: Option<String>,
    /// open, acknowledged, repair_scheduled, repaired, verified, closed; cancelled, duplicate
    /// (see `duplicate_of`) or withdrawn (the session that found it no longer does).
    pub status: String,
    pub duplicate_of: Option<Uuid>,
    /// automatic (from a session's findings), manual, or out_of_tolerance (the
    /// non-conformance for a routine serviced outside its tolerance window, raised once per
    /// service).
    pub source: String,
    pub title: String,
    pub description: String,
    pub observed_condition: Option<String>,
    pub evidence: Vec<String>,
    pub discovered_at: DateTime<Utc>,
    /// When the responsible person must have been told: 24 h for critical, a week otherwise.
    pub notify_by: DateTime<Utc>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    /// When the first notice of the current period was delivered: this, not a status change,
    /// meets `notify_by`.
    pub notified_at: Option<DateTime<Utc>>,
    /// When `notify_by` passed without a delivered notice and the defect was escalated.
    pub escalated_at: Option<DateTime<Utc>>,
    /// Active, past `notify_by`, and no notice delivered.
    pub overdue: bool,
    /// The status it may move to next in the lifecycle, if any.
    pub next_status: Option<String>,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Each step with who and when (only on `GET /v1/defects/{id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub history: Option<Vec<DefectEvent>>,
    /// The sessions that find it now — since it last opened — with when (only on
    /// `GET /v1/defects/{id}`; `history` names every visit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sightings: Option<Vec<Sighting>>,
    /// The notices sent about it, each with its recipients (channel, recipient, outcome,
    /// when) (only on `GET /v1/defects/{id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notices: Option<Vec<super::notices::NoticeView>>,
}

impl From<DefectRecord> for DefectView {
    fn from(d: DefectRecord) -> Self {
        let asset = d.asset_id.map(|id| DefectAsset {
            id,
            identifier: d.asset_identifier.clone(),
            asset_type_name: d
                .asset_type
                .as_deref()
                .and_then(|t| crate::rules::library().equipment_kind(t))
                .map(|k| k.name.clone()),
            asset_type: d.asset_type.clone(),
            location: d.asset_location.clone(),
        });
        Self {
            overdue: crate::domain::notices::is_overdue(
                &d.status,
                d.notify_by,
                d.notified_at,
                Utc::now(),
            ),
            next_status: rules::next_status(&d.status).map(str::to_owned),
            id: d.id,
            building_id: d.building_id,
            asset_id: d.asset_id,
            asset,
            session_id: d.session_id,
            rule_code: d.rule_code,
            rule_version: d.rule_version,
            severity: d.severity,
            severity_overridden: d.severity_overridden,
            severity_reason: d.severity_reason,
            status: d.status,
            duplicate_of: d.duplicate_of,
            source: d.source,
            title: d.title,
            description: d.description,
            observed_condition: d.observed_condition,
            evidence: d.evidence.0,
            discovered_at: d.discovered_at,
            notify_by: d.notify_by,
            acknowledged_at: d.acknowledged_at,
            notified_at: d.notified_at,
            escalated_at: d.escalated_at,
            created_by: d.created_by,
            created_at: d.created_at,
            updated_at: d.updated_at,
            history: None,
            sightings: None,
            notices: None,
        }
    }
}

/// Inspectors see defects not tied to a session and those found by sessions assigned to them
/// (`crate::domain::access::defect_visibility`).
fn visible_to(user: &AuthUser) -> Option<Uuid> {
    crate::domain::access::defect_visibility(&user.caller())
}

fn severity(raw: &str, field: &str) -> ApiResult<Severity> {
    Severity::parse(raw).ok_or_else(|| {
        ApiError::unprocessable(
            "invalid_severity",
            format!("{field} must be critical, non_critical or non_conformance"),
        )
    })
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDefect {
    pub building_id: Uuid,
    pub asset_id: Option<Uuid>,
    pub session_id: Option<Uuid>,
    #[schema(value_type = Severity)]
    pub severity: String,
    pub title: String,
    #[serde(default)]
    pub description: String,
    /// A rule of your organisation's library (needed with `observed_condition`).
    pub rule_code: Option<String>,
    /// One of the rule's observed conditions: with `asset_id` it is the defect's identity, and
    /// a session that finds the same condition later reconfirms this defect.
    pub observed_condition: Option<String>,
    /// Evidence of your organisation (of `session_id` when given).
    #[serde(default)]
    pub evidence: Vec<Uuid>,
    /// When it was found; default now.
    pub discovered_at: Option<DateTime<Utc>>,
}

/// Record a defect by hand (admin, office, or an inspector). Every id must be your
/// organisation's (422 naming the field otherwise); an active defect with the same asset and
/// condition is 409.
#[utoipa::path(post, path = "/v1/defects", tag = "defects", security(("bearer" = [])), request_body = CreateDefect,
    responses((status = 201, body = DefectView), (status = 403, body = Problem), (status = 404, body = Problem),
              (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    Json(req): Json<CreateDefect>,
) -> ApiResult<(StatusCode, Json<DefectView>)> {
    user.require(&[Role::Admin, Role::Office, Role::Inspector])?;
    let sev = severity(&req.severity, "severity")?;
    let title = req.title.trim();
    if title.is_empty() || title.chars().count() > 200 || req.description.chars().count() > 10_000 {
        return Err(ApiError::unprocessable(
            "invalid_field",
            "title must be 1-200 characters, description at most 10000",
        ));
    }
    let unknown = |field: &str, what: String| {
        ApiError::unprocessable("unknown_reference", format!("{field}: {what}"))
    };
    match state.store.get_building(user.org_id, req.building_id).await {
        Ok(_) => super::records::ensure_open(&state, user.org_id, req.building_id).await?,
        Err(StoreError::NotFound) => {
            return Err(unknown(
                "building_id",
                format!("no building {}", req.building_id),
            ))
        }
        Err(e) => return Err(e.into()),
    }
    if let Some(asset) = req.asset_id {
        match state
            .store
            .get_asset(user.org_id, req.building_id, asset)
            .await
        {
            Ok(_) => {}
            Err(StoreError::NotFound) => {
                return Err(unknown(
                    "asset_id",
                    format!("no asset {asset} in this building"),
                ))
            }
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(s) = req.session_id {
        let session = match super::sessions::visible_session(&state, &user, s).await {
            Ok(session) => session,
            Err(ApiError::NotFound) => {
                return Err(unknown("session_id", format!("no session {s}")))
            }
            Err(e) => return Err(e),
        };
        if session.row.building_id != req.building_id {
            return Err(unknown(
                "session_id",
                "the session is for another building".into(),
            ));
        }
    }
    let mut rule_version = None;
    let mut condition = None;
    if let Some(code) = &req.rule_code {
        let building = state
            .store
            .get_building(user.org_id, req.building_id)
            .await?;
        let rule = match crate::rules::item_rule(state.store.as_ref(), &building, code).await {
            Ok(r) => r,
            Err(StoreError::NotFound) => {
                return Err(unknown("rule_code", format!("no active rule {code}")))
            }
            Err(e) => return Err(e.into()),
        };
        rule_version = Some(rule.version.clone());
        if let Some(c) = &req.observed_condition {
            let view = rule.view();
            let (name, _) = view.classify(c).ok_or_else(|| {
                ApiError::unprocessable(
                    "unknown_condition",
                    format!(
                        "observed_condition: not a condition of rule {code}; known: {}",
                        view.known_conditions().join(", ")
                    ),
                )
            })?;
            condition = Some(name.to_owned());
        }
    } else if req.observed_condition.is_some() {
        return Err(ApiError::unprocessable(
            "invalid_field",
            "observed_condition: needs the rule_code it belongs to",
        ));
    }
    if condition.is_some() && req.asset_id.is_none() {
        return Err(ApiError::unprocessable(
            "invalid_field",
            "observed_condition: needs the asset_id it was observed on",
        ));
    }
    for (i, e) in req.evidence.iter().enumerate() {
        let ok = match state.store.get_evidence(user.org_id, *e).await {
            Ok(rec) => match req.session_id {
                Some(s) => rec.session_id == s,
                None => state
                    .store
                    .get_session(user.org_id, rec.session_id)
                    .await
                    .is_ok_and(|s| s.row.building_id == req.building_id),
            },
            Err(StoreError::NotFound) => false,
            Err(e) => return Err(e.into()),
        };
        if !ok {
            return Err(unknown(
                &format!("evidence[{i}]"),
                format!("no evidence {e} of this building or session"),
            ));
        }
    }
    let now = Utc::now();
    let discovered = req.discovered_at.unwrap_or(now);
    let d = DefectRecord {
        id: Uuid::now_v7(),
        org_id: user.org_id,
        building_id: req.building_id,
        asset_id: req.asset_id,
        session_id: req.session_id,
        rule_code: req.rule_code,
        rule_version,
        notify_by: discovered + sev.notification_window(),
        severity: sev.as_str().to_owned(),
        status: rules::status::OPEN.into(),
        source: "manual".into(),
        title: title.to_owned(),
        description: req.description,
        observed_condition: condition,
        evidence: sqlx::types::Json(req.evidence.iter().map(Uuid::to_string).collect()),
        discovered_at: discovered,
        acknowledged_at: None,
        created_by: Some(user.user_id),
        created_at: now,
        updated_at: now,
        severity_overridden: false,
        severity_reason: None,
        duplicate_of: None,
        notified_at: None,
        escalated_at: None,
        asset_identifier: None,
        asset_type: None,
        asset_location: None,
    };
    state.store.insert_defect(&d).await.map_err(|e| match e {
        StoreError::Conflict(_) => ApiError::conflict(
            "defect_exists",
            "an active defect for this asset and condition exists; update that one",
        ),
        other => other.into(),
    })?;
    state
        .audit(
            &user,
            "defect.create",
            Some(Target::new("defect", d.id)),
            json!({ "severity": d.severity, "building_id": d.building_id }),
        )
        .await?;
    let view = DefectView::from(state.store.get_defect(user.org_id, d.id, None).await?);
    Ok((StatusCode::CREATED, Json(view)))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub building_id: Option<Uuid>,
    /// Defects this session found (first or again).
    pub session_id: Option<Uuid>,
    pub asset_id: Option<Uuid>,
    pub status: Option<String>,
    pub severity: Option<String>,
    /// Only those past their notification deadline without a delivered notice.
    pub overdue: Option<bool>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// Defects of the caller's organisation (inspectors: those not tied to a session and those
/// found by sessions assigned to them).
#[utoipa::path(get, path = "/v1/defects", tag = "defects", security(("bearer" = [])), params(ListQuery),
    responses((status = 200, body = Paginated<DefectView>), (status = 400, body = Problem), (status = 404, body = Problem)))]
async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Paginated<DefectView>>> {
    let page = PageQuery {
        limit: q.limit,
        cursor: q.cursor,
    }
    .page()?;
    if let Some(s) = &q.status {
        if !STATUSES.contains(&s.as_str()) {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!("unknown status '{s}'; known: {}", STATUSES.join(", ")),
            ));
        }
    }
    if let Some(s) = &q.severity {
        if Severity::parse(s).is_none() {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!("unknown severity '{s}'"),
            ));
        }
    }
    if let Some(s) = q.session_id {
        // A session the caller cannot see is 404 here too.
        super::sessions::visible_session(&state, &user, s).await?;
    }
    let filter = DefectFilter {
        building_id: q.building_id,
        session_id: q.session_id,
        asset_id: q.asset_id,
        status: q.status,
        severity: q.severity,
        overdue_at: q.overdue.unwrap_or(false).then(Utc::now),
        visible_to: visible_to(&user),
        active_only: false,
    };
    let rows = state.store.list_defects(user.org_id, &filter, page).await?;
    Ok(Json(Paginated::from_rows(
        rows,
        page,
        |d| d.id,
        DefectView::from,
    )))
}

async fn full_view(state: &AppState, user: &AuthUser, id: Uuid) -> ApiResult<DefectView> {
    let d = state
        .store
        .get_defect(user.org_id, id, visible_to(user))
        .await?;
    let mut view = DefectView::from(d);
    view.history = Some(state.store.defect_events(id).await?);
    view.sightings = Some(state.store.defect_sightings(id).await?);
    view.notices = Some(super::notices::notices_of_defect(state, user, id).await?);
    Ok(view)
}

/// One defect with its history and the sessions that found it.
#[utoipa::path(get, path = "/v1/defects/{id}", tag = "defects", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = DefectView), (status = 404, body = Problem)))]
async fn get(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<DefectView>> {
    Ok(Json(full_view(&state, &user, id).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateDefect {
    /// The next lifecycle status (one step), `cancelled`, `duplicate` (with `duplicate_of`),
    /// or `open` to reopen a closed, cancelled or duplicate defect.
    pub status: Option<String>,
    /// A new severity, overriding what the rule library gave (with `reason`).
    #[schema(value_type = Option<Severity>)]
    pub severity: Option<String>,
    /// Required to override the severity, cancel, mark duplicate or reopen.
    pub reason: Option<String>,
    /// The defect this one duplicates.
    pub duplicate_of: Option<Uuid>,
    /// A note on a lifecycle step.
    pub note: Option<String>,
}

/// Move a defect along its lifecycle (admin, office): one step at a time, cancel or mark
/// duplicate with a reason, or reopen with a reason. Or override its severity with a reason
/// (admin, office, or an inspector who can see it). 422 names what is allowed.
#[utoipa::path(patch, path = "/v1/defects/{id}", tag = "defects", security(("bearer" = [])), params(("id" = Uuid, Path)),
    request_body = UpdateDefect,
    responses((status = 200, body = DefectView), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn update(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Json(req): Json<UpdateDefect>,
) -> ApiResult<Json<DefectView>> {
    let d = state
        .store
        .get_defect(user.org_id, id, visible_to(&user))
        .await?;
    // Auditors change nothing, whatever the body says (403 before any 422).
    user.require(&[Role::Admin, Role::Office, Role::Inspector])?;
    for (field, value, max) in [("note", &req.note, 10_000), ("reason", &req.reason, 2_000)] {
        if value.as_ref().is_some_and(|v| v.chars().count() > max) {
            return Err(ApiError::unprocessable(
                "invalid_field",
                format!("{field} must be at most {max} characters"),
            ));
        }
    }
    let reason = req
        .reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty());
    let now = Utc::now();
    match (&req.status, &req.severity) {
        (Some(_), Some(_)) => {
            return Err(ApiError::unprocessable(
                "invalid_body",
                "change the status or the severity, one at a time",
            ))
        }
        (None, None) => {
            return Err(ApiError::unprocessable(
                "invalid_body",
                "give status or severity",
            ))
        }
        (None, Some(raw)) => {
            user.require(&[Role::Admin, Role::Office, Role::Inspector])?;
            let sev = severity(raw, "severity")?;
            let Some(reason) = reason else {
                return Err(ApiError::unprocessable(
                    "reason_required",
                    "reason: overriding a defect's severity needs a reason",
                ));
            };
            if !rules::is_active(&d.status) {
                return Err(ApiError::unprocessable(
                    "invalid_transition",
                    format!("a defect in '{}' keeps its severity", d.status),
                ));
            }
            let notify_by = match Severity::parse(&d.severity) {
                Some(old) => rules::deadline_after(old, sev, d.notify_by, d.discovered_at, now),
                None => d.discovered_at + sev.notification_window(),
            };
            state
                .store
                .override_severity(
                    user.org_id,
                    id,
                    &SeverityOverride {
                        severity: sev.as_str(),
                        reason,
                        actor: user.user_id,
                        at: now,
                        notify_by,
                    },
                )
                .await?;
            state
                .audit(
                    &user,
                    "defect.severity",
                    Some(Target::new("defect", id)),
                    json!({ "old": { "severity": d.severity }, "new": { "severity": sev.as_str() }, "reason": reason }),
                )
                .await?;
        }
        (Some(to), None) => {
            user.require(&[Role::Admin, Role::Office])?;
            let m = match to.as_str() {
                rules::status::CANCELLED => Move::Cancel,
                rules::status::DUPLICATE => Move::Duplicate,
                rules::status::OPEN if !rules::is_active(&d.status) => Move::Reopen,
                other => Move::Step(other),
            };
            let target = rules::apply_move(&d.status, &m, reason.or(req.note.as_deref()))
                .map_err(|e| ApiError::unprocessable("invalid_transition", e.0))?;
            let mut duplicate_of = None;
            if m == Move::Duplicate {
                let Some(other) = req.duplicate_of else {
                    return Err(ApiError::unprocessable(
                        "invalid_field",
                        "duplicate_of: marking a defect duplicate names the defect it duplicates",
                    ));
                };
                let original = match state.store.get_defect(user.org_id, other, None).await {
                    Ok(o) => o,
                    Err(StoreError::NotFound) => {
                        return Err(ApiError::unprocessable(
                            "unknown_reference",
                            format!("duplicate_of: no defect {other}"),
                        ))
                    }
                    Err(e) => return Err(e.into()),
                };
                if other == id || original.status == rules::status::DUPLICATE {
                    return Err(ApiError::unprocessable(
                        "invalid_field",
                        "duplicate_of: must be another defect that is not itself a duplicate",
                    ));
                }
                duplicate_of = Some(other);
            } else if req.duplicate_of.is_some() {
                return Err(ApiError::unprocessable(
                    "invalid_field",
                    "duplicate_of: only with status duplicate",
                ));
            }
            let notify_by = (m == Move::Reopen).then(|| {
                now + Severity::parse(&d.severity)
                    .unwrap_or(Severity::NonCritical)
                    .notification_window()
            });
            let note = reason.or(req.note.as_deref());
            let moved = state
                .store
                .transition_defect(
                    user.org_id,
                    id,
                    &Transition {
                        from: &d.status,
                        to: target,
                        actor: user.user_id,
                        note,
                        at: now,
                        duplicate_of,
                        notify_by,
                    },
                )
                .await
                .map_err(|e| match e {
                    StoreError::Conflict(_) => ApiError::conflict(
                        "defect_exists",
                        "another active defect has this asset and condition; reopen is refused",
                    ),
                    other => other.into(),
                })?;
            if !moved {
                return Err(ApiError::conflict(
                    "status_changed",
                    "the defect changed meanwhile; reload and retry",
                ));
            }
            state
                .audit(
                    &user,
                    "defect.transition",
                    Some(Target::new("defect", id)),
                    json!({ "old": { "status": d.status }, "new": { "status": target },
                            "reason": reason, "duplicate_of": duplicate_of }),
                )
                .await?;
        }
    }
    Ok(Json(full_view(&state, &user, id).await?))
}
