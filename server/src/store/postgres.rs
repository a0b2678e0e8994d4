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
/// Channel announcing committed document changes; the payload is the announcing node's id and
/// the session ids, separated by spaces.
pub const DOCUMENT_CHANNEL: &str = "firemode_documents";

/// Channel for hub events other nodes act on (`reauthorize <session>`).
pub const HUB_EVENT_CHANNEL: &str = "firemode_hub_events";

pub struct PgStore {
    pub(crate) writer: PgPool,
    pub(crate) reader: PgPool,
    /// The doorbell's own connection, with `synchronous_commit` off for its whole session: a
    /// ring is then one round trip that never waits for a WAL flush (see `announce`).
    doorbell: tokio::sync::Mutex<Option<sqlx::PgConnection>>,
    /// Notices also go by email (`NoticeStore::set_email_channel`).
    pub(crate) email: std::sync::atomic::AtomicBool,
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
            doorbell: tokio::sync::Mutex::new(None),
            email: Default::default(),
        })
    }

    pub fn pool(&self) -> &PgPool {
        &self.writer
    }

    /// The catch-up watermark is a transaction id: every change row records the transaction
    /// that inserted it, and a read's horizon is the oldest transaction still in flight
    /// (`pg_snapshot_xmin`), below which every row is committed and visible. A sequence number
    /// would not do: values are taken before commit, and transactions commit out of order.
    pub(crate) const WATERMARK: &'static str = "xact";
    /// Claiming notice deliveries: rows another node is claiming are skipped, not waited for.
    pub(crate) const SKIP_LOCKED: &'static str = "FOR UPDATE SKIP LOCKED";
    pub(crate) const HORIZON: &'static str =
        "pg_snapshot_xmin(pg_current_snapshot())::text::bigint";

    fn single_writer_watermark(_max_seq: i64) -> Option<i64> {
        None
    }

    /// Reads that must agree with each other (a snapshot and the changes it does not hold):
    /// one REPEATABLE READ transaction, whose snapshot the horizon is also taken from.
    async fn consistent_read(&self) -> StoreResult<sqlx::Transaction<'static, sqlx::Postgres>> {
        let mut tx = self.writer.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }

    /// The doorbell: tell other nodes which documents have new changes. One NOTIFY per group
    /// commit (more only if the ids exceed PostgreSQL's 8,000-byte payload), sent after the
    /// changes committed, on a connection of its own whose transactions do not wait for a WAL
    /// flush: a hint needs no durability, and a transaction that sends NOTIFY holds a
    /// cluster-wide lock while it commits, so it stays out of the group commit. A lost hint only
    /// delays: nodes also sweep.
    async fn announce(&self, node: &str, docs: &[uuid::Uuid]) -> StoreResult<()> {
        use sqlx::Connection;
        const MAX_PAYLOAD: usize = 7_900;
        let mut payloads = Vec::new();
        let mut current = node.to_owned();
        for d in docs {
            if current.len() + 37 > MAX_PAYLOAD {
                payloads.push(std::mem::replace(&mut current, node.to_owned()));
            }
            current.push(' ');
            current.push_str(&d.to_string());
        }
        payloads.push(current);
        let mut guard = self.doorbell.lock().await;
        if guard.is_none() {
            let mut conn = sqlx::PgConnection::connect_with(&self.writer.connect_options()).await?;
            sqlx::query("SET synchronous_commit = off")
                .execute(&mut conn)
                .await?;
            *guard = Some(conn);
        }
        let Some(conn) = guard.as_mut() else {
            return Ok(());
        };
        for p in payloads {
            let sent = sqlx::query("SELECT pg_notify($1, $2)")
                .bind(DOCUMENT_CHANNEL)
                .bind(p)
                .execute(&mut *conn)
                .await;
            if let Err(e) = sent {
                // A broken connection is replaced at the next ring.
                *guard = None;
                return Err(e.into());
            }
        }
        Ok(())
    }

    async fn announce_hub_event(&self, event: &str) -> StoreResult<()> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(HUB_EVENT_CHANNEL)
            .bind(event)
            .execute(&self.writer)
            .await?;
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
super::schedule::schedule_sql!(PgStore);
super::live::live_sql!(PgStore);
super::records::records_sql!(PgStore);
super::defects::defects_sql!(PgStore);
super::purge::purge_sql!(PgStore, "FOR UPDATE OF a SKIP LOCKED", "BEGIN");
super::notices::notices_sql!(PgStore);
super::baselines::baselines_sql!(PgStore);
