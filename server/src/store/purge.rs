//! Purging archived buildings whose retention has ended (`firemode admin purge-archived`, see
//! `crate::purge`): one transaction per building removes the building and everything that
//! belongs to it, and records the purge. Safe with several nodes: the archive row is locked
//! (`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite has one writer), so a building is purged by
//! one run and the others skip it; the retention is checked again inside the transaction, and
//! the database's own retention triggers (migration 0015) still refuse any record younger than
//! seven years. Shared by both backends like the other `*_sql!` macros.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::StoreResult;

/// An archived building.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ArchivedBuilding {
    pub building_id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    pub archived_at: DateTime<Utc>,
    pub retain_until: DateTime<Utc>,
}

/// How many rows of each kind a purge removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PurgeCounts {
    pub assets: u64,
    pub sessions: u64,
    pub session_items: u64,
    pub document_changes: u64,
    pub evidence: u64,
    pub defects: u64,
    pub defect_events: u64,
    pub notices: u64,
    pub reference_values: u64,
    pub service_history: u64,
    pub condition_reports: u64,
}

/// What one building's purge did.
#[derive(Debug, Clone)]
pub struct Purged {
    pub building: ArchivedBuilding,
    pub counts: PurgeCounts,
    /// Evidence objects (SHA-256) no remaining evidence row refers to: to delete from the
    /// object store once the transaction has committed.
    pub orphaned_objects: Vec<Vec<u8>>,
}

#[async_trait]
pub trait PurgeStore: Send + Sync {
    /// Every archived building of every organisation, oldest archive first.
    async fn archived_buildings(&self) -> StoreResult<Vec<ArchivedBuilding>>;
    /// Purge `building_id` if it is still archived, its retention ended by `now` and it was
    /// archived by `cutoff`; `None` when it is not (anymore) — purged by another run, or not
    /// eligible. `by` says who ran it (recorded with the purge).
    async fn purge_building(
        &self,
        building_id: Uuid,
        cutoff: DateTime<Utc>,
        now: DateTime<Utc>,
        by: &str,
    ) -> StoreResult<Option<Purged>>;
    /// How many evidence rows refer to this object (checked again just before the object is
    /// deleted, in case an upload of the same bytes arrived since the purge committed).
    async fn evidence_refs(&self, sha256: &[u8]) -> StoreResult<i64>;
}

/// The deletes of a purge, children first, each bound to the building id as `$1`.
pub(crate) const PURGE_STEPS: &[(&str, &str)] = &[
    (
        "",
        "DELETE FROM notice_attempts WHERE notice_id IN (SELECT n.id FROM notices n \
         JOIN defects d ON d.id = n.defect_id WHERE d.building_id = $1)",
    ),
    (
        "",
        "DELETE FROM notice_deliveries WHERE notice_id IN (SELECT n.id FROM notices n \
         JOIN defects d ON d.id = n.defect_id WHERE d.building_id = $1)",
    ),
    (
        "notices",
        "DELETE FROM notices WHERE defect_id IN (SELECT id FROM defects WHERE building_id = $1)",
    ),
    (
        "",
        "DELETE FROM defect_sightings WHERE defect_id IN (SELECT id FROM defects WHERE building_id = $1) \
         OR session_id IN (SELECT id FROM test_sessions WHERE building_id = $1)",
    ),
    (
        "defect_events",
        "DELETE FROM defect_events WHERE defect_id IN (SELECT id FROM defects WHERE building_id = $1)",
    ),
    ("defects", "DELETE FROM defects WHERE building_id = $1"),
    (
        "evidence",
        "DELETE FROM evidence WHERE session_id IN (SELECT id FROM test_sessions WHERE building_id = $1)",
    ),
    (
        "session_items",
        "DELETE FROM session_items WHERE session_id IN (SELECT id FROM test_sessions WHERE building_id = $1)",
    ),
    (
        "",
        "DELETE FROM session_projection_state WHERE session_id IN (SELECT id FROM test_sessions WHERE building_id = $1)",
    ),
    (
        "",
        "DELETE FROM doc_snapshots WHERE session_id IN (SELECT id FROM test_sessions WHERE building_id = $1)",
    ),
    (
        "document_changes",
        "DELETE FROM doc_changes WHERE session_id IN (SELECT id FROM test_sessions WHERE building_id = $1)",
    ),
    (
        "",
        "DELETE FROM session_assignees WHERE session_id IN (SELECT id FROM test_sessions WHERE building_id = $1)",
    ),
    ("sessions", "DELETE FROM test_sessions WHERE building_id = $1"),
    (
        "reference_values",
        "DELETE FROM asset_reference_values WHERE building_id = $1",
    ),
    (
        "service_history",
        "DELETE FROM asset_service_history WHERE building_id = $1",
    ),
    (
        "condition_reports",
        "DELETE FROM condition_reports WHERE building_id = $1",
    ),
    ("assets", "DELETE FROM assets WHERE building_id = $1"),
    ("", "DELETE FROM building_archives WHERE building_id = $1"),
    ("", "DELETE FROM buildings WHERE id = $1"),
];

