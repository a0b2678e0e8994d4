//! `POST /v1/buildings/{id}/assets/import`: assets from a CSV file, all or nothing.
//!
//! The header names the columns (any order, case-insensitive): `asset_type` and `location` are
//! required, `identifier`, `install_date` (YYYY-MM-DD) and `rule_codes` (`;`-separated) are
//! optional and may be empty. Every row is validated first; if any row is bad the answer is 422
//! `invalid_csv` with `errors: [{row, field, message}]` and nothing is imported. `row` is the
//! line where the record starts (the header is row 1), as a spreadsheet numbers it.

use std::collections::{HashMap, HashSet};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::assets::{AssetInput, AssetRules};
use super::{building_of, WRITERS};
use crate::audit::Target;
use crate::auth::AuthUser;
use crate::http::error::{ApiError, CustomProblem, HandlerError, Problem};
use crate::http::extract::{nul_in, Path};
use crate::state::AppState;
use crate::store::buildings::AssetRecord;

/// Largest accepted file.
pub const MAX_CSV_BYTES: usize = 5 * 1024 * 1024;
/// Most data rows in one file.
pub const MAX_CSV_ROWS: usize = 10_000;
/// Most row errors listed in one answer (the detail says how many there were).
const MAX_LISTED_ERRORS: usize = 1_000;

const COLUMNS: [&str; 5] = [
    "asset_type",
    "location",
    "identifier",
    "install_date",
    "rule_codes",
];

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(import))
}

/// One problem in the file.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RowError {
    /// Line where the record starts; the header is row 1.
    pub row: u64,
    /// The column, or null for a problem with the whole row.
    pub field: Option<String>,
    pub message: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct ImportResult {
    pub imported: usize,
    /// The new assets' ids, in file order.
    pub asset_ids: Vec<Uuid>,
}

fn row_error(row: u64, field: Option<&str>, message: impl Into<String>) -> RowError {
    RowError {
        row,
        field: field.map(str::to_owned),
        message: message.into(),
    }
}

/// Import assets from CSV (admin, office). `Content-Type: text/csv`, at most 5 MiB and 10,000
/// rows. Any bad row: 422 `invalid_csv` with per-row `errors`, and nothing is imported.
#[utoipa::path(post, path = "/v1/buildings/{id}/assets/import", tag = "assets", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    request_body(content = String, content_type = "text/csv",
        description = "asset_type,location,identifier,install_date,rule_codes"),
    responses((status = 201, body = ImportResult), (status = 403, body = Problem), (status = 404, body = Problem),
              (status = 409, body = Problem), (status = 413, body = Problem), (status = 415, body = Problem),
              (status = 422, body = Problem, description = "code invalid_csv, with errors: [{row, field, message}]")))]
async fn import(
    State(state): State<AppState>,
    user: AuthUser,
    Path(building_id): Path<Uuid>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, axum::Json<ImportResult>), HandlerError> {
    user.require(WRITERS)?;
    building_of(&state, &user, building_id).await?;
    let is_csv = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .is_some_and(|m| m == "text/csv" || m == "application/csv");
    if !is_csv {
        return Err(ApiError::UnsupportedMediaType(
            "send the file with Content-Type: text/csv".into(),
        ));
    }
    let too_large = || {
        ApiError::PayloadTooLarge(format!(
            "the CSV file is larger than {} MiB; split it",
            MAX_CSV_BYTES / (1024 * 1024)
        ))
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_CSV_BYTES) {
        return Err(too_large());
    }
    let bytes = axum::body::to_bytes(body, MAX_CSV_BYTES)
        .await
        .map_err(|_| too_large())?;

    let (rows, mut errors) = parse(&bytes)?;
    let needs_rules = rows.iter().any(|(_, r)| !r.rule_codes.is_empty());
    let rules = AssetRules::load(&state, user.org_id, needs_rules).await?;
    let existing: HashSet<String> = state
        .store
        .building_assets(user.org_id, building_id)
        .await?
        .into_iter()
        .filter_map(|a| a.identifier)
        .collect();

    let now = Utc::now();
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut records = Vec::with_capacity(rows.len());
    for (row, input) in rows {
        match rules.validate(input) {
            Err(field_errors) => errors.extend(
                field_errors
                    .into_iter()
                    .map(|e| row_error(row, Some(e.field), e.message)),
            ),
            Ok(valid) => {
                if let Some(id) = &valid.identifier {
                    if existing.contains(id) {
                        errors.push(row_error(
                            row,
                            Some("identifier"),
                            format!(
                                "identifier '{id}' is already used by an asset of this building"
                            ),
                        ));
                        continue;
                    }
                    if let Some(first) = seen.insert(id.clone(), row) {
                        errors.push(row_error(
                            row,
                            Some("identifier"),
                            format!("identifier '{id}' also appears on row {first}"),
                        ));
                        seen.insert(id.clone(), first);
                        continue;
                    }
                }
                records.push(AssetRecord {
                    id: Uuid::now_v7(),
                    org_id: user.org_id,
                    building_id,
                    asset_type: valid.asset_type,
                    location: valid.location,
                    identifier: valid.identifier,
                    install_date: valid.install_date,
                    rule_codes: sqlx::types::Json(valid.rule_codes),
                    created_at: now,
                    updated_at: now,
                });
            }
        }
    }
    if !errors.is_empty() {
        errors.sort_by_key(|e| e.row);
        return Err(invalid_csv(errors, "").into());
    }
    state.store.create_assets(&records).await?;
    let asset_ids: Vec<Uuid> = records.iter().map(|a| a.id).collect();
    state
        .audit(
            &user,
            "asset.import",
            Some(Target::new("building", building_id)),
            json!({ "building_id": building_id, "imported": asset_ids.len(), "asset_ids": asset_ids }),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(ImportResult {
            imported: asset_ids.len(),
            asset_ids,
        }),
    ))
}

