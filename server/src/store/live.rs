//! What changed lately, for the live events (`crate::live`): sessions whose projection or
//! status changed, and defects that changed, since a time. Read from the tables every node
//! writes, so one organisation's streams on any node see every node's changes.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::StoreResult;

/// A session that changed: one row per assignee (none: `assignee` is null).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ChangedSession {
    pub id: Uuid,
    pub building_id: Uuid,
    pub status: String,
    /// The projection's heads (comma-separated bs58check), when it was projected.
    pub heads: Option<String>,
    pub changed_at: DateTime<Utc>,
    pub assignee: Option<Uuid>,
}

/// A defect that changed.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ChangedDefect {
    pub id: Uuid,
    pub session_id: Option<Uuid>,
    pub building_id: Uuid,
    pub status: String,
    pub changed_at: DateTime<Utc>,
}

#[async_trait]
pub trait LiveStore: Send + Sync {
    /// Sessions of `org_id` projected or changed after `since` (at most `limit`, oldest first).
    async fn changed_sessions(
        &self,
        org_id: Uuid,
        since: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<Vec<ChangedSession>>;

    /// Defects of `org_id` changed after `since` (at most `limit`, oldest first).
    async fn changed_defects(
        &self,
        org_id: Uuid,
        since: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<Vec<ChangedDefect>>;
}

macro_rules! live_sql {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::live::LiveStore for $store {
            async fn changed_sessions(
                &self,
                org_id: uuid::Uuid,
                since: chrono::DateTime<chrono::Utc>,
                limit: i64,
            ) -> $crate::store::StoreResult<Vec<$crate::store::live::ChangedSession>> {
                Ok(sqlx::query_as(
                    "SELECT c.id, c.building_id, c.status, c.heads, c.changed_at, a.user_id AS assignee \
                     FROM (SELECT s.id, s.building_id, s.status, p.heads, \
                                  CASE WHEN p.updated_at IS NOT NULL AND p.updated_at > s.updated_at \
                                       THEN p.updated_at ELSE s.updated_at END AS changed_at \
                           FROM test_sessions s \
                           LEFT JOIN session_projection_state p ON p.session_id = s.id \
                           WHERE s.id IN (SELECT id FROM test_sessions WHERE org_id = $1 AND updated_at > $2 \
                                          UNION SELECT q.session_id FROM session_projection_state q \
                                          JOIN test_sessions t ON t.id = q.session_id \
                                          WHERE q.updated_at > $2 AND t.org_id = $1) \
                           ORDER BY changed_at LIMIT $3) c \
                     LEFT JOIN session_assignees a ON a.session_id = c.id \
                     ORDER BY c.changed_at, c.id",
                )
                .bind(org_id)
                .bind(since)
                .bind(limit)
                .fetch_all(&self.reader)
                .await?)
            }

            async fn changed_defects(
                &self,
                org_id: uuid::Uuid,
                since: chrono::DateTime<chrono::Utc>,
                limit: i64,
            ) -> $crate::store::StoreResult<Vec<$crate::store::live::ChangedDefect>> {
                Ok(sqlx::query_as(
                    "SELECT id, session_id, building_id, status, updated_at AS changed_at \
                     FROM defects WHERE org_id = $1 AND updated_at > $2 \
                     ORDER BY updated_at LIMIT $3",
                )
                .bind(org_id)
                .bind(since)
                .bind(limit)
                .fetch_all(&self.reader)
                .await?)
            }
        }
    };
}
pub(crate) use live_sql;
