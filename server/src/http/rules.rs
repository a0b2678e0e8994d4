//! `/v1/rules` and `/v1/classify`: the AS 1851 rule library (shipped + organisation-private
//! versions, see `crate::rules` for visibility) and fault classification.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::error::{ApiError, ApiResult, CustomProblem, HandlerError, Problem};
use super::extract::{Json, Path, Query};
use super::pagination::{Paginated, DEFAULT_LIMIT, MAX_LIMIT};
use crate::audit::Target;
use crate::auth::AuthUser;
use crate::rules::{self as library, Classification, RuleDef, Version};
use crate::state::AppState;
use crate::store::rules::{NewRule, RuleFilter, RuleRecord};
use crate::store::StoreError;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get))
        .routes(routes!(versions))
        .routes(routes!(deactivate))
        .routes(routes!(classify))
}

/// A rule version as the API shows it.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct RuleView {
    pub code: String,
    pub version: String,
    /// True for the shipped library; false for an organisation-private version.
    pub shipped: bool,
    pub org_id: Option<Uuid>,
    pub name: String,
    pub description: String,
    pub standard: String,
    pub section: String,
    pub clause: String,
    pub equipment: String,
    pub frequency: String,
    #[schema(value_type = Vec<library::Reading>)]
    pub readings: Value,
    pub classification_mappings: BTreeMap<String, String>,
    /// Why a condition is classified as it is (every critical mapping of the shipped library
    /// says why it renders the system inoperative).
    pub rationale: BTreeMap<String, String>,
    /// The edition the rule belongs to.
    pub rule_set: library::RuleSetRef,
    /// The routine this one may replace on an asset, if it is an alternative.
    pub alternative_to: Option<String>,
    pub active: bool,
    pub created_at: DateTime<Utc>,
    pub deactivated_at: Option<DateTime<Utc>>,
}

impl From<RuleRecord> for RuleView {
    fn from(r: RuleRecord) -> Self {
        Self {
            shipped: r.org_id.is_none(),
            code: r.code,
            version: r.version,
            org_id: r.org_id,
            name: r.name,
            description: r.description,
            standard: r.standard,
            section: r.section,
            clause: r.clause,
            equipment: r.equipment,
            frequency: r.frequency,
            readings: r.readings.0,
            classification_mappings: r.classification_mappings.0,
            rationale: r.rationale.0,
            rule_set: library::RuleSetRef::new(&r.rule_set_code, &r.rule_set_version),
            alternative_to: r.alternative_to,
            active: r.active,
            created_at: r.created_at,
            deactivated_at: r.deactivated_at,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RulesQuery {
    /// Only rules for this equipment kind (e.g. `portable_extinguisher`).
    pub equipment: Option<String>,
    /// Only rules at this frequency (e.g. `six_monthly`).
    pub frequency: Option<String>,
    /// At most this many items (1-500, default 50).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Only the rules this building is serviced under: the latest active version of every
    /// code of the editions it pins (without it, the latest version of every code, whatever
    /// its edition).
    pub building_id: Option<Uuid>,
}

/// The latest active version of every rule visible to the caller's organisation, by code; with
/// `building_id`, the versions of the editions that building pins.
#[utoipa::path(get, path = "/v1/rules", tag = "rules", security(("bearer" = [])), params(RulesQuery),
    responses((status = 200, body = Paginated<RuleView>), (status = 400, body = Problem), (status = 401, body = Problem),
              (status = 404, body = Problem, description = "the building is not the organisation's")))]
async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    Query(q): Query<RulesQuery>,
) -> ApiResult<Json<Paginated<RuleView>>> {
    let lib = library::library();
    if let Some(e) = q.equipment.as_deref() {
        if lib.equipment_kind(e).is_none() {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!(
                    "equipment must be one of: {}",
                    lib.equipment_codes().join(", ")
                ),
            ));
        }
    }
    if let Some(f) = q.frequency.as_deref() {
        if lib.any_frequency(f).is_none() {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!(
                    "frequency must be one of: {}",
                    lib.frequency_codes().join(", ")
                ),
            ));
        }
    }
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("limit must be between 1 and {MAX_LIMIT}"),
        ));
    }
    // The cursor is the last code of the previous page (codes are URL-safe by construction).
    if q.cursor
        .as_deref()
        .is_some_and(|c| !library::valid_rule_code(c))
    {
        return Err(ApiError::bad_request(
            "invalid_query",
            "cursor is not valid",
        ));
    }
    let limit = limit as usize;
    let mut rows = match q.building_id {
        Some(building_id) => {
            let building = state.store.get_building(user.org_id, building_id).await?;
            let mut rules =
                library::building_rules(&*state.store, &building, q.frequency.as_deref()).await?;
            rules.retain(|r| {
                q.equipment.as_deref().is_none_or(|e| r.equipment == e)
                    && q.cursor.as_deref().is_none_or(|c| r.code.as_str() > c)
            });
            rules.sort_by(|a, b| a.code.cmp(&b.code));
            rules.truncate(limit + 1);
            rules
        }
        None => {
            let filter = RuleFilter {
                equipment: q.equipment,
                frequency: q.frequency,
            };
            state
                .store
                .latest_rules_page(user.org_id, &filter, q.cursor.as_deref(), limit as i64 + 1)
                .await?
        }
    };
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next_cursor = if more {
        rows.last().map(|r| r.code.clone())
    } else {
        None
    };
    Ok(Json(Paginated {
        items: rows.into_iter().map(RuleView::from).collect(),
        next_cursor,
    }))
}

