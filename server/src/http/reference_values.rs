//! Reference values of assets: baselines (commissioning, first service) and design or
//! manufacturer values that AS 1851 readings are compared with.
//!
//! - `GET/PUT /v1/buildings/{id}/assets/{asset_id}/reference-values`: one asset's current values
//!   (`?history=true` adds every superseded one); set or clear some of them.
//! - `GET /v1/buildings/{id}/reference-values`: every asset's current values.
//! - `POST /v1/buildings/{id}/reference-values/import`: the same from CSV, all or nothing, with
//!   a dry run that previews.
//!
//! Every role reads. Admin and office set any source; an inspector sets `first_service` values
//! only, and never over a value of another source; auditors change nothing. Another
//! organisation's building or asset, and an asset of another building, answer 404.

use std::collections::{HashMap, HashSet};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::buildings::building_of;
use super::csv_upload::{self, invalid_csv, row_error, Columns, RowError};
use super::error::{ApiError, CustomProblem, HandlerError, Problem};
use super::extract::{Json, Path, Query};
use crate::audit::Target;
use crate::auth::AuthUser;
use crate::domain::reference::{self, FieldError, Source, ValidValue, ValueInput, MAX_VALUES};
use crate::state::AppState;
use crate::store::baselines::{
    would_change, AssetValues, NewReferenceValue, ReferenceChange, ReferenceValue,
};
use crate::store::buildings::AssetRecord;
use crate::store::{Role, StoreError};

/// Roles that may set values (an inspector only `first_service` ones).
const SETTERS: &[Role] = &[Role::Admin, Role::Office, Role::Inspector];

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_asset_values, set_asset_values))
        .routes(routes!(get_building_values))
        .routes(routes!(import))
}

/// One reference value.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReferenceValueView {
    pub id: Uuid,
    /// `baseline` (recorded on the installation) or `design` (design or manufacturer value).
    pub kind: String,
    /// The reading or design value it is for, `[a-z0-9_]`.
    pub key: String,
    pub value: f64,
    /// May be empty.
    pub unit: String,
    /// commissioning, design_document, manufacturer, first_service or other.
    pub source: String,
    pub note: Option<String>,
    pub set_by: Option<Uuid>,
    pub set_at: DateTime<Utc>,
    /// When a later value replaced it, or it was cleared (history entries only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub superseded_at: Option<DateTime<Utc>>,
}

impl From<ReferenceValue> for ReferenceValueView {
    fn from(r: ReferenceValue) -> Self {
        Self {
            id: r.id,
            kind: r.kind,
            key: r.key,
            value: r.value,
            unit: r.unit,
            source: r.source,
            note: r.note,
            set_by: r.set_by,
            set_at: r.set_at,
            superseded_at: r.superseded_at,
        }
    }
}

/// An asset's reference values.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AssetReferenceValues {
    pub building_id: Uuid,
    pub asset_id: Uuid,
    pub asset_identifier: Option<String>,
    /// The current values, by kind and key.
    pub values: Vec<ReferenceValueView>,
    /// With `?history=true`: every superseded value, newest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<ReferenceValueView>>,
    /// After a `PUT`: how many keys it changed (0 when every value was already current).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changed: Option<usize>,
}

impl AssetReferenceValues {
    fn new(asset: &AssetRecord, values: Vec<ReferenceValue>) -> Self {
        Self {
            building_id: asset.building_id,
            asset_id: asset.id,
            asset_identifier: asset.identifier.clone(),
            values: values.into_iter().map(Into::into).collect(),
            history: None,
            changed: None,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// Also list every superseded value.
    pub history: Option<bool>,
}

/// An asset's reference values (every role).
#[utoipa::path(get, path = "/v1/buildings/{id}/assets/{asset_id}/reference-values", tag = "reference values",
    security(("bearer" = [])), params(("id" = Uuid, Path), ("asset_id" = Uuid, Path), HistoryQuery),
    responses((status = 200, body = AssetReferenceValues), (status = 400, body = Problem), (status = 404, body = Problem)))]
