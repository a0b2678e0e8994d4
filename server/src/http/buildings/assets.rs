//! `/v1/buildings/{id}/assets`: the equipment of a building, and the validation that the JSON
//! routes and the CSV import share.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Days, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{building_of, WRITERS};
use crate::audit::Target;
use crate::auth::AuthUser;
use crate::http::error::{ApiError, ApiResult, Problem};
use crate::http::extract::{Json, Path, Query};
use crate::http::pagination::{PageQuery, Paginated};
use crate::state::AppState;
use crate::store::buildings::{AssetFilter, AssetPatch, AssetRecord};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(get, update))
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct AssetView {
    pub id: Uuid,
    pub building_id: Uuid,
    pub asset_type: String,
    pub location: String,
    pub identifier: Option<String>,
    pub install_date: Option<NaiveDate>,
    pub rule_codes: Vec<String>,
    /// The date this asset's routines are anchored on (commissioning, first service or the
    /// start of a service contract); without one the building's, then the first service known.
    pub schedule_anchor: Option<NaiveDate>,
    /// When it was made (cylinder pressure tests and replacements count from it).
    pub manufacture_date: Option<NaiveDate>,
    /// Routine alternatives chosen for the asset (rule codes, e.g. `AS1851-12-12M-FD`, the
    /// yearly fire-door routine instead of the six-monthly one). Empty: the default routines.
    pub alternatives: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<AssetRecord> for AssetView {
    fn from(a: AssetRecord) -> Self {
        Self {
            id: a.id,
            building_id: a.building_id,
            asset_type: a.asset_type,
            location: a.location,
            identifier: a.identifier,
            install_date: a.install_date,
            rule_codes: a.rule_codes.0,
            schedule_anchor: a.schedule_anchor,
            manufacture_date: a.manufacture_date,
            alternatives: a.rule_alternatives.0.into_values().collect(),
            created_at: a.created_at,
            updated_at: a.updated_at,
        }
    }
}

/// What an audit row says about an asset (assets carry no PII).
pub(super) fn audit_view(a: &AssetRecord) -> serde_json::Value {
    json!({
        "asset_type": a.asset_type,
        "location": a.location,
        "identifier": a.identifier,
        "install_date": a.install_date,
        "rule_codes": a.rule_codes.0,
        "schedule_anchor": a.schedule_anchor,
        "manufacture_date": a.manufacture_date,
        "alternatives": a.rule_alternatives.0,
    })
}

/// One problem with one field of an asset.
#[derive(Debug, Clone)]
pub(super) struct FieldError {
    pub field: &'static str,
    pub code: &'static str,
    pub message: String,
}

impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> Self {
        ApiError::unprocessable(e.code, e.message)
    }
}

fn field_error(field: &'static str, code: &'static str, message: impl Into<String>) -> FieldError {
    FieldError {
        field,
        code,
        message: message.into(),
    }
}

/// An asset as given (JSON body or CSV row), before validation.
#[derive(Debug, Default)]
pub(super) struct AssetInput {
    pub asset_type: String,
    pub location: String,
    pub identifier: Option<String>,
    pub install_date: Option<String>,
    pub rule_codes: Vec<String>,
    pub schedule_anchor: Option<String>,
    pub manufacture_date: Option<String>,
}

/// The validated form.
#[derive(Debug)]
pub(super) struct ValidAsset {
    pub asset_type: String,
    pub location: String,
    pub identifier: Option<String>,
    pub install_date: Option<NaiveDate>,
    pub rule_codes: Vec<String>,
    pub schedule_anchor: Option<NaiveDate>,
    pub manufacture_date: Option<NaiveDate>,
}

/// What validation checks against: the rules of the building's editions (code -> equipment).
pub(super) struct AssetRules {
    equipment_of: HashMap<String, String>,
    today: NaiveDate,
}

