//! Records owners must keep (see `crate::records`): a building's logbook, its yearly condition
//! report (a draft computed now, and versions signed by a competent person, immutable once
//! signed), and the essential-safety-measures export for the annual statements. Readable by
//! admin, office and auditor — also for archived buildings; inspectors are refused (they read
//! their own sessions through the session routes). Signing: admin or office with a licence
//! number.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Days, Months, NaiveDate, SubsecRound, Utc};
use serde::Deserialize;
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::compliance::attachment;
use super::error::{ApiError, ApiResult, Problem};
use super::extract::{Json, Path, Query};
use crate::audit::Target;
use crate::auth::AuthUser;
use crate::records::{
    self, ConditionReport, EsmStatement, Inputs, Logbook, PersonRef, SignedConditionReport,
};
use crate::state::AppState;
use crate::store::buildings::BuildingRecord;
use crate::store::defects::DefectFilter;
use crate::store::records::{ConditionReportRow, NewConditionReport};
use crate::store::{Page, Role};

/// Who reads records.
pub(crate) const READERS: &[Role] = &[Role::Admin, Role::Office, Role::Auditor];
/// Who signs condition reports (with a licence number).
const SIGNERS: &[Role] = &[Role::Admin, Role::Office];

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(logbook))
        .routes(routes!(condition_report))
        .routes(routes!(list_condition_reports))
        .routes(routes!(sign_condition_report))
        .routes(routes!(get_condition_report))
        .routes(routes!(esm_statement))
}

#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RecordFormat {
    #[default]
    Json,
    Csv,
    Pdf,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RangeQuery {
    /// First day (`YYYY-MM-DD`, UTC). Default: a year before `to` (the day after).
    #[param(value_type = Option<String>, format = Date)]
    pub from: Option<NaiveDate>,
    /// Last day (`YYYY-MM-DD`, UTC). Default: today.
    #[param(value_type = Option<String>, format = Date)]
    pub to: Option<NaiveDate>,
    /// `json` (default), `csv` or `pdf` (the condition report has no CSV).
    #[param(inline)]
    pub format: Option<RecordFormat>,
}

/// The range asked for, or 400 `invalid_query`: `from <= to`, at most `max_days` long.
fn range(q: &RangeQuery, max_days: i64) -> Result<(NaiveDate, NaiveDate), ApiError> {
    let to = q.to.unwrap_or_else(|| Utc::now().date_naive());
    let from = match q.from {
        Some(f) => f,
        None => to
            .checked_sub_months(Months::new(12))
            .and_then(|d| d.checked_add_days(Days::new(1)))
            .unwrap_or(to),
    };
    if from > to || (to - from).num_days() >= max_days {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("from must be on or before to, and the range at most {max_days} days"),
        ));
    }
    Ok((from, to))
}

/// A logbook covers at most ten years; a condition report and a statement one year.
const LOGBOOK_DAYS: i64 = 3660;
const YEAR_DAYS: i64 = 366;

