//! Planning: what is due in a period (`GET /v1/schedule`), a session made of what is due
//! (`POST /v1/schedule/sessions`), and the public holidays the working-day tolerances skip
//! (`/v1/holidays`). Due dates are the compliance report's (`crate::compliance`,
//! `crate::domain::schedule`).

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{Datelike, Days, NaiveDate, Utc};
use firemode_sync_core::ItemInit;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::buildings::WRITERS;
use super::compliance::ScheduleInputs;
use super::error::{ApiError, ApiResult, Problem};
use super::extract::{Json, Path, Query};
use super::sessions::{self, NewSession, SessionView};
use crate::audit::Target;
use crate::auth::AuthUser;
use crate::compliance::due::{due_lines, DueInputs, DueItem, DueLine};
use crate::domain::holidays::{self, AuState};
use crate::state::AppState;
use crate::store::buildings::BuildingRecord;
use crate::store::rules::RuleRecord;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(schedule))
        .routes(routes!(session_from_schedule))
        .routes(routes!(list_holidays))
        .routes(routes!(replace_holidays))
}

/// The longest period one schedule request covers.
const MAX_RANGE_DAYS: i64 = 366;

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
    /// Items to skip (the `next_offset` of the previous page).
    pub offset: Option<usize>,
    /// Items per page, 1-10000 (default 1000).
    pub limit: Option<usize>,
}

/// Due items per month.
#[derive(Serialize, ToSchema)]
pub struct MonthCount {
    /// `YYYY-MM`.
    pub month: String,
    pub due: u32,
}

#[derive(Serialize, ToSchema)]
pub struct Schedule {
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// Items in the whole schedule (every page).
    pub total: usize,
    /// Of which overdue today.
    pub overdue: usize,
    /// Dated items of the range per month.
    pub by_month: Vec<MonthCount>,
    pub offset: usize,
    /// Where the next page starts; absent on the last page.
    pub next_offset: Option<usize>,
    /// Overdue first, then by due date, building and asset identifier.
    pub items: Vec<DueItem>,
}

fn range(from: Option<NaiveDate>, to: Option<NaiveDate>) -> ApiResult<(NaiveDate, NaiveDate)> {
    let from = from.unwrap_or_else(|| Utc::now().date_naive());
    let to = to.unwrap_or_else(|| {
        from.checked_add_days(Days::new(90))
            .unwrap_or(NaiveDate::MAX)
    });
    if to < from || (to - from).num_days() > MAX_RANGE_DAYS {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("to must be on or after from, at most {MAX_RANGE_DAYS} days later"),
        ));
    }
    Ok((from, to))
}

fn due_inputs<'a>(
    building: &'a BuildingRecord,
    inputs: &'a ScheduleInputs,
    rules: &'a [RuleRecord],
    today: NaiveDate,
) -> DueInputs<'a> {
    DueInputs {
        building,
        assets: &inputs.assets,
        rules,
        services: &inputs.services,
        history: &inputs.history,
        calendar: &inputs.calendar,
        as_of: today,
    }
}

/// The due items of one building, in schedule order.
async fn building_due(
    state: &AppState,
    org_id: Uuid,
    building: &BuildingRecord,
    rules: &[RuleRecord],
    from: NaiveDate,
    to: NaiveDate,
) -> ApiResult<Vec<DueItem>> {
    let today = Utc::now().date_naive();
    let inputs = ScheduleInputs::load(state, org_id, building, today).await?;
    let mut lines = due_lines(&due_inputs(building, &inputs, rules, today), from, to);
    lines.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    Ok(lines.iter().map(DueLine::item).collect())
}

/// What is due in a date range — every scheduled date of every routine of every asset, with
/// shorter routines due at the same time as a longer one folded into it (`includes`) — and
/// what is overdue today, for one building or every building of the organisation. Due dates
/// sit on each routine's grid (anchor + k × interval) with the standard's tolerance windows.
/// Every role may read it.
#[utoipa::path(get, path = "/v1/schedule", tag = "schedule", security(("bearer" = [])),
    params(ScheduleQuery),
    responses((status = 200, description = "The schedule, one page of it", body = Schedule),
              (status = 400, description = "Bad range or paging", body = Problem),
              (status = 401, description = "Not signed in", body = Problem),
              (status = 404, description = "No such building", body = Problem)))]
