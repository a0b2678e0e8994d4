//! `/v1/tests/sessions`: the session registry, and per session its document, change history
//! and conflicts (server side: `server/src/http/sessions.rs`, `session_doc.rs`,
//! `session_history.rs`).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use firemode_sync_core::DocumentId;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::{Client, Error, Page, PageRequest};

/// A test session as the API lists it (`SessionView`). Its id and its automerge document id
/// are the same 16 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Session id (a UUID; the document id in another notation).
    pub id: Uuid,
    /// The automerge document id: base58check of the UUID's bytes.
    pub document_id: String,
    /// `automerge:<document_id>`, what an automerge-repo client passes to `repo.find()`.
    pub document_url: String,
    /// The building being serviced.
    pub building_id: Uuid,
    /// Display name, e.g. "Six-monthly service".
    pub name: String,
    /// Frequency code of the rule library, e.g. `six_monthly`.
    pub frequency: String,
    /// `in_progress` or `completed`.
    pub status: String,
    /// The rule set the session is checked against.
    pub rule_set: RuleSetRef,
    /// Users (inspectors) who may edit the session.
    pub assigned_to: Vec<Uuid>,
    /// Who created it.
    pub created_by: Uuid,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change to the registry row (name, status, assignment).
    pub updated_at: DateTime<Utc>,
}

/// A rule set and version, e.g. `AS1851` `2012.1.0`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleSetRef {
    /// Rule set code.
    pub code: String,
    /// Version of the rule set.
    pub version: String,
}

/// A session's status, as a filter of [`Client::list_sessions`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionStatus {
    /// Still being recorded.
    InProgress,
    /// Signed off.
    Completed,
}

impl SessionStatus {
    /// The wire name (`in_progress`, `completed`).
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::InProgress => "in_progress",
            SessionStatus::Completed => "completed",
        }
    }
}

impl fmt::Display for SessionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SessionStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "in_progress" => Ok(SessionStatus::InProgress),
            "completed" => Ok(SessionStatus::Completed),
            other => Err(format!(
                "'{other}' is not a session status (in_progress or completed)"
            )),
        }
    }
}

/// Which sessions [`Client::list_sessions`] returns; the default is every session the caller
/// may see (inspectors only ever see the sessions assigned to them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionFilter {
    /// Only sessions of this building.
    pub building_id: Option<Uuid>,
    /// Only sessions with this status.
    pub status: Option<SessionStatus>,
    /// Only sessions assigned to the caller.
    pub assigned_to_me: bool,
}

impl SessionFilter {
    /// The query string pairs, paging included.
    fn query(&self, page: &PageRequest) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        if let Some(b) = self.building_id {
            q.push(("building_id", b.to_string()));
        }
        if let Some(s) = self.status {
            q.push(("status", s.as_str().to_owned()));
        }
        if self.assigned_to_me {
            q.push(("assigned_to", "me".to_owned()));
        }
        if let Some(l) = page.limit {
            q.push(("limit", l.to_string()));
        }
        if let Some(c) = &page.cursor {
            q.push(("cursor", c.clone()));
        }
        q
    }
}

/// Who made a change, as far as the server knows (its attribution rows).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Author {
    /// The user who sent the change; `None` when the server has no record of it.
    pub user_id: Option<Uuid>,
    /// The user's name (or email when no name is set), only for callers allowed to see names
    /// (admin, office, auditor).
    pub user_name: Option<String>,
    /// The device, from the sync peer id `<user id>:<device id>`; `server` for REST writes.
    pub device_id: Option<String>,
    /// When the server received the change (by the server's clock).
    pub received_at: Option<DateTime<Utc>>,
}

impl Author {
    /// The name when the server gave one, else the user id, else `unknown`.
    pub fn display_name(&self) -> String {
        match (&self.user_name, self.user_id) {
            (Some(name), _) => name.clone(),
            (None, Some(id)) => id.to_string(),
            (None, None) => "unknown".to_owned(),
        }
    }
}

