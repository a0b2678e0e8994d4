//! `/v1/buildings`: buildings of the caller's organisation, their assets (`assets`) and the
//! CSV asset import (`import`). Admin and office write; every role reads. Another
//! organisation's building answers 404 exactly like a missing one.

mod assets;
mod history;
pub mod import;

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::error::{ApiError, ApiResult, Problem};
use super::extract::{Json, Path, Query};
use super::pagination::{PageQuery, Paginated};
use super::users::normalise_email;
use crate::audit::Target;
use crate::auth::AuthUser;
use crate::domain::holidays::AuState;
use crate::state::AppState;
use crate::store::buildings::{BuildingFilter, BuildingPatch, BuildingRecord, StoredContact};
use crate::store::{Role, StoreError};

/// Roles that may change buildings and assets.
pub(crate) const WRITERS: &[Role] = &[Role::Admin, Role::Office];

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(get, update, delete))
        .merge(assets::router())
        .merge(import::router())
        .merge(history::router())
}

/// The rule set a building is serviced under (e.g. AS1851 2012.1.0).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleSetRef {
    pub code: String,
    pub version: String,
}

/// The building's responsible person or site contact. Name and phone are encrypted at rest.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Contact {
    pub name: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct BuildingView {
    pub id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    pub address: String,
    pub building_type: String,
    pub contact: Option<Contact>,
    pub rule_set: RuleSetRef,
    /// Australian state or territory: its public holidays are not working days for the
    /// schedule's tolerance windows.
    pub state: Option<AuState>,
    /// The date its routines are anchored on (commissioning or a contract's start), unless an
    /// asset has its own.
    pub schedule_anchor: Option<NaiveDate>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl AppState {
    pub fn building_view(&self, b: BuildingRecord) -> BuildingView {
        let contact = (b.contact_name_enc.is_some()
            || b.contact_phone_enc.is_some()
            || b.contact_email.is_some())
        .then(|| Contact {
            name: self.pii.decrypt_opt(b.contact_name_enc.as_deref()),
            phone: self.pii.decrypt_opt(b.contact_phone_enc.as_deref()),
            email: b.contact_email.clone(),
        });
        BuildingView {
            id: b.id,
            org_id: b.org_id,
            name: b.name,
            address: b.address,
            building_type: b.building_type,
            contact,
            rule_set: RuleSetRef {
                code: b.rule_set_code,
                version: b.rule_set_version,
            },
            state: b.state.as_deref().and_then(|s| s.parse().ok()),
            schedule_anchor: b.schedule_anchor,
            created_at: b.created_at,
            updated_at: b.updated_at,
        }
    }
}

/// What an audit row may say about a building: no contact PII, only which parts are set.
fn audit_view(b: &BuildingRecord) -> Value {
    json!({
        "name": b.name,
        "address": b.address,
        "building_type": b.building_type,
        "rule_set": { "code": b.rule_set_code, "version": b.rule_set_version },
        "state": b.state,
        "schedule_anchor": b.schedule_anchor,
        "contact_set": {
            "name": b.contact_name_enc.is_some(),
            "phone": b.contact_phone_enc.is_some(),
            "email": b.contact_email.is_some(),
        },
    })
}

/// A schedule anchor from 1900 to a year from now (a contract may start soon), or 422.
fn check_anchor(d: Option<NaiveDate>) -> Result<Option<NaiveDate>, ApiError> {
    let Some(d) = d else { return Ok(None) };
    let latest = Utc::now().date_naive() + chrono::Days::new(366);
    if d.year() < 1900 || d > latest {
        return Err(ApiError::unprocessable(
            "invalid_field",
            format!("schedule_anchor {d} must be between 1900-01-01 and {latest}"),
        ));
    }
    Ok(Some(d))
}

/// A trimmed, non-empty text of at most `max` characters, or 422 `invalid_field`.
pub(crate) fn text_field(field: &str, value: &str, max: usize) -> Result<String, ApiError> {
    let v = value.trim();
    if v.is_empty() || v.chars().count() > max {
        return Err(ApiError::unprocessable(
            "invalid_field",
            format!("{field} must be 1-{max} characters"),
        ));
    }
    Ok(v.to_owned())
}

/// Validate and seal a contact. `None` fields stay unset; at least one must be given.
fn seal_contact(state: &AppState, c: &Contact) -> Result<StoredContact, ApiError> {
    let name = c
        .name
        .as_deref()
        .map(|v| text_field("contact.name", v, 200))
        .transpose()?;
    let phone = c
        .phone
        .as_deref()
        .map(|v| text_field("contact.phone", v, 50))
        .transpose()?;
    if let Some(p) = &phone {
        if !p
            .chars()
            .all(|ch| ch.is_ascii_digit() || " +-().".contains(ch))
            || !p.chars().any(|ch| ch.is_ascii_digit())
        {
            return Err(ApiError::unprocessable(
                "invalid_field",
                "contact.phone may hold digits, spaces and + - ( ) . only",
            ));
        }
    }
    let email = c.email.as_deref().map(normalise_email).transpose()?;
    if name.is_none() && phone.is_none() && email.is_none() {
        return Err(ApiError::unprocessable(
            "invalid_field",
            "contact needs at least one of name, phone or email (use null for no contact)",
        ));
    }
    Ok(StoredContact {
        name_enc: state.pii.encrypt_opt(name.as_deref()),
        phone_enc: state.pii.encrypt_opt(phone.as_deref()),
        email,
    })
}

/// 422 `unknown_rule_set` unless the rule set exists.
async fn check_rule_set(state: &AppState, rs: &RuleSetRef) -> Result<(), ApiError> {
    if state.store.rule_set_exists(&rs.code, &rs.version).await? {
        return Ok(());
    }
    let known: Vec<String> = state
        .store
        .list_rule_sets()
        .await?
        .into_iter()
        .map(|s| format!("{} {}", s.code, s.version))
        .collect();
    Err(ApiError::unprocessable(
        "unknown_rule_set",
        format!(
            "rule set {} {} does not exist; known rule sets: {}",
            rs.code,
            rs.version,
            known.join(", ")
        ),
    ))
}

/// A building in the caller's organisation, or 404 (also for other organisations' ids).
pub(crate) async fn building_of(
    state: &AppState,
    user: &AuthUser,
    id: Uuid,
) -> Result<BuildingRecord, ApiError> {
    Ok(state.store.get_building(user.org_id, id).await?)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBuilding {
    pub name: String,
    pub address: String,
    /// Free text, e.g. the NCC class: `Class 5 office`.
    pub building_type: String,
    pub contact: Option<Contact>,
    /// Defaults to the shipped library's rule set (AS1851 2012.1.0).
    pub rule_set: Option<RuleSetRef>,
    /// Australian state or territory (public holidays of the schedule).
    pub state: Option<AuState>,
    /// `YYYY-MM-DD`: anchors the routines of its assets that have no anchor of their own.
    pub schedule_anchor: Option<NaiveDate>,
}

/// Create a building (admin, office).
#[utoipa::path(post, path = "/v1/buildings", tag = "buildings", security(("bearer" = [])), request_body = CreateBuilding,
    responses((status = 201, body = BuildingView), (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    Json(req): Json<CreateBuilding>,
) -> ApiResult<(StatusCode, Json<BuildingView>)> {
    user.require(WRITERS)?;
    let name = text_field("name", &req.name, 200)?;
    let address = text_field("address", &req.address, 500)?;
    let building_type = text_field("building_type", &req.building_type, 100)?;
    let contact = match &req.contact {
        Some(c) => seal_contact(&state, c)?,
        None => StoredContact::default(),
    };
    let rule_set = req.rule_set.unwrap_or_else(|| {
        let (code, version) = crate::rules::default_rule_set();
        RuleSetRef {
            code: code.to_owned(),
            version: version.to_owned(),
        }
    });
    check_rule_set(&state, &rule_set).await?;
    let now = Utc::now();
    let rec = BuildingRecord {
        id: Uuid::now_v7(),
        org_id: user.org_id,
        name,
        address,
        building_type,
        contact_name_enc: contact.name_enc,
        contact_phone_enc: contact.phone_enc,
        contact_email: contact.email,
        rule_set_code: rule_set.code,
        rule_set_version: rule_set.version,
        created_at: now,
        updated_at: now,
        state: req.state.map(|s| s.as_str().to_owned()),
        schedule_anchor: check_anchor(req.schedule_anchor)?,
    };
    state.store.create_building(&rec).await?;
    state
        .audit(
            &user,
            "building.create",
            Some(Target::new("building", rec.id)),
            json!({ "new": audit_view(&rec) }),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(state.building_view(rec))))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct BuildingQuery {
    /// Only buildings of exactly this type.
    pub building_type: Option<String>,
    /// Case-insensitive text to find in the name or address (at most 500 characters, the
    /// longest address).
    pub q: Option<String>,
    /// At most this many items (1-500, default 50).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Buildings of the caller's organisation, oldest first.
#[utoipa::path(get, path = "/v1/buildings", tag = "buildings", security(("bearer" = [])), params(BuildingQuery),
    responses((status = 200, body = Paginated<BuildingView>), (status = 400, body = Problem)))]
async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    Query(q): Query<BuildingQuery>,
) -> ApiResult<Json<Paginated<BuildingView>>> {
    let page = PageQuery {
        limit: q.limit,
        cursor: q.cursor,
    }
    .page()?;
    // Nothing longer can match, and SQLite refuses LIKE patterns over 50,000 bytes (a 500).
    for (name, v) in [("q", &q.q), ("building_type", &q.building_type)] {
        if v.as_ref().is_some_and(|v| v.chars().count() > 500) {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!("query parameter `{name}` is longer than 500 characters"),
            ));
        }
    }
    let filter = BuildingFilter {
        building_type: q.building_type.filter(|t| !t.trim().is_empty()),
        search: q.q.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()),
    };
    let rows = state
        .store
        .list_buildings(user.org_id, &filter, page)
        .await?;
    Ok(Json(Paginated::from_rows(
        rows,
        page,
        |b| b.id,
        |b| state.building_view(b),
    )))
}

