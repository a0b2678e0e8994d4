//! `GET /v1/buildings/{id}/compliance`: the building's compliance report as JSON, CSV or PDF
//! (see `crate::compliance` for what is computed and why).

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use chrono::{Datelike, Days, NaiveDate, Utc};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::error::{ApiError, ApiResult, Problem};
use super::extract::{Json, Path, Query};
use crate::auth::AuthUser;
use crate::compliance::{self, Inputs, Report, ReportDefect};
use crate::domain::schedule::Calendar;
use crate::state::AppState;
use crate::store::buildings::{AssetRecord, BuildingRecord};
use crate::store::defects::DefectFilter;
use crate::store::reports::ServiceRow;
use crate::store::schedule::HistoryRecord;
use crate::store::{Page, StoreError};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get))
}

/// What the schedule of a building is computed from, besides the rules.
pub(crate) struct ScheduleInputs {
    pub assets: Vec<AssetRecord>,
    pub services: Vec<ServiceRow>,
    pub history: Vec<HistoryRecord>,
    pub calendar: Calendar,
}

impl ScheduleInputs {
    /// The building's assets, services and history up to `as_of`, and the working-day
    /// calendar of its state (years from its earliest service to two years after `as_of`).
    pub async fn load(
        state: &AppState,
        org_id: Uuid,
        building: &BuildingRecord,
        as_of: NaiveDate,
    ) -> Result<Self, StoreError> {
        Self::load_from(state.store.as_ref(), org_id, building, as_of).await
    }

    /// [`Self::load`] from a store (the projection has no `AppState`).
    pub async fn load_from(
        store: &dyn crate::store::Store,
        org_id: Uuid,
        building: &BuildingRecord,
        as_of: NaiveDate,
    ) -> Result<Self, StoreError> {
        let before = compliance::services_before(as_of);
        let next_day = as_of.checked_add_days(Days::new(1)).unwrap_or(as_of);
        let holidays = async {
            match &building.state {
                Some(s) => store.holidays(org_id, s).await,
                None => Ok(Vec::new()),
            }
        };
        let (assets, services, history, holidays) = tokio::try_join!(
            store.building_assets(org_id, building.id),
            store.latest_services(org_id, building.id, &before, compliance::SERVICES_PER_RULE),
            store.service_history(org_id, building.id, next_day),
            holidays,
        )?;
        let years = calendar_years(&services, &history, as_of);
        let calendar = compliance::calendar(building, &holidays, years);
        Ok(Self {
            assets,
            services,
            history,
            calendar,
        })
    }
}

/// The years a schedule's calendar covers: from the year before its earliest service to two
/// years after `as_of`.
pub(crate) fn calendar_years(
    services: &[ServiceRow],
    history: &[HistoryRecord],
    as_of: NaiveDate,
) -> std::ops::RangeInclusive<i32> {
    let earliest = services
        .iter()
        .filter_map(|s| s.first_recorded_at.get(..4)?.parse::<i32>().ok())
        .chain(history.iter().map(|h| h.serviced_on.year()))
        .min()
        .unwrap_or(as_of.year())
        .min(as_of.year())
        - 1;
    earliest..=as_of.year() + 2
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Json,
    Csv,
    Pdf,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    /// `json` (default), `csv` or `pdf` (the printable yearly condition report).
    #[param(value_type = Option<String>)]
    pub format: Option<Format>,
    /// The report date (`YYYY-MM-DD`, UTC; default today): services recorded after it are
    /// ignored and overdue is judged on it, so a report can be reproduced later. Defect
    /// counts are the defects open now.
    #[param(value_type = Option<String>, format = Date)]
    pub as_of: Option<NaiveDate>,
}

/// The compliance report of a building: every asset under every rule that applies to it (the
/// asset's rule codes, or every active rule for its equipment kind) with its last service,
/// outcome, next due date, whether the last service kept to its interval tolerance (AS 1851
/// cl. 1.11), open defects by severity, and a status; plus building-level counts and an
/// overall status by precedence `critical_defect` > `overdue` > `defects_open` >
/// `compliant`. Every role of the organisation may read it.
#[utoipa::path(get, path = "/v1/buildings/{id}/compliance", tag = "reports", security(("bearer" = [])),
    params(("id" = Uuid, Path), ReportQuery),
    responses(
        (status = 200, description = "JSON; with format=csv `text/csv`, with format=pdf `application/pdf` (both attachments)",
         content((Report = "application/json"), (String = "text/csv"), (Vec<u8> = "application/pdf"))),
        (status = 400, body = Problem), (status = 404, body = Problem)))]