async fn get_asset_values(
    State(state): State<AppState>,
    user: AuthUser,
    Path((building_id, asset_id)): Path<(Uuid, Uuid)>,
    Query(q): Query<HistoryQuery>,
) -> Result<Json<AssetReferenceValues>, ApiError> {
    let asset = state
        .store
        .get_asset(user.org_id, building_id, asset_id)
        .await?;
    if q.history != Some(true) {
        let values = state
            .store
            .current_reference_values(user.org_id, &[asset_id])
            .await?;
        return Ok(Json(AssetReferenceValues::new(&asset, values)));
    }
    let (mut current, superseded): (Vec<_>, Vec<_>) = state
        .store
        .reference_history(user.org_id, asset_id)
        .await?
        .into_iter()
        .partition(|r| r.superseded_at.is_none());
    current.sort_by(|a, b| (&a.kind, &a.key).cmp(&(&b.kind, &b.key)));
    let mut view = AssetReferenceValues::new(&asset, current);
    view.history = Some(superseded.into_iter().map(Into::into).collect());
    Ok(Json(view))
}

/// The body of `PUT .../reference-values` (documentation: the handler reads the JSON itself so
/// that every problem names its field, e.g. `values[2].value`).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct SetReferenceValues {
    /// 1-200 values; each (kind, key) at most once.
    values: Vec<ReferenceValueInput>,
}

/// One value to set or clear.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ReferenceValueInput {
    /// `baseline` or `design`.
    kind: String,
    /// 1-100 characters of `[a-z0-9_]`.
    key: String,
    /// A finite number; `null` clears the current value.
    value: Option<f64>,
    /// At most 50 characters; default empty.
    unit: Option<String>,
    /// commissioning, design_document, manufacturer, first_service or other.
    source: String,
    /// At most 2,000 characters.
    note: Option<String>,
}

const ENTRY_FIELDS: [&str; 6] = ["kind", "key", "value", "unit", "source", "note"];

/// Read the `PUT` body into inputs, naming every field that has the wrong shape.
fn read_entries(body: &Value) -> Result<Vec<ValueInput>, Vec<FieldError>> {
    let Some(obj) = body.as_object() else {
        return Err(vec![FieldError::new(
            "body",
            "must be an object {\"values\": [...]}",
        )]);
    };
    let mut errors: Vec<FieldError> = obj
        .keys()
        .filter(|k| *k != "values")
        .map(|k| FieldError::new(k.as_str(), "unknown field; the body has only `values`"))
        .collect();
    let entries = match obj.get("values") {
        Some(Value::Array(a)) if (1..=MAX_VALUES).contains(&a.len()) => a,
        Some(Value::Array(_)) => {
            errors.push(FieldError::new(
                "values",
                format!("must hold 1-{MAX_VALUES} values"),
            ));
            return Err(errors);
        }
        Some(_) => {
            errors.push(FieldError::new("values", "must be an array"));
            return Err(errors);
        }
        None => {
            errors.push(FieldError::new("values", "is required"));
            return Err(errors);
        }
    };
    let mut inputs = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let at = |f: &str| format!("values[{i}].{f}");
        let Some(e) = entry.as_object() else {
            errors.push(FieldError::new(format!("values[{i}]"), "must be an object"));
            continue;
        };
        for k in e.keys().filter(|k| !ENTRY_FIELDS.contains(&k.as_str())) {
            errors.push(FieldError::new(
                at(k),
                format!("unknown field; the fields are {}", ENTRY_FIELDS.join(", ")),
            ));
        }
        let mut text = |f: &str, required: bool| -> Option<String> {
            match e.get(f) {
                Some(Value::String(s)) => Some(s.clone()),
                None | Some(Value::Null) if !required => None,
                None => {
                    errors.push(FieldError::new(at(f), "is required"));
                    None
                }
                Some(_) => {
                    errors.push(FieldError::new(at(f), "must be a string"));
                    None
                }
            }
        };
        let kind = text("kind", true);
        let key = text("key", true);
        let unit = text("unit", false);
        let source = text("source", true);
        let note = text("note", false);
        let value = match e.get("value") {
            None => {
                errors.push(FieldError::new(
                    at("value"),
                    "is required (a number, or null to clear)",
                ));
                None
            }
            Some(Value::Null) => None,
            Some(Value::Number(n)) => n.as_f64(),
            Some(_) => {
                errors.push(FieldError::new(
                    at("value"),
                    "must be a number, or null to clear",
                ));
                None
            }
        };
        inputs.push(ValueInput {
            kind: kind.unwrap_or_default(),
            key: key.unwrap_or_default(),
            value,
            unit: unit.unwrap_or_default(),
            source: source.unwrap_or_default(),
            note,
        });
    }
    if errors.is_empty() {
        Ok(inputs)
    } else {
        Err(errors)
    }
}

