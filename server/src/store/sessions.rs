//! Test sessions: the registry, the automerge document store (append-only changes with
//! attribution + compacted snapshot) and the projection rows REST reads.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::{Page, StoreResult};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionRow {
    pub id: Uuid,
    pub org_id: Uuid,
    pub building_id: Uuid,
    pub name: String,
    pub frequency: String,
    pub status: String,
    pub rule_set_code: String,
    pub rule_set_version: String,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Who signed the completed session off, under which licence number, when.
    #[sqlx(default)]
    pub signed_off_by: Option<Uuid>,
    #[sqlx(default)]
    pub signed_off_licence: Option<String>,
    #[sqlx(default)]
    pub signed_off_at: Option<DateTime<Utc>>,
}

impl SessionRow {
    /// Signed off: read-only until an admin reopens it.
    pub fn completed(&self) -> bool {
        self.status == "completed"
    }
}

/// A sign-off as stored in the registry.
#[derive(Debug, Clone)]
pub struct SignOffRow {
    pub by: Uuid,
    pub licence: String,
    pub at: DateTime<Utc>,
}

/// A session with the users assigned to it.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub row: SessionRow,
    pub assigned_to: Vec<Uuid>,
}

impl SessionRecord {
    /// What access to the session is decided from (`crate::domain::access`).
    pub fn facts(&self) -> crate::domain::access::SessionFacts<'_> {
        crate::domain::access::SessionFacts {
            org_id: self.row.org_id,
            assigned_to: &self.assigned_to,
            completed: self.row.completed(),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct SessionFilter {
    pub building_id: Option<Uuid>,
    pub status: Option<String>,
    pub assigned_to: Option<Uuid>,
}

#[derive(Debug, Clone, Default)]
pub struct SessionPatch {
    pub name: Option<String>,
    pub status: Option<String>,
    pub assigned_to: Option<Vec<Uuid>>,
    /// `Some(Some(_))` records a sign-off, `Some(None)` clears it (reopen).
    pub sign_off: Option<Option<SignOffRow>>,
    /// Apply only while the status is still this one (else `Conflict`).
    pub expect_status: Option<String>,
}

/// A change to append, with who sent it.
#[derive(Debug, Clone)]
pub struct NewChange {
    pub session_id: Uuid,
    pub hash: Vec<u8>,
    pub bytes: Vec<u8>,
    pub actor_id: String,
    pub user_id: Option<Uuid>,
    pub device_id: Option<String>,
    pub connection_id: Option<String>,
    /// The node (server process) that stored it; 0 for changes made outside the sync hub. The
    /// sweep skips a node's own changes.
    pub node: i64,
}

/// The stored form of a document, read in one consistent database snapshot.
#[derive(Debug, Clone, Default)]
pub struct StoredDocument {
    /// The latest snapshot and its generation.
    pub snapshot: Option<(Vec<u8>, i64)>,
    /// (hash, bytes) of every change row that still carries bytes.
    pub changes: Vec<(Vec<u8>, Vec<u8>)>,
    /// Every change row below it is in `snapshot` or `changes` (see `changes_after`).
    pub watermark: i64,
    /// The heads of the stored projection, if any.
    pub projected_heads: Option<String>,
}

/// Change rows at or after a watermark, and the watermark to ask from next time.
#[derive(Debug, Clone, Default)]
pub struct ChangesAfter {
    /// (hash, bytes or None once a snapshot covers it).
    pub rows: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    pub watermark: i64,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct ChangeAttribution {
    pub seq: i64,
    pub change_hash: Vec<u8>,
    pub actor_id: String,
    pub user_id: Option<Uuid>,
    pub device_id: Option<String>,
    pub connection_id: Option<String>,
    pub received_at: DateTime<Utc>,
}

/// One projected item row.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct ItemRow {
    pub session_id: Uuid,
    pub asset_id: String,
    pub org_id: Uuid,
    pub building_id: Uuid,
    pub rule_code: Option<String>,
    pub outcome: Option<String>,
    pub raw_outcome: Option<String>,
    pub observed_condition: Option<String>,
    pub readings: sqlx::types::Json<serde_json::Value>,
    pub notes: String,
    pub evidence: sqlx::types::Json<serde_json::Value>,
    pub recorded_by: Option<String>,
    pub recorded_at: Option<String>,
    pub classification: Option<String>,
    pub rule_version: Option<String>,
    pub problems: sqlx::types::Json<serde_json::Value>,
    /// Every observed condition (`observed_condition` is the first).
    pub observed_conditions: sqlx::types::Json<Vec<String>>,
    /// Verdicts per reading, the suggestion, the findings, a contradiction
    /// (`crate::domain::assess::Assessment`).
    pub assessment: sqlx::types::Json<serde_json::Value>,
}

/// Which projection rows a write touches.
#[derive(Debug, Clone, Copy)]
pub enum ItemsWrite<'a> {
    /// Every row of the session: rows of assets not listed are deleted.
    All(&'a [ItemRow]),
    /// Only these rows changed since this writer's last write, whose heads were
    /// `expect_heads`: upsert them and delete the rows of `removed` asset ids, other rows stay.
    /// If the stored heads are not `expect_heads` (another node wrote since), `all` is written
    /// as with [`ItemsWrite::All`].
    Changed {
        upsert: &'a [ItemRow],
        removed: &'a [String],
        all: &'a [ItemRow],
        expect_heads: &'a str,
    },
}

/// What a projection write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProjectionWrite {
    /// Every row of the session was replaced.
    All,
    /// Only the changed rows were written.
    Changed,
}

/// The projection of a new session's first document, stored with the session.
#[derive(Debug, Clone, Copy)]
pub struct InitialProjection<'a> {
    pub rows: &'a [ItemRow],
    /// The document's heads (`firemode_sync_core::encode_heads`).
    pub heads: &'a str,
    /// The document's schema problems.
    pub problems: &'a serde_json::Value,
}

