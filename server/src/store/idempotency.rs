//! Idempotency persistence: the `IdempotencyStore` contract and its SQL (shared by both backends).
//!
//! A key is claimed with an INSERT that does nothing on conflict: of two concurrent requests
//! with the same key exactly one inserts the row; the other reads it and learns whether to
//! replay, refuse (different request) or wait (still in flight). See `http::idempotency`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

#[allow(unused_imports)]
use super::{StoreError, StoreResult};

/// What a request asks to claim.
#[derive(Debug, Clone)]
pub struct NewClaim<'a> {
    pub user_id: Uuid,
    pub key: &'a str,
    /// SHA-256 of what identifies the request (method, path, body).
    pub request_hash: &'a [u8],
    pub now: DateTime<Utc>,
    /// When the stored outcome is forgotten (24 h by default).
    pub expires_at: DateTime<Utc>,
    /// An `in_flight` claim created before this is presumed dead (its process crashed or its
    /// client went away mid-handler) and may be taken over by a request with the same hash.
    pub stale_before: DateTime<Utc>,
}

/// A response kept for replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

/// The outcome of a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// This request owns the key now; finish with `complete_idempotency_key` or
    /// `release_idempotency_key`, passing the claim id.
    Claimed(Uuid),
    /// Another request with this key is still running.
    InFlight,
    /// The key was used with a different request.
    Mismatch,
    /// The same request already completed: answer with this.
    Replay(StoredResponse),
}

#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Claim `(user_id, key)` for a request, atomically (see `ClaimOutcome`). Expired rows are
    /// treated as absent.
    async fn claim_idempotency_key(&self, claim: &NewClaim<'_>) -> StoreResult<ClaimOutcome>;
    /// Record the response of a claimed request. False when the claim is no longer ours
    /// (taken over after going stale, or purged).
    async fn complete_idempotency_key(
        &self,
        user_id: Uuid,
        key: &str,
        claim_id: Uuid,
        response: &StoredResponse,
    ) -> StoreResult<bool>;
    /// Forget an in-flight claim (the request failed in a way a retry may fix).
    async fn release_idempotency_key(
        &self,
        user_id: Uuid,
        key: &str,
        claim_id: Uuid,
    ) -> StoreResult<()>;
    /// Delete rows whose `expires_at` has passed; returns how many.
    async fn purge_idempotency_keys(&self, now: DateTime<Utc>) -> StoreResult<u64>;
}

/// A stored row, as the claim logic reads it.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct KeyRow {
    pub request_hash: Vec<u8>,
    pub claim_id: Uuid,
    pub state: String,
    pub status: Option<i32>,
    pub content_type: Option<String>,
    pub response_body: Option<Vec<u8>>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// What to do about an existing row (pure, so the decision is the same on both backends).
pub(crate) enum Existing {
    Outcome(ClaimOutcome),
    /// The row is expired, or a stale in-flight claim of the same request: replace it if it
    /// still carries this claim id.
    TakeOver(Uuid),
}

pub(crate) fn decide(row: KeyRow, claim: &NewClaim<'_>) -> Existing {
    if row.expires_at <= claim.now {
        return Existing::TakeOver(row.claim_id);
    }
    let same = row.request_hash == claim.request_hash;
    match row.state.as_str() {
        "complete" if same => Existing::Outcome(ClaimOutcome::Replay(StoredResponse {
            status: row
                .status
                .and_then(|s| u16::try_from(s).ok())
                .unwrap_or(500),
            content_type: row.content_type,
            body: row.response_body.unwrap_or_default(),
        })),
        "complete" => Existing::Outcome(ClaimOutcome::Mismatch),
        // A live claim answers 409 whatever the body: its outcome is not known yet, and the
        // client learns about a mismatch on its retry.
        _ if row.created_at > claim.stale_before => Existing::Outcome(ClaimOutcome::InFlight),
        _ if same => Existing::TakeOver(row.claim_id),
        _ => Existing::Outcome(ClaimOutcome::Mismatch),
    }
}