impl PurgeCounts {
    pub(crate) fn add(&mut self, what: &str, n: u64) {
        let slot = match what {
            "assets" => &mut self.assets,
            "sessions" => &mut self.sessions,
            "session_items" => &mut self.session_items,
            "document_changes" => &mut self.document_changes,
            "evidence" => &mut self.evidence,
            "defects" => &mut self.defects,
            "defect_events" => &mut self.defect_events,
            "notices" => &mut self.notices,
            "reference_values" => &mut self.reference_values,
            "service_history" => &mut self.service_history,
            "condition_reports" => &mut self.condition_reports,
            _ => return,
        };
        *slot += n;
    }
}

/// `impl PurgeStore` for a backend; `$lock` is what locks the archive row against a
/// concurrent purge (PostgreSQL: `FOR UPDATE OF a SKIP LOCKED`; SQLite: nothing, one writer),
/// `$begin` how the transaction starts (SQLite: `BEGIN IMMEDIATE`, so a purge run from the
/// command line beside a running server waits for the write lock up front instead of failing
/// to upgrade a read).
macro_rules! purge_sql {
    ($store:ty, $lock:literal, $begin:literal) => {
        #[async_trait::async_trait]
        impl $crate::store::purge::PurgeStore for $store {
            async fn archived_buildings(
                &self,
            ) -> $crate::store::StoreResult<Vec<$crate::store::purge::ArchivedBuilding>> {
                Ok(sqlx::query_as(
                    "SELECT a.building_id, a.org_id, b.name, a.archived_at, a.retain_until \
                     FROM building_archives a JOIN buildings b ON b.id = a.building_id \
                     ORDER BY a.archived_at, a.building_id",
                )
                .fetch_all(&self.reader)
                .await?)
            }

            async fn purge_building(
                &self,
                building_id: uuid::Uuid,
                cutoff: chrono::DateTime<chrono::Utc>,
                now: chrono::DateTime<chrono::Utc>,
                by: &str,
            ) -> $crate::store::StoreResult<Option<$crate::store::purge::Purged>> {
                let mut tx = self.writer.begin_with($begin).await?;
                let found: Option<$crate::store::purge::ArchivedBuilding> = sqlx::query_as(concat!(
                    "SELECT a.building_id, a.org_id, b.name, a.archived_at, a.retain_until \
                     FROM building_archives a JOIN buildings b ON b.id = a.building_id \
                     WHERE a.building_id = $1 AND a.retain_until <= $2 AND a.archived_at <= $3 ",
                    $lock
                ))
                .bind(building_id)
                .bind(now)
                .bind(cutoff)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(building) = found else {
                    return Ok(None);
                };
                let hashes: Vec<Vec<u8>> = sqlx::query_scalar(
                    "SELECT DISTINCT sha256 FROM evidence WHERE session_id IN \
                     (SELECT id FROM test_sessions WHERE building_id = $1)",
                )
                .bind(building_id)
                .fetch_all(&mut *tx)
                .await?;
                let mut counts = $crate::store::purge::PurgeCounts::default();
                for (what, sql) in $crate::store::purge::PURGE_STEPS {
                    let done = sqlx::query(sql).bind(building_id).execute(&mut *tx).await?;
                    counts.add(what, done.rows_affected());
                }
                let mut orphaned_objects = Vec::new();
                for h in hashes {
                    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM evidence WHERE sha256 = $1")
                        .bind(&h)
                        .fetch_one(&mut *tx)
                        .await?;
                    if left == 0 {
                        orphaned_objects.push(h);
                    }
                }
                sqlx::query(
                    "INSERT INTO building_purges (building_id, org_id, building_name, archived_at, \
                     retain_until, purged_at, purged_by, counts) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(building_id)
                .bind(building.org_id)
                .bind(&building.name)
                .bind(building.archived_at)
                .bind(building.retain_until)
                .bind(now)
                .bind(by)
                .bind(sqlx::types::Json(&counts))
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(Some($crate::store::purge::Purged {
                    building,
                    counts,
                    orphaned_objects,
                }))
            }

            async fn evidence_refs(&self, sha256: &[u8]) -> $crate::store::StoreResult<i64> {
                Ok(sqlx::query_scalar("SELECT COUNT(*) FROM evidence WHERE sha256 = $1")
                    .bind(sha256)
                    .fetch_one(&self.writer)
                    .await?)
            }
        }
    };
}

pub(crate) use purge_sql;
