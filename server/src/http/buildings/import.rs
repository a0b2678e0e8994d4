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
use axum::http::{HeaderMap, StatusCode};
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
use crate::http::csv_upload::{self, invalid_csv, row_error, Columns};
use crate::http::error::{HandlerError, Problem};
use crate::http::extract::Path;
use crate::state::AppState;
use crate::store::buildings::AssetRecord;

const COLUMNS: Columns<'static> = Columns {
    names: &[
        "asset_type",
        "location",
        "identifier",
        "install_date",
        "rule_codes",
    ],
    required: &["asset_type", "location"],
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(import))
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct ImportResult {
    pub imported: usize,
    /// The new assets' ids, in file order.
    pub asset_ids: Vec<Uuid>,
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
    crate::http::records::ensure_open(&state, user.org_id, building_id).await?;
    let bytes = csv_upload::read_csv_body(&headers, body).await?;

    let (rows, mut errors) = csv_upload::parse(&bytes, &COLUMNS)?;
    let rows: Vec<(u64, AssetInput)> = rows
        .into_iter()
        .map(|mut r| {
            let input = AssetInput {
                asset_type: r.take(0).unwrap_or_default(),
                location: r.take(1).unwrap_or_default(),
                identifier: r.take(2),
                install_date: r.take(3),
                rule_codes: r
                    .take(4)
                    .map(|s| s.split(';').map(|c| c.trim().to_owned()).collect())
                    .unwrap_or_default(),
                schedule_anchor: None,
                manufacture_date: None,
            };
            (r.row, input)
        })
        .collect();
    let needs_rules = rows.iter().any(|(_, r)| !r.rule_codes.is_empty());
    let rules = AssetRules::load(&state, &user, building_id, needs_rules).await?;
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
                    rule_alternatives: Default::default(),
                    created_at: now,
                    updated_at: now,
                    schedule_anchor: None,
                    manufacture_date: None,
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
