//! `POST /v1/buildings/{id}/assets/import`: assets and their service history from a CSV file,
//! all or nothing.
//!
//! The header names the columns (any order, case-insensitive): `asset_type`, `location`,
//! `identifier`, `install_date`, `manufacture_date`, `schedule_anchor` (dates YYYY-MM-DD),
//! `rule_codes` (`;`-separated) and `last_services` (`RULE=YYYY-MM-DD[:fail]`, `;`-separated,
//! see `domain::service_history`). A row whose `identifier` is already used in the building
//! updates that asset (empty cells leave its fields alone); other rows create assets, and need
//! `asset_type` and `location`. Every row is validated first; if any row is bad the answer is
//! 422 `invalid_csv` with `errors: [{row, field, message}]` and nothing is written. `row` is the
//! line where the record starts (the header is row 1), as a spreadsheet numbers it.
//! `?dry_run=true` answers the same plan (per row: create, update with the changed fields, or
//! unchanged, and the history rows it adds) and the errors, and writes nothing.

use std::collections::{HashMap, HashSet};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::{Days, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::assets::{AssetInput, AssetRules, FieldError};
use super::{building_of, WRITERS};
use crate::audit::Target;
use crate::auth::AuthUser;
use crate::domain::service_history::{self, LastService, Part, ServicedAsset};
use crate::http::csv_upload::{self, invalid_csv, row_error, Columns, RowError};
use crate::http::error::{HandlerError, Problem};
use crate::http::extract::{Path, Query};
use crate::state::AppState;
use crate::store::buildings::AssetRecord;
use crate::store::schedule::HistoryRecord;

const ASSET_TYPE: usize = 0;
const LOCATION: usize = 1;
const IDENTIFIER: usize = 2;
const INSTALL_DATE: usize = 3;
const RULE_CODES: usize = 4;
const MANUFACTURE_DATE: usize = 5;
const SCHEDULE_ANCHOR: usize = 6;
const LAST_SERVICES: usize = 7;

/// No column is required by the header: a file of updates may carry only `identifier` and the
/// columns it changes. A row that creates an asset needs `asset_type` and `location`.
const COLUMNS: Columns<'static> = Columns {
    names: &[
        "asset_type",
        "location",
        "identifier",
        "install_date",
        "rule_codes",
        "manufacture_date",
        "schedule_anchor",
        "last_services",
    ],
    required: &[],
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(import))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ImportQuery {
    /// Only preview: validate, say what each row would do, write nothing.
    pub dry_run: Option<bool>,
}

/// What a row does to its asset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RowAction {
    /// A new asset.
    Create,
    /// An asset of the building with this identifier; `changes` lists what changes.
    Update,
    /// An asset of the building with this identifier, whose fields stay as they are.
    Unchanged,
}

/// One field an update changes, written as in the file (rule codes `;`-separated, null: none).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FieldChange {
    pub field: String,
    pub old: Option<String>,
    pub new: Option<String>,
}

/// A service the row adds to the asset's history (source `import`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PlannedService {
    pub rule_code: String,
    pub serviced_on: NaiveDate,
    /// `pass` or `fail`.
    pub outcome: String,
}

/// What one row of the file does (or would do, on a dry run).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RowPlan {
    pub row: u64,
    pub action: RowAction,
    /// The asset's id (null for a new asset on a dry run).
    pub asset_id: Option<Uuid>,
    pub identifier: Option<String>,
    /// For `update`: each field that changes.
    pub changes: Vec<FieldChange>,
    /// Services not yet recorded that the row adds; one already recorded for that routine and
    /// day is left out.
    pub history: Vec<PlannedService>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct ImportResult {
    /// True: nothing was written.
    pub dry_run: bool,
    /// Whether the file can be imported as it is (no errors).
    pub valid: bool,
    /// Data rows read.
    pub rows: usize,
    /// Assets created (a dry run: that would be).
    pub imported: usize,
    /// The new assets' ids, in file order (empty on a dry run).
    pub asset_ids: Vec<Uuid>,
    pub updated: usize,
    pub unchanged: usize,
    /// History rows added (a dry run: that would be).
    pub history_added: usize,
    /// One entry per valid row, in file order.
    pub items: Vec<RowPlan>,
    /// Problems by row and column (a dry run lists them here; an import answers 422).
    pub errors: Vec<RowError>,
}

fn day_text(d: Option<NaiveDate>) -> Option<String> {
    d.map(|d| d.to_string())
}