/// The RFC 3339 text bound of the first instant of `d` (as `session_items.recorded_at` is
/// compared).
fn day_bound(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

struct Loaded {
    building: BuildingRecord,
    assets: Vec<crate::store::buildings::AssetRecord>,
    rules: Vec<crate::store::rules::RuleRecord>,
    people: Vec<PersonRef>,
    items: Vec<crate::store::records::RecordItemRow>,
    defects: Vec<crate::store::defects::DefectRecord>,
    events: Vec<crate::store::defects::DefectEvent>,
    history: Vec<crate::store::schedule::HistoryRecord>,
    calendar: crate::domain::schedule::Calendar,
}

/// Everything a record of building `id` is built from; items recorded in `[from, to]` (from
/// the beginning when `from` is None).
async fn load(
    state: &AppState,
    user: &AuthUser,
    id: Uuid,
    from: Option<NaiveDate>,
    to: NaiveDate,
) -> Result<Loaded, ApiError> {
    user.require(READERS)?;
    let store = &state.store;
    let building = store.get_building(user.org_id, id).await?;
    let before = crate::compliance::services_before(to);
    let from = from.map_or_else(|| "0000".to_owned(), day_bound);
    let next_day = to.checked_add_days(Days::new(1)).unwrap_or(to);
    let holidays = async {
        match &building.state {
            Some(s) => store.holidays(user.org_id, s).await,
            None => Ok(Vec::new()),
        }
    };
    let (assets, rules, items, events, history, holidays) = tokio::try_join!(
        store.building_assets(user.org_id, id),
        // The building's pinned editions, as everywhere else (`crate::rules::building_rules`).
        crate::rules::building_rules(store.as_ref(), &building, None),
        store.record_items(user.org_id, id, &from, &before),
        store.building_defect_events(user.org_id, id),
        store.service_history(user.org_id, id, next_day),
        holidays,
    )?;
    let earliest = items
        .iter()
        .filter_map(|i| i.recorded_at.get(..4)?.parse::<i32>().ok())
        .chain(
            history
                .iter()
                .map(|h| chrono::Datelike::year(&h.serviced_on)),
        )
        .min()
        .unwrap_or(chrono::Datelike::year(&to))
        .min(chrono::Datelike::year(&to))
        - 1;
    let calendar = crate::compliance::calendar(
        &building,
        &holidays,
        earliest..=chrono::Datelike::year(&to) + 2,
    );
    let defects = store
        .list_defects(
            user.org_id,
            &DefectFilter {
                building_id: Some(id),
                ..Default::default()
            },
            Page {
                after: None,
                limit: 1_000_000,
            },
        )
        .await?;
    Ok(Loaded {
        building,
        assets,
        rules,
        people: people(state, user.org_id).await?,
        items,
        defects,
        events,
        history,
        calendar,
    })
}

/// The organisation's users as records name them (full name, else e-mail; licence).
async fn people(state: &AppState, org_id: Uuid) -> Result<Vec<PersonRef>, ApiError> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let rows = state
            .store
            .list_users(org_id, Page { after, limit: 500 })
            .await?;
        let done = rows.len() < 500;
        after = rows.last().map(|u| u.id);
        out.extend(rows.into_iter().map(|u| {
            PersonRef {
                user_id: u.id,
                name: state
                    .pii
                    .decrypt_opt(u.full_name_enc.as_deref())
                    .unwrap_or(u.email),
                licence: u.licence_number,
            }
        }));
        if done {
            return Ok(out);
        }
    }
}

impl Loaded {
    fn inputs(&self, from: NaiveDate, to: NaiveDate, now: DateTime<Utc>) -> Inputs<'_> {
        Inputs {
            building: &self.building,
            assets: &self.assets,
            rules: &self.rules,
            people: &self.people,
            items: &self.items,
            defects: &self.defects,
            events: &self.events,
            history: &self.history,
            calendar: &self.calendar,
            from,
            to,
            as_of: to.min(now.date_naive()),
            generated_at: now,
        }
    }
}