/// `GET /v1/tests/sessions/{id}/history`: every change of a session document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// The session.
    pub session_id: Uuid,
    /// The changes in causal order (a change comes after its dependencies).
    pub changes: Vec<HistoryEntry>,
}

/// One automerge change of a session document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// Change hash, 64 hex digits.
    pub hash: String,
    /// The automerge actor that made it, hex.
    pub actor: String,
    /// The change's sequence number within its actor.
    pub seq: u64,
    /// The time the writer put on the change, seconds since the epoch (client clocks vary, and
    /// some clients leave it 0; [`Author::received_at`] is the server's clock).
    pub time: i64,
    /// The commit message, if the writer gave one.
    pub message: Option<String>,
    /// Hashes of the changes it depends on.
    pub deps: Vec<String>,
    /// What it touched, as JSON pointers like `/items/<assetId>/outcome`.
    pub touched: Vec<String>,
    /// Who sent it.
    pub author: Author,
}

/// `GET /v1/tests/sessions/{id}/conflicts`: where a session document holds more than one
/// value, or a value that breaks the schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conflicts {
    /// The session.
    pub session_id: Uuid,
    /// One entry per conflicted path, flat; empty when there is nothing to resolve.
    /// Bookkeeping fields (`recordedBy`, `recordedAt`) and conflicts whose values are all equal
    /// are not listed.
    pub conflicts: Vec<Conflict>,
    /// The same grouped per item (asset), with each writer's side: resolve an item at once
    /// with [`Client::resolve_item`].
    #[serde(default)]
    pub items: Vec<ItemConflicts>,
    /// Conflicts and problems not under an item.
    #[serde(default)]
    pub document: Vec<Conflict>,
}

/// The conflicts and problems of one item of a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemConflicts {
    /// The asset (the item's key).
    pub asset_id: String,
    /// The asset's tag, e.g. `EXT-003`.
    pub identifier: Option<String>,
    /// Where the asset is.
    pub location: Option<String>,
    /// Its equipment kind.
    pub asset_type: Option<String>,
    /// `/items/<assetId>`.
    pub path: String,
    /// The conflicted fields (and problems); each has its `field` and each value its `side`.
    pub fields: Vec<Conflict>,
    /// One per writer with a concurrent version of the item.
    pub sides: Vec<ItemSide>,
}

/// One writer's concurrent version of an item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemSide {
    /// Its index, to pass to [`Client::resolve_item`].
    pub side: usize,
    /// The automerge actor, hex.
    pub actor: String,
    /// The writer's latest change to the item in this version.
    pub change: Option<String>,
    /// Who made it.
    pub author: Author,
    /// The item's `recordedBy` in this version.
    pub recorded_by: Option<Value>,
    /// The item's `recordedAt` in this version.
    pub recorded_at: Option<Value>,
    /// Field -> value in this version (`null`: absent).
    pub values: serde_json::Map<String, Value>,
}

/// How [`Client::resolve_item`] resolves an item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemResolution {
    /// Take this side's values.
    Side(usize),
    /// Set these fields (`outcome`, `observedCondition`, `observedConditions`, `readings`,
    /// `notes`).
    Values(serde_json::Map<String, Value>),
}

/// The answer of [`Client::resolve_item`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemResolved {
    /// The session.
    pub session_id: Uuid,
    /// The item resolved.
    pub asset_id: Uuid,
    /// Document heads after the resolving change (base58check).
    pub heads: Vec<String>,
}

/// Why a path is listed in [`Conflicts`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConflictKind {
    /// Concurrent edits left several values (automerge `get_all`); one of them wins.
    ConcurrentEdits,
    /// The value breaks the session schema (wrong type, unknown outcome).
    SchemaViolation,
    /// A kind this client version does not know (a newer server), as sent.
    #[serde(untagged)]
    Other(String),
}

impl fmt::Display for ConflictKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConflictKind::ConcurrentEdits => "concurrent edits",
            ConflictKind::SchemaViolation => "schema violation",
            ConflictKind::Other(s) => s,
        })
    }
}

