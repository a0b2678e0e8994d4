//! SQLite backend: WAL, a busy timeout, one writer connection and a small reader pool.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::sql::sql_store;
use super::StoreResult;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

pub struct SqliteStore {
    pub(crate) writer: SqlitePool,
    pub(crate) reader: SqlitePool,
    /// Notices also go by email (`NoticeStore::set_email_channel`).
    pub(crate) email: std::sync::atomic::AtomicBool,
}

impl SqliteStore {
    /// Open (creating if missing) the database file and run migrations.
    pub async fn open(path: &Path) -> StoreResult<Self> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(sqlx::Error::Io)?;
            }
        }
        let opts = SqliteConnectOptions::from_str("sqlite:")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL in WAL mode is durable against process crashes (kill -9); only a power
            // loss can drop the last transactions. The sync hub's durability promise is about
            // the process, and FULL costs an fsync per commit.
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        // One writer: SQLite serialises writers anyway, and a single connection turns lock
        // contention into queueing in the pool instead of SQLITE_BUSY retries.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts.clone())
            .await?;
        MIGRATOR.run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts.read_only(true))
            .await?;
        Ok(Self {
            writer,
            reader,
            email: Default::default(),
        })
    }

    /// The catch-up watermark is the change sequence number: with one writer connection,
    /// rows commit in seq order, so everything below the highest seq read is visible.
    pub(crate) const WATERMARK: &'static str = "seq";
    /// Claiming notice deliveries: one writer connection, nothing to skip.
    pub(crate) const SKIP_LOCKED: &'static str = "";
    pub(crate) const HORIZON: &'static str = "(SELECT COALESCE(MAX(seq), 0) + 1 FROM doc_changes)";

    fn single_writer_watermark(max_seq: i64) -> Option<i64> {
        Some(max_seq + 1)
    }

    /// Reads that must agree with each other: the writer connection (one at a time).
    async fn consistent_read(&self) -> StoreResult<sqlx::Transaction<'static, sqlx::Sqlite>> {
        Ok(self.writer.begin().await?)
    }

    /// One node: nobody to tell.
    async fn announce(&self, _node: &str, _docs: &[uuid::Uuid]) -> StoreResult<()> {
        Ok(())
    }

    async fn announce_hub_event(&self, _event: &str) -> StoreResult<()> {
        Ok(())
    }

    async fn after_revocation(&self, _seq: i64) {
        // Other processes on this file notice new rows by polling (see auth::revocation).
    }
}

sql_store!(SqliteStore, "sqlite");
super::buildings::buildings_sql!(SqliteStore);
super::rules::rules_sql!(SqliteStore);
super::sessions::sessions_sql!(SqliteStore, sqlx::Sqlite);
super::evidence::evidence_sql!(SqliteStore);
super::idempotency::idempotency_sql!(SqliteStore);
super::reports::reports_sql!(SqliteStore);
super::schedule::schedule_sql!(SqliteStore);
super::live::live_sql!(SqliteStore);
super::records::records_sql!(SqliteStore);
super::defects::defects_sql!(SqliteStore);
super::purge::purge_sql!(SqliteStore, "", "BEGIN IMMEDIATE");
super::notices::notices_sql!(SqliteStore);
super::baselines::baselines_sql!(SqliteStore);