/// 422 `invalid_csv` listing (at most `MAX_LISTED_ERRORS` of) `errors`.
fn invalid_csv(mut errors: Vec<RowError>, what: &str) -> CustomProblem {
    let total = errors.len();
    let rows = {
        let mut r: Vec<u64> = errors.iter().map(|e| e.row).collect();
        r.dedup();
        r.len()
    };
    errors.truncate(MAX_LISTED_ERRORS);
    let listed = if total > MAX_LISTED_ERRORS {
        format!(" (the first {MAX_LISTED_ERRORS} of {total} are listed)")
    } else {
        String::new()
    };
    let detail = if what.is_empty() {
        format!(
            "{total} problem(s) on {rows} row(s){listed}; nothing was imported: fix them and send the whole file again"
        )
    } else {
        format!("{what}; nothing was imported")
    };
    CustomProblem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_csv", detail)
        .with("errors", serde_json::to_value(errors).unwrap_or_default())
}

/// Read the header and the rows, with the rows' structural problems (field counts, encoding).
/// A bad header or too many rows is answered at once; values are validated by the caller.
type Parsed = (Vec<(u64, AssetInput)>, Vec<RowError>);

fn parse(bytes: &[u8]) -> Result<Parsed, HandlerError> {
    // Spreadsheets often save UTF-8 with a byte-order mark.
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    let mut records = reader.byte_records();
    let header = match records.next() {
        None => {
            return Err(invalid_csv(
                vec![row_error(
                    1,
                    None,
                    "the file is empty; the first row must name the columns",
                )],
                "the file is empty",
            )
            .into())
        }
        Some(Err(e)) => {
            return Err(invalid_csv(
                vec![row_error(1, None, e.to_string())],
                "the header row cannot be read",
            )
            .into())
        }
        Some(Ok(h)) => h,
    };
    let mut columns: Vec<Option<usize>> = vec![None; COLUMNS.len()];
    let mut header_errors = Vec::new();
    for (i, raw) in header.iter().enumerate() {
        let name = String::from_utf8_lossy(raw).trim().to_ascii_lowercase();
        match COLUMNS.iter().position(|c| *c == name) {
            Some(k) if columns[k].is_some() => {
                header_errors.push(row_error(1, Some(&name), "this column appears twice"))
            }
            Some(k) => columns[k] = Some(i),
            None => header_errors.push(row_error(
                1,
                Some(&name),
                format!("unknown column; the columns are {}", COLUMNS.join(",")),
            )),
        }
    }
    for required in ["asset_type", "location"] {
        if columns[COLUMNS.iter().position(|c| *c == required).unwrap_or(0)].is_none() {
            header_errors.push(row_error(1, Some(required), "this column is required"));
        }
    }
    if !header_errors.is_empty() {
        return Err(invalid_csv(header_errors, "the header row is not valid").into());
    }
    let width = header.len();

    let mut rows = Vec::new();
    let mut errors = Vec::new();
    let mut count = 0;
    for record in records {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let row = e.position().map_or(0, |p| p.line());
                errors.push(row_error(row, None, format!("cannot read this row: {e}")));
                break;
            }
        };
        let row = record.position().map_or(0, |p| p.line());
        count += 1;
        if count > MAX_CSV_ROWS {
            return Err(invalid_csv(
                vec![row_error(
                    row,
                    None,
                    format!("more than {MAX_CSV_ROWS} rows"),
                )],
                &format!("the file has more than {MAX_CSV_ROWS} rows; split it"),
            )
            .into());
        }
        if record.len() != width {
            errors.push(row_error(
                row,
                None,
                format!(
                    "expected {width} fields like the header, found {}",
                    record.len()
                ),
            ));
            continue;
        }
        let before = errors.len();
        let mut cell = |k: usize| -> Option<String> {
            let raw = record.get(columns[k]?)?;
            match std::str::from_utf8(raw) {
                Ok(s) if nul_in(s) => {
                    errors.push(row_error(
                        row,
                        Some(COLUMNS[k]),
                        "text must not contain the NUL character (U+0000)",
                    ));
                    None
                }
                Ok(s) => Some(s.trim().to_owned()).filter(|s| !s.is_empty()),
                Err(_) => {
                    errors.push(row_error(row, Some(COLUMNS[k]), "not valid UTF-8 text"));
                    None
                }
            }
        };
        let input = AssetInput {
            asset_type: cell(0).unwrap_or_default(),
            location: cell(1).unwrap_or_default(),
            identifier: cell(2),
            install_date: cell(3),
            rule_codes: cell(4)
                .map(|s| s.split(';').map(|c| c.trim().to_owned()).collect())
                .unwrap_or_default(),
        };
        if errors.len() == before {
            rows.push((row, input));
        }
    }
    if count == 0 {
        return Err(invalid_csv(
            vec![row_error(2, None, "the file has a header but no rows")],
            "the file has no rows to import",
        )
        .into());
    }
    Ok((rows, errors))
}