/// One building.
#[utoipa::path(get, path = "/v1/buildings/{id}", tag = "buildings", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = BuildingView), (status = 404, body = Problem)))]
async fn get(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<BuildingView>> {
    let b = building_of(&state, &user, id).await?;
    Ok(Json(state.building_view(b)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateBuilding {
    pub name: Option<String>,
    pub address: Option<String>,
    pub building_type: Option<String>,
    /// Replaces the whole contact; `null` removes it.
    #[serde(default, deserialize_with = "super::extract::double_option")]
    #[schema(value_type = Option<Contact>)]
    pub contact: Option<Option<Contact>>,
    pub rule_set: Option<RuleSetRef>,
    /// `null` removes it.
    #[serde(default, deserialize_with = "super::extract::double_option")]
    #[schema(value_type = Option<AuState>)]
    pub state: Option<Option<AuState>>,
    /// `YYYY-MM-DD`; `null` removes it.
    #[serde(default, deserialize_with = "super::extract::double_option")]
    #[schema(value_type = Option<NaiveDate>)]
    pub schedule_anchor: Option<Option<NaiveDate>>,
}

/// Change a building (admin, office). Absent fields stay as they are.
#[utoipa::path(patch, path = "/v1/buildings/{id}", tag = "buildings", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = UpdateBuilding,
    responses((status = 200, body = BuildingView), (status = 403, body = Problem), (status = 404, body = Problem),
              (status = 422, body = Problem)))]
async fn update(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Json(req): Json<UpdateBuilding>,
) -> ApiResult<Json<BuildingView>> {
    user.require(WRITERS)?;
    let before = building_of(&state, &user, id).await?;
    let patch = BuildingPatch {
        name: req
            .name
            .as_deref()
            .map(|v| text_field("name", v, 200))
            .transpose()?,
        address: req
            .address
            .as_deref()
            .map(|v| text_field("address", v, 500))
            .transpose()?,
        building_type: req
            .building_type
            .as_deref()
            .map(|v| text_field("building_type", v, 100))
            .transpose()?,
        contact: match &req.contact {
            None => None,
            Some(None) => Some(StoredContact::default()),
            Some(Some(c)) => Some(seal_contact(&state, c)?),
        },
        rule_set: match req.rule_set {
            Some(rs) => {
                check_rule_set(&state, &rs).await?;
                Some((rs.code, rs.version))
            }
            None => None,
        },
        state: req.state.map(|s| s.map(|s| s.as_str().to_owned())),
        schedule_anchor: match req.schedule_anchor {
            Some(d) => Some(check_anchor(d)?),
            None => None,
        },
    };
    let after = state.store.update_building(user.org_id, id, &patch).await?;
    state
        .audit(
            &user,
            "building.update",
            Some(Target::new("building", id)),
            json!({
                "old": audit_view(&before),
                "new": audit_view(&after),
                "contact_changed": patch.contact.is_some(),
            }),
        )
        .await?;
    Ok(Json(state.building_view(after)))
}

/// Delete a building and its assets (admin, office). Refused with 409 `building_has_sessions`
/// while test sessions refer to it: inspection records are kept.
#[utoipa::path(delete, path = "/v1/buildings/{id}", tag = "buildings", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn delete(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    user.require(WRITERS)?;
    let (gone, assets) = state
        .store
        .delete_building(user.org_id, id)
        .await
        .map_err(|e| match e {
            StoreError::Conflict("sessions") => ApiError::conflict(
                "building_has_sessions",
                "this building has test sessions; its records must be kept, so it cannot be deleted",
            ),
            other => other.into(),
        })?;
    state
        .audit(
            &user,
            "building.delete",
            Some(Target::new("building", id)),
            json!({ "old": audit_view(&gone), "assets_deleted": assets }),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