/// `<kind>-<building name>-<from>-<to>.<ext>`, in characters safe in any file system.
fn file_name(kind: &str, building: &str, from: NaiveDate, to: NaiveDate, ext: &str) -> String {
    let mut slug = String::new();
    for ch in building.chars() {
        if ch.is_ascii_alphanumeric() {
            slug.push(ch.to_ascii_lowercase());
        } else if !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let slug: String = slug.trim_matches('-').chars().take(60).collect();
    let slug = if slug.is_empty() {
        "building".into()
    } else {
        slug
    };
    format!("{kind}-{slug}-{from}-{to}.{ext}")
}

async fn pdf(render: impl FnOnce() -> Vec<u8> + Send + 'static, name: &str) -> ApiResult<Response> {
    // Many pages for a large building: keep it off the async workers.
    let body = tokio::task::spawn_blocking(render)
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    Ok(attachment(body, "application/pdf", name))
}

/// The building's logbook for a date range: every routine service recorded (date, routine,
/// asset, who did it with their licence, the session's sign-off, outcome, readings with
/// verdicts, observed conditions, notes) and the defects found, rectified or outstanding in
/// it, with their dates. Admin, office, auditor; archived buildings too.
#[utoipa::path(get, path = "/v1/buildings/{id}/logbook", tag = "records", security(("bearer" = [])),
    params(("id" = Uuid, Path), RangeQuery),
    responses(
        (status = 200, description = "JSON; with format=csv `text/csv`, with format=pdf `application/pdf` (both attachments)",
         content((Logbook = "application/json"), (String = "text/csv"), (Vec<u8> = "application/pdf"))),
        (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn logbook(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Query(q): Query<RangeQuery>,
) -> ApiResult<Response> {
    let (from, to) = range(&q, LOGBOOK_DAYS)?;
    let now = Utc::now();
    let loaded = load(&state, &user, id, Some(from), to).await?;
    let book = records::logbook(&loaded.inputs(from, to, now));
    let name = |ext| file_name("logbook", &book.building.name, from, to, ext);
    match q.format.unwrap_or_default() {
        RecordFormat::Json => Ok(Json(book).into_response()),
        RecordFormat::Csv => Ok(attachment(
            records::csv::logbook(&book),
            "text/csv; charset=utf-8",
            &name("csv"),
        )),
        RecordFormat::Pdf => {
            let n = name("pdf");
            pdf(move || records::pdf::logbook(&book), &n).await
        }
    }
}

/// The condition report of a period, computed now.
async fn compute_condition(
    state: &AppState,
    user: &AuthUser,
    id: Uuid,
    from: NaiveDate,
    to: NaiveDate,
    now: DateTime<Utc>,
) -> Result<(ConditionReport, Logbook), ApiError> {
    // Every earlier service anchors the schedule.
    let loaded = load(state, user, id, None, to).await?;
    let inputs = loaded.inputs(from, to, now);
    Ok((
        records::condition_report(&inputs),
        records::logbook(&inputs),
    ))
}

/// The yearly condition report of a building as it stands now (a draft, unsigned): per system
/// (equipment kind) the routines due in the period and how each was kept (on time, late, not
/// done, pending), the defects outstanding at the period's end, and an overall condition.
/// Period: at most 366 days, default the twelve months to today. Admin, office, auditor.
#[utoipa::path(get, path = "/v1/buildings/{id}/condition-report", tag = "records", security(("bearer" = [])),
    params(("id" = Uuid, Path), RangeQuery),
    responses(
        (status = 200, description = "JSON; with format=pdf `application/pdf` (an attachment, marked as a draft)",
         content((ConditionReport = "application/json"), (Vec<u8> = "application/pdf"))),
        (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn condition_report(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Query(q): Query<RangeQuery>,
) -> ApiResult<Response> {
    let (from, to) = range(&q, YEAR_DAYS)?;
    let (report, _) = compute_condition(&state, &user, id, from, to, Utc::now()).await?;
    match q.format.unwrap_or_default() {
        RecordFormat::Json => Ok(Json(report).into_response()),
        RecordFormat::Csv => Err(ApiError::bad_request(
            "invalid_query",
            "the condition report is JSON or PDF (format=json or format=pdf)",
        )),
        RecordFormat::Pdf => {
            let n = file_name(
                "condition-report-draft",
                &report.building.name,
                from,
                to,
                "pdf",
            );
            pdf(move || records::pdf::condition_report(&report, None), &n).await
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignConditionReport {
    /// First day of the period (`YYYY-MM-DD`).
    pub period_start: NaiveDate,
    /// Last day of the period (at most 366 days after the first, not in the future).
    pub period_end: NaiveDate,
    /// The competent person's statement (1-4000 characters). Default: a standard statement
    /// that the systems were serviced as recorded and are in the condition stated.
    pub statement: Option<String>,
}

fn signed_view(
    row: ConditionReportRow,
    superseded_by: Option<Uuid>,
) -> ApiResult<SignedConditionReport> {
    let report: ConditionReport = serde_json::from_value(row.report.0).map_err(|e| {
        ApiError::Internal(anyhow::anyhow!("stored condition report {}: {e}", row.id))
    })?;
    Ok(SignedConditionReport {
        id: row.id,
        version: row.version,
        supersedes: row.supersedes,
        superseded_by,
        statement: row.statement,
        signed_by: PersonRef {
            user_id: row.signed_by,
            name: row.signed_by_name,
            licence: Some(row.signed_licence),
        },
        signed_at: row.signed_at,
        report,
    })
}

/// Sign the condition report of a period (admin or office with a licence number): the report
/// is computed now and stored with the statement and the signer's name, licence and the time.
/// A signed report never changes; signing the same period again makes a new version that
/// supersedes the previous one.
#[utoipa::path(post, path = "/v1/buildings/{id}/condition-reports/sign", tag = "records", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = SignConditionReport,
    responses((status = 201, body = SignedConditionReport), (status = 403, body = Problem), (status = 404, body = Problem),
              (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn sign_condition_report(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Json(req): Json<SignConditionReport>,
) -> ApiResult<(StatusCode, Json<SignedConditionReport>)> {
    user.require(SIGNERS)?;
    state.store.get_building(user.org_id, id).await?;
    // Microseconds: what PostgreSQL keeps, so the answer equals every later read.
    let now = Utc::now().trunc_subsecs(6);
    if req.period_start > req.period_end
        || (req.period_end - req.period_start).num_days() >= YEAR_DAYS
    {
        return Err(ApiError::unprocessable(
            "invalid_field",
            "period_start must be on or before period_end, at most 366 days apart",
        ));
    }
    if req.period_end > now.date_naive() {
        return Err(ApiError::unprocessable(
            "invalid_field",
            "period_end must not be in the future: a report is signed for a period that is over",
        ));
    }
    let statement = match req.statement.as_deref() {
        Some(s) => super::buildings::text_field("statement", s, 4000)?,
        None => records::DEFAULT_STATEMENT.to_owned(),
    };
    let me = state.store.get_user(user.user_id).await?;
    let Some(licence) = me.licence_number.clone().filter(|l| !l.trim().is_empty()) else {
        return Err(ApiError::unprocessable(
            "licence_required",
            "signing a condition report records your licence or accreditation number; an admin sets it on your user (PATCH /v1/users/{id}, licence_number)",
        ));
    };
    let name = state
        .pii
        .decrypt_opt(me.full_name_enc.as_deref())
        .unwrap_or(me.email.clone());
    let (report, _) =
        compute_condition(&state, &user, id, req.period_start, req.period_end, now).await?;
    let new = NewConditionReport {
        id: Uuid::now_v7(),
        org_id: user.org_id,
        building_id: id,
        period_start: req.period_start,
        period_end: req.period_end,
        statement,
        report: serde_json::to_value(&report).map_err(|e| ApiError::Internal(e.into()))?,
        signed_by: user.user_id,
        signed_by_name: name,
        signed_licence: licence,
        signed_at: now,
    };
    let row = state
        .store
        .sign_condition_report(&new)
        .await
        .map_err(|e| match e {
            crate::store::StoreError::Conflict(_) => ApiError::conflict(
                "concurrent_signature",
                "another version of this report was signed at the same moment; read the list and sign again if needed",
            ),
            other => other.into(),
        })?;
    state
        .audit(
            &user,
            "condition_report.sign",
            Some(Target::new("building", id)),
            json!({
                "report_id": row.id,
                "version": row.version,
                "supersedes": row.supersedes,
                "period": [row.period_start, row.period_end],
                "licence": row.signed_licence,
                "condition": report.condition,
            }),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(signed_view(row, None)?)))
}

/// The signed condition reports of a building, newest period and version first; each says
/// which version it supersedes and which supersedes it. Admin, office, auditor.
#[utoipa::path(get, path = "/v1/buildings/{id}/condition-reports", tag = "records", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = Vec<SignedConditionReport>), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn list_condition_reports(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Vec<SignedConditionReport>>> {
    user.require(READERS)?;
    state.store.get_building(user.org_id, id).await?;
    let rows = state.store.list_condition_reports(user.org_id, id).await?;
    let successor = |r: &ConditionReportRow| {
        rows.iter()
            .find(|o| o.supersedes == Some(r.id))
            .map(|o| o.id)
    };
    let links: Vec<Option<Uuid>> = rows.iter().map(successor).collect();
    rows.into_iter()
        .zip(links)
        .map(|(r, next)| signed_view(r, next))
        .collect::<ApiResult<Vec<_>>>()
        .map(Json)
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SignedQuery {
    /// `json` (default) or `pdf`.
    #[param(inline)]
    pub format: Option<RecordFormat>,
}

/// One signed condition report, as signed (JSON or the printable PDF with the signature).
/// Admin, office, auditor.
#[utoipa::path(get, path = "/v1/condition-reports/{id}", tag = "records", security(("bearer" = [])),
    params(("id" = Uuid, Path), SignedQuery),
    responses(
        (status = 200, description = "JSON; with format=pdf `application/pdf` (an attachment)",
         content((SignedConditionReport = "application/json"), (Vec<u8> = "application/pdf"))),
        (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn get_condition_report(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Query(q): Query<SignedQuery>,
) -> ApiResult<Response> {
    user.require(READERS)?;
    let row = state.store.find_condition_report(user.org_id, id).await?;
    let later = state
        .store
        .list_condition_reports(user.org_id, row.building_id)
        .await?
        .into_iter()
        .find(|o| o.supersedes == Some(row.id))
        .map(|o| o.id);
    let signed = signed_view(row, later)?;
    match q.format.unwrap_or_default() {
        RecordFormat::Json => Ok(Json(signed).into_response()),
        RecordFormat::Csv => Err(ApiError::bad_request(
            "invalid_query",
            "a signed condition report is JSON or PDF (format=json or format=pdf)",
        )),
        RecordFormat::Pdf => {
            let n = file_name(
                &format!("condition-report-v{}", signed.version),
                &signed.report.building.name,
                signed.report.period_start,
                signed.report.period_end,
                "pdf",
            );
            pdf(
                move || records::pdf::condition_report(&signed.report, Some(&signed)),
                &n,
            )
            .await
        }
    }
}

/// What the annual statements need (NSW annual fire safety statement, Victorian annual
/// essential safety measures report): each essential safety measure of the building, its
/// standard of performance, the period, whether it was serviced per schedule, its condition,
/// and its assessor (name, licence); the statement's assessor is the signer of the latest
/// signed condition report whose period ends in this one. Admin, office, auditor.
#[utoipa::path(get, path = "/v1/buildings/{id}/esm-statement", tag = "records", security(("bearer" = [])),
    params(("id" = Uuid, Path), RangeQuery),
    responses(
        (status = 200, description = "JSON; with format=csv `text/csv`, with format=pdf `application/pdf` (both attachments)",
         content((EsmStatement = "application/json"), (String = "text/csv"), (Vec<u8> = "application/pdf"))),
        (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn esm_statement(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Query(q): Query<RangeQuery>,
) -> ApiResult<Response> {
    let (from, to) = range(&q, YEAR_DAYS)?;
    let now = Utc::now();
    let loaded = load(&state, &user, id, None, to).await?;
    let inputs = loaded.inputs(from, to, now);
    let report = records::condition_report(&inputs);
    let book = records::logbook(&inputs);
    let signed = state
        .store
        .list_condition_reports(user.org_id, id)
        .await?
        .into_iter()
        .find(|r| from <= r.period_end && r.period_end <= to);
    let signer = signed.as_ref().map(|r| {
        (
            PersonRef {
                user_id: r.signed_by,
                name: r.signed_by_name.clone(),
                licence: Some(r.signed_licence.clone()),
            },
            r.id,
        )
    });
    let statement = records::esm_statement(&report, &book, signer.as_ref().map(|(p, id)| (p, *id)));
    let name = |ext| file_name("esm", &statement.building.name, from, to, ext);
    match q.format.unwrap_or_default() {
        RecordFormat::Json => Ok(Json(statement).into_response()),
        RecordFormat::Csv => Ok(attachment(
            records::csv::esm(&statement),
            "text/csv; charset=utf-8",
            &name("csv"),
        )),
        RecordFormat::Pdf => {
            let n = name("pdf");
            pdf(move || records::pdf::esm(&statement), &n).await
        }
    }
}

/// 409 `building_archived` when the building is archived: it takes no new sessions or assets.
pub(crate) async fn ensure_open(
    state: &AppState,
    org_id: Uuid,
    building_id: Uuid,
) -> Result<(), ApiError> {
    match state.store.building_archive(org_id, building_id).await? {
        None => Ok(()),
        Some(a) => Err(ApiError::conflict(
            "building_archived",
            format!(
                "this building was deleted on {} and is archived: its records are kept until {}, \
                 but it takes no new sessions or assets",
                a.archived_at.date_naive(),
                a.retain_until.date_naive()
            ),
        )),
    }
}