#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Register a session, its assignees and its initial document changes in one transaction.
    async fn create_session(
        &self,
        row: &SessionRow,
        assigned_to: &[Uuid],
        initial: &[NewChange],
    ) -> StoreResult<()> {
        self.create_projected_session(row, assigned_to, initial, None)
            .await
    }
    /// [`SessionStore::create_session`], and with `projection` the projection of the
    /// document `initial` makes, in the same transaction: rows, heads and a watermark above
    /// every change stored with it (so the projection is current, see
    /// [`SessionStore::projection_is_current`]).
    async fn create_projected_session(
        &self,
        row: &SessionRow,
        assigned_to: &[Uuid],
        initial: &[NewChange],
        projection: Option<InitialProjection<'_>>,
    ) -> StoreResult<()>;
    /// A session of `org_id` (NotFound for other organisations' sessions).
    async fn get_session(&self, org_id: Uuid, id: Uuid) -> StoreResult<SessionRecord>;
    /// A session by id alone, for the sync hub, which then checks the caller's organisation.
    async fn find_session(&self, id: Uuid) -> StoreResult<SessionRecord>;
    async fn list_sessions(
        &self,
        org_id: Uuid,
        filter: &SessionFilter,
        page: Page,
    ) -> StoreResult<Vec<SessionRecord>>;
    async fn update_session(
        &self,
        org_id: Uuid,
        id: Uuid,
        patch: &SessionPatch,
    ) -> StoreResult<SessionRecord>;
    async fn building_has_sessions(&self, building_id: Uuid) -> StoreResult<bool>;

    /// Append changes (any sessions) in one transaction: the group commit. Changes already
    /// stored (same session and hash) are skipped. Returns each change's seq, in call order.
    async fn append_changes(&self, changes: &[NewChange]) -> StoreResult<Vec<i64>>;
    /// On a store with a single writer (SQLite), the watermark below which every change row
    /// is known once a commit whose highest seq is `max_seq` returns; None with several
    /// writers (PostgreSQL), where only a catch-up read can tell.
    fn watermark_after_commit(&self, max_seq: i64) -> Option<i64>;
    /// Tell other nodes that these documents have new changes (a hint; PostgreSQL NOTIFY).
    async fn announce_documents(&self, node: &str, docs: &[Uuid]) -> StoreResult<()>;
    /// Tell other nodes about a hub event (reauthorize a document, close a user's sockets).
    async fn announce_event(&self, event: &str) -> StoreResult<()>;
    /// Snapshot, change rows with bytes and the watermark, from one database snapshot.
    async fn load_document(&self, session_id: Uuid) -> StoreResult<StoredDocument>;
    /// Change rows at or after `watermark` (bytes or not), and the next watermark: below it,
    /// every row is committed and was visible to this read. Rows may repeat across calls.
    async fn changes_after(&self, session_id: Uuid, watermark: i64) -> StoreResult<ChangesAfter>;
    /// The latest snapshot and its generation.
    async fn load_snapshot(&self, session_id: Uuid) -> StoreResult<Option<(Vec<u8>, i64)>>;
    /// Write `snapshot` if the stored snapshot's generation is still `expected_generation`
    /// (None: no snapshot yet), and drop the bytes of the `covered` change hashes — only
    /// those: a change committed meanwhile by another node keeps its bytes — in one
    /// transaction. Returns the new generation, or None when another snapshot was written
    /// first (then nothing changed). Attribution rows stay.
    async fn compact(
        &self,
        session_id: Uuid,
        snapshot: &[u8],
        expected_generation: Option<i64>,
        covered: &[Vec<u8>],
    ) -> StoreResult<Option<i64>>;
    /// Sessions with change rows at or after `watermark` stored by a node other than `node`,
    /// and the next watermark (the sweep that catches up documents whose notification was lost).
    async fn sessions_changed_since(
        &self,
        watermark: i64,
        node: i64,
    ) -> StoreResult<(Vec<Uuid>, i64)>;
    /// The current watermark (where a sweep starts).
    async fn current_watermark(&self) -> StoreResult<i64>;
    /// Sessions whose stored projection may lack a stored change (a change row at or above
    /// the projection's watermark, or no projection at all), at most `limit`, after `after`.
    async fn stale_projections(&self, after: Option<Uuid>, limit: i64) -> StoreResult<Vec<Uuid>>;
    /// True when no change row is at or above the session's projection watermark.
    async fn projection_is_current(&self, session_id: Uuid) -> StoreResult<bool>;
    /// Mark these sessions' projections stale (watermark −1: every change row is at or above
    /// it), so that `stale_projections` lists them at the next start even when no new change
    /// stands behind their queued projection. The projector does it at shutdown for what it
    /// did not write.
    async fn mark_projections_stale(&self, sessions: &[Uuid]) -> StoreResult<()>;
    /// Sessions with change rows whose bytes are gone (candidates for `verify-documents`),
    /// with those rows' hashes and the snapshot.
    async fn compacted_changes(
        &self,
        session_id: Uuid,
    ) -> StoreResult<(Option<Vec<u8>>, Vec<Vec<u8>>)>;
    /// Every session id (for checks over all documents), after `after`, at most `limit`.
    async fn session_ids(&self, after: Option<Uuid>, limit: i64) -> StoreResult<Vec<Uuid>>;
    async fn change_attributions(&self, session_id: Uuid) -> StoreResult<Vec<ChangeAttribution>>;

    /// Write a session's projection rows and state (one transaction; writers of one session
    /// on several nodes take turns on its state row). `watermark` is the replica's.
    async fn write_projection(
        &self,
        session_id: Uuid,
        items: ItemsWrite<'_>,
        watermark: i64,
        heads: &str,
        problems: &serde_json::Value,
    ) -> StoreResult<ProjectionWrite>;
    async fn list_items(&self, session_id: Uuid) -> StoreResult<Vec<ItemRow>>;

    /// A value of `server_meta`, set to `default` the first time it is asked for.
    async fn meta_value(&self, key: &str, default: &str) -> StoreResult<String>;
}

