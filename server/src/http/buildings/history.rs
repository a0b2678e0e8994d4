//! `/v1/buildings/{id}/assets/{asset_id}/service-history`: services of an asset recorded
//! outside a session (imported at onboarding, or entered by the office). Every role reads;
//! admin and office add, checked like the CSV import (`domain::service_history`), with source
//! `office`, audited. The compliance report and the schedule count them as services.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::assets::AssetRules;
use super::WRITERS;
use crate::audit::Target;
use crate::auth::AuthUser;
use crate::domain::reference::{check_text, MAX_NOTE_CHARS};
use crate::domain::service_history::{self, Outcome, Part, ServicedAsset};
use crate::http::csv_upload::RowError;
use crate::http::error::{ApiError, CustomProblem, HandlerError, Problem};
use crate::http::extract::{Json, Path};
use crate::state::AppState;
use crate::store::schedule::HistoryRecord;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_history, add_history))
}

/// The outcome of a recorded service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ServiceOutcome {
    Pass,
    Fail,
}

/// Where a recorded service came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ServiceSource {
    /// The asset CSV import (`last_services`).
    Import,
    /// Entered through this endpoint.
    Office,
}

/// A service of one of the asset's routines recorded outside a session.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ServiceView {
    pub id: Uuid,
    pub building_id: Uuid,
    pub asset_id: Uuid,
    pub rule_code: String,
    pub serviced_on: NaiveDate,
    pub outcome: ServiceOutcome,
    pub source: ServiceSource,
    pub note: Option<String>,
    /// Who recorded it (null: unknown).
    pub recorded_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

impl From<HistoryRecord> for ServiceView {
    fn from(h: HistoryRecord) -> Self {
        Self {
            id: h.id,
            building_id: h.building_id,
            asset_id: h.asset_id,
            rule_code: h.rule_code,
            serviced_on: h.serviced_on,
            outcome: if h.outcome == "fail" {
                ServiceOutcome::Fail
            } else {
                ServiceOutcome::Pass
            },
            source: if h.source == "import" {
                ServiceSource::Import
            } else {
                ServiceSource::Office
            },
            note: h.note,
            recorded_by: h.recorded_by,
            created_at: h.created_at,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ServiceHistory {
    pub asset_id: Uuid,
    /// Newest first.
    pub items: Vec<ServiceView>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewService {
    /// A rule of the organisation for the asset's equipment kind.
    pub rule_code: String,
    /// `YYYY-MM-DD`; not in the future, not before the asset's install or manufacture date.
    #[schema(format = Date)]
    pub serviced_on: String,
    pub outcome: ServiceOutcome,
    /// At most 2,000 characters; line breaks and tabs allowed.
    pub note: Option<String>,
}

/// An asset's services recorded outside sessions (imported or entered by the office), newest
/// first.
#[utoipa::path(get, path = "/v1/buildings/{id}/assets/{asset_id}/service-history", tag = "assets",
    security(("bearer" = [])),
    params(("id" = Uuid, Path), ("asset_id" = Uuid, Path)),
    responses((status = 200, body = ServiceHistory), (status = 404, body = Problem)))]
async fn list_history(
    State(state): State<AppState>,
    user: AuthUser,
    Path((building_id, asset_id)): Path<(Uuid, Uuid)>,
) -> Result<Json<ServiceHistory>, HandlerError> {
    state
        .store
        .get_asset(user.org_id, building_id, asset_id)
        .await
        .map_err(ApiError::from)?;
    let items = state
        .store
        .asset_service_history(user.org_id, asset_id)
        .await
        .map_err(ApiError::from)?
        .into_iter()
        .map(ServiceView::from)
        .collect();
    Ok(Json(ServiceHistory { asset_id, items }))
}

/// Record a service of one of the asset's routines done outside a session (admin, office).
/// Checked like the CSV import's `last_services`; one service per routine and day.
#[utoipa::path(post, path = "/v1/buildings/{id}/assets/{asset_id}/service-history", tag = "assets",
    security(("bearer" = [])),
    params(("id" = Uuid, Path), ("asset_id" = Uuid, Path)), request_body = NewService,
    responses((status = 201, body = ServiceView), (status = 400, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem), (status = 409, body = Problem, description = "building_archived"),
              (status = 409, body = Problem, description = "code service_exists: this routine is already recorded on that day"),
              (status = 422, body = Problem, description = "code invalid_field, with errors: [{field, message}]")))]