/// 422 `invalid_field`: the first problem in the detail, all of them in `errors`.
fn invalid_fields(errors: Vec<FieldError>) -> CustomProblem {
    let detail = match errors.as_slice() {
        [one] => one.to_string(),
        [first, rest @ ..] => format!("{first} (and {} more problem(s))", rest.len()),
        [] => "invalid body".into(),
    };
    // The `errors` member of `Problem`, without rows.
    let listed: Vec<RowError> = errors
        .into_iter()
        .map(|e| RowError {
            row: None,
            field: Some(e.field),
            message: e.message,
        })
        .collect();
    CustomProblem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", detail)
        .with("errors", serde_json::to_value(listed).unwrap_or_default())
}

fn to_new(v: ValidValue) -> NewReferenceValue {
    NewReferenceValue {
        kind: v.kind.as_str().to_owned(),
        key: v.key,
        value: v.value,
        unit: v.unit,
        source: v.source.as_str().to_owned(),
        note: v.note,
    }
}

fn inspector_only_first_service(which: &str) -> ApiError {
    ApiError::forbidden(format!(
        "an inspector may set only values with source {} (measured at a first service); {which} \
         needs the role admin or office",
        Source::FirstService
    ))
}

fn inspector_over_other_source(which: &str) -> ApiError {
    ApiError::forbidden(format!(
        "an inspector may not replace or clear a value of another source than {}: {which} \
         needs the role admin or office",
        Source::FirstService
    ))
}

/// What the store says when a write cannot go ahead.
fn write_error(e: StoreError) -> ApiError {
    match e {
        StoreError::Conflict("reference_source") => {
            inspector_over_other_source("a value set at the same time")
        }
        StoreError::Conflict(_) => ApiError::conflict(
            "concurrent_update",
            "another request changed these values at the same time; read them and try again",
        ),
        other => other.into(),
    }
}

/// Write `batch` as `user`, all or nothing: an inspector's write never supersedes a value of
/// another source (checked again inside the transaction).
async fn write(
    state: &AppState,
    user: &AuthUser,
    building_id: Uuid,
    batch: &[AssetValues],
) -> Result<Vec<ReferenceChange>, ApiError> {
    crate::http::records::ensure_open(state, user.org_id, building_id).await?;
    let only_over = (user.role == Role::Inspector).then_some(Source::FirstService.as_str());
    let changes = state
        .store
        .apply_reference_values(
            user.org_id,
            building_id,
            batch,
            user.user_id,
            Utc::now(),
            only_over,
        )
        .await
        .map_err(write_error)?;
    Ok(changes)
}

/// Readings are evaluated against the values current when a session is projected: after a
/// change, the building's sessions still in progress are projected again (their verdicts and
/// missing-baseline findings follow at once). Completed sessions keep what was signed off.
async fn reassess_open_sessions(
    state: &AppState,
    user: &AuthUser,
    building_id: Uuid,
) -> Result<(), ApiError> {
    let filter = crate::store::sessions::SessionFilter {
        building_id: Some(building_id),
        status: Some("in_progress".into()),
        assigned_to: None,
    };
    let mut after = None;
    loop {
        let page = crate::store::Page { after, limit: 200 };
        let sessions = state
            .store
            .list_sessions(user.org_id, &filter, page)
            .await?;
        for s in &sessions {
            state.hub.reassess(s.row.id).await;
        }
        match sessions.last() {
            Some(last) if sessions.len() == 200 => after = Some(last.row.id),
            _ => return Ok(()),
        }
    }
}

