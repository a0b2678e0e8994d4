//! `/v1/tests/sessions`: the session registry. Each session is an automerge document (schema 1,
//! see docs/protocol.md) that the server creates and tablets edit; its id is the document id.

use std::collections::BTreeSet;

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, SubsecRound, Utc};
use firemode_sync_core::{DocumentId, ItemInit, SessionInit, SignOff};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::error::{ApiError, ApiResult, Problem};
use super::extract::{Json, Path, Query};
use super::pagination::{PageQuery, Paginated};
use crate::audit::Target;
use crate::auth::AuthUser;
use crate::domain::access::{self, ReadOnlyReason, SessionAccess};
use crate::domain::applicability;
use crate::hub::{HubError, Origin};
use crate::state::AppState;
use crate::store::buildings::BuildingRecord;
use crate::store::rules::RuleRecord;
use crate::store::sessions::{
    InitialProjection, ItemRow, NewChange, SessionFilter, SessionPatch, SessionRecord, SessionRow,
    SignOffRow,
};
use crate::store::{Role, StoreError};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(get, update))
        .merge(super::session_doc::router())
        .merge(super::session_history::router())
        .merge(super::session_diff::router())
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct SessionView {
    pub id: Uuid,
    /// The automerge document id (bs58check of the session UUID).
    pub document_id: String,
    /// `automerge:<document_id>`, what an automerge-repo client passes to `repo.find()`.
    pub document_url: String,
    pub building_id: Uuid,
    pub name: String,
    pub frequency: String,
    pub status: String,
    pub rule_set: RuleSetRef,
    pub assigned_to: Vec<Uuid>,
    /// Who signed the completed session off, with their licence number and the time.
    pub signed_off: Option<SignOffView>,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct SignOffView {
    pub user_id: Uuid,
    /// Licence or accreditation number.
    pub licence: String,
    pub at: DateTime<Utc>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct RuleSetRef {
    pub code: String,
    pub version: String,
}

impl From<SessionRecord> for SessionView {
    fn from(s: SessionRecord) -> Self {
        let doc = DocumentId::from_uuid(s.row.id);
        Self {
            id: s.row.id,
            document_id: doc.to_string(),
            document_url: doc.url(),
            building_id: s.row.building_id,
            name: s.row.name,
            frequency: s.row.frequency,
            status: s.row.status,
            rule_set: RuleSetRef {
                code: s.row.rule_set_code,
                version: s.row.rule_set_version,
            },
            assigned_to: s.assigned_to,
            signed_off: match (
                s.row.signed_off_by,
                s.row.signed_off_licence,
                s.row.signed_off_at,
            ) {
                (Some(user_id), Some(licence), Some(at)) => Some(SignOffView {
                    user_id,
                    licence,
                    at,
                }),
                _ => None,
            },
            created_by: s.row.created_by,
            created_at: s.row.created_at,
            updated_at: s.row.updated_at,
        }
    }
}

/// Load a session the caller may see (`crate::domain::access`): other organisations'
/// sessions, and sessions not assigned to an inspector caller, are 404 exactly like missing
/// ones — here, for evidence, defects and the sync hub alike.
pub async fn visible_session(
    state: &AppState,
    user: &AuthUser,
    id: Uuid,
) -> ApiResult<SessionRecord> {
    let s = state.store.get_session(user.org_id, id).await?;
    if access::session_access(&user.caller(), &s.facts()) == SessionAccess::None {
        return Err(ApiError::NotFound);
    }
    Ok(s)
}

/// The caller may change this session's content (results, status): 403 for a role that only
/// reads, 409 for a completed session.
pub fn require_writer(user: &AuthUser, s: &SessionRecord) -> ApiResult<()> {
    match access::read_only_reason(&user.caller(), &s.facts()) {
        None => Ok(()),
        Some(ReadOnlyReason::Role) => Err(ApiError::forbidden("this session is read-only for you")),
        Some(ReadOnlyReason::Completed) => Err(completed()),
    }
}

/// The answer to a change of a completed session.
fn completed() -> ApiError {
    ApiError::conflict(
        "session_completed",
        "the session is completed (signed off) and read-only; an admin can reopen it with a reason",
    )
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    pub building_id: Uuid,
    pub name: String,
    /// A frequency code of the rule library, e.g. `six_monthly`.
    pub frequency: String,
    #[serde(default)]
    pub assigned_to: Vec<Uuid>,
    /// Register a document a tablet created offline (bs58check id, `automerge:` URL or UUID).
    /// The server then creates no content.
    pub document_id: Option<String>,
}

/// Create a session (and its document), or register one a tablet created offline.
#[utoipa::path(post, path = "/v1/tests/sessions", tag = "sessions", security(("bearer" = [])),
    request_body = CreateSession,
    responses((status = 201, body = SessionView), (status = 403, body = Problem), (status = 404, body = Problem),
              (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    Json(req): Json<CreateSession>,
) -> ApiResult<(StatusCode, Json<SessionView>)> {
    // Inspectors may only register sessions they created on a tablet; they are assigned.
    let mut assigned: BTreeSet<Uuid> = req.assigned_to.iter().copied().collect();
    match user.role {
        Role::Admin | Role::Office => {}
        Role::Inspector if req.document_id.is_some() => {
            assigned.insert(user.user_id);
        }
        _ => {
            return Err(ApiError::forbidden(
                "creating sessions needs the role admin or office",
            ))
        }
    }
    let name = req.name.trim();
    if name.is_empty() || name.len() > 200 {
        return Err(ApiError::unprocessable(
            "invalid_field",
            "name must be 1-200 characters",
        ));
    }
    if crate::rules::library()
        .any_frequency(&req.frequency)
        .is_none()
    {
        return Err(ApiError::unprocessable(
            "unknown_frequency",
            format!(
                "unknown frequency '{}'; known: {}",
                req.frequency,
                crate::rules::library().frequency_codes().join(", ")
            ),
        ));
    }
    let building = state
        .store
        .get_building(user.org_id, req.building_id)
        .await?;
    check_assignees(&state, &user, &assigned).await?;
    let (id, initial) = match &req.document_id {
        Some(raw) => {
            let doc: DocumentId = raw.parse().map_err(|e| {
                ApiError::unprocessable("invalid_document_id", format!("document_id: {e}"))
            })?;
            (doc.as_uuid(), InitialDocument::default())
        }
        None => {
            let (items, rules) = session_items(&state, &user, &building, &req.frequency).await?;
            let (id, mut initial) =
                new_document(&state, &user, &building, name, &req.frequency, items)?;
            initial.rules = Some(rules);
            (id, initial)
        }
    };
    let view = store_session(
        &state,
        &user,
        &building,
        NewSession {
            id,
            name,
            frequency: &req.frequency,
            assigned: assigned.into_iter().collect(),
            initial,
        },
        json!({ "registered_offline_document": req.document_id.is_some() }),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// 422 `unknown_user` unless every user is active in the caller's organisation.
pub(crate) async fn check_assignees(
    state: &AppState,
    user: &AuthUser,
    assigned: &BTreeSet<Uuid>,
) -> ApiResult<()> {
    for u in assigned {
        match state.store.get_user(*u).await {
            Ok(rec) if rec.org_id == user.org_id && rec.active => {}
            Ok(_) | Err(StoreError::NotFound) => {
                return Err(ApiError::unprocessable(
                    "unknown_user",
                    format!("no active user {u} in your organisation"),
                ))
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// A new session's first document: the change rows to store, and the document they make
/// (none for a document a tablet created offline, whose changes the tablet sends).
#[derive(Default)]
pub(crate) struct InitialDocument {
    pub changes: Vec<NewChange>,
    pub doc: Option<automerge::Automerge>,
    /// The building's rules (`crate::rules::building_rules` without a frequency), when the
    /// caller has read them already.
    pub rules: Option<Vec<RuleRecord>>,
}

/// A new session document with these items, as the change rows to store.
pub(crate) fn new_document(
    state: &AppState,
    user: &AuthUser,
    building: &BuildingRecord,
    name: &str,
    frequency: &str,
    items: Vec<ItemInit>,
) -> ApiResult<(Uuid, InitialDocument)> {
    let id = Uuid::new_v4();
    let init = SessionInit {
        session_id: id,
        building_id: building.id,
        org_id: user.org_id,
        rule_set_code: building.rule_set_code.clone(),
        rule_set_version: building.rule_set_version.clone(),
        frequency: frequency.to_owned(),
        name: name.to_owned(),
        items,
    };
    let actor = state.hub.actor();
    let doc = firemode_sync_core::create_session_document(&init, actor, Utc::now().timestamp())
        .map_err(|e| ApiError::Internal(e.into()))?;
    let changes = doc
        .get_changes(&[])
        .into_iter()
        .map(|c| NewChange {
            node: 0,
            session_id: id,
            hash: c.hash().0.to_vec(),
            bytes: c.raw_bytes().to_vec(),
            actor_id: c.actor_id().to_hex_string(),
            user_id: Some(user.user_id),
            device_id: Some("server".into()),
            connection_id: super::error::current_request_id(),
        })
        .collect();
    Ok((
        id,
        InitialDocument {
            changes,
            doc: Some(doc),
            rules: None,
        },
    ))
}

/// A session about to be stored.
pub(crate) struct NewSession<'a> {
    pub id: Uuid,
    pub name: &'a str,
    pub frequency: &'a str,
    pub assigned: Vec<Uuid>,
    /// The document's first changes (none for a document a tablet created offline).
    pub initial: InitialDocument,
}

/// Store a session with its assignees and first changes, project it, and audit it
/// (`session.create` with `audit_extra` merged in).
///
/// The projection of a document the server just built is made here, from the document in
/// hand, and stored in the session's own transaction (the session is readable with its items
/// the moment it exists, on every node); the document is not loaded into the sync hub, which
/// loads it when a tablet opens it.
pub(crate) async fn store_session(
    state: &AppState,
    user: &AuthUser,
    building: &BuildingRecord,
    new: NewSession<'_>,
    audit_extra: serde_json::Value,
) -> ApiResult<SessionView> {
    // An archived building takes no new sessions (whichever route makes them).
    super::records::ensure_open(state, user.org_id, building.id).await?;
    // What the database keeps (PostgreSQL: microseconds), so the answer equals a later read.
    let now = Utc::now().trunc_subsecs(6);
    let id = new.id;
    let row = SessionRow {
        id,
        org_id: user.org_id,
        building_id: building.id,
        name: new.name.to_owned(),
        frequency: new.frequency.to_owned(),
        status: "in_progress".into(),
        rule_set_code: building.rule_set_code.clone(),
        rule_set_version: building.rule_set_version.clone(),
        created_by: user.user_id,
        created_at: now,
        updated_at: now,
        signed_off_by: None,
        signed_off_licence: None,
        signed_off_at: None,
    };
    let projected = match &new.initial.doc {
        Some(doc) => {
            initial_projection(state, building, &row, doc, new.initial.rules.as_deref()).await?
        }
        None => None,
    };
    state
        .store
        .create_projected_session(
            &row,
            &new.assigned,
            &new.initial.changes,
            projected
                .as_ref()
                .map(|(rows, heads, problems)| InitialProjection {
                    rows,
                    heads,
                    problems,
                }),
        )
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => ApiError::conflict(
                "already_exists",
                "a session with this document id already exists",
            ),
            other => other.into(),
        })?;
    if projected.is_none() && !new.initial.changes.is_empty() {
        // Project the fresh document so REST reads see its items at once.
        let _ = state.hub.project_now(id).await;
    }
    let mut details = json!({ "building_id": building.id, "frequency": new.frequency,
                              "assigned_to": new.assigned });
    if let (Some(d), serde_json::Value::Object(extra)) = (details.as_object_mut(), audit_extra) {
        d.extend(extra);
    }
    state
        .audit(
            user,
            "session.create",
            Some(Target::new("session", id)),
            details,
        )
        .await?;
    // As the registry now holds it (assignees in the order a read lists them).
    let mut assigned_to = new.assigned;
    assigned_to.sort();
    assigned_to.dedup();
    Ok(SessionRecord { row, assigned_to }.into())
}

/// The projection of a document the server just built (rows, heads, problems), as the
/// projection writer would write it (`crate::projection::rows`); None when it needs more than
/// the rules — an item with readings is compared with the asset's reference values, an item
/// with findings raises defects — which a fresh document never has: then the hub projects it.
async fn initial_projection(
    state: &AppState,
    building: &BuildingRecord,
    session: &SessionRow,
    doc: &automerge::Automerge,
    building_rules: Option<&[RuleRecord]>,
) -> ApiResult<Option<(Vec<ItemRow>, String, serde_json::Value)>> {
    let projection = firemode_sync_core::project(doc);
    if projection.items.iter().any(|i| !i.readings.is_empty()) {
        return Ok(None);
    }
    let codes = projection
        .items
        .iter()
        .filter_map(|i| i.rule_code.as_deref());
    let rules = match building_rules {
        Some(known) => {
            crate::projection::item_rules_from(state.store.as_ref(), building, known, codes).await
        }
        None => crate::projection::item_rules(state.store.as_ref(), building, codes).await,
    }
    .map_err(ApiError::Internal)?;
    let rows = crate::projection::rows(session, &projection, &rules, |_, _, _| None);
    if rows.assessments.values().any(|a| !a.findings.is_empty()) {
        return Ok(None);
    }
    let heads = firemode_sync_core::encode_heads(&doc.get_heads());
    Ok(Some((rows.all, heads, rows.problems)))
}

/// One item per asset of the building that has a rule at this frequency
/// (`crate::domain::applicability`), and the building's rules at any frequency (which the
/// items are assessed with). One read of the rules serves both: `building_rules` at a
/// frequency is the same selection over the same candidates, those of that frequency.
async fn session_items(
    state: &AppState,
    user: &AuthUser,
    building: &BuildingRecord,
    frequency: &str,
) -> ApiResult<(Vec<ItemInit>, Vec<RuleRecord>)> {
    let assets = state
        .store
        .building_assets(user.org_id, building.id)
        .await?;
    let candidates = state
        .store
        .edition_rules(building.org_id, None, None)
        .await?;
    let at_frequency: Vec<RuleRecord> = candidates
        .iter()
        .filter(|r| r.frequency == frequency)
        .cloned()
        .collect();
    let rules = crate::rules::for_building(building, &at_frequency);
    let items = assets
        .iter()
        .filter_map(|a| {
            let rule =
                applicability::session_rule(&a.facts(), frequency, &rules, RuleRecord::facts)?;
            Some(ItemInit {
                asset_id: a.id,
                rule_code: rule.code.clone(),
            })
        })
        .collect();
    Ok((items, crate::rules::for_building(building, &candidates)))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub building_id: Option<Uuid>,
    /// `in_progress` or `completed`.
    pub status: Option<String>,
    /// `me`, or a user id.
    pub assigned_to: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// Sessions of the caller's organisation (inspectors: only those assigned to them).
#[utoipa::path(get, path = "/v1/tests/sessions", tag = "sessions", security(("bearer" = [])), params(ListQuery),
    responses((status = 200, body = Paginated<SessionView>), (status = 400, body = Problem)))]
async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Paginated<SessionView>>> {
    let page = PageQuery {
        limit: q.limit,
        cursor: q.cursor,
    }
    .page()?;
    let mut assigned_to = match q.assigned_to.as_deref() {
        None => None,
        Some("me") => Some(user.user_id),
        Some(other) => Some(other.parse().map_err(|_| {
            ApiError::bad_request("invalid_query", "assigned_to must be 'me' or a user id")
        })?),
    };
    if user.role == Role::Inspector {
        if assigned_to.is_some_and(|a| a != user.user_id) {
            return Ok(Json(Paginated {
                items: Vec::new(),
                next_cursor: None,
            }));
        }
        assigned_to = Some(user.user_id);
    }
    if let Some(s) = &q.status {
        if s != "in_progress" && s != "completed" {
            return Err(ApiError::bad_request(
                "invalid_query",
                "status must be in_progress or completed",
            ));
        }
    }
    let filter = SessionFilter {
        building_id: q.building_id,
        status: q.status.clone(),
        assigned_to,
    };
    let rows = state
        .store
        .list_sessions(user.org_id, &filter, page)
        .await?;
    Ok(Json(Paginated::from_rows(
        rows,
        page,
        |s| s.row.id,
        SessionView::from,
    )))
}

/// One session.
#[utoipa::path(get, path = "/v1/tests/sessions/{id}", tag = "sessions", security(("bearer" = [])),
    params(("id" = Uuid, Path)), responses((status = 200, body = SessionView), (status = 404, body = Problem)))]
async fn get(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<SessionView>> {
    Ok(Json(visible_session(&state, &user, id).await?.into()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSession {
    pub name: Option<String>,
    /// `completed` signs the session off (the caller's licence number is recorded with it);
    /// `in_progress` reopens a completed session (admins only, with `reason`).
    pub status: Option<String>,
    pub assigned_to: Option<Vec<Uuid>>,
    /// Why a completed session is reopened (required then).
    pub reason: Option<String>,
}

/// Rename, reassign (admin, office), sign off (anyone who may write the session) or reopen a
/// completed one (admin, with a reason). Name, status and sign-off are written into the
/// document as well, so tablets see them. A completed session is read-only: every other change
/// answers 409.
#[utoipa::path(patch, path = "/v1/tests/sessions/{id}", tag = "sessions", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = UpdateSession,
    responses((status = 200, body = SessionView), (status = 403, body = Problem), (status = 404, body = Problem),
              (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn update(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Json(req): Json<UpdateSession>,
) -> ApiResult<Json<SessionView>> {
    let before = visible_session(&state, &user, id).await?;
    if let Some(s) = &req.status {
        if s != "in_progress" && s != "completed" {
            return Err(ApiError::unprocessable(
                "invalid_status",
                "status must be in_progress or completed",
            ));
        }
    }
    let reopening = before.row.completed() && req.status.as_deref() == Some("in_progress");
    if reopening {
        return reopen(&state, &user, before, &req).await;
    }
    require_writer(&user, &before)?;
    if req.reason.is_some() {
        return Err(ApiError::unprocessable(
            "invalid_field",
            "reason is only for reopening a completed session",
        ));
    }
    if user.role == Role::Inspector && (req.name.is_some() || req.assigned_to.is_some()) {
        return Err(ApiError::forbidden(
            "inspectors may only change a session's status",
        ));
    }
    if let Some(n) = &req.name {
        if n.trim().is_empty() || n.len() > 200 {
            return Err(ApiError::unprocessable(
                "invalid_field",
                "name must be 1-200 characters",
            ));
        }
    }
    if let Some(users) = &req.assigned_to {
        for u in users {
            match state.store.get_user(*u).await {
                Ok(rec) if rec.org_id == user.org_id => {}
                _ => {
                    return Err(ApiError::unprocessable(
                        "unknown_user",
                        format!("no user {u} in your organisation"),
                    ))
                }
            }
        }
    }
    let signing = req.status.as_deref() == Some("completed");
    let sign_off = if signing {
        let me = state.store.get_user(user.user_id).await?;
        let Some(licence) = me.licence_number.filter(|l| !l.trim().is_empty()) else {
            return Err(ApiError::unprocessable(
                "licence_required",
                "signing a session off records your licence or accreditation number; an admin sets it on your user (PATCH /v1/users/{id}, licence_number)",
            ));
        };
        Some(SignOffRow {
            by: user.user_id,
            licence,
            at: Utc::now(),
        })
    } else {
        None
    };
    let name = req.name.as_ref().map(|n| n.trim().to_owned());
    if let Some(n) = name.clone() {
        write_document(&state, &user, id, false, move |doc, actor, ts| {
            firemode_sync_core::set_name(doc, &n, actor, ts)?;
            Ok(())
        })
        .await?;
    }
    if let Some(s) = sign_off.clone() {
        // The document actor goes read-only first: from here no tablet edit or other server
        // write is taken, so nothing lands after the sign-off; then the sign-off is written.
        state.hub.set_completed(id, true).await;
        let signed = SignOff {
            user_id: s.by.hyphenated().to_string(),
            licence: s.licence.clone(),
            at: s.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        };
        let written = write_document(&state, &user, id, true, move |doc, actor, ts| {
            firemode_sync_core::set_sign_off(doc, Some(&signed), actor, ts)?;
            Ok(())
        })
        .await;
        if let Err(e) = written {
            state.hub.set_completed(id, false).await;
            return Err(e);
        }
    }
    let updated = state
        .store
        .update_session(
            user.org_id,
            id,
            &SessionPatch {
                name,
                status: req.status.clone(),
                assigned_to: req.assigned_to.clone(),
                sign_off: sign_off.clone().map(Some),
                // Only from the status it had: a concurrent sign-off or reopen wins once.
                expect_status: Some(before.row.status.clone()),
            },
        )
        .await;
    let after = match updated {
        Ok(after) => after,
        Err(e) => {
            if signing {
                state.hub.reauthorize(id).await;
            }
            return Err(match e {
                StoreError::Conflict(_) => ApiError::conflict(
                    "status_changed",
                    "the session's status changed meanwhile; reload and retry",
                ),
                other => other.into(),
            });
        }
    };
    if req.assigned_to.is_some() || signing {
        // Completed: every socket goes read-only; reassigned: some lose access.
        state.hub.reauthorize(id).await;
    }
    let action = if signing {
        "session.sign_off"
    } else {
        "session.update"
    };
    state
        .audit(
            &user,
            action,
            Some(Target::new("session", id)),
            json!({
                "old": { "name": before.row.name, "status": before.row.status, "assigned_to": before.assigned_to },
                "new": { "name": after.row.name, "status": after.row.status, "assigned_to": after.assigned_to },
                "licence": sign_off.map(|s| s.licence),
            }),
        )
        .await?;
    if signing {
        // The projection raised them as the services were recorded; a service whose
        // projection has not run yet is caught here. Once per service either way.
        let raised = match state
            .store
            .get_building(user.org_id, after.row.building_id)
            .await
        {
            Ok(building) => {
                crate::tolerance::raise_for_session(
                    state.store.as_ref(),
                    &building,
                    id,
                    Some(user.user_id),
                )
                .await
            }
            Err(e) => Err(e.into()),
        };
        if let Err(e) = raised {
            tracing::warn!(session = %id, error = %e, "could not check the session's services against their tolerance windows");
        }
    }
    Ok(Json(after.into()))
}

/// Reopen a completed session: admins only, with a reason; the sign-off is removed from the
/// document and the registry, and the reopening is audited.
async fn reopen(
    state: &AppState,
    user: &AuthUser,
    before: SessionRecord,
    req: &UpdateSession,
) -> ApiResult<Json<SessionView>> {
    let id = before.row.id;
    if !access::may_reopen(&user.caller(), &before.facts()) {
        return Err(ApiError::forbidden(
            "only an admin can reopen a completed session",
        ));
    }
    if req.name.is_some() || req.assigned_to.is_some() {
        return Err(completed());
    }
    let reason = req.reason.as_deref().map(str::trim).unwrap_or_default();
    if reason.is_empty() || reason.chars().count() > 2000 {
        return Err(ApiError::unprocessable(
            "reason_required",
            "reopening a completed session needs a reason of 1-2000 characters",
        ));
    }
    let after = state
        .store
        .update_session(
            user.org_id,
            id,
            &SessionPatch {
                status: Some("in_progress".into()),
                sign_off: Some(None),
                expect_status: Some("completed".into()),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => ApiError::conflict(
                "status_changed",
                "the session's status changed meanwhile; reload and retry",
            ),
            other => other.into(),
        })?;
    write_document(state, user, id, true, |doc, actor, ts| {
        firemode_sync_core::set_sign_off(doc, None, actor, ts)?;
        Ok(())
    })
    .await?;
    state.hub.set_completed(id, false).await;
    state.hub.reauthorize(id).await;
    state
        .audit(
            user,
            "session.reopen",
            Some(Target::new("session", id)),
            json!({
                "reason": reason,
                "signed_off": {
                    "by": before.row.signed_off_by,
                    "licence": before.row.signed_off_licence,
                    "at": before.row.signed_off_at,
                },
            }),
        )
        .await?;
    Ok(Json(after.into()))
}

/// Write to the session document as the server's actor, attributed to the caller;
/// `on_completed` for the writes that sign off or reopen (any other write to a completed
/// session is refused, 409).
async fn write_document<F>(
    state: &AppState,
    user: &AuthUser,
    id: Uuid,
    on_completed: bool,
    f: F,
) -> ApiResult<()>
where
    F: FnOnce(
            &mut automerge::Automerge,
            automerge::ActorId,
            i64,
        ) -> Result<(), firemode_sync_core::SessionError>
        + Send
        + 'static,
{
    let origin = Origin {
        user_id: user.user_id,
        request_id: super::error::current_request_id(),
        on_completed,
    };
    state
        .hub
        .write(id, origin, move |doc, actor| {
            f(doc, actor, Utc::now().timestamp()).map_err(|e| HubError::Rejected(e.to_string()))
        })
        .await
        .map_err(hub_error)?;
    Ok(())
}

pub fn hub_error(e: HubError) -> ApiError {
    match e {
        HubError::Completed => completed(),
        HubError::Rejected(m) => ApiError::unprocessable("invalid_change", m),
        HubError::Unavailable => {
            ApiError::Unavailable("the document is being reloaded; retry".into())
        }
        other => ApiError::Internal(other.into()),
    }
}