/// The latest active version of a rule.
#[utoipa::path(get, path = "/v1/rules/{code}", tag = "rules", security(("bearer" = [])),
    params(("code" = String, Path)),
    responses((status = 200, body = RuleView), (status = 404, body = Problem)))]
async fn get(
    State(state): State<AppState>,
    user: AuthUser,
    Path(code): Path<String>,
) -> ApiResult<Json<RuleView>> {
    let rule = state.store.latest_rule(user.org_id, &code).await?;
    Ok(Json(rule.into()))
}

/// Every version of a rule visible to the caller, inactive ones included, newest first.
#[utoipa::path(get, path = "/v1/rules/{code}/versions", tag = "rules", security(("bearer" = [])),
    params(("code" = String, Path)),
    responses((status = 200, body = Paginated<RuleView>), (status = 404, body = Problem)))]
async fn versions(
    State(state): State<AppState>,
    user: AuthUser,
    Path(code): Path<String>,
) -> ApiResult<Json<Paginated<RuleView>>> {
    let rows = state.store.rule_versions(user.org_id, &code).await?;
    if rows.is_empty() {
        return Err(ApiError::NotFound);
    }
    Ok(Json(Paginated {
        items: rows.into_iter().map(RuleView::from).collect(),
        next_cursor: None,
    }))
}

/// Publish an organisation-private rule, or a new version of a rule the organisation sees
/// (shipped codes included; the new version is visible to this organisation only). Admin.
/// Versions are immutable: an existing code+version is a conflict.
#[utoipa::path(post, path = "/v1/rules", tag = "rules", security(("bearer" = [])), request_body = RuleDef,
    responses((status = 201, body = RuleView), (status = 403, body = Problem), (status = 409, body = Problem),
              (status = 422, body = Problem)))]
async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    Json(mut def): Json<RuleDef>,
) -> ApiResult<(StatusCode, Json<RuleView>)> {
    user.require_admin()?;
    let version = def
        .validate(library::library())
        .map_err(|e| ApiError::unprocessable(e.code, e.message))?;
    // A new version of a known code checks the same thing: equipment and frequency are the
    // rule's identity (assets and sessions select rules by them).
    let existing = state.store.rule_versions(user.org_id, &def.code).await?;
    if let Some(prev) = existing.first() {
        if prev.equipment != def.equipment || prev.frequency != def.frequency {
            return Err(ApiError::unprocessable(
                "rule_identity_changed",
                format!(
                    "{} is a rule for {} at {}; a new version must keep its equipment and frequency \
                     (use a new code for a different check)",
                    def.code, prev.equipment, prev.frequency
                ),
            ));
        }
    }
    // The edition: as given, else the code's latest version's, else the default AS 1851
    // edition. It must exist.
    let edition = match (&def.rule_set, existing.first()) {
        (Some(rs), _) => rs.clone(),
        (None, Some(prev)) => library::RuleSetRef::new(&prev.rule_set_code, &prev.rule_set_version),
        (None, None) => {
            let (code, version) = library::default_rule_set();
            library::RuleSetRef::new(code, version)
        }
    };
    if !state
        .store
        .rule_set_exists(&edition.code, &edition.version)
        .await?
    {
        return Err(ApiError::unprocessable(
            "unknown_rule_set",
            format!(
                "rule_set {} {} is not an edition of the library",
                edition.code, edition.version
            ),
        ));
    }
    // An alternative replaces a routine of its own edition and equipment kind.
    if let Some(default) = &def.alternative_to {
        let ok = state
            .store
            .edition_rules(user.org_id, None, Some(default))
            .await?
            .iter()
            .any(|r| {
                r.rule_set_code == edition.code
                    && r.rule_set_version == edition.version
                    && r.equipment == def.equipment
                    && r.frequency != def.frequency
                    && r.alternative_to.is_none()
            });
        if !ok {
            return Err(ApiError::unprocessable(
                "invalid_alternative",
                format!(
                    "alternative_to: {default} is not a routine for {} at another frequency in \
                     the edition {} {}",
                    def.equipment, edition.code, edition.version
                ),
            ));
        }
    }
    def.rule_set = Some(edition);
    let superseded = state
        .store
        .latest_rule(user.org_id, &def.code)
        .await
        .ok()
        .map(|r| r.version);
    let rec = state
        .store
        .create_rule(&NewRule {
            org_id: Some(user.org_id),
            def: &def,
            version,
            created_by: Some(user.user_id),
        })
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => ApiError::conflict(
                "rule_version_exists",
                format!(
                    "{} version {} already exists; versions are immutable, publish a new version",
                    def.code, def.version
                ),
            ),
            other => other.into(),
        })?;
    state
        .audit(
            &user,
            "rule.create",
            Some(Target::new("rule", format!("{}@{}", rec.code, rec.version))),
            json!({
                "code": rec.code,
                "version": rec.version,
                "equipment": rec.equipment,
                "frequency": rec.frequency,
                "latest_before": superseded,
                "new": RuleView::from(rec.clone()),
            }),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(rec.into())))
}