/// The audit form of a value (no ids: the time and author say which row).
fn audit_value(r: &ReferenceValue) -> Value {
    json!({
        "value": r.value, "unit": r.unit, "source": r.source, "note": r.note,
        "set_by": r.set_by, "set_at": r.set_at,
    })
}

fn audit_change(c: &ReferenceChange, identifier: Option<&str>) -> Value {
    json!({
        "asset_id": c.asset_id,
        "asset_identifier": identifier,
        "kind": c.kind,
        "key": c.key,
        "old": c.old.as_ref().map(audit_value),
        "new": c.new.as_ref().map(audit_value),
    })
}

/// Set or clear some of an asset's reference values (admin, office; an inspector only
/// `first_service` values). Values equal to the current ones change nothing; answers the
/// asset's current values.
#[utoipa::path(put, path = "/v1/buildings/{id}/assets/{asset_id}/reference-values", tag = "reference values",
    security(("bearer" = [])), params(("id" = Uuid, Path), ("asset_id" = Uuid, Path)), request_body = SetReferenceValues,
    responses((status = 200, body = AssetReferenceValues), (status = 400, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem), (status = 409, body = Problem),
              (status = 422, body = Problem, description = "code invalid_field, with errors: [{field, message}]")))]
async fn set_asset_values(
    State(state): State<AppState>,
    user: AuthUser,
    Path((building_id, asset_id)): Path<(Uuid, Uuid)>,
    Json(body): Json<Value>,
) -> Result<Json<AssetReferenceValues>, HandlerError> {
    user.require(SETTERS)?;
    let asset = state
        .store
        .get_asset(user.org_id, building_id, asset_id)
        .await?;
    let valid = read_entries(&body)
        .and_then(|inputs| reference::validate_values(&inputs))
        .map_err(invalid_fields)?;
    let inspector = user.role == Role::Inspector;
    if inspector {
        if let Some(i) = valid
            .iter()
            .position(|v| !reference::inspector_may_set(v.source))
        {
            return Err(inspector_only_first_service(&format!(
                "values[{i}] (source {})",
                valid[i].source
            )));
        }
    }
    let values: Vec<NewReferenceValue> = valid.into_iter().map(to_new).collect();
    if inspector {
        let current = state
            .store
            .current_reference_values(user.org_id, &[asset_id])
            .await?;
        for (i, v) in values.iter().enumerate() {
            let cur = current.iter().find(|c| c.kind == v.kind && c.key == v.key);
            if cur.is_some_and(|c| c.source != v.source) && would_change(cur, v) {
                return Err(inspector_over_other_source(&format!(
                    "values[{i}] ({} {})",
                    v.kind, v.key
                )));
            }
        }
    }
    let changes = write(
        &state,
        &user,
        building_id,
        &[AssetValues { asset_id, values }],
    )
    .await?;
    if !changes.is_empty() {
        let listed: Vec<Value> = changes
            .iter()
            .map(|c| audit_change(c, asset.identifier.as_deref()))
            .collect();
        state
            .audit(
                &user,
                "reference_values.set",
                Some(Target::new("asset", asset_id)),
                json!({ "building_id": building_id, "asset_id": asset_id, "changes": listed }),
            )
            .await?;
        // Audited first: the reassessment that follows is derived work.
        reassess_open_sessions(&state, &user, building_id).await?;
    }
    let current = state
        .store
        .current_reference_values(user.org_id, &[asset_id])
        .await?;
    let mut view = AssetReferenceValues::new(&asset, current);
    view.changed = Some(changes.len());
    Ok(Json(view))
}