/// The fields of `new` that differ from `old`, written as in the file.
fn changes(old: &AssetRecord, new: &AssetRecord) -> Vec<FieldChange> {
    let text = |v: &[String]| (!v.is_empty()).then(|| v.join(";"));
    [
        (
            "asset_type",
            Some(old.asset_type.clone()),
            Some(new.asset_type.clone()),
        ),
        (
            "location",
            Some(old.location.clone()),
            Some(new.location.clone()),
        ),
        (
            "install_date",
            day_text(old.install_date),
            day_text(new.install_date),
        ),
        (
            "manufacture_date",
            day_text(old.manufacture_date),
            day_text(new.manufacture_date),
        ),
        (
            "schedule_anchor",
            day_text(old.schedule_anchor),
            day_text(new.schedule_anchor),
        ),
        (
            "rule_codes",
            text(&old.rule_codes.0),
            text(&new.rule_codes.0),
        ),
    ]
    .into_iter()
    .filter(|(_, o, n)| o != n)
    .map(|(field, old, new)| FieldChange {
        field: field.to_owned(),
        old,
        new,
    })
    .collect()
}

/// A row's cells, taken out of the CSV row.
struct Cells {
    row: u64,
    asset_type: Option<String>,
    location: Option<String>,
    identifier: Option<String>,
    install_date: Option<String>,
    rule_codes: Option<String>,
    manufacture_date: Option<String>,
    schedule_anchor: Option<String>,
    last_services: Option<String>,
}

impl From<csv_upload::CsvRow> for Cells {
    fn from(mut r: csv_upload::CsvRow) -> Self {
        Self {
            asset_type: r.take(ASSET_TYPE),
            location: r.take(LOCATION),
            identifier: r.take(IDENTIFIER),
            install_date: r.take(INSTALL_DATE),
            rule_codes: r.take(RULE_CODES),
            manufacture_date: r.take(MANUFACTURE_DATE),
            schedule_anchor: r.take(SCHEDULE_ANCHOR),
            last_services: r.take(LAST_SERVICES),
            row: r.row,
        }
    }
}

fn split_codes(s: &str) -> Vec<String> {
    s.split(';').map(|c| c.trim().to_owned()).collect()
}

/// The row as an asset: a new one, or `existing` with the row's non-empty cells applied
/// (validated as a whole, as `PATCH` does).
fn plan_asset(
    rules: &AssetRules,
    cells: &Cells,
    existing: Option<&AssetRecord>,
    org_id: Uuid,
    building_id: Uuid,
    now: chrono::DateTime<Utc>,
) -> Result<AssetRecord, Vec<FieldError>> {
    let Some(old) = existing else {
        let mut missing = Vec::new();
        for (field, cell) in [
            ("asset_type", &cells.asset_type),
            ("location", &cells.location),
        ] {
            if cell.is_none() {
                missing.push(FieldError {
                    field,
                    code: "invalid_field",
                    message: format!(
                        "{field} is required for a new asset (no asset of this building has this identifier)"
                    ),
                });
            }
        }
        let valid = rules.validate(AssetInput {
            asset_type: cells.asset_type.clone().unwrap_or_default(),
            location: cells.location.clone().unwrap_or_default(),
            identifier: cells.identifier.clone(),
            install_date: cells.install_date.clone(),
            rule_codes: cells
                .rule_codes
                .as_deref()
                .map(split_codes)
                .unwrap_or_default(),
            schedule_anchor: cells.schedule_anchor.clone(),
            manufacture_date: cells.manufacture_date.clone(),
        });
        return match valid {
            Ok(v) if missing.is_empty() => Ok(AssetRecord {
                id: Uuid::now_v7(),
                org_id,
                building_id,
                asset_type: v.asset_type,
                location: v.location,
                identifier: v.identifier,
                install_date: v.install_date,
                rule_codes: sqlx::types::Json(v.rule_codes),
                // Kept as they are on an update (the upsert does not set them).
                rule_alternatives: Default::default(),
                created_at: now,
                updated_at: now,
                schedule_anchor: v.schedule_anchor,
                manufacture_date: v.manufacture_date,
            }),
            Ok(_) => Err(missing),
            Err(errors) => {
                // An empty required cell: say it is required, not that '' is invalid.
                let missing_fields: Vec<&str> = missing.iter().map(|e| e.field).collect();
                missing.extend(
                    errors
                        .into_iter()
                        .filter(|e| !missing_fields.contains(&e.field)),
                );
                Err(missing)
            }
        };
    };
    let given_or = |cell: &Option<String>, current: Option<NaiveDate>| {
        cell.clone().or_else(|| day_text(current))
    };
    // Rule codes are checked when they or the type change; an untouched list stays valid even
    // if one of its rules has since been deactivated (as for PATCH).
    let check_codes = cells.rule_codes.is_some()
        || cells
            .asset_type
            .as_deref()
            .is_some_and(|t| t != old.asset_type);
    let v = rules.validate(AssetInput {
        asset_type: cells
            .asset_type
            .clone()
            .unwrap_or_else(|| old.asset_type.clone()),
        location: cells
            .location
            .clone()
            .unwrap_or_else(|| old.location.clone()),
        identifier: old.identifier.clone(),
        install_date: given_or(&cells.install_date, old.install_date),
        rule_codes: match (&cells.rule_codes, check_codes) {
            (Some(c), _) => split_codes(c),
            (None, true) => old.rule_codes.0.clone(),
            (None, false) => Vec::new(),
        },
        schedule_anchor: given_or(&cells.schedule_anchor, old.schedule_anchor),
        manufacture_date: given_or(&cells.manufacture_date, old.manufacture_date),
    })?;
    Ok(AssetRecord {
        asset_type: v.asset_type,
        location: v.location,
        install_date: v.install_date,
        rule_codes: if check_codes {
            sqlx::types::Json(v.rule_codes)
        } else {
            old.rule_codes.clone()
        },
        schedule_anchor: v.schedule_anchor,
        manufacture_date: v.manufacture_date,
        updated_at: now,
        ..old.clone()
    })
}