pub(crate) const SESSION_COLUMNS: &str = "id, org_id, building_id, name, frequency, status, \
     rule_set_code, rule_set_version, created_by, created_at, updated_at";

/// What a session read selects: the inserted columns and the sign-off.
pub(crate) const SESSION_SELECT: &str = "id, org_id, building_id, name, frequency, status, \
     rule_set_code, rule_set_version, created_by, created_at, updated_at, signed_off_by, \
     signed_off_licence, signed_off_at";

/// [`SESSION_SELECT`] qualified by the alias `s` (for reads that join the assignees).
pub(crate) static SESSION_SELECT_S: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    SESSION_SELECT
        .split(", ")
        .map(|c| format!("s.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
});

/// One row of a session read joined with its assignees (one row per assignee, or one with
/// none): the session and its assignees in one round trip.
#[derive(sqlx::FromRow)]
pub(crate) struct SessionWithAssignee {
    #[sqlx(flatten)]
    row: SessionRow,
    assignee: Option<Uuid>,
}

impl SessionWithAssignee {
    /// The session of these rows (NotFound for none), its assignees in the rows' order.
    pub(crate) fn record(rows: Vec<Self>) -> StoreResult<SessionRecord> {
        let mut rows = rows.into_iter();
        let first = rows.next().ok_or(super::StoreError::NotFound)?;
        let assigned_to = first
            .assignee
            .into_iter()
            .chain(rows.filter_map(|r| r.assignee))
            .collect();
        Ok(SessionRecord {
            row: first.row,
            assigned_to,
        })
    }
}

pub(crate) const ITEM_COLUMNS: &str = "session_id, asset_id, org_id, building_id, rule_code, \
     outcome, raw_outcome, observed_condition, readings, notes, evidence, recorded_by, \
     recorded_at, classification, rule_version, problems, observed_conditions, assessment";

/// The `DO UPDATE SET` list of a projection-row upsert: every column but the key (same SQL on
/// both databases).
pub(crate) static ITEM_UPSERT_SET: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    ITEM_COLUMNS
        .split(", ")
        .skip(2)
        .map(|c| format!("{c} = excluded.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
});

/// Projection rows per upsert statement (16 parameters each; SQLite allows 32,766).
pub(crate) const ITEM_ROWS_PER_STATEMENT: usize = 200;

