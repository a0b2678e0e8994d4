//! A session's history and conflicts: every change with who made it, every place where
//! concurrent edits left more than one value (and schema breakage), and resolving them.

use std::collections::HashMap;

use automerge::transaction::Transactable;
use automerge::{Automerge, ChangeHash, ObjId, ObjType, Prop, ReadDoc, ScalarValue, Value, ROOT};
use axum::extract::State;
use chrono::{DateTime, Utc};
use firemode_sync_core::history::{self, GroupedConflicts};
use firemode_sync_core::Outcome;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::error::{ApiError, ApiResult, Problem};
use super::extract::{Json, Path};
use super::sessions::{hub_error, require_writer, visible_session};
use crate::audit::Target;
use crate::auth::AuthUser;
use crate::hub::{HubError, Origin};
use crate::state::AppState;
use crate::store::buildings::AssetRecord;
use crate::store::sessions::ChangeAttribution;
use crate::store::Role;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(history))
        .routes(routes!(conflicts))
        .routes(routes!(resolve))
        .routes(routes!(resolve_item))
}

/// Who made a change, as far as the server knows.
#[derive(Serialize, ToSchema, Clone, Default)]
pub struct Author {
    pub user_id: Option<Uuid>,
    /// The user's name, for callers allowed to see names (admin, office, auditor).
    pub user_name: Option<String>,
    /// The device (from the peer id), or "server" for REST writes.
    pub device_id: Option<String>,
    /// When the server received the change.
    pub received_at: Option<DateTime<Utc>>,
}

struct Authors<'a> {
    state: &'a AppState,
    by_hash: HashMap<String, ChangeAttribution>,
    names: HashMap<Uuid, Option<String>>,
    show_names: bool,
    org: Uuid,
}

