//! `/v1/defects`: defects opened automatically from failed items or by hand, and their
//! lifecycle `open -> acknowledged -> repair_scheduled -> repaired -> verified -> closed`.

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
use crate::projection::notification_window;
use crate::state::AppState;
use crate::store::defects::{DefectEvent, DefectFilter, DefectRecord, Transition};
use crate::store::Role;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(get, update))
}

/// The lifecycle, in order. `withdrawn` is outside it: only the projection sets it.
pub const LIFECYCLE: [&str; 6] = [
    "open",
    "acknowledged",
    "repair_scheduled",
    "repaired",
    "verified",
    "closed",
];
const SEVERITIES: [&str; 3] = ["critical", "non_critical", "non_conformance"];

fn next_status(current: &str) -> Option<&'static str> {
    let i = LIFECYCLE.iter().position(|s| *s == current)?;
    LIFECYCLE.get(i + 1).copied()
}

#[derive(Serialize, ToSchema)]
pub struct DefectView {
    pub id: Uuid,
    pub building_id: Uuid,
    pub asset_id: Option<Uuid>,
    pub session_id: Option<Uuid>,
    pub rule_code: Option<String>,
    pub rule_version: Option<String>,
    /// critical, non_critical or non_conformance (AS 1851 cl. 1.5.6).
    pub severity: String,
    pub status: String,
    /// automatic (from a failed item) or manual.
    pub source: String,
    pub title: String,
    pub description: String,
    pub observed_condition: Option<String>,
    pub evidence: Vec<String>,
    pub discovered_at: DateTime<Utc>,
    /// When the responsible person must have been told: 24 h for critical, a week otherwise.
    pub notify_by: DateTime<Utc>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    /// Past `notify_by` without an acknowledgement.
    pub overdue: bool,
    /// The status it may move to next, if any.
    pub next_status: Option<String>,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Each step with who and when (only on `GET /v1/defects/{id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub history: Option<Vec<DefectEvent>>,
}

impl From<DefectRecord> for DefectView {
    fn from(d: DefectRecord) -> Self {
        let open = d.status != "closed" && d.status != "withdrawn";
        Self {
            overdue: open && d.acknowledged_at.is_none() && d.notify_by < Utc::now(),
            next_status: next_status(&d.status).map(str::to_owned),
            id: d.id,
            building_id: d.building_id,
            asset_id: d.asset_id,
            session_id: d.session_id,
            rule_code: d.rule_code,
            rule_version: d.rule_version,
            severity: d.severity,
            status: d.status,
            source: d.source,
            title: d.title,
            description: d.description,
            observed_condition: d.observed_condition,
            evidence: d.evidence.0,
            discovered_at: d.discovered_at,
            notify_by: d.notify_by,
            acknowledged_at: d.acknowledged_at,
            created_by: d.created_by,
            created_at: d.created_at,
            updated_at: d.updated_at,
            history: None,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDefect {
    pub building_id: Uuid,
    pub asset_id: Option<Uuid>,
    pub session_id: Option<Uuid>,
    pub severity: String,
    pub title: String,
    #[serde(default)]
    pub description: String,
    pub rule_code: Option<String>,
    #[serde(default)]
    pub evidence: Vec<Uuid>,
    /// When it was found; default now.
    pub discovered_at: Option<DateTime<Utc>>,
}

/// Record a defect by hand (admin, office, or an inspector).
#[utoipa::path(post, path = "/v1/defects", tag = "defects", security(("bearer" = [])), request_body = CreateDefect,
    responses((status = 201, body = DefectView), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    Json(req): Json<CreateDefect>,
) -> ApiResult<(StatusCode, Json<DefectView>)> {
    user.require(&[Role::Admin, Role::Office, Role::Inspector])?;
    if !SEVERITIES.contains(&req.severity.as_str()) {
        return Err(ApiError::unprocessable(
            "invalid_severity",
            "severity must be critical, non_critical or non_conformance",
        ));
    }
    let title = req.title.trim();
    if title.is_empty() || title.len() > 200 || req.description.len() > 10_000 {
        return Err(ApiError::unprocessable(
            "invalid_field",
            "title must be 1-200 characters, description at most 10000",
        ));
    }
    state
        .store
        .get_building(user.org_id, req.building_id)
        .await?;
    if let Some(asset) = req.asset_id {
        state
            .store
            .get_asset(user.org_id, req.building_id, asset)
            .await?;
    }
    if let Some(s) = req.session_id {
        let session = super::sessions::visible_session(&state, &user, s).await?;
        if session.row.building_id != req.building_id {
            return Err(ApiError::unprocessable(
                "invalid_field",
                "the session is for another building",
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
        rule_version: None,
        notify_by: discovered + notification_window(&req.severity),
        severity: req.severity,
        status: "open".into(),
        source: "manual".into(),
        title: title.to_owned(),
        description: req.description,
        observed_condition: None,
        evidence: sqlx::types::Json(req.evidence.iter().map(Uuid::to_string).collect()),
        discovered_at: discovered,
        acknowledged_at: None,
        created_by: Some(user.user_id),
        created_at: now,
        updated_at: now,
    };
    state.store.insert_defect(&d).await?;
    state
        .audit(
            &user,
            "defect.create",
            Some(Target::new("defect", d.id)),
            json!({ "severity": d.severity, "building_id": d.building_id }),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(d.into())))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub building_id: Option<Uuid>,
    pub session_id: Option<Uuid>,
    pub status: Option<String>,
    pub severity: Option<String>,
    /// Only those past their notification deadline without an acknowledgement.
    pub overdue: Option<bool>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// Defects of the caller's organisation.
#[utoipa::path(get, path = "/v1/defects", tag = "defects", security(("bearer" = [])), params(ListQuery),
    responses((status = 200, body = Paginated<DefectView>), (status = 400, body = Problem)))]
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
        if !LIFECYCLE.contains(&s.as_str()) && s != "withdrawn" {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!("unknown status '{s}'"),
            ));
        }
    }
    if let Some(s) = &q.severity {
        if !SEVERITIES.contains(&s.as_str()) {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!("unknown severity '{s}'"),
            ));
        }
    }
    let filter = DefectFilter {
        building_id: q.building_id,
        session_id: q.session_id,
        status: q.status,
        severity: q.severity,
        overdue_at: q.overdue.unwrap_or(false).then(Utc::now),
    };
    let rows = state.store.list_defects(user.org_id, &filter, page).await?;
    Ok(Json(Paginated::from_rows(
        rows,
        page,
        |d| d.id,
        DefectView::from,
    )))
}

/// One defect with its history.
#[utoipa::path(get, path = "/v1/defects/{id}", tag = "defects", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = DefectView), (status = 404, body = Problem)))]
async fn get(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<DefectView>> {
    let d = state.store.get_defect(user.org_id, id).await?;
    let mut view = DefectView::from(d);
    view.history = Some(state.store.defect_events(id).await?);
    Ok(Json(view))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateDefect {
    /// The next status in the lifecycle (one step only).
    pub status: String,
    pub note: Option<String>,
}

/// Move a defect one step along its lifecycle (admin, office). 422 names the allowed step.
#[utoipa::path(patch, path = "/v1/defects/{id}", tag = "defects", security(("bearer" = [])), params(("id" = Uuid, Path)),
    request_body = UpdateDefect,
    responses((status = 200, body = DefectView), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn update(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Json(req): Json<UpdateDefect>,
) -> ApiResult<Json<DefectView>> {
    let d = state.store.get_defect(user.org_id, id).await?;
    user.require(&[Role::Admin, Role::Office])?;
    if req.note.as_ref().is_some_and(|n| n.len() > 10_000) {
        return Err(ApiError::unprocessable(
            "invalid_field",
            "note must be at most 10000 characters",
        ));
    }
    let allowed = next_status(&d.status);
    if allowed != Some(req.status.as_str()) {
        let detail = match allowed {
            Some(next) => format!(
                "a defect in '{}' can only move to '{next}', not '{}'",
                d.status, req.status
            ),
            None => format!("a defect in '{}' cannot change status", d.status),
        };
        return Err(ApiError::unprocessable("invalid_transition", detail));
    }
    let now = Utc::now();
    if !state
        .store
        .transition_defect(
            user.org_id,
            id,
            &Transition {
                from: &d.status,
                to: &req.status,
                actor: user.user_id,
                note: req.note.as_deref(),
                at: now,
            },
        )
        .await?
    {
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
            json!({ "old": { "status": d.status }, "new": { "status": req.status } }),
        )
        .await?;
    let mut view = DefectView::from(state.store.get_defect(user.org_id, id).await?);
    view.history = Some(state.store.defect_events(id).await?);
    Ok(Json(view))
}