async fn add_history(
    State(state): State<AppState>,
    user: AuthUser,
    Path((building_id, asset_id)): Path<(Uuid, Uuid)>,
    Json(req): Json<NewService>,
) -> Result<(StatusCode, Json<ServiceView>), HandlerError> {
    user.require(WRITERS)?;
    let asset = state
        .store
        .get_asset(user.org_id, building_id, asset_id)
        .await
        .map_err(ApiError::from)?;
    crate::http::records::ensure_open(&state, user.org_id, building_id).await?;
    let rules = AssetRules::load(&state, &user, building_id, true).await?;
    let today = Utc::now().date_naive();
    let rule_code = req.rule_code.trim().to_owned();
    let mut errors: Vec<(&str, String)> = Vec::new();
    if let Err(m) = check_text(&req.rule_code, 100, false) {
        errors.push(("rule_code", format!("rule_code {m}")));
    }
    let note = req.note.as_deref().map(str::trim).filter(|n| !n.is_empty());
    if let Some(Err(m)) = req
        .note
        .as_deref()
        .map(|n| check_text(n, MAX_NOTE_CHARS, true))
    {
        errors.push(("note", format!("note {m}")));
    }
    match service_history::parse_day(&req.serviced_on) {
        None => errors.push((
            "serviced_on",
            format!("serviced_on '{}' is not a date YYYY-MM-DD", req.serviced_on),
        )),
        Some(day) if errors.is_empty() => {
            let facts = ServicedAsset {
                asset_type: &asset.asset_type,
                install_date: asset.install_date,
                manufacture_date: asset.manufacture_date,
            };
            for (part, m) in service_history::check(
                &rule_code,
                day,
                facts,
                |c| rules.equipment(c).map(str::to_owned),
                today,
            ) {
                let field = match part {
                    Part::Rule => "rule_code",
                    Part::Date => "serviced_on",
                };
                errors.push((field, m));
            }
        }
        Some(_) => {}
    }
    let Some(serviced_on) = service_history::parse_day(&req.serviced_on) else {
        return Err(invalid_fields(errors).into());
    };
    if !errors.is_empty() {
        return Err(invalid_fields(errors).into());
    }
    let outcome = match req.outcome {
        ServiceOutcome::Pass => Outcome::Pass,
        ServiceOutcome::Fail => Outcome::Fail,
    };
    let rec = HistoryRecord {
        id: Uuid::now_v7(),
        org_id: user.org_id,
        building_id,
        asset_id,
        rule_code,
        serviced_on,
        outcome: outcome.as_str().to_owned(),
        source: "office".to_owned(),
        note: note.map(str::to_owned),
        recorded_by: Some(user.user_id),
        created_at: Utc::now(),
    };
    let added = state
        .store
        .add_service_history(std::slice::from_ref(&rec))
        .await
        .map_err(ApiError::from)?;
    if added == 0 {
        return Err(ApiError::conflict(
            "service_exists",
            format!(
                "{} is already recorded for this asset on {serviced_on}",
                rec.rule_code
            ),
        ));
    }
    state
        .audit(
            &user,
            "service_history.add",
            Some(Target::new("asset", asset_id)),
            json!({
                "building_id": building_id,
                "asset_id": asset_id,
                "id": rec.id,
                "rule_code": rec.rule_code,
                "serviced_on": rec.serviced_on,
                "outcome": rec.outcome,
                "note": rec.note,
            }),
        )
        .await
        .map_err(ApiError::from)?;
    Ok((StatusCode::CREATED, Json(rec.into())))
}

/// 422 `invalid_field`: the first problem in the detail, all of them in `errors`.
fn invalid_fields(errors: Vec<(&str, String)>) -> CustomProblem {
    let detail = match errors.as_slice() {
        [(_, one)] => one.clone(),
        [(_, first), rest @ ..] => format!("{first} (and {} more problem(s))", rest.len()),
        [] => "invalid body".into(),
    };
    let listed: Vec<RowError> = errors
        .into_iter()
        .map(|(field, message)| RowError {
            row: None,
            field: Some(field.to_owned()),
            message,
        })
        .collect();
    CustomProblem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", detail)
        .with("errors", serde_json::to_value(listed).unwrap_or_default())
}