/// Deactivate one of the organisation's own rule versions (admin). Shipped versions are
/// read-only (403). Deactivation is the only change a version ever gets; it is idempotent.
#[utoipa::path(post, path = "/v1/rules/{code}/versions/{version}/deactivate", tag = "rules", security(("bearer" = [])),
    params(("code" = String, Path), ("version" = String, Path)),
    responses((status = 200, body = RuleView), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn deactivate(
    State(state): State<AppState>,
    user: AuthUser,
    Path((code, version)): Path<(String, String)>,
) -> ApiResult<Json<RuleView>> {
    user.require_admin()?;
    version
        .parse::<Version>()
        .map_err(|m| ApiError::bad_request("invalid_path", format!("version in the path: {m}")))?;
    let before =
        match state
            .store
            .get_rule_version(user.org_id, &code, &version)
            .await?
        {
            rule if rule.org_id.is_none() => return Err(ApiError::forbidden(
                "shipped rules are read-only; publish a new version for your organisation instead",
            )),
            rule => rule,
        };
    let after = state
        .store
        .deactivate_rule(user.org_id, &code, &version)
        .await?;
    state
        .audit(
            &user,
            "rule.deactivate",
            Some(Target::new("rule", format!("{code}@{version}"))),
            json!({
                "code": code,
                "version": version,
                "old": { "active": before.active },
                "new": { "active": after.active },
            }),
        )
        .await?;
    Ok(Json(after.into()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClassifyRequest {
    pub rule_code: String,
    pub observed_condition: String,
    /// Classify under the version of the rule this building is serviced under (the edition it
    /// pins); without it, under the latest active version of the code.
    pub building_id: Option<Uuid>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct ClassifyResponse {
    pub classification: Classification,
    pub rule_code: String,
    pub rule_version: String,
    /// The audit row recording this classification.
    pub audit_id: Uuid,
}

/// Classify an observed condition under the latest active version of a rule, or with
/// `building_id` under the version of the edition that building pins (any role). Every
/// classification is recorded in the audit log.
#[utoipa::path(post, path = "/v1/classify", tag = "rules", security(("bearer" = [])), request_body = ClassifyRequest,
    responses((status = 200, body = ClassifyResponse), (status = 404, body = Problem, description = "code rule_not_found, or the building is not the organisation's"),
              (status = 422, body = Problem, description = "code unknown_condition")))]
async fn classify(
    State(state): State<AppState>,
    user: AuthUser,
    Json(req): Json<ClassifyRequest>,
) -> Result<Json<ClassifyResponse>, HandlerError> {
    let found = match req.building_id {
        Some(building_id) => {
            let building = state.store.get_building(user.org_id, building_id).await?;
            library::building_rule(&*state.store, &building, &req.rule_code).await
        }
        None => state.store.latest_rule(user.org_id, &req.rule_code).await,
    };
    let rule = match found {
        Ok(rule) => rule,
        Err(StoreError::NotFound) => {
            let under = if req.building_id.is_some() {
                " in the editions the building is serviced under"
            } else {
                ""
            };
            return Err(CustomProblem::new(
                StatusCode::NOT_FOUND,
                "rule_not_found",
                format!("no active rule with code '{}'{under}", req.rule_code),
            )
            .into());
        }
        Err(e) => return Err(ApiError::from(e)),
    };
    let view = rule.view();
    let Some((_, classification)) = view.classify(&req.observed_condition) else {
        return Err(ApiError::unprocessable(
            "unknown_condition",
            format!(
                "'{}' is not an observed condition of {} {}; known conditions: {}",
                req.observed_condition,
                rule.code,
                rule.version,
                view.known_conditions().join(", ")
            ),
        ));
    };
    let audit_id = state
        .audit(
            &user,
            "rule.classify",
            Some(Target::new(
                "rule",
                format!("{}@{}", rule.code, rule.version),
            )),
            json!({
                "rule_code": rule.code,
                "rule_version": rule.version,
                "observed_condition": req.observed_condition.trim(),
                "classification": classification,
            }),
        )
        .await
        .map_err(ApiError::from)?;
    Ok(Json(ClassifyResponse {
        classification,
        rule_code: rule.code,
        rule_version: rule.version,
        audit_id,
    }))
}