impl AssetRules {
    /// Load the rules of the building's editions (only when some input names rule codes): a
    /// listed code must be one the building is serviced under.
    pub async fn load(
        state: &AppState,
        user: &AuthUser,
        building_id: Uuid,
        needed: bool,
    ) -> Result<Self, ApiError> {
        let equipment_of = if needed {
            let building = building_of(state, user, building_id).await?;
            crate::rules::building_rules(state.store.as_ref(), &building, None)
                .await?
                .into_iter()
                .map(|r| (r.code, r.equipment))
                .collect()
        } else {
            HashMap::new()
        };
        Ok(Self {
            equipment_of,
            today: Utc::now().date_naive(),
        })
    }

    /// The equipment kind of a rule the organisation sees (loaded with `needed`).
    pub fn equipment(&self, code: &str) -> Option<&str> {
        self.equipment_of.get(code).map(String::as_str)
    }

    /// Check every field and collect every problem.
    pub fn validate(&self, input: AssetInput) -> Result<ValidAsset, Vec<FieldError>> {
        let mut errors = Vec::new();
        let asset_type = input.asset_type.trim().to_owned();
        let known_type = crate::rules::is_equipment_kind(&asset_type);
        if !known_type {
            errors.push(field_error(
                "asset_type",
                "invalid_asset_type",
                format!(
                    "asset_type '{asset_type}' is not an equipment kind; allowed: {}",
                    crate::rules::library().equipment_codes().join(", ")
                ),
            ));
        }
        let location = input.location.trim().to_owned();
        if location.is_empty() || location.chars().count() > 500 {
            errors.push(field_error(
                "location",
                "invalid_field",
                "location must be 1-500 characters",
            ));
        }
        let identifier = input.identifier.map(|s| s.trim().to_owned());
        if let Some(id) = &identifier {
            if id.is_empty() || id.chars().count() > 200 {
                errors.push(field_error(
                    "identifier",
                    "invalid_field",
                    "identifier must be 1-200 characters (omit it for none)",
                ));
            }
        }
        let mut date = |field: &'static str, value: Option<&str>, future_days: u64| {
            let s = value.map(str::trim)?;
            match self.parse_date(field, s, future_days) {
                Ok(d) => Some(d),
                Err(m) => {
                    errors.push(field_error(field, "invalid_field", m));
                    None
                }
            }
        };
        let install_date = date("install_date", input.install_date.as_deref(), 1);
        let manufacture_date = date("manufacture_date", input.manufacture_date.as_deref(), 1);
        // A contract may start within the coming year.
        let schedule_anchor = date("schedule_anchor", input.schedule_anchor.as_deref(), 366);
        if let (Some(made), Some(installed)) = (manufacture_date, install_date) {
            if made > installed {
                errors.push(field_error(
                    "manufacture_date",
                    "invalid_field",
                    format!("manufacture_date {made} is after install_date {installed}"),
                ));
            }
        }
        let mut rule_codes: Vec<String> = Vec::new();
        for code in input.rule_codes.iter().map(|c| c.trim()) {
            if code.is_empty() || rule_codes.iter().any(|c| c == code) {
                continue;
            }
            match self.equipment_of.get(code) {
                None => errors.push(field_error(
                    "rule_codes",
                    "unknown_rule",
                    format!(
                        "rule '{code}' does not exist, has no active version or is not of the \
                         building's editions"
                    ),
                )),
                Some(eq) if known_type && eq != &asset_type => errors.push(field_error(
                    "rule_codes",
                    "rule_equipment_mismatch",
                    format!("rule '{code}' is for {eq}, not {asset_type}"),
                )),
                Some(_) => {}
            }
            rule_codes.push(code.to_owned());
        }
        if errors.is_empty() {
            Ok(ValidAsset {
                asset_type,
                location,
                identifier,
                install_date,
                rule_codes,
                schedule_anchor,
                manufacture_date,
            })
        } else {
            Err(errors)
        }
    }

    /// `YYYY-MM-DD`, from 1900 up to `future_days` after today (1: field devices may be a time
    /// zone ahead).
    fn parse_date(&self, field: &str, s: &str, future_days: u64) -> Result<NaiveDate, String> {
        let shaped = s.len() == 10
            && s.bytes().enumerate().all(|(i, b)| {
                if i == 4 || i == 7 {
                    b == b'-'
                } else {
                    b.is_ascii_digit()
                }
            });
        let date = shaped
            .then(|| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
            .flatten()
            .ok_or_else(|| format!("{field} '{s}' is not a date YYYY-MM-DD"))?;
        let earliest = NaiveDate::from_ymd_opt(1900, 1, 1).unwrap_or(NaiveDate::MIN);
        let latest = self
            .today
            .checked_add_days(Days::new(future_days))
            .unwrap_or(self.today);
        if date < earliest || date > latest {
            return Err(if future_days > 1 {
                format!("{field} {s} must be between 1900-01-01 and {latest}")
            } else {
                format!("{field} {s} must be between 1900-01-01 and today")
            });
        }
        Ok(date)
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAsset {
    /// An equipment kind of the rule library, e.g. `portable_extinguisher`.
    pub asset_type: String,
    pub location: String,
    /// Tag or barcode; unique within the building.
    pub identifier: Option<String>,
    /// `YYYY-MM-DD`.
    #[schema(format = Date)]
    pub install_date: Option<String>,
    /// Rules that apply; each must exist for the organisation and match `asset_type`.
    pub rule_codes: Option<Vec<String>>,
    /// `YYYY-MM-DD`: anchors this asset's routines (commissioning or contract start).
    #[schema(format = Date)]
    pub schedule_anchor: Option<String>,
    /// `YYYY-MM-DD`.
    #[schema(format = Date)]
    pub manufacture_date: Option<String>,
}

/// Add an asset to a building (admin, office).
#[utoipa::path(post, path = "/v1/buildings/{id}/assets", tag = "assets", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = CreateAsset,
    responses((status = 201, body = AssetView), (status = 403, body = Problem), (status = 404, body = Problem),
              (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    Path(building_id): Path<Uuid>,
    Json(req): Json<CreateAsset>,
) -> ApiResult<(StatusCode, Json<AssetView>)> {
    user.require(WRITERS)?;
    building_of(&state, &user, building_id).await?;
    crate::http::records::ensure_open(&state, user.org_id, building_id).await?;
    let rule_codes = req.rule_codes.unwrap_or_default();
    let rules = AssetRules::load(&state, &user, building_id, !rule_codes.is_empty()).await?;
    let valid = rules
        .validate(AssetInput {
            asset_type: req.asset_type,
            location: req.location,
            identifier: req.identifier,
            install_date: req.install_date,
            rule_codes,
            schedule_anchor: req.schedule_anchor,
            manufacture_date: req.manufacture_date,
        })
        .map_err(|mut e| ApiError::from(e.remove(0)))?;
    let now = Utc::now();
    let rec = AssetRecord {
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
        schedule_anchor: valid.schedule_anchor,
        manufacture_date: valid.manufacture_date,
    };
    state
        .store
        .create_assets(std::slice::from_ref(&rec))
        .await?;
    state
        .audit(
            &user,
            "asset.create",
            Some(Target::new("asset", rec.id)),
            json!({ "building_id": building_id, "new": audit_view(&rec) }),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(rec.into())))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AssetQuery {
    /// Only assets of this equipment kind.
    pub asset_type: Option<String>,
    /// Only the asset with exactly this tag or barcode (a scan).
    pub identifier: Option<String>,
    /// At most this many items (1-500, default 50).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Assets of a building, oldest first.
#[utoipa::path(get, path = "/v1/buildings/{id}/assets", tag = "assets", security(("bearer" = [])),
    params(("id" = Uuid, Path), AssetQuery),
    responses((status = 200, body = Paginated<AssetView>), (status = 404, body = Problem)))]
async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    Path(building_id): Path<Uuid>,
    Query(q): Query<AssetQuery>,
) -> ApiResult<Json<Paginated<AssetView>>> {
    building_of(&state, &user, building_id).await?;
    let page = PageQuery {
        limit: q.limit,
        cursor: q.cursor,
    }
    .page()?;
    let filter = AssetFilter {
        asset_type: q.asset_type,
        identifier: q.identifier.map(|s| s.trim().to_owned()),
    };
    let rows = state
        .store
        .list_assets(user.org_id, building_id, &filter, page)
        .await?;
    Ok(Json(Paginated::from_rows(
        rows,
        page,
        |a| a.id,
        AssetView::from,
    )))
}

/// One asset of a building.
#[utoipa::path(get, path = "/v1/buildings/{id}/assets/{asset_id}", tag = "assets", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("asset_id" = Uuid, Path)),
    responses((status = 200, body = AssetView), (status = 404, body = Problem)))]
