//! Persistence. One [`Store`] interface, two backends (SQLite, PostgreSQL).
//!
//! Both backends share the SQL in `sql.rs`: sqlx binds `$N` parameters on SQLite too, and the
//! schema differs only in column types (see `migrations/`). Backend-specific behaviour (pool
//! set-up, pragmas, LISTEN/NOTIFY) lives in `sqlite.rs` and `postgres.rs`.

pub mod baselines;
pub mod buildings;
pub mod defects;
pub mod evidence;
pub mod idempotency;
pub mod live;
pub mod notices;
mod postgres;
pub mod purge;
pub mod records;
pub mod reports;
pub mod rules;
pub mod schedule;
pub mod sessions;
mod sql;
mod sqlite;

use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use postgres::{PgStore, DOCUMENT_CHANNEL, HUB_EVENT_CHANNEL, REVOCATION_CHANNEL};
pub use sqlite::SqliteStore;

use crate::config::DatabaseUrl;

/// Errors from the store. `Conflict` is a unique-constraint violation, mapped to 409 by HTTP.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("conflict: {0}")]
    Conflict(&'static str),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    /// Turn a unique-constraint violation into `Conflict(what)`; other errors pass through.
    pub(crate) fn unique(err: sqlx::Error, what: &'static str) -> Self {
        match &err {
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(what),
            _ => StoreError::Database(err),
        }
    }
}

impl StoreError {
    /// The database could not be reached or refused to work right now (see [`is_unavailable`]).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Database(e) if is_unavailable(e))
    }
}

/// Whether an error means "the database is unreachable, refusing connections or out of
/// resources" rather than "this statement is wrong": the first is a retryable 503, the second a
/// 500. The one place this is decided, for every backend.
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        // The pool's acquire timeout (`db_acquire_timeout_ms`) ran out: the database is slow to
        // answer or the network path to it is cut.
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => true,
        // Refused, reset or dropped connections.
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            match db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                Some(pg) => {
                    // Class 08: connection exception; 53: insufficient resources (too many
                    // connections, disk full); 57P01-03: terminated by an administrator, crash
                    // recovery, not accepting connections yet; 55000 with this message: the
                    // database was closed to connections (ALTER DATABASE ... ALLOW_CONNECTIONS).
                    code.starts_with("08")
                        || code.starts_with("53")
                        || matches!(code.as_ref(), "57P01" | "57P02" | "57P03")
                        || (code == "55000" && pg.message().contains("accepting connections"))
                }
                // SQLite: BUSY, LOCKED, IOERR, FULL, CANTOPEN (primary result codes; extended
                // codes carry the primary one in the low byte).
                None => code
                    .parse::<i64>()
                    .is_ok_and(|c| matches!(c & 0xff, 5 | 6 | 10 | 13 | 14)),
            }
        }
        _ => false,
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A user's role within their organisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Office,
    Inspector,
    Auditor,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Office => "office",
            Role::Inspector => "inspector",
            Role::Auditor => "auditor",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Role::Admin),
            "office" => Ok(Role::Office),
            "inspector" => Ok(Role::Inspector),
            "auditor" => Ok(Role::Auditor),
            other => Err(format!(
                "unknown role '{other}' (expected admin, office, inspector or auditor)"
            )),
        }
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Organisation {
    pub id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

/// A user row as stored: PII columns are ciphertext (see `crypto`).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRecord {
    pub id: Uuid,
    pub org_id: Uuid,
    pub email: String,
    pub password_hash: String,
    pub role: String,
    pub full_name_enc: Option<Vec<u8>>,
    pub phone_enc: Option<Vec<u8>>,
    pub active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The licence or accreditation number the user signs sessions off with.
    #[sqlx(default)]
    pub licence_number: Option<String>,
}

impl UserRecord {
    pub fn role(&self) -> Role {
        // The column has a CHECK constraint; an unknown value means a corrupt row, and the
        // least-privileged role is the safe reading.
        self.role.parse().unwrap_or(Role::Auditor)
    }
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub org_id: Uuid,
    pub email: String,
    pub password_hash: String,
    pub role: Role,
    pub full_name_enc: Option<Vec<u8>>,
    pub phone_enc: Option<Vec<u8>>,
}