async fn schedule(
    State(state): State<AppState>,
    user: AuthUser,
    Query(q): Query<ScheduleQuery>,
) -> ApiResult<Json<Schedule>> {
    let (from, to) = range(q.from, q.to)?;
    let limit = q.limit.unwrap_or(1000);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            "limit must be 1-10000",
        ));
    }
    let offset = q.offset.unwrap_or(0);
    // Each building's lines computed once per version, day and range, and merged once per
    // set of versions (`schedule_cache`); a page is cut from it.
    let c = super::schedule_cache::computed(&state, user.org_id, q.building_id, from, to).await?;
    let items = c.items(offset, limit);
    let total = c.total();
    let next_offset = (offset + items.len() < total).then_some(offset + items.len());
    Ok(Json(Schedule {
        from,
        to,
        total,
        overdue: c.overdue,
        by_month: c
            .by_month
            .iter()
            .map(|(month, due)| MonthCount {
                month: month.clone(),
                due: *due,
            })
            .collect(),
        offset,
        next_offset,
        items,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSession {
    pub building_id: Uuid,
    /// Default: "Routine service <from>".
    pub name: Option<String>,
    /// Range of due dates to include (default today to today + 30 days); overdue routines are
    /// always included.
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    #[serde(default)]
    pub assigned_to: Vec<Uuid>,
}

/// Create a session from what is due: one item per asset with a routine due in the range or
/// overdue, under the asset's longest routine due (the shorter ones are part of it). The
/// session's frequency is the longest among its items. Admin and office.
#[utoipa::path(post, path = "/v1/schedule/sessions", tag = "schedule", security(("bearer" = [])),
    request_body = ScheduleSession,
    responses((status = 201, description = "The session", body = SessionView),
              (status = 400, description = "Bad range", body = Problem),
              (status = 401, description = "Not signed in", body = Problem),
              (status = 403, description = "Not admin or office", body = Problem),
              (status = 404, description = "No such building", body = Problem),
              (status = 422, description = "Nothing due, or a bad field", body = Problem)))]
async fn session_from_schedule(
    State(state): State<AppState>,
    user: AuthUser,
    Json(req): Json<ScheduleSession>,
) -> ApiResult<(StatusCode, Json<SessionView>)> {
    user.require(WRITERS)?;
    let today = Utc::now().date_naive();
    let (from, to) = range(
        Some(req.from.unwrap_or(today)),
        Some(req.to.unwrap_or_else(|| {
            req.from
                .unwrap_or(today)
                .checked_add_days(Days::new(30))
                .unwrap_or(NaiveDate::MAX)
        })),
    )?;
    let name = req
        .name
        .clone()
        .unwrap_or_else(|| format!("Routine service {from}"));
    let name = super::buildings::text_field("name", &name, 200)?;
    let building = state
        .store
        .get_building(user.org_id, req.building_id)
        .await?;
    let assigned: BTreeSet<Uuid> = req.assigned_to.iter().copied().collect();
    sessions::check_assignees(&state, &user, &assigned).await?;
    let rules = crate::rules::building_rules(state.store.as_ref(), &building, None).await?;
    let due = building_due(&state, user.org_id, &building, &rules, from, to).await?;
    let lib = crate::rules::library();
    let months = |freq: &str| {
        lib.any_frequency(freq).map_or(0, |f| {
            if f.months > 0 {
                f.months * 30
            } else {
                f.days.unwrap_or(0)
            }
        })
    };
    // Per asset, its longest routine due.
    let mut per_asset: BTreeMap<Uuid, &DueItem> = BTreeMap::new();
    for item in &due {
        let keep = per_asset
            .get(&item.asset_id)
            .is_none_or(|kept| months(&item.frequency) > months(&kept.frequency));
        if keep {
            per_asset.insert(item.asset_id, item);
        }
    }
    let Some(frequency) = per_asset
        .values()
        .max_by_key(|i| months(&i.frequency))
        .map(|i| i.frequency.clone())
    else {
        return Err(ApiError::unprocessable(
            "nothing_due",
            format!("nothing is due in {from}..{to} or overdue in this building"),
        ));
    };
    let items: Vec<ItemInit> = per_asset
        .values()
        .map(|i| ItemInit {
            asset_id: i.asset_id,
            rule_code: i.rule_code.clone(),
        })
        .collect();
    let count = items.len();
    let (id, initial) = sessions::new_document(&state, &user, &building, &name, &frequency, items)?;
    let view = sessions::store_session(
        &state,
        &user,
        &building,
        NewSession {
            id,
            name: &name,
            frequency: &frequency,
            assigned: assigned.into_iter().collect(),
            initial,
        },
        json!({ "from_schedule": { "from": from, "to": to, "items": count } }),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(view)))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct HolidayQuery {
    #[param(value_type = String)]
    pub state: AuState,
    /// Default: this year.
    pub year: Option<i32>,
}

/// Where a holiday comes from.
#[derive(Serialize, ToSchema, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum HolidaySource {
    /// Observed in every state (or the King's Birthday on the state's day).
    BuiltIn,
    /// Added by the organisation.
    Organisation,
}

#[derive(Serialize, ToSchema)]
pub struct HolidayView {
    pub date: NaiveDate,
    pub name: String,
    pub source: HolidaySource,
}