macro_rules! sessions_sql {
    ($store:ty, $db:ty) => {
        /// Insert one change (skipping a duplicate); returns its seq.
        async fn insert_change(
            tx: &mut sqlx::Transaction<'static, $db>,
            c: &$crate::store::sessions::NewChange,
        ) -> $crate::store::StoreResult<i64> {
            let seq: Option<i64> = sqlx::query_scalar(
                "INSERT INTO doc_changes (session_id, change_hash, bytes, actor_id, user_id, device_id, \
                 connection_id, received_at, node) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (session_id, change_hash) DO NOTHING RETURNING seq",
            )
            .bind(c.session_id)
            .bind(&c.hash)
            .bind(&c.bytes)
            .bind(&c.actor_id)
            .bind(c.user_id)
            .bind(&c.device_id)
            .bind(&c.connection_id)
            .bind(chrono::Utc::now())
            .bind(c.node)
            .fetch_optional(&mut **tx)
            .await?;
            match seq {
                Some(s) => Ok(s),
                None => Ok(sqlx::query_scalar(
                    "SELECT seq FROM doc_changes WHERE session_id = $1 AND change_hash = $2",
                )
                .bind(c.session_id)
                .bind(&c.hash)
                .fetch_one(&mut **tx)
                .await?),
            }
        }

        /// Upsert projection rows: one statement per chunk of rows, so a session's rows cost
        /// one round trip to the database, not one each.
        async fn upsert_items(
            tx: &mut sqlx::Transaction<'static, $db>,
            rows: &[$crate::store::sessions::ItemRow],
        ) -> $crate::store::StoreResult<()> {
            for chunk in rows.chunks($crate::store::sessions::ITEM_ROWS_PER_STATEMENT) {
                let mut q = sqlx::QueryBuilder::<$db>::new(format!(
                    "INSERT INTO session_items ({}) ",
                    $crate::store::sessions::ITEM_COLUMNS
                ));
                q.push_values(chunk, |mut b, i| {
                    b.push_bind(i.session_id)
                        .push_bind(&i.asset_id)
                        .push_bind(i.org_id)
                        .push_bind(i.building_id)
                        .push_bind(&i.rule_code)
                        .push_bind(&i.outcome)
                        .push_bind(&i.raw_outcome)
                        .push_bind(&i.observed_condition)
                        .push_bind(&i.readings)
                        .push_bind(&i.notes)
                        .push_bind(&i.evidence)
                        .push_bind(&i.recorded_by)
                        .push_bind(&i.recorded_at)
                        .push_bind(&i.classification)
                        .push_bind(&i.rule_version)
                        .push_bind(&i.problems)
                        .push_bind(&i.observed_conditions)
                        .push_bind(&i.assessment);
                });
                q.push(" ON CONFLICT (session_id, asset_id) DO UPDATE SET ");
                q.push($crate::store::sessions::ITEM_UPSERT_SET.as_str());
                q.build().execute(&mut **tx).await?;
            }
            Ok(())
        }

        impl $store {
            /// The assignees of many sessions in one query (a list page used to run one per
            /// session). Empty input, no query.
            async fn assignees_of(&self, ids: &[uuid::Uuid]) -> $crate::store::StoreResult<Vec<(uuid::Uuid, uuid::Uuid)>> {
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                let placeholders = (1..=ids.len())
                    .map(|i| format!("${i}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                let sql = format!(
                    "SELECT session_id, user_id FROM session_assignees WHERE session_id IN ({placeholders}) ORDER BY session_id, user_id"
                );
                let mut query = sqlx::query_as::<_, (uuid::Uuid, uuid::Uuid)>(&sql);
                for id in ids {
                    query = query.bind(*id);
                }
                Ok(query.fetch_all(&self.reader).await?)
            }

            async fn with_assignees(
                &self,
                rows: Vec<$crate::store::sessions::SessionRow>,
            ) -> $crate::store::StoreResult<Vec<$crate::store::sessions::SessionRecord>> {
                let ids: Vec<uuid::Uuid> = rows.iter().map(|r| r.id).collect();
                let mut by_session: std::collections::HashMap<uuid::Uuid, Vec<uuid::Uuid>> =
                    std::collections::HashMap::new();
                for (session, user) in self.assignees_of(&ids).await? {
                    by_session.entry(session).or_default().push(user);
                }
                Ok(rows
                    .into_iter()
                    .map(|row| {
                        let assigned_to = by_session.remove(&row.id).unwrap_or_default();
                        $crate::store::sessions::SessionRecord { row, assigned_to }
                    })
                    .collect())
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::sessions::SessionStore for $store {
            async fn create_projected_session(
                &self,
                row: &$crate::store::sessions::SessionRow,
                assigned_to: &[uuid::Uuid],
                initial: &[$crate::store::sessions::NewChange],
                projection: Option<$crate::store::sessions::InitialProjection<'_>>,
            ) -> $crate::store::StoreResult<()> {
                let mut tx = self.writer.begin().await?;
                sqlx::query(&format!(
                    "INSERT INTO test_sessions ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                    $crate::store::sessions::SESSION_COLUMNS
                ))
                .bind(row.id)
                .bind(row.org_id)
                .bind(row.building_id)
                .bind(&row.name)
                .bind(&row.frequency)
                .bind(&row.status)
                .bind(&row.rule_set_code)
                .bind(&row.rule_set_version)
                .bind(row.created_by)
                .bind(row.created_at)
                .bind(row.updated_at)
                .execute(&mut *tx)
                .await
                .map_err(|e| $crate::store::StoreError::unique(e, "id"))?;
                for user in assigned_to {
                    sqlx::query("INSERT INTO session_assignees (session_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                        .bind(row.id)
                        .bind(user)
                        .execute(&mut *tx)
                        .await?;
                }
                for c in initial {
                    insert_change(&mut tx, c).await?;
                }
                if let Some(p) = projection {
                    // The watermark: above every change row of the session (all stored just
                    // now, in this transaction), as a projection of them all needs.
                    sqlx::query(&format!(
                        "INSERT INTO session_projection_state (session_id, projected_seq, heads, problems, updated_at, watermark) \
                         SELECT $1, w, $2, $3, $4, w FROM \
                         (SELECT COALESCE(MAX({}), -1) + 1 AS w FROM doc_changes WHERE session_id = $1) m",
                        <$store>::WATERMARK
                    ))
                    .bind(row.id)
                    .bind(p.heads)
                    .bind(sqlx::types::Json(p.problems))
                    .bind(chrono::Utc::now())
                    .execute(&mut *tx)
                    .await?;
                    upsert_items(&mut tx, p.rows).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn get_session(
                &self,
                org_id: uuid::Uuid,
                id: uuid::Uuid,
            ) -> $crate::store::StoreResult<$crate::store::sessions::SessionRecord> {
                let rows: Vec<$crate::store::sessions::SessionWithAssignee> = sqlx::query_as(&format!(
                    "SELECT {}, a.user_id AS assignee FROM test_sessions s \
                     LEFT JOIN session_assignees a ON a.session_id = s.id \
                     WHERE s.id = $1 AND s.org_id = $2 ORDER BY a.user_id",
                    $crate::store::sessions::SESSION_SELECT_S.as_str()
                ))
                .bind(id)
                .bind(org_id)
                .fetch_all(&self.reader)
                .await?;
                $crate::store::sessions::SessionWithAssignee::record(rows)
            }

            async fn find_session(
                &self,
                id: uuid::Uuid,
            ) -> $crate::store::StoreResult<$crate::store::sessions::SessionRecord> {
                let rows: Vec<$crate::store::sessions::SessionWithAssignee> = sqlx::query_as(&format!(
                    "SELECT {}, a.user_id AS assignee FROM test_sessions s \
                     LEFT JOIN session_assignees a ON a.session_id = s.id \
                     WHERE s.id = $1 ORDER BY a.user_id",
                    $crate::store::sessions::SESSION_SELECT_S.as_str()
                ))
                .bind(id)
                .fetch_all(&self.reader)
                .await?;
                $crate::store::sessions::SessionWithAssignee::record(rows)
            }

            async fn list_sessions(
                &self,
                org_id: uuid::Uuid,
                f: &$crate::store::sessions::SessionFilter,
                page: $crate::store::Page,
            ) -> $crate::store::StoreResult<Vec<$crate::store::sessions::SessionRecord>> {
                let rows: Vec<$crate::store::sessions::SessionRow> = sqlx::query_as(&format!(
                    "SELECT {} FROM test_sessions s WHERE org_id = $1 \
                     AND ($2 IS NULL OR building_id = $2) AND ($3 IS NULL OR status = $3) \
                     AND ($4 IS NULL OR EXISTS (SELECT 1 FROM session_assignees a WHERE a.session_id = s.id AND a.user_id = $4)) \
                     AND ($5 IS NULL OR id > $5) ORDER BY id LIMIT $6",
                    $crate::store::sessions::SESSION_SELECT
                ))
                .bind(org_id)
                .bind(f.building_id)
                .bind(&f.status)
                .bind(f.assigned_to)
                .bind(page.after)
                .bind(page.limit)
                .fetch_all(&self.reader)
                .await?;
                self.with_assignees(rows).await
            }

            async fn update_session(
                &self,
                org_id: uuid::Uuid,
                id: uuid::Uuid,
                p: &$crate::store::sessions::SessionPatch,
            ) -> $crate::store::StoreResult<$crate::store::sessions::SessionRecord> {
                let mut tx = self.writer.begin().await?;
                let done = sqlx::query(
                    "UPDATE test_sessions SET name = COALESCE($1, name), status = COALESCE($2, status), \
                     updated_at = $3 WHERE id = $4 AND org_id = $5 AND ($6 IS NULL OR status = $6)",
                )
                .bind(&p.name)
                .bind(&p.status)
                .bind(chrono::Utc::now())
                .bind(id)
                .bind(org_id)
                .bind(&p.expect_status)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 0 {
                    let exists: Option<i64> = sqlx::query_scalar(
                        "SELECT 1 FROM test_sessions WHERE id = $1 AND org_id = $2",
                    )
                    .bind(id)
                    .bind(org_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                    return Err(match exists {
                        Some(_) => $crate::store::StoreError::Conflict("status changed"),
                        None => $crate::store::StoreError::NotFound,
                    });
                }
                if let Some(sign_off) = &p.sign_off {
                    sqlx::query(
                        "UPDATE test_sessions SET signed_off_by = $1, signed_off_licence = $2, \
                         signed_off_at = $3 WHERE id = $4",
                    )
                    .bind(sign_off.as_ref().map(|s| s.by))
                    .bind(sign_off.as_ref().map(|s| s.licence.clone()))
                    .bind(sign_off.as_ref().map(|s| s.at))
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                }
                if let Some(users) = &p.assigned_to {
                    sqlx::query("DELETE FROM session_assignees WHERE session_id = $1")
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                    for user in users {
                        sqlx::query("INSERT INTO session_assignees (session_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                            .bind(id)
                            .bind(user)
                            .execute(&mut *tx)
                            .await?;
                    }
                }
                tx.commit().await?;
                $crate::store::sessions::SessionStore::get_session(self, org_id, id).await
            }

            async fn building_has_sessions(&self, building_id: uuid::Uuid) -> $crate::store::StoreResult<bool> {
                let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM test_sessions WHERE building_id = $1")
                    .bind(building_id)
                    .fetch_one(&self.reader)
                    .await?;
                Ok(n > 0)
            }

            async fn append_changes(
                &self,
                changes: &[$crate::store::sessions::NewChange],
            ) -> $crate::store::StoreResult<Vec<i64>> {
                let mut tx = self.writer.begin().await?;
                let mut seqs = Vec::with_capacity(changes.len());
                for c in changes {
                    seqs.push(insert_change(&mut tx, c).await?);
                }
                tx.commit().await?;
                Ok(seqs)
            }

            fn watermark_after_commit(&self, max_seq: i64) -> Option<i64> {
                <$store>::single_writer_watermark(max_seq)
            }

            async fn announce_documents(&self, node: &str, docs: &[uuid::Uuid]) -> $crate::store::StoreResult<()> {
                <$store>::announce(self, node, docs).await
            }

            async fn announce_event(&self, event: &str) -> $crate::store::StoreResult<()> {
                <$store>::announce_hub_event(self, event).await
            }

            async fn load_document(
                &self,
                session_id: uuid::Uuid,
            ) -> $crate::store::StoreResult<$crate::store::sessions::StoredDocument> {
                let mut tx = self.consistent_read().await?;
                let snapshot: Option<(Vec<u8>, i64)> =
                    sqlx::query_as("SELECT bytes, generation FROM doc_snapshots WHERE session_id = $1")
                        .bind(session_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                let changes: Vec<(Vec<u8>, Vec<u8>)> = sqlx::query_as(
                    "SELECT change_hash, bytes FROM doc_changes WHERE session_id = $1 \
                     AND bytes IS NOT NULL ORDER BY seq",
                )
                .bind(session_id)
                .fetch_all(&mut *tx)
                .await?;
                let watermark: i64 = sqlx::query_scalar(&format!("SELECT {}", <$store>::HORIZON))
                    .fetch_one(&mut *tx)
                    .await?;
                let projected_heads: Option<String> =
                    sqlx::query_scalar("SELECT heads FROM session_projection_state WHERE session_id = $1")
                        .bind(session_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                tx.commit().await?;
                Ok($crate::store::sessions::StoredDocument {
                    snapshot,
                    changes,
                    watermark,
                    projected_heads,
                })
            }

            async fn changes_after(
                &self,
                session_id: uuid::Uuid,
                watermark: i64,
            ) -> $crate::store::StoreResult<$crate::store::sessions::ChangesAfter> {
                // One statement, so the rows and the horizon come from one snapshot (and the
                // catch-up costs one round trip): the rows, then one row carrying the horizon.
                let rows: Vec<(Option<Vec<u8>>, Option<Vec<u8>>, Option<i64>)> = sqlx::query_as(&format!(
                    "SELECT change_hash, bytes, NULL FROM doc_changes WHERE session_id = $1 AND {wm} >= $2 \
                     UNION ALL SELECT NULL, NULL, {horizon}",
                    wm = <$store>::WATERMARK,
                    horizon = <$store>::HORIZON
                ))
                .bind(session_id)
                .bind(watermark)
                .fetch_all(&self.writer)
                .await?;
                let mut next = watermark;
                let mut out = Vec::with_capacity(rows.len());
                for (hash, bytes, horizon) in rows {
                    match (hash, horizon) {
                        (Some(h), _) => out.push((h, bytes)),
                        (None, Some(w)) => next = w,
                        (None, None) => {}
                    }
                }
                Ok($crate::store::sessions::ChangesAfter { rows: out, watermark: next })
            }

            async fn load_snapshot(
                &self,
                session_id: uuid::Uuid,
            ) -> $crate::store::StoreResult<Option<(Vec<u8>, i64)>> {
                Ok(sqlx::query_as("SELECT bytes, generation FROM doc_snapshots WHERE session_id = $1")
                    .bind(session_id)
                    .fetch_optional(&self.writer)
                    .await?)
            }

            async fn compact(
                &self,
                session_id: uuid::Uuid,
                snapshot: &[u8],
                expected_generation: Option<i64>,
                covered: &[Vec<u8>],
            ) -> $crate::store::StoreResult<Option<i64>> {
                let mut tx = self.writer.begin().await?;
                let now = chrono::Utc::now();
                // Compare-and-swap on the generation: one statement, so two nodes compacting
                // at once cannot both win (PostgreSQL re-checks the WHERE after a row lock).
                let written: Option<i64> = match expected_generation {
                    None => sqlx::query_scalar(
                        "INSERT INTO doc_snapshots (session_id, bytes, covers_seq, generation, updated_at) \
                         VALUES ($1, $2, 0, 1, $3) ON CONFLICT (session_id) DO NOTHING RETURNING generation",
                    )
                    .bind(session_id)
                    .bind(snapshot)
                    .bind(now)
                    .fetch_optional(&mut *tx)
                    .await?,
                    Some(g) => sqlx::query_scalar(
                        "UPDATE doc_snapshots SET bytes = $2, generation = generation + 1, updated_at = $3 \
                         WHERE session_id = $1 AND generation = $4 RETURNING generation",
                    )
                    .bind(session_id)
                    .bind(snapshot)
                    .bind(now)
                    .bind(g)
                    .fetch_optional(&mut *tx)
                    .await?,
                };
                let Some(generation) = written else {
                    tx.rollback().await?;
                    return Ok(None);
                };
                for chunk in covered.chunks(500) {
                    let list = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect::<Vec<_>>().join(", ");
                    let sql = format!(
                        "UPDATE doc_changes SET bytes = NULL WHERE session_id = $1 AND bytes IS NOT NULL \
                         AND change_hash IN ({list})"
                    );
                    let mut q = sqlx::query(&sql).bind(session_id);
                    for h in chunk {
                        q = q.bind(h);
                    }
                    q.execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(Some(generation))
            }

            async fn sessions_changed_since(
                &self,
                watermark: i64,
                node: i64,
            ) -> $crate::store::StoreResult<(Vec<uuid::Uuid>, i64)> {
                let mut tx = self.consistent_read().await?;
                let ids: Vec<uuid::Uuid> = sqlx::query_scalar(&format!(
                    "SELECT DISTINCT session_id FROM doc_changes WHERE {} >= $1 AND node <> $2",
                    <$store>::WATERMARK
                ))
                .bind(watermark)
                .bind(node)
                .fetch_all(&mut *tx)
                .await?;
                let next: i64 = sqlx::query_scalar(&format!("SELECT {}", <$store>::HORIZON))
                    .fetch_one(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok((ids, next))
            }

            async fn current_watermark(&self) -> $crate::store::StoreResult<i64> {
                Ok(sqlx::query_scalar(&format!("SELECT {}", <$store>::HORIZON))
                    .fetch_one(&self.writer)
                    .await?)
            }

            async fn stale_projections(
                &self,
                after: Option<uuid::Uuid>,
                limit: i64,
            ) -> $crate::store::StoreResult<Vec<uuid::Uuid>> {
                Ok(sqlx::query_scalar(&format!(
                    "SELECT s.id FROM test_sessions s \
                     LEFT JOIN session_projection_state p ON p.session_id = s.id \
                     WHERE ($1 IS NULL OR s.id > $1) AND EXISTS (SELECT 1 FROM doc_changes c \
                       WHERE c.session_id = s.id AND c.{} >= COALESCE(p.watermark, -1)) \
                     ORDER BY s.id LIMIT $2",
                    <$store>::WATERMARK
                ))
                .bind(after)
                .bind(limit)
                .fetch_all(&self.writer)
                .await?)
            }

            async fn projection_is_current(&self, session_id: uuid::Uuid) -> $crate::store::StoreResult<bool> {
                let stale: bool = sqlx::query_scalar(&format!(
                    "SELECT EXISTS (SELECT 1 FROM doc_changes c WHERE c.session_id = $1 AND c.{} >= \
                     COALESCE((SELECT watermark FROM session_projection_state WHERE session_id = $1), -1))",
                    <$store>::WATERMARK
                ))
                .bind(session_id)
                .fetch_one(&self.writer)
                .await?;
                Ok(!stale)
            }

            async fn mark_projections_stale(&self, sessions: &[uuid::Uuid]) -> $crate::store::StoreResult<()> {
                let mut tx = self.writer.begin().await?;
                for chunk in sessions.chunks(500) {
                    let list: Vec<String> = (1..=chunk.len()).map(|n| format!("${n}")).collect();
                    let sql = format!(
                        "UPDATE session_projection_state SET watermark = -1 WHERE session_id IN ({})",
                        list.join(", ")
                    );
                    let mut q = sqlx::query(&sql);
                    for id in chunk {
                        q = q.bind(*id);
                    }
                    q.execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn compacted_changes(
                &self,
                session_id: uuid::Uuid,
            ) -> $crate::store::StoreResult<(Option<Vec<u8>>, Vec<Vec<u8>>)> {
                let mut tx = self.consistent_read().await?;
                let snapshot: Option<Vec<u8>> =
                    sqlx::query_scalar("SELECT bytes FROM doc_snapshots WHERE session_id = $1")
                        .bind(session_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                let hashes: Vec<Vec<u8>> = sqlx::query_scalar(
                    "SELECT change_hash FROM doc_changes WHERE session_id = $1 AND bytes IS NULL ORDER BY seq",
                )
                .bind(session_id)
                .fetch_all(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok((snapshot, hashes))
            }

            async fn session_ids(
                &self,
                after: Option<uuid::Uuid>,
                limit: i64,
            ) -> $crate::store::StoreResult<Vec<uuid::Uuid>> {
                Ok(sqlx::query_scalar(
                    "SELECT id FROM test_sessions WHERE ($1 IS NULL OR id > $1) ORDER BY id LIMIT $2",
                )
                .bind(after)
                .bind(limit)
                .fetch_all(&self.reader)
                .await?)
            }

            async fn change_attributions(
                &self,
                session_id: uuid::Uuid,
            ) -> $crate::store::StoreResult<Vec<$crate::store::sessions::ChangeAttribution>> {
                Ok(sqlx::query_as(
                    "SELECT seq, change_hash, actor_id, user_id, device_id, connection_id, received_at \
                     FROM doc_changes WHERE session_id = $1 ORDER BY seq",
                )
                .bind(session_id)
                .fetch_all(&self.reader)
                .await?)
            }

            async fn write_projection(
                &self,
                session_id: uuid::Uuid,
                items: $crate::store::sessions::ItemsWrite<'_>,
                watermark: i64,
                heads: &str,
                problems: &serde_json::Value,
            ) -> $crate::store::StoreResult<$crate::store::sessions::ProjectionWrite> {
                use $crate::store::sessions::{ItemsWrite, ProjectionWrite};
                let mut tx = self.writer.begin().await?;
                // One writer per session at a time, across nodes: the session's state row is
                // locked (on PostgreSQL, until commit) before any item row is touched.
                sqlx::query(
                    "INSERT INTO session_projection_state (session_id, projected_seq, heads, problems, updated_at, watermark) \
                     VALUES ($1, -1, '', $2, $3, -1) ON CONFLICT (session_id) DO NOTHING",
                )
                .bind(session_id)
                .bind(sqlx::types::Json(serde_json::json!([])))
                .bind(chrono::Utc::now())
                .execute(&mut *tx)
                .await?;
                let stored: Option<String> = sqlx::query_scalar(
                    "UPDATE session_projection_state SET updated_at = updated_at \
                     WHERE session_id = $1 RETURNING heads",
                )
                .bind(session_id)
                .fetch_optional(&mut *tx)
                .await?;
                let (upsert, outcome) = match items {
                    ItemsWrite::Changed { upsert, removed, all, expect_heads } => {
                        if stored.as_deref() == Some(expect_heads) {
                            for asset in removed {
                                sqlx::query("DELETE FROM session_items WHERE session_id = $1 AND asset_id = $2")
                                    .bind(session_id)
                                    .bind(asset)
                                    .execute(&mut *tx)
                                    .await?;
                            }
                            (upsert, ProjectionWrite::Changed)
                        } else {
                            (all, ProjectionWrite::All)
                        }
                    }
                    ItemsWrite::All(rows) => (rows, ProjectionWrite::All),
                };
                if outcome == ProjectionWrite::All {
                    sqlx::query("DELETE FROM session_items WHERE session_id = $1")
                        .bind(session_id)
                        .execute(&mut *tx)
                        .await?;
                }
                upsert_items(&mut tx, upsert).await?;
                sqlx::query(
                    "UPDATE session_projection_state SET projected_seq = $2, watermark = $2, heads = $3, \
                     problems = $4, updated_at = $5 WHERE session_id = $1",
                )
                .bind(session_id)
                .bind(watermark)
                .bind(heads)
                .bind(sqlx::types::Json(problems))
                .bind(chrono::Utc::now())
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(outcome)
            }

            async fn meta_value(&self, key: &str, default: &str) -> $crate::store::StoreResult<String> {
                sqlx::query("INSERT INTO server_meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
                    .bind(key)
                    .bind(default)
                    .execute(&self.writer)
                    .await?;
                Ok(sqlx::query_scalar("SELECT value FROM server_meta WHERE key = $1")
                    .bind(key)
                    .fetch_one(&self.writer)
                    .await?)
            }

            async fn list_items(
                &self,
                session_id: uuid::Uuid,
            ) -> $crate::store::StoreResult<Vec<$crate::store::sessions::ItemRow>> {
                Ok(sqlx::query_as(&format!(
                    "SELECT {} FROM session_items WHERE session_id = $1 ORDER BY asset_id",
                    $crate::store::sessions::ITEM_COLUMNS
                ))
                .bind(session_id)
                .fetch_all(&self.reader)
                .await?)
            }
        }
    };
}

pub(crate) use sessions_sql;