/// A partial update; `None` leaves the column alone. For PII, `Some(None)` clears it.
#[derive(Debug, Clone, Default)]
pub struct UserPatch {
    pub role: Option<Role>,
    pub active: Option<bool>,
    pub password_hash: Option<String>,
    pub full_name_enc: Option<Option<Vec<u8>>>,
    pub phone_enc: Option<Option<Vec<u8>>>,
    pub licence_number: Option<Option<String>>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RefreshTokenRecord {
    pub id: Uuid,
    pub token_hash: Vec<u8>,
    pub family_id: Uuid,
    pub user_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevocationKind {
    /// One access token, by `jti`.
    Jti,
    /// Every token of a user issued before `not_before`.
    User,
    /// Every access token of one login session (refresh-token family, the `sid` claim).
    Family,
}

impl RevocationKind {
    fn as_str(self) -> &'static str {
        match self {
            RevocationKind::Jti => "jti",
            RevocationKind::User => "user",
            RevocationKind::Family => "family",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "user" => RevocationKind::User,
            "family" => RevocationKind::Family,
            _ => RevocationKind::Jti,
        }
    }
}

/// One connection pool's state.
#[derive(Debug, Clone, Copy)]
pub struct PoolStats {
    /// `writer` or `reader`.
    pub pool: &'static str,
    /// Connections open (idle or in use).
    pub open: u32,
    pub idle: u32,
    pub max: u32,
}

/// One login-throttle counter: a (email, address) pair, or an address as a whole (email "").
#[derive(Debug, Clone, Copy, Default)]
pub struct ThrottleRow {
    /// Failures (attempts in flight included) since the counter last started over.
    pub failures: i64,
    /// Unix ms of the latest attempt.
    pub last_at: i64,
    /// Unix ms before which this pair may not try again.
    pub locked_until: i64,
}

/// How [`Store::throttle_attempt`] grows a pair's lock: from the `free`-th failure within
/// `window_ms`, the pair waits `step_ms * n^2` (n = 1, 2, ... for each failure past `free - 1`),
/// at most `max_ms`.
#[derive(Debug, Clone, Copy)]
pub struct ThrottleRule {
    pub window_ms: i64,
    pub free: i64,
    pub step_ms: i64,
    pub max_ms: i64,
}

#[derive(Debug, Clone)]
pub struct Revocation {
    pub seq: i64,
    pub kind: RevocationKind,
    pub subject: String,
    pub not_before: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct AuditRecord {
    pub id: Uuid,
    pub org_id: Option<Uuid>,
    pub actor_id: Option<Uuid>,
    pub action: String,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    #[schema(value_type = Object)]
    pub details: sqlx::types::Json<serde_json::Value>,
    pub request_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// What to write to the audit log; id and time are assigned by the store.
#[derive(Debug, Clone, Default)]
pub struct NewAudit {
    pub org_id: Option<Uuid>,
    pub actor_id: Option<Uuid>,
    pub action: String,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub details: serde_json::Value,
    pub request_id: Option<String>,
}

/// Keyset pagination: items strictly after `after` (ids are UUIDv7, so id order is time order).
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub after: Option<Uuid>,
    pub limit: i64,
}

/// The persistence interface. Every method is scoped as its arguments say: methods that take an
/// `org_id` never return another organisation's rows.
#[async_trait]
pub trait Store:
    buildings::BuildingStore
    + baselines::ReferenceStore
    + defects::DefectStore
    + rules::RuleStore
    + reports::ReportStore
    + schedule::ScheduleStore
    + live::LiveStore
    + records::RecordStore
    + sessions::SessionStore
    + evidence::EvidenceStore
    + idempotency::IdempotencyStore
    + notices::NoticeStore
    + purge::PurgeStore
    + Send
    + Sync
    + 'static
{
    /// Which backend this is ("sqlite" or "postgres").
    fn backend(&self) -> &'static str;
    /// The connection pools' current sizes (for `/metrics`).
    fn pool_stats(&self) -> Vec<PoolStats>;
    /// Cheap round trip to the database (readiness).
    async fn ping(&self) -> StoreResult<()>;

    async fn create_org(&self, name: &str) -> StoreResult<Organisation>;
    async fn get_org(&self, id: Uuid) -> StoreResult<Organisation>;

    async fn create_user(&self, user: NewUser) -> StoreResult<UserRecord>;
    async fn get_user(&self, id: Uuid) -> StoreResult<UserRecord>;
    /// Lookup by (already lower-cased) email, across organisations: emails are globally unique.
    async fn get_user_by_email(&self, email: &str) -> StoreResult<UserRecord>;
    async fn list_users(&self, org_id: Uuid, page: Page) -> StoreResult<Vec<UserRecord>>;
    async fn update_user(
        &self,
        org_id: Uuid,
        id: Uuid,
        patch: UserPatch,
    ) -> StoreResult<UserRecord>;
    /// Every user's PII columns, for key rotation: (id, full_name_enc, phone_enc).
    async fn all_user_pii(&self) -> StoreResult<Vec<(Uuid, Option<Vec<u8>>, Option<Vec<u8>>)>>;

    async fn insert_refresh_token(&self, token: &RefreshTokenRecord) -> StoreResult<()>;
    async fn get_refresh_token(&self, token_hash: &[u8]) -> StoreResult<RefreshTokenRecord>;
    /// Mark a refresh token used; false when it was already used or revoked (a reuse).
    async fn use_refresh_token(&self, id: Uuid, at: DateTime<Utc>) -> StoreResult<bool>;
    async fn revoke_refresh_family(&self, family_id: Uuid, at: DateTime<Utc>) -> StoreResult<()>;
    async fn revoke_user_refresh_tokens(&self, user_id: Uuid, at: DateTime<Utc>)
        -> StoreResult<()>;

    async fn insert_revocation(
        &self,
        kind: RevocationKind,
        subject: &str,
        not_before: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<i64>;
    /// Unexpired revocations with `seq > after`, in order.
    async fn revocations_since(
        &self,
        after: i64,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<Revocation>>;
    async fn purge_expired(&self, now: DateTime<Utc>) -> StoreResult<u64>;

    /// The counters of `(email, address)` and of `address` as a whole (email ""), as stored.
    async fn throttle_rows(
        &self,
        email: &str,
        address: &str,
    ) -> StoreResult<(Option<ThrottleRow>, Option<ThrottleRow>)>;
    /// Count one attempt for `(email, address)` unless the pair is locked at `now_ms`, in one
    /// statement (concurrent attempts are each counted, so attempts in flight count). Returns
    /// the failures including this attempt, or `None` when locked (nothing counted).
    async fn throttle_attempt(
        &self,
        email: &str,
        address: &str,
        now_ms: i64,
        rule: ThrottleRule,
    ) -> StoreResult<Option<i64>>;
    /// Take back one counted attempt (it succeeded, or was refused after counting).
    async fn throttle_forgive(&self, email: &str, address: &str) -> StoreResult<()>;
    /// Forget the counters of `email` from `address` (a successful login), or from every
    /// address (`admin unlock`); the number of pairs cleared.
    async fn throttle_clear(&self, email: &str, address: Option<&str>) -> StoreResult<u64>;

    async fn insert_audit(&self, audit: NewAudit) -> StoreResult<Uuid>;
    async fn list_audits_by_actor(
        &self,
        actor_id: Uuid,
        page: Page,
    ) -> StoreResult<Vec<AuditRecord>>;
}

/// The sqlx driver of a store type, for helpers inside the shared SQL macros.
pub trait Backend {
    type Db: sqlx::Database;
}

impl Backend for SqliteStore {
    type Db = sqlx::Sqlite;
}

impl Backend for PgStore {
    type Db = sqlx::Postgres;
}

/// Open the store the URL names, creating the SQLite file if needed, and run migrations.
pub async fn connect(url: &DatabaseUrl) -> anyhow::Result<std::sync::Arc<dyn Store>> {
    Ok(match url {
        DatabaseUrl::Sqlite(path) => std::sync::Arc::new(SqliteStore::open(path).await?),
        DatabaseUrl::Postgres(secret) => {
            std::sync::Arc::new(PgStore::connect(secret.expose()).await?)
        }
    })
}