#[derive(Serialize, ToSchema)]
pub struct Holidays {
    pub state: AuState,
    pub year: i32,
    pub holidays: Vec<HolidayView>,
}

fn check_year(year: i32) -> ApiResult<()> {
    if !(1990..=2100).contains(&year) {
        return Err(ApiError::bad_request(
            "invalid_query",
            "year must be 1990-2100",
        ));
    }
    Ok(())
}

async fn holidays_of(
    state: &AppState,
    org_id: Uuid,
    st: AuState,
    year: i32,
) -> ApiResult<Holidays> {
    let mut out: Vec<HolidayView> = holidays::built_in(st, year)
        .into_iter()
        .map(|h| HolidayView {
            date: h.date,
            name: h.name,
            source: HolidaySource::BuiltIn,
        })
        .collect();
    out.extend(
        state
            .store
            .holidays(org_id, st.as_str())
            .await?
            .into_iter()
            .filter(|h| h.day.year() == year)
            .map(|h| HolidayView {
                date: h.day,
                name: h.name,
                source: HolidaySource::Organisation,
            }),
    );
    out.sort_by(|a, b| (a.date, &a.source).cmp(&(b.date, &b.source)));
    Ok(Holidays {
        state: st,
        year,
        holidays: out,
    })
}

/// The public holidays of a state in a year that the schedule's working-day tolerances skip:
/// the built-in ones and those the organisation added. Every role may read them.
#[utoipa::path(get, path = "/v1/holidays", tag = "schedule", security(("bearer" = [])),
    params(HolidayQuery),
    responses((status = 200, description = "The holidays", body = Holidays),
              (status = 400, description = "Bad state or year", body = Problem),
              (status = 401, description = "Not signed in", body = Problem)))]
async fn list_holidays(
    State(state): State<AppState>,
    user: AuthUser,
    Query(q): Query<HolidayQuery>,
) -> ApiResult<Json<Holidays>> {
    let year = q.year.unwrap_or_else(|| Utc::now().year());
    check_year(year)?;
    Ok(Json(holidays_of(&state, user.org_id, q.state, year).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HolidayInput {
    pub date: NaiveDate,
    pub name: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplaceHolidays {
    /// The organisation's own holidays of this state and year (Labour Day, show days, ...);
    /// replaces the ones it added before. At most 60.
    pub holidays: Vec<HolidayInput>,
}

/// Set the holidays the organisation adds for a state in a year (admin, office). Built-in
/// holidays need not be listed.
#[utoipa::path(put, path = "/v1/holidays/{state}/{year}", tag = "schedule", security(("bearer" = [])),
    params(("state" = String, Path, description = "ACT, NSW, NT, QLD, SA, TAS, VIC or WA"), ("year" = i32, Path)),
    request_body = ReplaceHolidays,
    responses((status = 200, description = "The state's holidays that year", body = Holidays),
              (status = 400, description = "Bad state or year", body = Problem),
              (status = 401, description = "Not signed in", body = Problem),
              (status = 403, description = "Not admin or office", body = Problem),
              (status = 422, description = "A bad holiday", body = Problem)))]
async fn replace_holidays(
    State(state): State<AppState>,
    user: AuthUser,
    Path((st, year)): Path<(String, i32)>,
    Json(req): Json<ReplaceHolidays>,
) -> ApiResult<Json<Holidays>> {
    user.require(WRITERS)?;
    let st: AuState = st
        .parse()
        .map_err(|m: String| ApiError::bad_request("invalid_state", m))?;
    check_year(year)?;
    if req.holidays.len() > 60 {
        return Err(ApiError::unprocessable(
            "invalid_field",
            "holidays: at most 60 a year",
        ));
    }
    let mut days: Vec<(NaiveDate, String)> = Vec::new();
    for (i, h) in req.holidays.iter().enumerate() {
        if h.date.year() != year {
            return Err(ApiError::unprocessable(
                "invalid_field",
                format!("holidays[{i}].date {} is not in {year}", h.date),
            ));
        }
        let name = super::buildings::text_field(&format!("holidays[{i}].name"), &h.name, 100)?;
        if days.iter().any(|(d, _)| *d == h.date) {
            return Err(ApiError::unprocessable(
                "invalid_field",
                format!("holidays[{i}].date {} appears twice", h.date),
            ));
        }
        days.push((h.date, name));
    }
    state
        .store
        .replace_holidays(user.org_id, st.as_str(), year, &days)
        .await?;
    state
        .audit(
            &user,
            "holidays.replace",
            Some(Target::new("organisation", user.org_id)),
            json!({ "state": st, "year": year, "days": days.iter().map(|(d, n)| json!({"date": d, "name": n})).collect::<Vec<_>>() }),
        )
        .await?;
    Ok(Json(holidays_of(&state, user.org_id, st, year).await?))
}