/// A current value with the asset it belongs to.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BuildingReferenceValue {
    pub asset_id: Uuid,
    pub asset_identifier: Option<String>,
    #[serde(flatten)]
    pub value: ReferenceValueView,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BuildingReferenceValues {
    pub building_id: Uuid,
    /// Every current value of every asset, by asset, kind and key.
    pub values: Vec<BuildingReferenceValue>,
}

/// The current reference values of every asset of a building (every role).
#[utoipa::path(get, path = "/v1/buildings/{id}/reference-values", tag = "reference values",
    security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = BuildingReferenceValues), (status = 404, body = Problem)))]
async fn get_building_values(
    State(state): State<AppState>,
    user: AuthUser,
    Path(building_id): Path<Uuid>,
) -> Result<Json<BuildingReferenceValues>, ApiError> {
    building_of(&state, &user, building_id).await?;
    let identifiers: HashMap<Uuid, Option<String>> = state
        .store
        .building_assets(user.org_id, building_id)
        .await?
        .into_iter()
        .map(|a| (a.id, a.identifier))
        .collect();
    let values = state
        .store
        .building_reference_values(user.org_id, building_id)
        .await?
        .into_iter()
        .map(|r| BuildingReferenceValue {
            asset_id: r.asset_id,
            asset_identifier: identifiers.get(&r.asset_id).cloned().flatten(),
            value: r.into(),
        })
        .collect();
    Ok(Json(BuildingReferenceValues {
        building_id,
        values,
    }))
}

const IMPORT_COLUMNS: Columns<'static> = Columns {
    names: &[
        "asset_identifier",
        "kind",
        "key",
        "value",
        "unit",
        "source",
        "note",
    ],
    required: &["asset_identifier", "kind", "key", "value", "source"],
};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ImportQuery {
    /// Only preview: validate and compare with the current values, change nothing.
    pub dry_run: Option<bool>,
}

/// A value as the import shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ValueSummary {
    pub value: f64,
    pub unit: String,
    pub source: String,
    pub note: Option<String>,
}

impl From<&ReferenceValue> for ValueSummary {
    fn from(r: &ReferenceValue) -> Self {
        Self {
            value: r.value,
            unit: r.unit.clone(),
            source: r.source.clone(),
            note: r.note.clone(),
        }
    }
}

/// One row of the file that changes (or would change) a value.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ImportChange {
    pub row: u64,
    pub asset_id: Uuid,
    pub asset_identifier: String,
    pub kind: String,
    pub key: String,
    /// The current value it replaces or clears (null: none).
    pub old: Option<ValueSummary>,
    /// The value it sets (null: a clear).
    pub new: Option<ValueSummary>,
}

/// One row of the file that equals the current value (nothing to write).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ImportUnchanged {
    pub row: u64,
    pub asset_identifier: String,
    pub kind: String,
    pub key: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ImportPreview {
    /// True: nothing was changed.
    pub dry_run: bool,
    /// Whether the file can be imported as it is (no errors).
    pub valid: bool,
    /// Data rows read.
    pub rows: usize,
    pub changes: Vec<ImportChange>,
    pub unchanged: Vec<ImportUnchanged>,
    /// Problems by row and column (a dry run lists them here; an import answers 422).
    pub errors: Vec<RowError>,
}

/// One valid row of the file.
struct ImportRow {
    row: u64,
    asset_id: Uuid,
    identifier: String,
    value: NewReferenceValue,
}