/// One conflicted path of a session document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conflict {
    /// Under an item: the field (`outcome`, `readings/pressure_kpa`); absent in the flat list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// JSON pointer, e.g. `/items/<assetId>/outcome`; pass it to [`Client::resolve_conflict`].
    pub path: String,
    /// Concurrent edits or a schema violation.
    pub kind: ConflictKind,
    /// The value readers see now (automerge's deterministic pick).
    pub winner: Value,
    /// Every value at the path, with who wrote it.
    pub values: Vec<ConflictValue>,
    /// For schema violations: what is wrong.
    pub problem: Option<String>,
}

/// One of the values at a conflicted path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConflictValue {
    /// The value (text objects are shown as their string).
    pub value: Value,
    /// Whether this is the value readers see now.
    pub winner: bool,
    /// Hash (hex) of the change that wrote it, when known.
    pub change: Option<String>,
    /// Under an item: the side (writer) that wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub side: Option<usize>,
    /// Who wrote it.
    pub author: Author,
}

/// The answer of [`Client::resolve_conflict`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolved {
    /// The session.
    pub session_id: Uuid,
    /// The path that was resolved.
    pub path: String,
    /// Document heads after the resolving change (base58check).
    pub heads: Vec<String>,
}

/// `GET /v1/tests/sessions/{id}/document`: the session document as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionDocument {
    /// The session.
    pub session_id: Uuid,
    /// `automerge:<document id>`.
    pub document_url: String,
    /// Heads of the version shown (base58check).
    pub heads: Vec<String>,
    /// The document (schema 1, camelCase fields; see docs/protocol.md).
    pub document: Value,
}

#[derive(Serialize)]
struct ResolveBody<'a> {
    path: &'a str,
    value: &'a Value,
}

/// Parse how people and tablets name a session: its UUID, its base58check document id, or its
/// `automerge:` URL (heads after `#` are ignored).
pub fn parse_session_id(text: &str) -> Result<Uuid, firemode_sync_core::IdError> {
    text.trim().parse::<DocumentId>().map(|doc| doc.as_uuid())
}

impl Client {
    /// `GET /v1/tests/sessions`: one page of the sessions matching `filter`, oldest first.
    /// Follow [`Page::next_cursor`] with [`PageRequest::after`], or use
    /// [`Client::list_all_sessions`].
    pub async fn list_sessions(
        &self,
        filter: &SessionFilter,
        page: &PageRequest,
    ) -> Result<Page<Session>, Error> {
        self.get_json_query("/v1/tests/sessions", &filter.query(page))
            .await
    }

    /// Every session matching `filter`, following cursors page by page.
    pub async fn list_all_sessions(&self, filter: &SessionFilter) -> Result<Vec<Session>, Error> {
        let mut request = PageRequest {
            limit: Some(500),
            cursor: None,
        };
        let mut all = Vec::new();
        loop {
            let page = self.list_sessions(filter, &request).await?;
            let next = request.after(&page);
            all.extend(page.items);
            match next {
                Some(n) => request = n,
                None => return Ok(all),
            }
        }
    }

    /// `GET /v1/tests/sessions/{id}`: one session (404 if it does not exist or the caller may
    /// not see it).
    pub async fn get_session(&self, id: Uuid) -> Result<Session, Error> {
        self.get_json(&format!("/v1/tests/sessions/{id}")).await
    }

    /// `GET /v1/tests/sessions/{id}/document`: the session document as it is now.
    pub async fn session_document(&self, id: Uuid) -> Result<SessionDocument, Error> {
        self.get_json(&format!("/v1/tests/sessions/{id}/document"))
            .await
    }

    /// `GET /v1/tests/sessions/{id}/history`: every change, with who sent it and what it
    /// touched.
    pub async fn session_history(&self, id: Uuid) -> Result<History, Error> {
        self.get_json(&format!("/v1/tests/sessions/{id}/history"))
            .await
    }

    /// `GET /v1/tests/sessions/{id}/conflicts`: every path with concurrent values or a value
    /// that breaks the schema, each value with its author.
    pub async fn session_conflicts(&self, id: Uuid) -> Result<Conflicts, Error> {
        self.get_json(&format!("/v1/tests/sessions/{id}/conflicts"))
            .await
    }