impl<'a> Authors<'a> {
    async fn load(state: &'a AppState, user: &AuthUser, session: Uuid) -> ApiResult<Authors<'a>> {
        let rows = state.store.change_attributions(session).await?;
        Ok(Self {
            state,
            by_hash: rows
                .into_iter()
                .map(|r| (hex::encode(&r.change_hash), r))
                .collect(),
            names: HashMap::new(),
            show_names: matches!(user.role, Role::Admin | Role::Office | Role::Auditor),
            org: user.org_id,
        })
    }

    async fn of(&mut self, hash: &str) -> Author {
        let Some(row) = self.by_hash.get(hash).cloned() else {
            return Author::default();
        };
        let mut name = None;
        if let (Some(uid), true) = (row.user_id, self.show_names) {
            if !self.names.contains_key(&uid) {
                let n = match self.state.store.get_user(uid).await {
                    Ok(u) if u.org_id == self.org => self
                        .state
                        .pii
                        .decrypt_opt(u.full_name_enc.as_deref())
                        .or(Some(u.email)),
                    _ => None,
                };
                self.names.insert(uid, n);
            }
            name = self.names.get(&uid).cloned().flatten();
        }
        Author {
            user_id: row.user_id,
            user_name: name,
            device_id: row.device_id,
            received_at: Some(row.received_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct HistoryEntry {
    /// Change hash, hex.
    pub hash: String,
    /// automerge actor, hex.
    pub actor: String,
    pub seq: u64,
    /// The time the writer put on the change (seconds since the epoch; client clocks vary).
    pub time: i64,
    pub message: Option<String>,
    pub deps: Vec<String>,
    /// What it touched: JSON pointers like `/items/<assetId>/outcome`.
    pub touched: Vec<String>,
    pub author: Author,
}

#[derive(Serialize, ToSchema)]
pub struct History {
    pub session_id: Uuid,
    pub changes: Vec<HistoryEntry>,
}

/// Every change of the session, in causal order, with author and what it touched.
#[utoipa::path(get, path = "/v1/tests/sessions/{id}/history", tag = "sessions", security(("bearer" = [])),
    params(("id" = Uuid, Path)), responses((status = 200, body = History), (status = 404, body = Problem)))]
async fn history(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<History>> {
    visible_session(&state, &user, id).await?;
    let summaries = state
        .hub
        .read(id, firemode_sync_core::change_summaries)
        .await
        .map_err(hub_error)?;
    let mut authors = Authors::load(&state, &user, id).await?;
    let mut changes = Vec::with_capacity(summaries.len());
    for s in summaries {
        let author = authors.of(&s.hash).await;
        changes.push(HistoryEntry {
            hash: s.hash,
            actor: s.actor,
            seq: s.seq,
            time: s.time,
            message: s.message,
            deps: s.deps,
            touched: s.touched,
            author,
        });
    }
    Ok(Json(History {
        session_id: id,
        changes,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct ConflictValueView {
    #[schema(value_type = Object)]
    pub value: serde_json::Value,
    /// Is this the value automerge shows?
    pub winner: bool,
    /// The change that wrote it (hex).
    pub change: Option<String>,
    /// In an item's field: the index of the side (writer) that wrote it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub side: Option<usize>,
    pub author: Author,
}

#[derive(Serialize, ToSchema)]
pub struct ConflictView {
    /// In `items[].fields` and `document`: the field, a pointer relative to the item
    /// (`outcome`, `readings/pressure_kpa`) or to the document.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// JSON pointer, e.g. `/items/<assetId>/outcome`.
    pub path: String,
    /// `concurrent_edits` or `schema_violation`.
    pub kind: String,
    #[schema(value_type = Object)]
    pub winner: serde_json::Value,
    pub values: Vec<ConflictValueView>,
    /// For schema violations: what is wrong.
    pub problem: Option<String>,
}

/// One writer's concurrent version of an item.
#[derive(Serialize, ToSchema)]
pub struct ItemSideView {
    /// Index to pass as `side` to `resolve-item`.
    pub side: usize,
    /// automerge actor, hex.
    pub actor: String,
    /// The writer's latest change to the item in this version (hex).
    pub change: Option<String>,
    /// Who made that change, from which device, received when.
    pub author: Author,
    /// The item's `recordedBy` in this version.
    #[schema(value_type = Option<Object>)]
    pub recorded_by: Option<serde_json::Value>,
    /// The item's `recordedAt` in this version.
    #[schema(value_type = Option<Object>)]
    pub recorded_at: Option<serde_json::Value>,
    /// Field -> value in this version: the conflicted fields and the companions the writer
    /// changed with them (outcome, observedCondition(s), readings, notes); `null` = absent.
    #[schema(value_type = Object)]
    pub values: serde_json::Map<String, serde_json::Value>,
}

/// The conflicts and problems of one item (asset) of the session.
#[derive(Serialize, ToSchema)]
pub struct ItemConflictsView {
    pub asset_id: String,
    /// The asset's tag, from the asset register.
    pub identifier: Option<String>,
    pub location: Option<String>,
    pub asset_type: Option<String>,
    /// `/items/<assetId>`.
    pub path: String,
    pub fields: Vec<ConflictView>,
    /// One per writer with a concurrent version; empty when the item only has problems.
    pub sides: Vec<ItemSideView>,
}

#[derive(Serialize, ToSchema)]
pub struct Conflicts {
    pub session_id: Uuid,
    /// Every conflict and problem, flat (bookkeeping fields and equal values left out).
    pub conflicts: Vec<ConflictView>,
    /// The same, grouped per item, with the writers' sides.
    pub items: Vec<ItemConflictsView>,
    /// Conflicts and problems not under an item.
    pub document: Vec<ConflictView>,
}

/// Resolve a JSON pointer to (parent object, property).
fn resolve_pointer(doc: &Automerge, path: &str) -> Option<(ObjId, Prop)> {
    let segments: Vec<String> = path
        .strip_prefix('/')?
        .split('/')
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect();
    let (last, parents) = segments.split_last()?;
    let mut obj = ROOT;
    let mut typ = ObjType::Map;
    for seg in parents {
        let prop = prop_for(typ, seg)?;
        match doc.get(&obj, prop).ok()?? {
            (Value::Object(t), id) => {
                obj = id;
                typ = t;
            }
            _ => return None,
        }
    }
    Some((obj.clone(), prop_for(typ, last)?))
}

fn prop_for(typ: ObjType, seg: &str) -> Option<Prop> {
    match typ {
        ObjType::Map | ObjType::Table => Some(Prop::Map(seg.to_owned())),
        ObjType::List => seg.parse::<usize>().ok().map(Prop::Seq),
        ObjType::Text => None,
    }
}

fn value_json(doc: &Automerge, v: &Value<'_>, id: &ObjId) -> serde_json::Value {
    match v {
        Value::Object(ObjType::Text) => json!(doc.text(id).unwrap_or_default()),
        Value::Object(_) => json!({ "object": id.to_string() }),
        Value::Scalar(s) => match s.as_ref() {
            ScalarValue::Str(s) => json!(s.to_string()),
            ScalarValue::Int(i) => json!(i),
            ScalarValue::Uint(u) => json!(u),
            ScalarValue::F64(f) => json!(f),
            ScalarValue::Boolean(b) => json!(b),
            ScalarValue::Null => serde_json::Value::Null,
            ScalarValue::Timestamp(t) => json!(t),
            ScalarValue::Counter(c) => json!(i64::from(c)),
            other => json!(other.to_string()),
        },
    }
}

/// (path, kind, problem, winner, [(value, is winner, change hash hex)])
type RawConflict = (
    String,
    &'static str,
    Option<String>,
    serde_json::Value,
    Vec<(serde_json::Value, bool, Option<String>)>,
);

/// Concurrent edits and schema violations of the document, then `extra` problems (path,
/// message) found by assessing items against their rules (a reading of the wrong kind, an
/// unknown condition, an outcome contradicting its conditions).
/// With `relevant_only`, concurrent edits of bookkeeping fields (`recordedBy`, `recordedAt`)
/// and those whose values are all equal are left out.
fn collect_conflicts(
    doc: &Automerge,
    extra: &[(String, String)],
    relevant_only: bool,
) -> Vec<RawConflict> {
    let mut out: Vec<RawConflict> = Vec::new();
    let describe = |path: &str| -> Vec<(serde_json::Value, bool, Option<String>)> {
        let Some((obj, prop)) = resolve_pointer(doc, path) else {
            return Vec::new();
        };
        let all = doc.get_all(&obj, prop.clone()).unwrap_or_default();
        let winner = doc.get(&obj, prop).ok().flatten().map(|(_, id)| id);
        all.iter()
            .map(|(v, id)| {
                let hash: Option<ChangeHash> = doc.hash_for_opid(id);
                (
                    value_json(doc, v, id),
                    Some(id) == winner.as_ref(),
                    hash.map(|h| hex::encode(h.0)),
                )
            })
            .collect()
    };
    for c in firemode_sync_core::conflicts(doc) {
        if relevant_only && (history::is_bookkeeping(&c.path) || !history::values_differ(&c)) {
            continue;
        }
        let values = describe(&c.path);
        out.push((c.path, "concurrent_edits", None, c.winner, values));
    }
    let document_problems = firemode_sync_core::project(doc);
    let problems = document_problems
        .all_problems()
        .map(|p| (p.path.clone(), p.message.clone()))
        .chain(extra.iter().cloned());
    for (path, message) in problems {
        if out.iter().any(|c| {
            c.0 == path && (c.1 == "concurrent_edits" || c.2.as_deref() == Some(message.as_str()))
        }) {
            continue;
        }
        let values = describe(&path);
        let winner = values
            .iter()
            .find(|v| v.1)
            .map(|v| v.0.clone())
            .unwrap_or(serde_json::Value::Null);
        out.push((path, "schema_violation", Some(message), winner, values));
    }
    out
}

/// Every place where concurrent edits left more than one value, and every value that breaks
/// the document schema, each with who wrote it and when.
#[utoipa::path(get, path = "/v1/tests/sessions/{id}/conflicts", tag = "sessions", security(("bearer" = [])),
    params(("id" = Uuid, Path)), responses((status = 200, body = Conflicts), (status = 404, body = Problem)))]
async fn conflicts(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Conflicts>> {
    let session = visible_session(&state, &user, id).await?;
    // What the projection found against the rules, beyond the document's own schema.
    state.hub.settled(id).await;
    let extra: Vec<(String, String)> = state
        .store
        .list_items(id)
        .await?
        .iter()
        .flat_map(|row| row.problems.0.as_array().cloned().unwrap_or_default())
        .filter_map(|p| {
            Some((
                p["path"].as_str()?.to_owned(),
                p["message"].as_str()?.to_owned(),
            ))
        })
        .collect();
    let (raw, grouped) = state
        .hub
        .read(id, move |doc| {
            (
                collect_conflicts(doc, &extra, true),
                history::grouped_conflicts(doc),
            )
        })
        .await
        .map_err(hub_error)?;
    let assets: HashMap<String, AssetRecord> = state
        .store
        .building_assets(user.org_id, session.row.building_id)
        .await?
        .into_iter()
        .map(|a| (a.id.to_string(), a))
        .collect();
    let mut authors = Authors::load(&state, &user, id).await?;
    let mut conflicts = Vec::with_capacity(raw.len());
    for raw in raw {
        conflicts.push(conflict_view(&mut authors, raw, None).await);
    }
    let (items, document) = group_views(&mut authors, &assets, &conflicts, grouped).await;
    Ok(Json(Conflicts {
        session_id: id,
        conflicts,
        items,
        document,
    }))
}

async fn values_view(
    authors: &mut Authors<'_>,
    values: Vec<(serde_json::Value, bool, Option<String>)>,
    side_of: impl Fn(Option<&str>) -> Option<usize>,
) -> Vec<ConflictValueView> {
    let mut views = Vec::with_capacity(values.len());
    for (value, is_winner, change) in values {
        let author = match &change {
            Some(h) => authors.of(h).await,
            None => Author::default(),
        };
        views.push(ConflictValueView {
            value,
            winner: is_winner,
            side: side_of(change.as_deref()),
            change,
            author,
        });
    }
    views
}

async fn conflict_view(
    authors: &mut Authors<'_>,
    (path, kind, problem, winner, values): RawConflict,
    field: Option<String>,
) -> ConflictView {
    ConflictView {
        field,
        path,
        kind: kind.to_owned(),
        winner,
        values: values_view(authors, values, |_| None).await,
        problem,
    }
}

fn copy_view(c: &ConflictView, field: Option<String>) -> ConflictView {
    ConflictView {
        field,
        path: c.path.clone(),
        kind: c.kind.clone(),
        winner: c.winner.clone(),
        values: c
            .values
            .iter()
            .map(|v| ConflictValueView {
                value: v.value.clone(),
                winner: v.winner,
                change: v.change.clone(),
                side: None,
                author: v.author.clone(),
            })
            .collect(),
        problem: c.problem.clone(),
    }
}

/// The flat list regrouped: concurrent edits per item with their sides (from sync-core's
/// grouping), schema problems under the item they concern, the rest under `document`.
async fn group_views(
    authors: &mut Authors<'_>,
    assets: &HashMap<String, AssetRecord>,
    flat: &[ConflictView],
    grouped: GroupedConflicts,
) -> (Vec<ItemConflictsView>, Vec<ConflictView>) {
    let mut items: Vec<ItemConflictsView> = Vec::new();
    let new_item = |key: &str, path: String| {
        let asset = assets.get(key);
        ItemConflictsView {
            asset_id: key.to_owned(),
            identifier: asset.and_then(|a| a.identifier.clone()),
            location: asset.map(|a| a.location.clone()),
            asset_type: asset.map(|a| a.asset_type.clone()),
            path,
            fields: Vec::new(),
            sides: Vec::new(),
        }
    };
    for item in grouped.items {
        let mut view = new_item(&item.key, item.path.clone());
        for (n, side) in item.sides.iter().enumerate() {
            let author = match &side.change {
                Some(h) => authors.of(h).await,
                None => Author::default(),
            };
            view.sides.push(ItemSideView {
                side: n,
                actor: side.actor.clone(),
                change: side.change.clone(),
                author,
                recorded_by: side.recorded_by.clone(),
                recorded_at: side.recorded_at.clone(),
                values: side.values.clone().into_iter().collect(),
            });
        }
        for f in item.fields {
            // The flat view of the same path has the values with their authors.
            let Some(flat_view) = flat.iter().find(|c| c.path == f.conflict.path) else {
                continue;
            };
            let by_change: HashMap<String, usize> = f
                .conflict
                .values
                .iter()
                .zip(&f.sides)
                .filter_map(|(v, s)| Some((v.change.clone()?, *s)))
                .collect();
            let mut view_f = copy_view(flat_view, Some(f.field.clone()));
            for v in &mut view_f.values {
                v.side = v.change.as_ref().and_then(|c| by_change.get(c).copied());
            }
            view.fields.push(view_f);
        }
        items.push(view);
    }
    let mut document = Vec::new();
    for c in flat {
        let in_item = items
            .iter()
            .any(|i| i.fields.iter().any(|f| f.path == c.path));
        if in_item {
            continue;
        }
        match history::item_field_of(&c.path) {
            Some((key, field, _)) => {
                let pos = match items.iter().position(|i| i.asset_id == key) {
                    Some(pos) => pos,
                    None => {
                        let path = c.path[..c.path.len() - field.len() - 1].to_owned();
                        items.push(new_item(&key, path));
                        items.len() - 1
                    }
                };
                items[pos].fields.push(copy_view(c, Some(field)));
            }
            None => {
                let field = c.path.trim_start_matches('/').to_owned();
                document.push(copy_view(c, Some(field)));
            }
        }
    }
    (items, document)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Resolve {
    /// JSON pointer of the conflicted property.
    pub path: String,
    /// The value to keep: a string, number, boolean or null.
    #[schema(value_type = Object)]
    pub value: serde_json::Value,
}

#[derive(Serialize, ToSchema)]
pub struct Resolved {
    pub session_id: Uuid,
    pub path: String,
    /// Document heads after the resolving change (bs58check).
    pub heads: Vec<String>,
}

/// Write the chosen value as a new change by the caller; the conflict disappears for everyone,
/// tablets included. Office, admin, or the assigned inspector.
#[utoipa::path(post, path = "/v1/tests/sessions/{id}/conflicts/resolve", tag = "sessions", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = Resolve,
    responses((status = 200, body = Resolved), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn resolve(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Json(req): Json<Resolve>,
) -> ApiResult<Json<Resolved>> {
    let session = visible_session(&state, &user, id).await?;
    require_writer(&user, &session)?;
    let scalar: ScalarValue = match &req.value {
        serde_json::Value::String(s) => ScalarValue::Str(s.as_str().into()),
        serde_json::Value::Bool(b) => ScalarValue::Boolean(*b),
        serde_json::Value::Null => ScalarValue::Null,
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => ScalarValue::Int(i),
            None => ScalarValue::F64(n.as_f64().unwrap_or_default()),
        },
        _ => {
            return Err(ApiError::unprocessable(
                "invalid_value",
                "value must be a string, number, boolean or null",
            ))
        }
    };
    if req.path.ends_with("/outcome") {
        let ok = req
            .value
            .as_str()
            .is_some_and(|s| s.parse::<Outcome>().is_ok());
        if !ok {
            return Err(ApiError::unprocessable(
                "invalid_value",
                "an outcome must be pass, fail, not_tested or not_accessible",
            ));
        }
    }
    let path = req.path.clone();
    let origin = Origin {
        user_id: user.user_id,
        request_id: super::error::current_request_id(),
        on_completed: false,
    };
    let (_, heads) = state
        .hub
        .write(id, origin, move |doc, actor| {
            let conflicted = collect_conflicts(doc, &[], false)
                .into_iter()
                .any(|c| c.0 == path);
            if !conflicted {
                return Err(HubError::Rejected(format!(
                    "there is no conflict at {path}"
                )));
            }
            let (obj, prop) = resolve_pointer(doc, &path)
                .ok_or_else(|| HubError::Rejected(format!("no property at {path}")))?;
            doc.set_actor(actor);
            let mut tx = doc.transaction();
            // Delete then put: the new value supersedes every concurrent one, even when it
            // equals the current winner.
            let res = tx
                .delete(&obj, prop.clone())
                .and_then(|_| tx.put(&obj, prop, scalar));
            match res {
                Ok(()) => {
                    tx.commit_with(
                        automerge::transaction::CommitOptions::default()
                            .with_message(format!("resolve {path}"))
                            .with_time(Utc::now().timestamp()),
                    );
                    Ok(())
                }
                Err(e) => {
                    tx.rollback();
                    Err(HubError::Rejected(e.to_string()))
                }
            }
        })
        .await
        .map_err(hub_error)?;
    state.hub.project_now(id).await;
    state
        .audit(
            &user,
            "session.resolve_conflict",
            Some(Target::new("session", id)),
            json!({ "path": req.path }),
        )
        .await?;
    Ok(Json(Resolved {
        session_id: id,
        path: req.path,
        heads: heads
            .iter()
            .map(|h| firemode_sync_core::encode_heads(std::slice::from_ref(h)))
            .collect(),
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveItem {
    /// The item (asset) to resolve.
    pub asset_id: Uuid,
    /// Take this side's values (index from `items[].sides[].side`) for every conflicted
    /// field of the item and its companions. Exactly one of `side` and `values`.
    pub side: Option<usize>,
    /// Or set these fields (`outcome`, `observedCondition`, `observedConditions`, `readings`,
    /// `notes`); fields still conflicted keep the value shown now.
    #[schema(value_type = Option<Object>)]
    pub values: Option<std::collections::BTreeMap<String, serde_json::Value>>,
}

#[derive(Serialize, ToSchema)]
pub struct ItemResolved {
    pub session_id: Uuid,
    pub asset_id: Uuid,
    /// Document heads after the resolving change (bs58check).
    pub heads: Vec<String>,
}

/// Resolve every conflict of one item in one change by the caller: take a side (one writer's
/// version, companions included) or set values (an edit, fine without a conflict). Pushed to
/// connected tablets at once. Office, admin, or the assigned inspector.
#[utoipa::path(post, path = "/v1/tests/sessions/{id}/conflicts/resolve-item", tag = "sessions", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = ResolveItem,
    responses((status = 200, body = ItemResolved), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn resolve_item(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Json(req): Json<ResolveItem>,
) -> ApiResult<Json<ItemResolved>> {
    let session = visible_session(&state, &user, id).await?;
    require_writer(&user, &session)?;
    let resolution = match (req.side, req.values) {
        (Some(side), None) => history::ItemResolution::Side(side),
        (None, Some(values)) => {
            history::validate_item_values(&values)
                .map_err(|m| ApiError::unprocessable("invalid_value", m))?;
            history::ItemResolution::Values(values)
        }
        _ => {
            return Err(ApiError::unprocessable(
                "invalid_body",
                "give exactly one of side and values",
            ))
        }
    };
    let key = req.asset_id.to_string();
    let recorded_by = user.user_id.to_string();
    let recorded_at = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let origin = Origin {
        user_id: user.user_id,
        request_id: super::error::current_request_id(),
        on_completed: false,
    };
    let (outcome, heads) = state
        .hub
        .write(id, origin, move |doc, actor| {
            doc.set_actor(actor);
            Ok(history::resolve_item(
                doc,
                &key,
                &resolution,
                Some((&recorded_by, &recorded_at)),
                &format!("resolve item {key}"),
                Utc::now().timestamp(),
            ))
        })
        .await
        .map_err(hub_error)?;
    match outcome {
        Ok(_) => {}
        Err(history::ResolveItemError::NoItem(_)) => return Err(ApiError::NotFound),
        Err(e @ history::ResolveItemError::NoConflict(_)) => {
            return Err(ApiError::conflict("no_conflict", e.to_string()))
        }
        Err(e @ history::ResolveItemError::NoSuchSide { .. }) => {
            return Err(ApiError::unprocessable("invalid_side", e.to_string()))
        }
        Err(e @ history::ResolveItemError::InvalidValue(_)) => {
            return Err(ApiError::unprocessable("invalid_value", e.to_string()))
        }
        Err(e @ history::ResolveItemError::Automerge(_)) => {
            return Err(ApiError::unprocessable("invalid_change", e.to_string()))
        }
    }
    state.hub.project_now(id).await;
    state
        .audit(
            &user,
            "session.resolve_item",
            Some(Target::new("session", id)),
            json!({ "asset_id": req.asset_id, "side": req.side }),
        )
        .await?;
    Ok(Json(ItemResolved {
        session_id: id,
        asset_id: req.asset_id,
        heads: heads
            .iter()
            .map(|h| firemode_sync_core::encode_heads(std::slice::from_ref(h)))
            .collect(),
    }))
}