/// Read and check every row: the valid ones, and the problems of the others.
fn import_rows(
    rows: Vec<csv_upload::CsvRow>,
    assets: &HashMap<String, Uuid>,
    errors: &mut Vec<RowError>,
) -> Vec<ImportRow> {
    let mut valid = Vec::with_capacity(rows.len());
    let mut seen: HashMap<(Uuid, String, String), u64> = HashMap::new();
    for mut r in rows {
        let row = r.row;
        let identifier = r.take(0);
        let asset = match &identifier {
            None => {
                errors.push(row_error(
                    row,
                    Some("asset_identifier"),
                    "the identifier of an asset of this building is required",
                ));
                None
            }
            Some(id) => match assets.get(id) {
                Some(a) => Some(*a),
                None => {
                    errors.push(row_error(
                        row,
                        Some("asset_identifier"),
                        format!("no asset of this building has the identifier '{id}'"),
                    ));
                    None
                }
            },
        };
        let value = match r.take(3).as_deref().map(reference::parse_number) {
            None => Ok(None),
            Some(Ok(v)) => Ok(Some(v)),
            Some(Err(m)) => Err(m),
        };
        let input = ValueInput {
            kind: r.take(1).unwrap_or_default(),
            key: r.take(2).unwrap_or_default(),
            value: value.clone().ok().flatten(),
            unit: r.take(4).unwrap_or_default(),
            source: r.take(5).unwrap_or_default(),
            note: r.take(6),
        };
        if let Err(m) = &value {
            errors.push(row_error(row, Some("value"), m.clone()));
        }
        let checked = reference::validate(&input).map_err(|es| {
            errors.extend(
                es.into_iter()
                    .map(|e| row_error(row, Some(&e.field), e.message)),
            )
        });
        let (Some(asset_id), Some(identifier), Ok(_), Ok(v)) = (asset, identifier, value, checked)
        else {
            continue;
        };
        let v = to_new(v);
        if let Some(first) = seen.insert((asset_id, v.kind.clone(), v.key.clone()), row) {
            errors.push(row_error(
                row,
                Some("key"),
                format!(
                    "{} '{}' of '{identifier}' is also set on row {first}",
                    v.kind, v.key
                ),
            ));
            seen.insert((asset_id, v.kind.clone(), v.key.clone()), first);
            continue;
        }
        valid.push(ImportRow {
            row,
            asset_id,
            identifier,
            value: v,
        });
    }
    valid
}

/// Import reference values from CSV (admin, office; an inspector only `first_service` rows).
/// Columns `asset_identifier,kind,key,value,unit,source,note` (header required, any order;
/// `unit` and `note` may be left out; an empty `value` clears). `?dry_run=true` previews and
/// changes nothing; otherwise all rows or none are written.
#[utoipa::path(post, path = "/v1/buildings/{id}/reference-values/import", tag = "reference values",
    security(("bearer" = [])), params(("id" = Uuid, Path), ImportQuery),
    request_body(content = String, content_type = "text/csv",
        description = "asset_identifier,kind,key,value,unit,source,note"),
    responses((status = 200, body = ImportPreview), (status = 403, body = Problem), (status = 404, body = Problem),
              (status = 409, body = Problem), (status = 413, body = Problem), (status = 415, body = Problem),
              (status = 422, body = Problem, description = "code invalid_csv, with errors: [{row, field, message}]")))]
