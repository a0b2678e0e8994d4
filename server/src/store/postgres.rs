//! PostgreSQL backend. Several nodes may share one database; revocations are announced with
//! NOTIFY so other nodes pick them up at once (they also poll, so a missed notification only
//! delays).

use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};

use super::sql::sql_store;
use super::StoreResult;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// Channel for revocation announcements; the payload is the revocation's sequence number.
pub const REVOCATION_CHANNEL: &str = "firemode_revocations";
/// Channel announcing committed document changes; the payload is the session id.
pub const DOCUMENT_CHANNEL: &str = "firemode_documents";

pub struct PgStore {
    pub(crate) writer: PgPool,
    pub(crate) reader: PgPool,
}

impl PgStore {
    pub async fn connect(url: &str) -> StoreResult<Self> {
        Self::connect_with_timeout(url, Duration::from_secs(10)).await
    }

    /// `acquire_timeout`: how long a query waits for a connection (config
    /// `db_acquire_timeout_ms`); past it the request is answered 503, not left hanging.
    pub async fn connect_with_timeout(url: &str, acquire_timeout: Duration) -> StoreResult<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(acquire_timeout)
            .connect(url)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self {
            writer: pool.clone(),
            reader: pool,
        })
    }

    pub fn pool(&self) -> &PgPool {
        &self.writer
    }

    /// Tell other nodes which documents changed; delivered when the transaction commits.
    async fn announce_changes(
        tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
        changes: &[super::sessions::NewChange],
    ) -> StoreResult<()> {
        let mut docs: Vec<uuid::Uuid> = changes.iter().map(|c| c.session_id).collect();
        docs.sort();
        docs.dedup();
        for d in docs {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(DOCUMENT_CHANNEL)
                .bind(d.to_string())
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    async fn after_revocation(&self, seq: i64) {
        // Best effort: pollers catch up if this fails.
        if let Err(e) = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(REVOCATION_CHANNEL)
            .bind(seq.to_string())
            .execute(&self.writer)
            .await
        {
            tracing::warn!(error = %e, "revocation NOTIFY failed; other nodes will poll");
        }
    }
}

sql_store!(PgStore, "postgres");
super::buildings::buildings_sql!(PgStore);
super::rules::rules_sql!(PgStore);
super::sessions::sessions_sql!(PgStore, sqlx::Postgres);
super::evidence::evidence_sql!(PgStore);
super::idempotency::idempotency_sql!(PgStore);
super::reports::reports_sql!(PgStore);
super::defects::defects_sql!(PgStore);
