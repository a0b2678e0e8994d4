//! `/v1/buildings`: buildings of the caller's organisation, their assets (`assets`) and the
//! CSV asset import (`import`). Admin and office write; every role reads. Another
//! organisation's building answers 404 exactly like a missing one.

mod assets;
mod history;
pub mod import;

use std::collections::HashMap;

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

/// An edition a building is serviced under (e.g. AS1851 2012.1.0).
pub use crate::rules::RuleSetRef;

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
    /// The building's AS 1851 edition.
    pub rule_set: RuleSetRef,
    /// Australian state or territory: its public holidays are not working days for the
    /// schedule's tolerance windows.
    pub state: Option<AuState>,
    /// The date its routines are anchored on (commissioning or a contract's start), unless an
    /// asset has its own.
    pub schedule_anchor: Option<NaiveDate>,
    /// Every edition the building is pinned to, one per standard (its AS 1851 edition
    /// included), by standard code. Its rules come from these editions only.
    pub editions: Vec<RuleSetRef>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Set when the building was deleted while it held records: it is archived (not listed,
    /// no new sessions or assets) and its records are kept until `retain_until`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archived: Option<Archived>,
    /// How the building stands today, at a glance (in `GET /v1/buildings` and
    /// `GET /v1/buildings/{id}`; absent from the answers of changes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<BuildingStatus>,
}

/// A building's standing today: the figures of its compliance report that a list shows.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BuildingStatus {
    /// The compliance report's overall status (`GET /v1/buildings/{id}/compliance`'s
    /// `status`), by precedence `critical_defect` > `overdue` > `defects_open` > `compliant`.
    pub overall: crate::compliance::Status,
    /// Routines (asset and rule) overdue today: the report's `summary.overdue`.
    pub overdue: u32,
    /// Active critical defects of the building (open to verified, with or without an asset).
    pub open_critical_defects: u32,
}

impl BuildingStatus {
    fn new(defects: &crate::compliance::DefectCounts, overdue: u32) -> Self {
        Self {
            overall: crate::compliance::overall_status(defects, overdue),
            overdue,
            open_critical_defects: defects.critical,
        }
    }
}

/// The status of each of `buildings` (of the caller's organisation): overdue routines from
/// the organisation's cached schedule inputs (`schedule_cache`: loaded once per version, not
/// per building), active defects from one grouped query.
async fn statuses(
    state: &AppState,
    org_id: Uuid,
    buildings: &[Uuid],
) -> ApiResult<HashMap<Uuid, BuildingStatus>> {
    use crate::compliance::DefectCounts;
    if buildings.is_empty() {
        return Ok(HashMap::new());
    }
    let loaded = super::schedule_cache::loaded(state, org_id, None).await?;
    let mut overdue = super::schedule_cache::overdue_by_building(loaded).await?;
    // A building created since the organisation's inputs were read (rare): on its own.
    for id in buildings {
        if !overdue.contains_key(id) {
            let one = super::schedule_cache::loaded(state, org_id, Some(*id)).await?;
            overdue.extend(super::schedule_cache::overdue_by_building(one).await?);
        }
    }
    let mut defects: HashMap<Uuid, DefectCounts> = HashMap::new();
    for row in state.store.org_open_defect_counts(org_id).await? {
        defects
            .entry(row.building_id)
            .or_default()
            .add(&row.severity, u32::try_from(row.open).unwrap_or(u32::MAX));
    }
    Ok(buildings
        .iter()
        .map(|id| {
            let d = defects.get(id).copied().unwrap_or_default();
            (
                *id,
                BuildingStatus::new(&d, overdue.get(id).copied().unwrap_or(0)),
            )
        })
        .collect())
}

/// The status of one building (its own cached schedule inputs and defect counts).
async fn status_of(state: &AppState, org_id: Uuid, id: Uuid) -> ApiResult<BuildingStatus> {
    let (loaded, counts) = tokio::try_join!(
        super::schedule_cache::loaded(state, org_id, Some(id)),
        async {
            state
                .store
                .open_defect_counts(org_id, id)
                .await
                .map_err(ApiError::from)
        },
    )?;
    let overdue = super::schedule_cache::overdue_by_building(loaded).await?;
    let mut d = crate::compliance::DefectCounts::default();
    for row in counts {
        d.add(&row.severity, u32::try_from(row.open).unwrap_or(u32::MAX));
    }
    Ok(BuildingStatus::new(
        &d,
        overdue.get(&id).copied().unwrap_or(0),
    ))
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct Archived {
    pub archived_at: DateTime<Utc>,
    pub retain_until: DateTime<Utc>,
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
        let editions = pins_view(&b);
        BuildingView {
            editions,
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
            archived: None,
            status: None,
        }
    }
}