async fn get(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Query(q): Query<ReportQuery>,
) -> ApiResult<Response> {
    let now = Utc::now();
    let as_of = q.as_of.unwrap_or_else(|| now.date_naive());
    let store = &state.store;
    // Today's report: the building's schedule inputs as cached under its organisation's
    // version (`schedule_cache`); another day's is loaded for it.
    let cached = match q.as_of {
        Some(d) if d != now.date_naive() => None,
        _ => Some(super::schedule_cache::loaded(&state, user.org_id, Some(id)).await?),
    }
    .filter(|l| l.today() == as_of);
    let fresh;
    let (building, rules, inputs) = match cached.as_ref().and_then(|l| l.building(0)) {
        Some(parts) => parts,
        None => {
            let building = store.get_building(user.org_id, id).await?;
            // Independent reads; on SQLite they run on separate reader connections.
            let (inputs, rules) = tokio::try_join!(
                ScheduleInputs::load(&state, user.org_id, &building, as_of),
                crate::rules::building_rules(store.as_ref(), &building, None),
            )?;
            fresh = (building, rules, inputs);
            (&fresh.0, fresh.1.as_slice(), &fresh.2)
        }
    };
    let defects = store.open_defect_counts(user.org_id, id).await?;
    let listed = store
        .list_defects(
            user.org_id,
            &DefectFilter {
                building_id: Some(id),
                active_only: true,
                // The list follows defect visibility (counts are the building's).
                visible_to: crate::domain::access::defect_visibility(&user.caller()),
                ..Default::default()
            },
            Page {
                after: None,
                limit: 100_000,
            },
        )
        .await?;
    let active_defects = listed
        .into_iter()
        .map(|d| ReportDefect {
            id: d.id,
            title: d.title,
            asset_id: d.asset_id,
            identifier: d.asset_identifier,
            location: d.asset_location,
            severity: d.severity,
            severity_overridden: d.severity_overridden,
            severity_reason: d.severity_reason,
            status: d.status,
            discovered_at: d.discovered_at,
            notify_by: d.notify_by,
            acknowledged_at: d.acknowledged_at,
            notified_at: d.notified_at,
        })
        .collect();
    let report = compliance::build(Inputs {
        building,
        assets: &inputs.assets,
        rules,
        services: &inputs.services,
        history: &inputs.history,
        calendar: &inputs.calendar,
        defects: &defects,
        active_defects,
        as_of,
        generated_at: now,
    });
    Ok(match q.format.unwrap_or_default() {
        Format::Json => Json(report).into_response(),
        Format::Csv => {
            let body = compliance::csv::render(&report);
            attachment(body, "text/csv; charset=utf-8", &file_name(&report, "csv"))
        }
        Format::Pdf => {
            let name = file_name(&report, "pdf");
            // Hundreds of pages for a large building: keep it off the async workers.
            let body = tokio::task::spawn_blocking(move || compliance::pdf::render(&report))
                .await
                .map_err(|e| ApiError::Internal(e.into()))?;
            attachment(body, "application/pdf", &name)
        }
    })
}

/// `compliance-<building name>-<as of>.<ext>`, in characters safe in any file system.
fn file_name(report: &Report, ext: &str) -> String {
    let mut slug = String::new();
    for ch in report.building.name.chars() {
        if ch.is_ascii_alphanumeric() {
            slug.push(ch.to_ascii_lowercase());
        } else if !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let slug: String = slug.trim_matches('-').chars().take(60).collect();
    let slug = if slug.is_empty() {
        "building".to_owned()
    } else {
        slug
    };
    format!("compliance-{slug}-{}.{ext}", report.as_of)
}

pub(crate) fn attachment(body: Vec<u8>, content_type: &'static str, name: &str) -> Response {
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{name}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"));
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response()
}