macro_rules! idempotency_sql {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::idempotency::IdempotencyStore for $store {
            async fn claim_idempotency_key(
                &self,
                c: &$crate::store::idempotency::NewClaim<'_>,
            ) -> $crate::store::StoreResult<$crate::store::idempotency::ClaimOutcome> {
                use $crate::store::idempotency::{decide, ClaimOutcome, Existing, KeyRow};
                // Each pass either decides or loses a race to a concurrent writer (whose row
                // the next pass reads); a few passes always suffice.
                for _ in 0..4 {
                    let claim_id = uuid::Uuid::now_v7();
                    let inserted = sqlx::query(
                        "INSERT INTO idempotency_keys (user_id, idem_key, request_hash, claim_id, \
                         state, created_at, expires_at) VALUES ($1, $2, $3, $4, 'in_flight', $5, $6) \
                         ON CONFLICT (user_id, idem_key) DO NOTHING",
                    )
                    .bind(c.user_id)
                    .bind(c.key)
                    .bind(c.request_hash)
                    .bind(claim_id)
                    .bind(c.now)
                    .bind(c.expires_at)
                    .execute(&self.writer)
                    .await?;
                    if inserted.rows_affected() == 1 {
                        return Ok(ClaimOutcome::Claimed(claim_id));
                    }
                    let row: Option<KeyRow> = sqlx::query_as(
                        "SELECT request_hash, claim_id, state, status, content_type, response_body, \
                         created_at, expires_at FROM idempotency_keys WHERE user_id = $1 AND idem_key = $2",
                    )
                    .bind(c.user_id)
                    .bind(c.key)
                    .fetch_optional(&self.writer)
                    .await?;
                    let Some(row) = row else { continue };
                    match decide(row, c) {
                        Existing::Outcome(o) => return Ok(o),
                        Existing::TakeOver(old) => {
                            let done = sqlx::query(
                                "UPDATE idempotency_keys SET request_hash = $1, claim_id = $2, \
                                 state = 'in_flight', status = NULL, content_type = NULL, \
                                 response_body = NULL, created_at = $3, expires_at = $4 \
                                 WHERE user_id = $5 AND idem_key = $6 AND claim_id = $7",
                            )
                            .bind(c.request_hash)
                            .bind(claim_id)
                            .bind(c.now)
                            .bind(c.expires_at)
                            .bind(c.user_id)
                            .bind(c.key)
                            .bind(old)
                            .execute(&self.writer)
                            .await?;
                            if done.rows_affected() == 1 {
                                return Ok(ClaimOutcome::Claimed(claim_id));
                            }
                        }
                    }
                }
                // Pathological churn on one key: tell the client to retry.
                Ok(ClaimOutcome::InFlight)
            }

            async fn complete_idempotency_key(
                &self,
                user_id: uuid::Uuid,
                key: &str,
                claim_id: uuid::Uuid,
                r: &$crate::store::idempotency::StoredResponse,
            ) -> $crate::store::StoreResult<bool> {
                let done = sqlx::query(
                    "UPDATE idempotency_keys SET state = 'complete', status = $1, content_type = $2, \
                     response_body = $3 WHERE user_id = $4 AND idem_key = $5 AND claim_id = $6 \
                     AND state = 'in_flight'",
                )
                .bind(i32::from(r.status))
                .bind(&r.content_type)
                .bind(&r.body)
                .bind(user_id)
                .bind(key)
                .bind(claim_id)
                .execute(&self.writer)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn release_idempotency_key(
                &self,
                user_id: uuid::Uuid,
                key: &str,
                claim_id: uuid::Uuid,
            ) -> $crate::store::StoreResult<()> {
                sqlx::query(
                    "DELETE FROM idempotency_keys WHERE user_id = $1 AND idem_key = $2 \
                     AND claim_id = $3 AND state = 'in_flight'",
                )
                .bind(user_id)
                .bind(key)
                .bind(claim_id)
                .execute(&self.writer)
                .await?;
                Ok(())
            }

            async fn purge_idempotency_keys(
                &self,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<u64> {
                let done = sqlx::query("DELETE FROM idempotency_keys WHERE expires_at <= $1")
                    .bind(now)
                    .execute(&self.writer)
                    .await?;
                Ok(done.rows_affected())
            }
        }
    };
}

pub(crate) use idempotency_sql;