/// A building's pinned editions, one per standard, by standard code.
fn pins_view(b: &BuildingRecord) -> Vec<RuleSetRef> {
    crate::rules::building_pins(b)
        .iter()
        .map(|(code, version)| RuleSetRef::new(code, version))
        .collect()
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
        "editions": pins_view(b),
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

/// A building's editions after a create or update: its AS 1851 edition (`rule_set`) and its
/// pins for the other standards. `rule_set` must be an AS 1851 edition; each entry of
/// `editions` an existing edition, at most one per standard, replacing the pin of its standard
/// (an AS 1851 entry is the same as `rule_set`, and must agree with it when both are given).
async fn resolve_editions(
    state: &AppState,
    primary: RuleSetRef,
    others: &std::collections::BTreeMap<String, String>,
    rule_set: Option<RuleSetRef>,
    editions: Option<Vec<RuleSetRef>>,
) -> Result<(RuleSetRef, std::collections::BTreeMap<String, String>), ApiError> {
    let base = crate::rules::default_rule_set().0;
    let mut primary = primary;
    let mut others = others.clone();
    if let Some(rs) = rule_set.clone() {
        check_rule_set(state, &rs).await?;
        if rs.code != base {
            return Err(ApiError::unprocessable(
                "invalid_rule_set",
                format!("rule_set must be an edition of {base}; pin other standards in editions"),
            ));
        }
        primary = rs;
    }
    if let Some(list) = editions {
        if list.len() > 20 {
            return Err(ApiError::unprocessable(
                "invalid_field",
                "editions holds at most 20 entries",
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for e in list {
            if !seen.insert(e.code.clone()) {
                return Err(ApiError::unprocessable(
                    "invalid_field",
                    format!(
                        "editions: {} appears twice (one edition per standard)",
                        e.code
                    ),
                ));
            }
            check_rule_set(state, &e).await?;
            if e.code == base {
                if rule_set.as_ref().is_some_and(|rs| *rs != e) {
                    return Err(ApiError::unprocessable(
                        "invalid_field",
                        format!("editions: the {base} entry disagrees with rule_set"),
                    ));
                }
                primary = e;
            } else {
                others.insert(e.code, e.version);
            }
        }
    }
    others.remove(&primary.code);
    Ok((primary, others))
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
    /// The AS 1851 edition; defaults to AS1851 2012.1.0.
    pub rule_set: Option<RuleSetRef>,
    /// Australian state or territory (public holidays of the schedule).
    pub state: Option<AuState>,
    /// `YYYY-MM-DD`: anchors the routines of its assets that have no anchor of their own.
    pub schedule_anchor: Option<NaiveDate>,
    /// Editions to pin, one per standard (e.g. `{"code": "AS2293.2", "version":
    /// "1995.1.0"}`); a standard left out gets its default edition (AS 1851-2012,
    /// AS/NZS 2293.2:2019).
    pub editions: Option<Vec<RuleSetRef>>,
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
    let (code, version) = crate::rules::default_rule_set();
    let mut defaults = crate::rules::library().default_editions();
    defaults.remove(code);
    let (rule_set, editions) = resolve_editions(
        &state,
        RuleSetRef::new(code, version),
        &defaults,
        req.rule_set,
        req.editions,
    )
    .await?;
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
        editions: sqlx::types::Json(editions),
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
    let ids: Vec<Uuid> = rows.iter().map(|b| b.id).collect();
    let mut statuses = statuses(&state, user.org_id, &ids).await?;
    Ok(Json(Paginated::from_rows(
        rows,
        page,
        |b| b.id,
        |b| BuildingView {
            status: statuses.remove(&b.id),
            ..state.building_view(b)
        },
    )))
}

/// One building (also an archived one, with `archived` set).
#[utoipa::path(get, path = "/v1/buildings/{id}", tag = "buildings", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = BuildingView), (status = 404, body = Problem)))]
async fn get(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<BuildingView>> {
    let b = building_of(&state, &user, id).await?;
    let archived = state
        .store
        .building_archive(user.org_id, id)
        .await?
        .map(|a| Archived {
            archived_at: a.archived_at,
            retain_until: a.retain_until,
        });
    let status = status_of(&state, user.org_id, id).await?;
    Ok(Json(BuildingView {
        archived,
        status: Some(status),
        ..state.building_view(b)
    }))
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
    /// The AS 1851 edition (admin only when it changes).
    pub rule_set: Option<RuleSetRef>,
    /// `null` removes it.
    #[serde(default, deserialize_with = "super::extract::double_option")]
    #[schema(value_type = Option<AuState>)]
    pub state: Option<Option<AuState>>,
    /// `YYYY-MM-DD`; `null` removes it.
    #[serde(default, deserialize_with = "super::extract::double_option")]
    #[schema(value_type = Option<NaiveDate>)]
    pub schedule_anchor: Option<Option<NaiveDate>>,
    /// Editions to pin, one per standard; each replaces the pin of its standard, others stay
    /// (admin only when a pin changes).
    pub editions: Option<Vec<RuleSetRef>>,
}

/// Change a building (admin, office). Absent fields stay as they are. Changing the editions a
/// building is pinned to (`rule_set`, `editions`) is for admins, and audited with the old and
/// new pins.
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
    let mut patch = BuildingPatch {
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
        rule_set: None,
        editions: None,
        state: req.state.map(|s| s.map(|s| s.as_str().to_owned())),
        schedule_anchor: match req.schedule_anchor {
            Some(d) => Some(check_anchor(d)?),
            None => None,
        },
    };
    if req.rule_set.is_some() || req.editions.is_some() {
        let (primary, others) = resolve_editions(
            &state,
            RuleSetRef::new(&before.rule_set_code, &before.rule_set_version),
            &before.editions.0,
            req.rule_set,
            req.editions,
        )
        .await?;
        let changed = primary.code != before.rule_set_code
            || primary.version != before.rule_set_version
            || others != before.editions.0;
        if changed {
            user.require_admin()?;
        }
        patch.rule_set = Some((primary.code, primary.version));
        patch.editions = Some(others);
    }
    let after = state.store.update_building(user.org_id, id, &patch).await?;
    let pins_changed = crate::rules::building_pins(&before) != crate::rules::building_pins(&after);
    let dropped = if pins_changed {
        drop_stale_alternatives(&state, &after).await?
    } else {
        Vec::new()
    };
    state
        .audit(
            &user,
            "building.update",
            Some(Target::new("building", id)),
            json!({
                "old": audit_view(&before),
                "new": audit_view(&after),
                "contact_changed": patch.contact.is_some(),
                "alternatives_dropped": dropped,
            }),
        )
        .await?;
    Ok(Json(state.building_view(after)))
}

/// After a pin change: drop each asset's routine alternatives that the building's editions no
/// longer have as alternatives, so the routine they replaced applies again (a choice must never
/// leave an asset with neither). Returns the assets and codes dropped.
async fn drop_stale_alternatives(
    state: &AppState,
    building: &BuildingRecord,
) -> Result<Vec<Value>, ApiError> {
    let rules = crate::rules::building_rules(state.store.as_ref(), building, None).await?;
    let is_alternative = |code: &str| {
        rules
            .iter()
            .any(|r| r.code == code && r.alternative_to.is_some())
    };
    let mut dropped = Vec::new();
    for asset in state
        .store
        .building_assets(building.org_id, building.id)
        .await?
    {
        let chosen = &asset.rule_alternatives.0;
        let kept: std::collections::BTreeMap<String, String> = chosen
            .iter()
            .filter(|(_, alt)| is_alternative(alt))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if kept.len() == chosen.len() {
            continue;
        }
        let gone: Vec<&String> = chosen
            .values()
            .filter(|v| !kept.values().any(|k| k == *v))
            .collect();
        dropped.push(json!({ "asset_id": asset.id, "alternatives": gone }));
        let patch = crate::store::buildings::AssetPatch {
            rule_alternatives: Some(kept),
            ..Default::default()
        };
        state
            .store
            .update_asset(building.org_id, building.id, asset.id, &patch)
            .await?;
    }
    Ok(dropped)
}

/// Delete a building (admin, office). A building that holds no records (no test session, no
/// defect) is deleted with its assets. One that holds records is archived instead: it leaves
/// the building lists and takes no new sessions or assets, and its records stay readable
/// through the records routes (`/v1/buildings/{id}/logbook`, ...) for seven years. Deleting an
/// archived building answers 409 `records_retained`.
#[utoipa::path(delete, path = "/v1/buildings/{id}", tag = "buildings", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 204, description = "deleted, or archived when it holds records"),
              (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn delete(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    user.require(WRITERS)?;
    let building = building_of(&state, &user, id).await?;
    if let Some(a) = state.store.building_archive(user.org_id, id).await? {
        return Err(retained(a.retain_until));
    }
    let now = Utc::now();
    let archive = |state: AppState, user: AuthUser| async move {
        let until = now
            .checked_add_months(chrono::Months::new(12 * crate::records::RETENTION_YEARS))
            .unwrap_or(now);
        let a = state
            .store
            .archive_building(user.org_id, id, user.user_id, now, until)
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => retained(until),
                other => other.into(),
            })?;
        state
            .audit(
                &user,
                "building.archive",
                Some(Target::new("building", id)),
                json!({ "old": audit_view(&building), "retain_until": a.retain_until }),
            )
            .await?;
        Ok::<_, ApiError>(StatusCode::NO_CONTENT)
    };
    if state.store.building_records(user.org_id, id).await? > 0 {
        return archive(state, user).await;
    }
    let deleted = state.store.delete_building(user.org_id, id).await;
    let (gone, assets) = match deleted {
        Ok(done) => done,
        // A session registered (or a defect raised) since the count: it holds records now.
        Err(StoreError::Conflict("sessions")) => return archive(state, user).await,
        Err(e) => return Err(e.into()),
    };
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

/// 409 `records_retained`: an archived building's records are kept until `until`.
fn retained(until: DateTime<Utc>) -> ApiError {
    ApiError::conflict(
        "records_retained",
        format!(
            "this building is archived and holds records that are kept for {} years, until {}; it cannot be deleted",
            crate::records::RETENTION_YEARS,
            until.date_naive()
        ),
    )
}