    /// `POST /v1/tests/sessions/{id}/conflicts/resolve`: write `value` at `path` as a new
    /// change by the caller, superseding every concurrent value (the conflict disappears for
    /// every client once synced). Admin, office or an assigned inspector.
    ///
    /// `value` is a string, number, boolean or null; an `outcome` must be one of the outcome
    /// names. A path without a conflict is a 422 `invalid_change`.
    pub async fn resolve_conflict(
        &self,
        id: Uuid,
        path: &str,
        value: Value,
    ) -> Result<Resolved, Error> {
        self.post_json(
            &format!("/v1/tests/sessions/{id}/conflicts/resolve"),
            &ResolveBody {
                path,
                value: &value,
            },
        )
        .await
    }

    /// `POST /v1/tests/sessions/{id}/conflicts/resolve-item`: resolve every conflict of one
    /// item in one change by the caller, taking a side or setting values (an edit, allowed
    /// without a conflict). A side of an item without conflict is a 409 `no_conflict`.
    pub async fn resolve_item(
        &self,
        id: Uuid,
        asset_id: Uuid,
        resolution: ItemResolution,
    ) -> Result<ItemResolved, Error> {
        let body = match resolution {
            ItemResolution::Side(side) => serde_json::json!({ "asset_id": asset_id, "side": side }),
            ItemResolution::Values(values) => {
                serde_json::json!({ "asset_id": asset_id, "values": values })
            }
        };
        self.post_json(
            &format!("/v1/tests/sessions/{id}/conflicts/resolve-item"),
            &body,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sessions_are_named_three_ways() {
        let id = Uuid::parse_str("0193a5c4-8d2e-7c3b-9a1f-2b3c4d5e6f70").unwrap();
        let doc = DocumentId::from_uuid(id);
        assert_eq!(parse_session_id(&id.to_string()).unwrap(), id);
        assert_eq!(parse_session_id(&doc.to_string()).unwrap(), id);
        assert_eq!(parse_session_id(&doc.url()).unwrap(), id);
        assert_eq!(parse_session_id(&format!(" {} ", doc.url())).unwrap(), id);
        assert!(parse_session_id("not-a-session").is_err());
        assert!(parse_session_id("").is_err());
    }

    #[test]
    fn filter_query() {
        let f = SessionFilter {
            building_id: None,
            status: Some(SessionStatus::Completed),
            assigned_to_me: true,
        };
        let q = f.query(&PageRequest {
            limit: Some(10),
            cursor: Some("c".into()),
        });
        assert_eq!(
            q,
            vec![
                ("status", "completed".to_owned()),
                ("assigned_to", "me".to_owned()),
                ("limit", "10".to_owned()),
                ("cursor", "c".to_owned()),
            ]
        );
        assert!(SessionFilter::default()
            .query(&PageRequest::first())
            .is_empty());
    }

    #[test]
    fn conflict_kinds_round_trip_including_unknown_ones() {
        let c: Conflict = serde_json::from_value(json!({
            "path": "/items/a/outcome", "kind": "concurrent_edits", "winner": "fail",
            "problem": null,
            "values": [{"value": "fail", "winner": true, "change": "ab", "author": {
                "user_id": null, "user_name": null, "device_id": "t", "received_at": null}}],
        }))
        .unwrap();
        assert_eq!(c.kind, ConflictKind::ConcurrentEdits);
        assert_eq!(c.values[0].author.display_name(), "unknown");
        let k: ConflictKind = serde_json::from_value(json!("schema_violation")).unwrap();
        assert_eq!(k, ConflictKind::SchemaViolation);
        let k: ConflictKind = serde_json::from_value(json!("deleted_meanwhile")).unwrap();
        assert_eq!(k, ConflictKind::Other("deleted_meanwhile".into()));
        assert_eq!(
            serde_json::to_value(&k).unwrap(),
            json!("deleted_meanwhile")
        );
        assert_eq!(
            serde_json::to_value(ConflictKind::ConcurrentEdits).unwrap(),
            json!("concurrent_edits")
        );
    }
}