/// The row's `last_services` entries, checked against the asset as it will be.
fn plan_history(
    rules: &AssetRules,
    cell: Option<&str>,
    asset: Option<&AssetRecord>,
    today: NaiveDate,
) -> Result<Vec<LastService>, Vec<String>> {
    let Some(cell) = cell else {
        return Ok(Vec::new());
    };
    let entries = service_history::parse_last_services(cell)?;
    let Some(asset) = asset else {
        // The asset itself is invalid: its history cannot be checked against it.
        return Ok(Vec::new());
    };
    let facts = ServicedAsset {
        asset_type: &asset.asset_type,
        install_date: asset.install_date,
        manufacture_date: asset.manufacture_date,
    };
    let problems: Vec<String> = entries
        .iter()
        .flat_map(|e| {
            service_history::check(
                &e.rule_code,
                e.serviced_on,
                facts,
                |c| rules.equipment(c).map(str::to_owned),
                today,
            )
        })
        .map(|(_, m): (Part, String)| m)
        .collect();
    if problems.is_empty() {
        Ok(entries)
    } else {
        Err(problems)
    }
}

/// Import or update assets, with their service history, from CSV (admin, office).
/// `Content-Type: text/csv`, at most 5 MiB and 10,000 rows. A row whose `identifier` exists in
/// the building updates that asset; others create assets. `?dry_run=true` answers the plan and
/// writes nothing. Any bad row: 422 `invalid_csv` with per-row `errors`, and nothing is written.
#[utoipa::path(post, path = "/v1/buildings/{id}/assets/import", tag = "assets", security(("bearer" = [])),
    params(("id" = Uuid, Path), ImportQuery),
    request_body(content = String, content_type = "text/csv",
        description = "asset_type,location,identifier,install_date,manufacture_date,schedule_anchor,rule_codes,last_services"),
    responses((status = 200, body = ImportResult, description = "a dry run: the plan and any errors, nothing written"),
              (status = 201, body = ImportResult, description = "imported"),
              (status = 403, body = Problem), (status = 404, body = Problem),
              (status = 409, body = Problem), (status = 413, body = Problem), (status = 415, body = Problem),
              (status = 422, body = Problem, description = "code invalid_csv, with errors: [{row, field, message}]")))]
