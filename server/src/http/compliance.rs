//! `GET /v1/buildings/{id}/compliance`: the building's compliance report as JSON, CSV or PDF
//! (see `crate::compliance` for what is computed and why).

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use chrono::{Days, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::error::{ApiError, ApiResult, Problem};
use super::extract::{Json, Path, Query};
use crate::auth::AuthUser;
use crate::compliance::{self, Inputs, Report, ReportDefect};
use crate::state::AppState;
use crate::store::defects::DefectFilter;
use crate::store::Page;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get))
        .routes(routes!(schedule))
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
    let building = store.get_building(user.org_id, id).await?;
    let before = compliance::services_before(as_of);
    // Four independent reads; on SQLite they run on separate reader connections.
    let (assets, rules, services, defects) = tokio::try_join!(
        store.building_assets(user.org_id, id),
        crate::rules::building_rules(store.as_ref(), &building, None),
        store.latest_services(user.org_id, id, &before, compliance::SERVICES_PER_RULE),
        store.open_defect_counts(user.org_id, id),
    )?;
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
        })
        .collect();
    let report = compliance::build(Inputs {
        building: &building,
        assets: &assets,
        rules: &rules,
        services: &services,
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

fn attachment(body: Vec<u8>, content_type: &'static str, name: &str) -> Response {
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

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ScheduleQuery {
    /// First day of the range (`YYYY-MM-DD`, UTC; default today).
    #[param(value_type = Option<String>, format = Date)]
    pub from: Option<NaiveDate>,
    /// Last day of the range (default `from` + 90 days; at most 366 days after `from`).
    #[param(value_type = Option<String>, format = Date)]
    pub to: Option<NaiveDate>,
    /// Only this building.
    pub building_id: Option<Uuid>,
}

/// One routine due in the range, or overdue now.
#[derive(Serialize, ToSchema)]
pub struct DueItem {
    pub building_id: Uuid,
    pub building_name: String,
    pub asset_id: Uuid,
    pub identifier: Option<String>,
    pub asset_type: String,
    pub location: String,
    pub rule_code: Option<String>,
    pub rule_name: Option<String>,
    pub frequency: Option<String>,
    pub last_service: Option<chrono::DateTime<Utc>>,
    /// The scheduled date (none: never serviced and no install date — due now).
    pub next_due: Option<NaiveDate>,
    /// The last day of its tolerance window.
    pub due_by: Option<NaiveDate>,
    /// Past its window today.
    pub overdue: bool,
}

#[derive(Serialize, ToSchema)]
pub struct Schedule {
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// Overdue first, then by due date, building and asset identifier.
    pub items: Vec<DueItem>,
}

/// What is due (its scheduled date in `from..=to`) or overdue now, per asset and routine, for
/// one building or every building of the organisation. Due dates are the compliance report's
/// (the schedule's grid, the standard's tolerances). Every role may read it.
#[utoipa::path(get, path = "/v1/schedule", tag = "reports", security(("bearer" = [])),
    params(ScheduleQuery),
    responses((status = 200, body = Schedule), (status = 400, body = Problem), (status = 404, body = Problem)))]
async fn schedule(
    State(state): State<AppState>,
    user: AuthUser,
    Query(q): Query<ScheduleQuery>,
) -> ApiResult<Json<Schedule>> {
    let today = Utc::now().date_naive();
    let from = q.from.unwrap_or(today);
    let to = q.to.unwrap_or_else(|| {
        from.checked_add_days(Days::new(90))
            .unwrap_or(NaiveDate::MAX)
    });
    if to < from || (to - from).num_days() > 366 {
        return Err(ApiError::bad_request(
            "invalid_query",
            "to must be on or after from, at most 366 days later",
        ));
    }
    let store = &state.store;
    let buildings = match q.building_id {
        Some(id) => vec![store.get_building(user.org_id, id).await?],
        None => {
            let mut all = Vec::new();
            let mut after = None;
            loop {
                let page = Page { after, limit: 500 };
                let rows = store
                    .list_buildings(user.org_id, &Default::default(), page)
                    .await?;
                let done = rows.len() < 500;
                after = rows.last().map(|b| b.id);
                all.extend(rows);
                if done {
                    break;
                }
            }
            all
        }
    };
    let rules = store.edition_rules(user.org_id, None, None).await?;
    let before = compliance::services_before(today);
    let mut items = Vec::new();
    for building in &buildings {
        let (assets, services) = tokio::try_join!(
            store.building_assets(user.org_id, building.id),
            store.latest_services(
                user.org_id,
                building.id,
                &before,
                compliance::SERVICES_PER_RULE
            ),
        )?;
        let report = compliance::build(Inputs {
            building,
            assets: &assets,
            rules: &crate::rules::for_building(building, &rules),
            services: &services,
            defects: &[],
            active_defects: Vec::new(),
            as_of: today,
            generated_at: Utc::now(),
        });
        for row in report.items {
            if row.rule_code.is_none() {
                continue;
            }
            let in_range = row.next_due.is_some_and(|d| from <= d && d <= to);
            if !(in_range || row.overdue) {
                continue;
            }
            items.push(DueItem {
                building_id: building.id,
                building_name: building.name.clone(),
                asset_id: row.asset_id,
                identifier: row.identifier,
                asset_type: row.asset_type,
                location: row.location,
                rule_code: row.rule_code,
                rule_name: row.rule_name,
                frequency: row.frequency,
                last_service: row.last_service,
                next_due: row.next_due,
                due_by: row.due_by,
                overdue: row.overdue,
            });
        }
    }
    items.sort_by(|a, b| {
        (!a.overdue, a.next_due, &a.building_name, &a.identifier).cmp(&(
            !b.overdue,
            b.next_due,
            &b.building_name,
            &b.identifier,
        ))
    });
    Ok(Json(Schedule { from, to, items }))
}