async fn get(
    State(state): State<AppState>,
    user: AuthUser,
    Path((building_id, asset_id)): Path<(Uuid, Uuid)>,
) -> ApiResult<Json<AssetView>> {
    let a = state
        .store
        .get_asset(user.org_id, building_id, asset_id)
        .await?;
    Ok(Json(a.into()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateAsset {
    pub asset_type: Option<String>,
    pub location: Option<String>,
    /// `null` removes it.
    #[serde(default, deserialize_with = "crate::http::extract::double_option")]
    #[schema(value_type = Option<String>)]
    pub identifier: Option<Option<String>>,
    /// `YYYY-MM-DD`; `null` removes it.
    #[serde(default, deserialize_with = "crate::http::extract::double_option")]
    #[schema(value_type = Option<String>, format = Date)]
    pub install_date: Option<Option<String>>,
    /// Replaces the list.
    pub rule_codes: Option<Vec<String>>,
    /// `YYYY-MM-DD`; `null` removes it.
    #[serde(default, deserialize_with = "crate::http::extract::double_option")]
    #[schema(value_type = Option<String>, format = Date)]
    pub schedule_anchor: Option<Option<String>>,
    /// `YYYY-MM-DD`; `null` removes it.
    #[serde(default, deserialize_with = "crate::http::extract::double_option")]
    #[schema(value_type = Option<String>, format = Date)]
    pub manufacture_date: Option<Option<String>>,
    /// Replaces the chosen routine alternatives (admin, office): rule codes of the building's
    /// editions that are alternatives for the asset's equipment kind, at most one per routine
    /// replaced; `[]` goes back to the default routines.
    pub alternatives: Option<Vec<String>>,
}

/// Check routine alternatives for an asset of `asset_type` in `building_id` against the rules
/// of the building's editions; default code -> alternative code.
async fn check_alternatives(
    state: &AppState,
    user: &AuthUser,
    building_id: Uuid,
    asset_type: &str,
    codes: &[String],
) -> Result<std::collections::BTreeMap<String, String>, ApiError> {
    use crate::domain::applicability::{choose_alternatives, AlternativeError};
    if codes.len() > 20 {
        return Err(ApiError::unprocessable(
            "invalid_field",
            "alternatives holds at most 20 rule codes",
        ));
    }
    if let Some(bad) = codes.iter().find(|c| !crate::rules::valid_rule_code(c)) {
        return Err(ApiError::unprocessable(
            "invalid_alternative",
            format!(
                "alternatives: '{}' is not a rule code",
                bad.chars()
                    .filter(|c| !c.is_control())
                    .take(64)
                    .collect::<String>()
            ),
        ));
    }
    if codes.is_empty() {
        return Ok(Default::default());
    }
    let building = building_of(state, user, building_id).await?;
    let rules = crate::rules::building_rules(state.store.as_ref(), &building, None).await?;
    choose_alternatives(
        asset_type,
        codes,
        &rules,
        crate::store::rules::RuleRecord::facts,
    )
    .map_err(|e| {
        let message = match e {
            AlternativeError::UnknownRule(c) => {
                format!("alternatives: {c} is not a rule of this building's editions")
            }
            AlternativeError::NotAnAlternative(c) => {
                format!("alternatives: {c} is not an alternative to another routine")
            }
            AlternativeError::WrongEquipment { code, equipment } => {
                format!("alternatives: {code} is for {equipment}, not {asset_type}")
            }
            AlternativeError::SameRoutineTwice { default } => {
                format!("alternatives: two alternatives replace {default}")
            }
        };
        ApiError::unprocessable("invalid_alternative", message)
    })
}

/// Change an asset (admin, office). The result is validated as a whole: a new `asset_type`
/// must still match the asset's rules.
#[utoipa::path(patch, path = "/v1/buildings/{id}/assets/{asset_id}", tag = "assets", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("asset_id" = Uuid, Path)), request_body = UpdateAsset,
    responses((status = 200, body = AssetView), (status = 403, body = Problem), (status = 404, body = Problem),
              (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn update(
    State(state): State<AppState>,
    user: AuthUser,
    Path((building_id, asset_id)): Path<(Uuid, Uuid)>,
    Json(req): Json<UpdateAsset>,
) -> ApiResult<Json<AssetView>> {
    user.require(WRITERS)?;
    let before = state
        .store
        .get_asset(user.org_id, building_id, asset_id)
        .await?;
    crate::http::records::ensure_open(&state, user.org_id, building_id).await?;
    let merged = AssetInput {
        asset_type: req
            .asset_type
            .clone()
            .unwrap_or_else(|| before.asset_type.clone()),
        location: req
            .location
            .clone()
            .unwrap_or_else(|| before.location.clone()),
        identifier: req
            .identifier
            .clone()
            .unwrap_or_else(|| before.identifier.clone()),
        install_date: match &req.install_date {
            Some(v) => v.clone(),
            None => before
                .install_date
                .map(|d| d.format("%Y-%m-%d").to_string()),
        },
        schedule_anchor: match &req.schedule_anchor {
            Some(v) => v.clone(),
            None => before.schedule_anchor.map(|d| d.to_string()),
        },
        manufacture_date: match &req.manufacture_date {
            Some(v) => v.clone(),
            None => before.manufacture_date.map(|d| d.to_string()),
        },
        // Rule codes are checked when they or the type change; an untouched list stays valid
        // even if one of its rules has since been deactivated.
        rule_codes: if req.rule_codes.is_some() || req.asset_type.is_some() {
            req.rule_codes
                .clone()
                .unwrap_or_else(|| before.rule_codes.0.clone())
        } else {
            Vec::new()
        },
    };
    let rules = AssetRules::load(&state, &user, building_id, !merged.rule_codes.is_empty()).await?;
    let valid = rules
        .validate(merged)
        .map_err(|mut e| ApiError::from(e.remove(0)))?;
    // Alternatives are checked when they or the type change.
    let rule_alternatives = match (&req.alternatives, &req.asset_type) {
        (Some(codes), _) => {
            Some(check_alternatives(&state, &user, building_id, &valid.asset_type, codes).await?)
        }
        (None, Some(_)) => {
            let current: Vec<String> = before.rule_alternatives.0.values().cloned().collect();
            Some(check_alternatives(&state, &user, building_id, &valid.asset_type, &current).await?)
        }
        (None, None) => None,
    };
    let patch = AssetPatch {
        rule_alternatives,
        asset_type: req.asset_type.is_some().then_some(valid.asset_type),
        location: req.location.is_some().then_some(valid.location),
        identifier: req.identifier.is_some().then_some(valid.identifier),
        install_date: req.install_date.is_some().then_some(valid.install_date),
        rule_codes: req.rule_codes.is_some().then_some(valid.rule_codes),
        schedule_anchor: req
            .schedule_anchor
            .is_some()
            .then_some(valid.schedule_anchor),
        manufacture_date: req
            .manufacture_date
            .is_some()
            .then_some(valid.manufacture_date),
    };
    let after = state
        .store
        .update_asset(user.org_id, building_id, asset_id, &patch)
        .await?;
    state
        .audit(
            &user,
            "asset.update",
            Some(Target::new("asset", asset_id)),
            json!({ "building_id": building_id, "old": audit_view(&before), "new": audit_view(&after) }),
        )
        .await?;
    Ok(Json(after.into()))
}