async fn import(
    State(state): State<AppState>,
    user: AuthUser,
    Path(building_id): Path<Uuid>,
    Query(q): Query<ImportQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, axum::Json<ImportResult>), HandlerError> {
    user.require(WRITERS)?;
    building_of(&state, &user, building_id).await?;
    crate::http::records::ensure_open(&state, user.org_id, building_id).await?;
    let dry_run = q.dry_run == Some(true);
    let bytes = csv_upload::read_csv_body(&headers, body).await?;

    let (rows, mut errors) = csv_upload::parse(&bytes, &COLUMNS)?;
    let unreadable: HashSet<Option<u64>> = errors.iter().map(|e| e.row).collect();
    let read = rows.len() + unreadable.len();
    let rules = AssetRules::load(&state, &user, building_id, true).await?;
    let today = Utc::now().date_naive();
    let existing: HashMap<String, AssetRecord> = state
        .store
        .building_assets(user.org_id, building_id)
        .await?
        .into_iter()
        .filter_map(|a| Some((a.identifier.clone()?, a)))
        .collect();
    // Services already recorded (any day up to the latest a service may have).
    let recorded: HashSet<(Uuid, String, NaiveDate)> = state
        .store
        .service_history(
            user.org_id,
            building_id,
            today.checked_add_days(Days::new(2)).unwrap_or(today),
        )
        .await?
        .into_iter()
        .map(|h| (h.asset_id, h.rule_code, h.serviced_on))
        .collect();

    let now = Utc::now();
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut items = Vec::with_capacity(rows.len());
    let mut writes: Vec<AssetRecord> = Vec::new();
    let mut history: Vec<HistoryRecord> = Vec::new();
    for cells in rows.into_iter().map(Cells::from) {
        let row = cells.row;
        if let Some(id) = &cells.identifier {
            if let Some(first) = seen.get(id) {
                errors.push(row_error(
                    row,
                    Some("identifier"),
                    format!("identifier '{id}' also appears on row {first}"),
                ));
                continue;
            }
            seen.insert(id.clone(), row);
        }
        let old = cells.identifier.as_ref().and_then(|i| existing.get(i));
        let planned = plan_asset(&rules, &cells, old, user.org_id, building_id, now);
        if let Err(field_errors) = &planned {
            errors.extend(
                field_errors
                    .iter()
                    .map(|e| row_error(row, Some(e.field), e.message.clone())),
            );
        }
        let services = plan_history(
            &rules,
            cells.last_services.as_deref(),
            planned.as_ref().ok(),
            today,
        );
        if let Err(messages) = &services {
            errors.extend(
                messages
                    .iter()
                    .map(|m| row_error(row, Some("last_services"), m.clone())),
            );
        }
        let (Ok(asset), Ok(services)) = (planned, services) else {
            continue;
        };
        let (action, field_changes) = match old {
            None => (RowAction::Create, Vec::new()),
            Some(old) => {
                let c = changes(old, &asset);
                if c.is_empty() {
                    (RowAction::Unchanged, c)
                } else {
                    (RowAction::Update, c)
                }
            }
        };
        let mut added = Vec::new();
        for s in services {
            if recorded.contains(&(asset.id, s.rule_code.clone(), s.serviced_on)) {
                continue;
            }
            added.push(PlannedService {
                rule_code: s.rule_code.clone(),
                serviced_on: s.serviced_on,
                outcome: s.outcome.as_str().to_owned(),
            });
            history.push(HistoryRecord {
                id: Uuid::now_v7(),
                org_id: user.org_id,
                building_id,
                asset_id: asset.id,
                rule_code: s.rule_code,
                serviced_on: s.serviced_on,
                outcome: s.outcome.as_str().to_owned(),
                source: "import".to_owned(),
                note: None,
                recorded_by: Some(user.user_id),
                created_at: now,
            });
        }
        items.push(RowPlan {
            row,
            action,
            asset_id: (action != RowAction::Create || !dry_run).then_some(asset.id),
            identifier: asset.identifier.clone(),
            changes: field_changes,
            history: added,
        });
        if action != RowAction::Unchanged {
            writes.push(asset);
        }
    }
    errors.sort_by_key(|e| e.row);
    let count = |a: RowAction| items.iter().filter(|i| i.action == a).count();
    let mut result = ImportResult {
        dry_run,
        valid: errors.is_empty(),
        rows: read,
        imported: count(RowAction::Create),
        asset_ids: Vec::new(),
        updated: count(RowAction::Update),
        unchanged: count(RowAction::Unchanged),
        history_added: history.len(),
        items,
        errors,
    };
    if dry_run {
        return Ok((StatusCode::OK, axum::Json(result)));
    }
    if !result.valid {
        return Err(invalid_csv(result.errors, "").into());
    }
    let added = state.store.import_assets(&writes, &history).await?;
    result.history_added = usize::try_from(added).unwrap_or(usize::MAX);
    result.asset_ids = result
        .items
        .iter()
        .filter(|i| i.action == RowAction::Create)
        .filter_map(|i| i.asset_id)
        .collect();
    let updated: Vec<Uuid> = result
        .items
        .iter()
        .filter(|i| i.action == RowAction::Update)
        .filter_map(|i| i.asset_id)
        .collect();
    state
        .audit(
            &user,
            "asset.import",
            Some(Target::new("building", building_id)),
            json!({
                "building_id": building_id,
                "imported": result.asset_ids.len(),
                "asset_ids": result.asset_ids,
                "updated": updated.len(),
                "updated_ids": updated,
                "unchanged": result.unchanged,
                "history_added": result.history_added,
            }),
        )
        .await?;
    Ok((StatusCode::CREATED, axum::Json(result)))
}