async fn import(
    State(state): State<AppState>,
    user: AuthUser,
    Path(building_id): Path<Uuid>,
    Query(q): Query<ImportQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<ImportPreview>, HandlerError> {
    user.require(SETTERS)?;
    building_of(&state, &user, building_id).await?;
    let dry_run = q.dry_run == Some(true);
    let bytes = csv_upload::read_csv_body(&headers, body).await?;
    let (rows, mut errors) = csv_upload::parse(&bytes, &IMPORT_COLUMNS)?;
    let unreadable: HashSet<Option<u64>> = errors.iter().map(|e| e.row).collect();
    let read = rows.len() + unreadable.len();

    let assets: HashMap<String, Uuid> = state
        .store
        .building_assets(user.org_id, building_id)
        .await?
        .into_iter()
        .filter_map(|a| Some((a.identifier?, a.id)))
        .collect();
    let valid = import_rows(rows, &assets, &mut errors);

    let inspector = user.role == Role::Inspector;
    if inspector {
        let refused: Vec<String> = valid
            .iter()
            .filter(|r| r.value.source != Source::FirstService.as_str())
            .map(|r| r.row.to_string())
            .collect();
        if !refused.is_empty() {
            return Err(inspector_only_first_service(&format!(
                "rows {}",
                refused.join(", ")
            )));
        }
    }

    let current: HashMap<(Uuid, String, String), ReferenceValue> = state
        .store
        .building_reference_values(user.org_id, building_id)
        .await?
        .into_iter()
        .map(|r| ((r.asset_id, r.kind.clone(), r.key.clone()), r))
        .collect();
    let mut changes = Vec::new();
    let mut unchanged = Vec::new();
    let mut over_other_source = Vec::new();
    for r in &valid {
        let cur = current.get(&(r.asset_id, r.value.kind.clone(), r.value.key.clone()));
        if !would_change(cur, &r.value) {
            unchanged.push(ImportUnchanged {
                row: r.row,
                asset_identifier: r.identifier.clone(),
                kind: r.value.kind.clone(),
                key: r.value.key.clone(),
            });
            continue;
        }
        if inspector && cur.is_some_and(|c| c.source != r.value.source) {
            over_other_source.push(r.row.to_string());
        }
        changes.push(ImportChange {
            row: r.row,
            asset_id: r.asset_id,
            asset_identifier: r.identifier.clone(),
            kind: r.value.kind.clone(),
            key: r.value.key.clone(),
            old: cur.map(ValueSummary::from),
            new: r.value.value.map(|value| ValueSummary {
                value,
                unit: r.value.unit.clone(),
                source: r.value.source.clone(),
                note: r.value.note.clone(),
            }),
        });
    }
    if !over_other_source.is_empty() {
        return Err(inspector_over_other_source(&format!(
            "rows {}",
            over_other_source.join(", ")
        )));
    }
    errors.sort_by_key(|e| e.row);
    let mut preview = ImportPreview {
        dry_run,
        valid: errors.is_empty(),
        rows: read,
        changes,
        unchanged,
        errors,
    };
    if dry_run {
        return Ok(Json(preview));
    }
    if !preview.valid {
        return Err(invalid_csv(preview.errors, "").into());
    }

    // Only the rows that change anything, grouped by asset (in file order).
    let changing: HashSet<u64> = preview.changes.iter().map(|c| c.row).collect();
    let mut batch: Vec<AssetValues> = Vec::new();
    let mut slot: HashMap<Uuid, usize> = HashMap::new();
    for r in valid.into_iter().filter(|r| changing.contains(&r.row)) {
        let i = *slot.entry(r.asset_id).or_insert_with(|| {
            batch.push(AssetValues {
                asset_id: r.asset_id,
                values: Vec::new(),
            });
            batch.len() - 1
        });
        batch[i].values.push(r.value);
    }
    let written = write(&state, &user, building_id, &batch).await?;
    // What was written may differ from the preview if someone wrote in between: report it.
    let row_of: HashMap<(Uuid, &str, &str), (u64, &str)> = preview
        .changes
        .iter()
        .map(|c| {
            (
                (c.asset_id, c.kind.as_str(), c.key.as_str()),
                (c.row, c.asset_identifier.as_str()),
            )
        })
        .collect();
    let mut audited = Vec::with_capacity(written.len());
    let mut done = Vec::with_capacity(written.len());
    for w in &written {
        let (row, identifier) = row_of
            .get(&(w.asset_id, w.kind.as_str(), w.key.as_str()))
            .copied()
            .unwrap_or((0, ""));
        audited.push(audit_change(w, Some(identifier)));
        done.push(ImportChange {
            row,
            asset_id: w.asset_id,
            asset_identifier: identifier.to_owned(),
            kind: w.kind.clone(),
            key: w.key.clone(),
            old: w.old.as_ref().map(ValueSummary::from),
            new: w.new.as_ref().map(ValueSummary::from),
        });
    }
    if !written.is_empty() {
        state
            .audit(
                &user,
                "reference_values.import",
                Some(Target::new("building", building_id)),
                json!({
                    "building_id": building_id,
                    "rows": preview.rows,
                    "changed": written.len(),
                    "unchanged": preview.unchanged.len(),
                    "changes": audited,
                }),
            )
            .await?;
        reassess_open_sessions(&state, &user, building_id).await?;
    }
    done.sort_by_key(|c| c.row);
    preview.changes = done;
    Ok(Json(preview))
}
