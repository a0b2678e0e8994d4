//! Notices: the outbox (written by the defect store in the transaction of the change, see
//! [`enqueue_sql`]), webhook endpoints, deliveries with their lease and retry state, and the
//! attempt log. What a notice says and when to retry is decided in `crate::domain::notices`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::{Page, StoreResult};

/// A webhook endpoint as stored (the secrets sealed with the PII keys).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EndpointRecord {
    pub id: Uuid,
    pub org_id: Uuid,
    pub url: String,
    pub description: String,
    /// `,a,b,` or empty for every event type (`domain::notices::encode_event_types`).
    pub event_types: String,
    pub enabled: bool,
    pub secret_enc: Vec<u8>,
    pub previous_secret_enc: Option<Vec<u8>>,
    pub previous_secret_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
}

/// A partial update of an endpoint; `None` leaves the column alone.
#[derive(Debug, Clone, Default)]
pub struct EndpointPatch {
    pub url: Option<String>,
    pub description: Option<String>,
    pub event_types: Option<String>,
    pub enabled: Option<bool>,
}

/// A notice in the outbox.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct NoticeRecord {
    pub id: Uuid,
    pub org_id: Uuid,
    pub defect_id: Uuid,
    pub kind: String,
    pub payload: sqlx::types::Json<serde_json::Value>,
    pub created_at: DateTime<Utc>,
}

/// A notice's delivery to one recipient.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct DeliveryRecord {
    pub id: Uuid,
    pub notice_id: Uuid,
    pub channel: String,
    pub endpoint_id: Option<Uuid>,
    pub recipient: String,
    /// pending, delivered or failed (gave up after the last attempt).
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// One attempt to deliver.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct AttemptRecord {
    pub id: Uuid,
    pub delivery_id: Uuid,
    pub notice_id: Uuid,
    pub endpoint_id: Option<Uuid>,
    pub channel: String,
    pub recipient: String,
    pub at: DateTime<Utc>,
    /// delivered or failed.
    pub outcome: String,
    pub http_status: Option<i32>,
    pub error: Option<String>,
    pub duration_ms: i64,
    /// The receiving server's answer to a delivered email (its SMTP reply).
    pub reply: Option<String>,
}

/// A delivery a worker holds the lease of, with what it needs to send it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClaimedDelivery {
    pub id: Uuid,
    pub notice_id: Uuid,
    pub org_id: Uuid,
    pub channel: String,
    pub endpoint_id: Option<Uuid>,
    pub recipient: String,
    pub attempts: i32,
    pub kind: String,
    pub payload: sqlx::types::Json<serde_json::Value>,
    pub notice_created_at: DateTime<Utc>,
    pub url: Option<String>,
    pub secret_enc: Option<Vec<u8>>,
    pub previous_secret_enc: Option<Vec<u8>>,
    pub previous_secret_until: Option<DateTime<Utc>>,
    pub endpoint_enabled: Option<bool>,
}

/// How an attempt ended, as the worker reports it.
#[derive(Debug, Clone)]
pub struct Finish {
    /// pending (retry at `next_attempt_at`), delivered, or failed (no more attempts).
    pub status: &'static str,
    pub next_attempt_at: DateTime<Utc>,
    pub attempt: AttemptRecord,
}

#[async_trait]
pub trait NoticeStore: Send + Sync {
    /// Whether notices also go by email (SMTP is configured on this node): set once at start,
    /// before any notice is written. Off by default.
    fn set_email_channel(&self, on: bool);
    fn email_channel(&self) -> bool;
    async fn insert_endpoint(&self, e: &EndpointRecord) -> StoreResult<()>;
    /// The organisation's endpoints that are not deleted, oldest first.
    async fn list_endpoints(&self, org_id: Uuid) -> StoreResult<Vec<EndpointRecord>>;
    async fn get_endpoint(&self, org_id: Uuid, id: Uuid) -> StoreResult<EndpointRecord>;
    async fn update_endpoint(
        &self,
        org_id: Uuid,
        id: Uuid,
        patch: &EndpointPatch,
        at: DateTime<Utc>,
    ) -> StoreResult<EndpointRecord>;
    /// Replace the secret; the previous one keeps signing until `previous_until`.
    async fn rotate_endpoint_secret(
        &self,
        org_id: Uuid,
        id: Uuid,
        secret_enc: &[u8],
        previous_until: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> StoreResult<EndpointRecord>;
    /// Delete (the row stays for its delivery log); its pending deliveries fail.
    async fn delete_endpoint(&self, org_id: Uuid, id: Uuid, at: DateTime<Utc>) -> StoreResult<()>;
    /// Attempts to deliver to an endpoint, newest first.
    async fn endpoint_attempts(
        &self,
        org_id: Uuid,
        endpoint_id: Uuid,
        page: Page,
    ) -> StoreResult<Vec<AttemptRecord>>;

    /// Notices of the organisation (of one defect), oldest first, for those who may see the
    /// defect (`visible_to` as in `DefectFilter`).
    async fn list_notices(
        &self,
        org_id: Uuid,
        defect_id: Option<Uuid>,
        visible_to: Option<Uuid>,
        page: Page,
    ) -> StoreResult<Vec<NoticeRecord>>;
    async fn get_notice(
        &self,
        org_id: Uuid,
        id: Uuid,
        visible_to: Option<Uuid>,
    ) -> StoreResult<NoticeRecord>;
    /// The deliveries of these notices.
    async fn notice_deliveries(&self, notices: &[Uuid]) -> StoreResult<Vec<DeliveryRecord>>;
    /// Every attempt of one notice, oldest first.
    async fn notice_attempts(&self, notice_id: Uuid) -> StoreResult<Vec<AttemptRecord>>;
    /// Send a notice again: every delivery to an endpoint still there starts over (same
    /// `webhook-id`), and endpoints added since that want it get one. Returns the deliveries
    /// queued.
    async fn redeliver_notice(
        &self,
        org_id: Uuid,
        notice_id: Uuid,
        at: DateTime<Utc>,
    ) -> StoreResult<u64>;

    /// Take the lease of up to `limit` due deliveries until `lease_until` (rows another worker
    /// holds are skipped); email deliveries only when this node sends email.
    async fn claim_deliveries(
        &self,
        worker: Uuid,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<Vec<ClaimedDelivery>>;
    /// Record an attempt and the delivery's new state (if `worker` still holds its lease); a
    /// delivered notice that tells the owner meets its defect's deadline (`notified_at`).
    async fn finish_delivery(&self, worker: Uuid, f: &Finish) -> StoreResult<bool>;
    /// Escalate up to `limit` active defects past their deadline without a delivered notice
    /// (once each: `escalated_at` and a `defect.escalated` notice). Returns their ids.
    async fn escalate_overdue(&self, now: DateTime<Utc>, limit: i64) -> StoreResult<Vec<Uuid>>;
}

/// Columns of a claimed delivery (`notice_deliveries nd JOIN notices n LEFT JOIN
/// webhook_endpoints e`).
pub(crate) const CLAIM_SELECT: &str =
    "nd.id, nd.notice_id, nd.org_id, nd.channel, nd.endpoint_id, nd.recipient, nd.attempts, \
     n.kind, n.payload, n.created_at AS notice_created_at, e.url, e.secret_enc, \
     e.previous_secret_enc, e.previous_secret_until, \
     CASE WHEN e.deleted_at IS NULL THEN e.enabled ELSE FALSE END AS endpoint_enabled";

pub(crate) const ENDPOINT_COLUMNS: &str =
    "id, org_id, url, description, event_types, enabled, secret_enc, previous_secret_enc, \
     previous_secret_until, created_at, updated_at, deleted_at";

pub(crate) const DELIVERY_COLUMNS: &str = "id, notice_id, channel, endpoint_id, recipient, \
     status, attempts, next_attempt_at, delivered_at, last_error, created_at";

pub(crate) const ATTEMPT_COLUMNS: &str = "id, delivery_id, notice_id, endpoint_id, channel, \
     recipient, at, outcome, http_status, error, duration_ms, reply";

/// What a notice needs to know of its defect, read inside the writing transaction.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct FactsRow {
    pub org_id: Uuid,
    pub building_id: Uuid,
    pub building_name: String,
    pub building_address: String,
    pub asset_id: Option<Uuid>,
    pub asset_identifier: Option<String>,
    pub asset_type: Option<String>,
    pub asset_location: Option<String>,
    pub session_id: Option<Uuid>,
    pub severity: String,
    pub status: String,
    pub title: String,
    pub description: String,
    pub observed_condition: Option<String>,
    pub rule_code: Option<String>,
    pub discovered_at: DateTime<Utc>,
    pub notify_by: DateTime<Utc>,
}

pub(crate) const FACTS_SQL: &str = "SELECT d.org_id, d.building_id, b.name AS building_name, \
     b.address AS building_address, d.asset_id, a.identifier AS asset_identifier, \
     a.asset_type AS asset_type, a.location AS asset_location, d.session_id, d.severity, d.status, \
     d.title, d.description, d.observed_condition, d.rule_code, d.discovered_at, d.notify_by \
     FROM defects d JOIN buildings b ON b.id = d.building_id \
     LEFT JOIN assets a ON a.id = d.asset_id WHERE d.id = $1";

/// `enqueue_notice(tx, defect, kind, at)`: the outbox write, for the defect store's
/// transactions. Inserts the notice and one delivery per enabled endpoint that wants it; a
/// notice that starts a new period clears `notified_at` and `escalated_at`.
macro_rules! enqueue_sql {
    ($store:ty) => {
        impl $store {
            pub(crate) async fn enqueue_notice(
                tx: &mut sqlx::Transaction<'static, <$store as $crate::store::Backend>::Db>,
                email: bool,
                defect: uuid::Uuid,
                kind: $crate::domain::notices::NoticeKind,
                at: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<uuid::Uuid> {
                let f: $crate::store::notices::FactsRow =
                    sqlx::query_as($crate::store::notices::FACTS_SQL)
                        .bind(defect)
                        .fetch_optional(&mut **tx)
                        .await?
                        .ok_or($crate::store::StoreError::NotFound)?;
                let id = uuid::Uuid::now_v7();
                let facts = $crate::domain::notices::Facts {
                    defect_id: defect,
                    building_id: f.building_id,
                    building_name: f.building_name,
                    building_address: f.building_address,
                    asset_id: f.asset_id,
                    asset_identifier: f.asset_identifier,
                    asset_type: f.asset_type,
                    asset_location: f.asset_location,
                    session_id: f.session_id,
                    severity: f.severity,
                    status: f.status,
                    title: f.title,
                    description: f.description,
                    observed_condition: f.observed_condition,
                    rule_code: f.rule_code,
                    discovered_at: f.discovered_at,
                    notify_by: f.notify_by,
                };
                let data = $crate::domain::notices::data(kind, id, &facts);
                sqlx::query(
                    "INSERT INTO notices (id, org_id, defect_id, kind, payload, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(id)
                .bind(f.org_id)
                .bind(defect)
                .bind(kind.as_str())
                .bind(sqlx::types::Json(&data))
                .bind(at)
                .execute(&mut **tx)
                .await?;
                Self::fan_out(tx, email, id, f.org_id, f.building_id, kind, at).await?;
                if kind.restarts_period() {
                    sqlx::query(
                        "UPDATE defects SET notified_at = NULL, escalated_at = NULL WHERE id = $1",
                    )
                    .bind(defect)
                    .execute(&mut **tx)
                    .await?;
                }
                Ok(id)
            }

            /// A delivery of `notice` to every enabled endpoint of the organisation that wants
            /// `kind` and has none yet, and with `email` one to each address
            /// `crate::domain::notices::email_recipients` names that has none yet. Returns how
            /// many were added.
            pub(crate) async fn fan_out(
                tx: &mut sqlx::Transaction<'static, <$store as $crate::store::Backend>::Db>,
                email: bool,
                notice: uuid::Uuid,
                org: uuid::Uuid,
                building: uuid::Uuid,
                kind: $crate::domain::notices::NoticeKind,
                at: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<u64> {
                let endpoints: Vec<(uuid::Uuid, String, String)> = sqlx::query_as(
                    "SELECT id, url, event_types FROM webhook_endpoints \
                     WHERE org_id = $1 AND enabled AND deleted_at IS NULL \
                     AND NOT EXISTS (SELECT 1 FROM notice_deliveries nd \
                                     WHERE nd.notice_id = $2 AND nd.endpoint_id = webhook_endpoints.id) \
                     ORDER BY id",
                )
                .bind(org)
                .bind(notice)
                .fetch_all(&mut **tx)
                .await?;
                let mut added = 0;
                for (endpoint, url, types) in endpoints {
                    if !$crate::domain::notices::endpoint_wants(&types, kind) {
                        continue;
                    }
                    sqlx::query(
                        "INSERT INTO notice_deliveries (id, notice_id, org_id, channel, endpoint_id, \
                         recipient, status, attempts, next_attempt_at, created_at) \
                         VALUES ($1, $2, $3, 'webhook', $4, $5, 'pending', 0, $6, $6)",
                    )
                    .bind(uuid::Uuid::now_v7())
                    .bind(notice)
                    .bind(org)
                    .bind(endpoint)
                    .bind(url)
                    .bind(at)
                    .execute(&mut **tx)
                    .await?;
                    added += 1;
                }
                if email {
                    added += Self::fan_out_email(tx, notice, org, building, kind, at).await?;
                }
                Ok(added)
            }

            async fn fan_out_email(
                tx: &mut sqlx::Transaction<'static, <$store as $crate::store::Backend>::Db>,
                notice: uuid::Uuid,
                org: uuid::Uuid,
                building: uuid::Uuid,
                kind: $crate::domain::notices::NoticeKind,
                at: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<u64> {
                let contact: Option<Option<String>> =
                    sqlx::query_scalar("SELECT contact_email FROM buildings WHERE id = $1")
                        .bind(building)
                        .fetch_optional(&mut **tx)
                        .await?;
                let admins: Vec<String> = if kind == $crate::domain::notices::NoticeKind::Escalated {
                    sqlx::query_scalar(
                        "SELECT email FROM users WHERE org_id = $1 AND role = 'admin' AND active \
                         ORDER BY email",
                    )
                    .bind(org)
                    .fetch_all(&mut **tx)
                    .await?
                } else {
                    Vec::new()
                };
                let mut added = 0;
                for to in $crate::domain::notices::email_recipients(kind, contact.flatten().as_deref(), &admins) {
                    let exists: Option<i32> = sqlx::query_scalar(
                        "SELECT 1 FROM notice_deliveries WHERE notice_id = $1 AND channel = 'email' \
                         AND recipient = $2",
                    )
                    .bind(notice)
                    .bind(&to)
                    .fetch_optional(&mut **tx)
                    .await?;
                    if exists.is_some() {
                        continue;
                    }
                    sqlx::query(
                        "INSERT INTO notice_deliveries (id, notice_id, org_id, channel, endpoint_id, \
                         recipient, status, attempts, next_attempt_at, created_at) \
                         VALUES ($1, $2, $3, 'email', NULL, $4, 'pending', 0, $5, $5)",
                    )
                    .bind(uuid::Uuid::now_v7())
                    .bind(notice)
                    .bind(org)
                    .bind(&to)
                    .bind(at)
                    .execute(&mut **tx)
                    .await?;
                    added += 1;
                }
                Ok(added)
            }
        }
    };
}

pub(crate) use enqueue_sql;

macro_rules! notices_sql {
    ($store:ty) => {
        $crate::store::notices::enqueue_sql!($store);

        #[async_trait::async_trait]
        impl $crate::store::notices::NoticeStore for $store {
            fn set_email_channel(&self, on: bool) {
                self.email.store(on, std::sync::atomic::Ordering::Relaxed);
            }

            fn email_channel(&self) -> bool {
                self.email.load(std::sync::atomic::Ordering::Relaxed)
            }

            async fn insert_endpoint(
                &self,
                e: &$crate::store::notices::EndpointRecord,
            ) -> $crate::store::StoreResult<()> {
                sqlx::query(&format!(
                    "INSERT INTO webhook_endpoints ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                    $crate::store::notices::ENDPOINT_COLUMNS
                ))
                .bind(e.id)
                .bind(e.org_id)
                .bind(&e.url)
                .bind(&e.description)
                .bind(&e.event_types)
                .bind(e.enabled)
                .bind(&e.secret_enc)
                .bind(&e.previous_secret_enc)
                .bind(e.previous_secret_until)
                .bind(e.created_at)
                .bind(e.updated_at)
                .bind(e.deleted_at)
                .execute(&self.writer)
                .await?;
                Ok(())
            }

            async fn list_endpoints(
                &self,
                org_id: uuid::Uuid,
            ) -> $crate::store::StoreResult<Vec<$crate::store::notices::EndpointRecord>> {
                Ok(sqlx::query_as(&format!(
                    "SELECT {} FROM webhook_endpoints WHERE org_id = $1 AND deleted_at IS NULL ORDER BY id",
                    $crate::store::notices::ENDPOINT_COLUMNS
                ))
                .bind(org_id)
                .fetch_all(&self.reader)
                .await?)
            }

            async fn get_endpoint(
                &self,
                org_id: uuid::Uuid,
                id: uuid::Uuid,
            ) -> $crate::store::StoreResult<$crate::store::notices::EndpointRecord> {
                sqlx::query_as(&format!(
                    "SELECT {} FROM webhook_endpoints WHERE id = $1 AND org_id = $2 AND deleted_at IS NULL",
                    $crate::store::notices::ENDPOINT_COLUMNS
                ))
                .bind(id)
                .bind(org_id)
                .fetch_optional(&self.writer)
                .await?
                .ok_or($crate::store::StoreError::NotFound)
            }

            async fn update_endpoint(
                &self,
                org_id: uuid::Uuid,
                id: uuid::Uuid,
                p: &$crate::store::notices::EndpointPatch,
                at: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<$crate::store::notices::EndpointRecord> {
                let done = sqlx::query(
                    "UPDATE webhook_endpoints SET url = COALESCE($1, url), \
                     description = COALESCE($2, description), event_types = COALESCE($3, event_types), \
                     enabled = COALESCE($4, enabled), updated_at = $5 \
                     WHERE id = $6 AND org_id = $7 AND deleted_at IS NULL",
                )
                .bind(&p.url)
                .bind(&p.description)
                .bind(&p.event_types)
                .bind(p.enabled)
                .bind(at)
                .bind(id)
                .bind(org_id)
                .execute(&self.writer)
                .await?;
                if done.rows_affected() == 0 {
                    return Err($crate::store::StoreError::NotFound);
                }
                self.get_endpoint(org_id, id).await
            }

            async fn rotate_endpoint_secret(
                &self,
                org_id: uuid::Uuid,
                id: uuid::Uuid,
                secret_enc: &[u8],
                previous_until: chrono::DateTime<chrono::Utc>,
                at: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<$crate::store::notices::EndpointRecord> {
                let done = sqlx::query(
                    "UPDATE webhook_endpoints SET previous_secret_enc = secret_enc, secret_enc = $1, \
                     previous_secret_until = $2, updated_at = $3 \
                     WHERE id = $4 AND org_id = $5 AND deleted_at IS NULL",
                )
                .bind(secret_enc)
                .bind(previous_until)
                .bind(at)
                .bind(id)
                .bind(org_id)
                .execute(&self.writer)
                .await?;
                if done.rows_affected() == 0 {
                    return Err($crate::store::StoreError::NotFound);
                }
                self.get_endpoint(org_id, id).await
            }

            async fn delete_endpoint(
                &self,
                org_id: uuid::Uuid,
                id: uuid::Uuid,
                at: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<()> {
                let mut tx = self.writer.begin().await?;
                let done = sqlx::query(
                    "UPDATE webhook_endpoints SET deleted_at = $1, enabled = FALSE, updated_at = $1 \
                     WHERE id = $2 AND org_id = $3 AND deleted_at IS NULL",
                )
                .bind(at)
                .bind(id)
                .bind(org_id)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 0 {
                    return Err($crate::store::StoreError::NotFound);
                }
                sqlx::query(
                    "UPDATE notice_deliveries SET status = 'failed', last_error = 'endpoint deleted' \
                     WHERE endpoint_id = $1 AND status = 'pending'",
                )
                .bind(id)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn endpoint_attempts(
                &self,
                org_id: uuid::Uuid,
                endpoint_id: uuid::Uuid,
                page: $crate::store::Page,
            ) -> $crate::store::StoreResult<Vec<$crate::store::notices::AttemptRecord>> {
                Ok(sqlx::query_as(&format!(
                    "SELECT {} FROM notice_attempts WHERE org_id = $1 AND endpoint_id = $2 \
                     AND ($3 IS NULL OR id < $3) ORDER BY id DESC LIMIT $4",
                    $crate::store::notices::ATTEMPT_COLUMNS
                ))
                .bind(org_id)
                .bind(endpoint_id)
                .bind(page.after)
                .bind(page.limit)
                .fetch_all(&self.reader)
                .await?)
            }

            async fn list_notices(
                &self,
                org_id: uuid::Uuid,
                defect_id: Option<uuid::Uuid>,
                visible_to: Option<uuid::Uuid>,
                page: $crate::store::Page,
            ) -> $crate::store::StoreResult<Vec<$crate::store::notices::NoticeRecord>> {
                Ok(sqlx::query_as(&format!(
                    "SELECT n.id, n.org_id, n.defect_id, n.kind, n.payload, n.created_at \
                     FROM notices n JOIN defects d ON d.id = n.defect_id \
                     WHERE n.org_id = $1 AND ($2 IS NULL OR n.defect_id = $2) \
                     AND ($3 IS NULL OR n.id > $3) AND {} ORDER BY n.id LIMIT $4",
                    $crate::store::defects::visible(5)
                ))
                .bind(org_id)
                .bind(defect_id)
                .bind(page.after)
                .bind(page.limit)
                .bind(visible_to)
                .fetch_all(&self.reader)
                .await?)
            }

            async fn get_notice(
                &self,
                org_id: uuid::Uuid,
                id: uuid::Uuid,
                visible_to: Option<uuid::Uuid>,
            ) -> $crate::store::StoreResult<$crate::store::notices::NoticeRecord> {
                sqlx::query_as(&format!(
                    "SELECT n.id, n.org_id, n.defect_id, n.kind, n.payload, n.created_at \
                     FROM notices n JOIN defects d ON d.id = n.defect_id \
                     WHERE n.id = $1 AND n.org_id = $2 AND {}",
                    $crate::store::defects::visible(3)
                ))
                .bind(id)
                .bind(org_id)
                .bind(visible_to)
                .fetch_optional(&self.reader)
                .await?
                .ok_or($crate::store::StoreError::NotFound)
            }

            async fn notice_deliveries(
                &self,
                notices: &[uuid::Uuid],
            ) -> $crate::store::StoreResult<Vec<$crate::store::notices::DeliveryRecord>> {
                let mut out = Vec::new();
                for chunk in notices.chunks(500) {
                    let mut q = sqlx::QueryBuilder::<<$store as $crate::store::Backend>::Db>::new(format!(
                        "SELECT {} FROM notice_deliveries WHERE notice_id IN (",
                        $crate::store::notices::DELIVERY_COLUMNS
                    ));
                    let mut list = q.separated(", ");
                    for n in chunk {
                        list.push_bind(*n);
                    }
                    q.push(") ORDER BY id");
                    out.extend(
                        q.build_query_as::<$crate::store::notices::DeliveryRecord>()
                            .fetch_all(&self.reader)
                            .await?,
                    );
                }
                Ok(out)
            }

            async fn notice_attempts(
                &self,
                notice_id: uuid::Uuid,
            ) -> $crate::store::StoreResult<Vec<$crate::store::notices::AttemptRecord>> {
                Ok(sqlx::query_as(&format!(
                    "SELECT {} FROM notice_attempts WHERE notice_id = $1 ORDER BY at, id",
                    $crate::store::notices::ATTEMPT_COLUMNS
                ))
                .bind(notice_id)
                .fetch_all(&self.reader)
                .await?)
            }

            async fn redeliver_notice(
                &self,
                org_id: uuid::Uuid,
                notice_id: uuid::Uuid,
                at: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<u64> {
                let mut tx = self.writer.begin().await?;
                let kind: Option<String> =
                    sqlx::query_scalar("SELECT kind FROM notices WHERE id = $1 AND org_id = $2")
                        .bind(notice_id)
                        .bind(org_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                let kind = kind
                    .as_deref()
                    .and_then($crate::domain::notices::NoticeKind::parse)
                    .ok_or($crate::store::StoreError::NotFound)?;
                let email = $crate::store::notices::NoticeStore::email_channel(self);
                let reset = sqlx::query(
                    "UPDATE notice_deliveries SET status = 'pending', attempts = 0, next_attempt_at = $1, \
                     lease_until = NULL, leased_by = NULL \
                     WHERE notice_id = $2 AND (endpoint_id IN (SELECT id FROM webhook_endpoints \
                        WHERE org_id = $3 AND enabled AND deleted_at IS NULL) \
                        OR (channel = 'email' AND $4))",
                )
                .bind(at)
                .bind(notice_id)
                .bind(org_id)
                .bind(email)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                let building: uuid::Uuid = sqlx::query_scalar(
                    "SELECT d.building_id FROM notices n JOIN defects d ON d.id = n.defect_id WHERE n.id = $1",
                )
                .bind(notice_id)
                .fetch_one(&mut *tx)
                .await?;
                let added = Self::fan_out(&mut tx, email, notice_id, org_id, building, kind, at).await?;
                tx.commit().await?;
                Ok(reset + added)
            }

            async fn claim_deliveries(
                &self,
                worker: uuid::Uuid,
                now: chrono::DateTime<chrono::Utc>,
                lease_until: chrono::DateTime<chrono::Utc>,
                limit: i64,
            ) -> $crate::store::StoreResult<Vec<$crate::store::notices::ClaimedDelivery>> {
                let mut tx = self.writer.begin().await?;
                // PostgreSQL: rows another node is claiming right now are skipped, not waited
                // for; SQLite has one writer. The lease covers a worker that dies mid-send.
                let ids: Vec<uuid::Uuid> = sqlx::query_scalar(&format!(
                    "SELECT id FROM notice_deliveries WHERE status = 'pending' AND next_attempt_at <= $1 \
                     AND (lease_until IS NULL OR lease_until < $1) AND (channel = 'webhook' OR $3) \
                     ORDER BY next_attempt_at, id LIMIT $2 {}",
                    <$store>::SKIP_LOCKED
                ))
                .bind(now)
                .bind(limit)
                .bind($crate::store::notices::NoticeStore::email_channel(self))
                .fetch_all(&mut *tx)
                .await?;
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                let mut out = Vec::with_capacity(ids.len());
                for id in ids {
                    sqlx::query(
                        "UPDATE notice_deliveries SET lease_until = $1, leased_by = $2 WHERE id = $3",
                    )
                    .bind(lease_until)
                    .bind(worker)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                    let row: $crate::store::notices::ClaimedDelivery = sqlx::query_as(&format!(
                        "SELECT {} FROM notice_deliveries nd JOIN notices n ON n.id = nd.notice_id \
                         LEFT JOIN webhook_endpoints e ON e.id = nd.endpoint_id WHERE nd.id = $1",
                        $crate::store::notices::CLAIM_SELECT
                    ))
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await?;
                    out.push(row);
                }
                tx.commit().await?;
                Ok(out)
            }

            async fn finish_delivery(
                &self,
                worker: uuid::Uuid,
                f: &$crate::store::notices::Finish,
            ) -> $crate::store::StoreResult<bool> {
                let a = &f.attempt;
                let mut tx = self.writer.begin().await?;
                let done = sqlx::query(
                    "UPDATE notice_deliveries SET status = $1, attempts = attempts + 1, \
                     next_attempt_at = $2, lease_until = NULL, leased_by = NULL, \
                     delivered_at = CASE WHEN $1 = 'delivered' THEN $3 ELSE delivered_at END, \
                     last_error = $4 WHERE id = $5 AND leased_by = $6 AND status = 'pending'",
                )
                .bind(f.status)
                .bind(f.next_attempt_at)
                .bind(a.at)
                .bind(&a.error)
                .bind(a.delivery_id)
                .bind(worker)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 0 {
                    // The lease ran out and another worker took it over, or it was redelivered.
                    return Ok(false);
                }
                sqlx::query(&format!(
                    "INSERT INTO notice_attempts ({}, org_id) \
                     SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, org_id FROM notices WHERE id = $3",
                    $crate::store::notices::ATTEMPT_COLUMNS
                ))
                .bind(a.id)
                .bind(a.delivery_id)
                .bind(a.notice_id)
                .bind(a.endpoint_id)
                .bind(&a.channel)
                .bind(&a.recipient)
                .bind(a.at)
                .bind(&a.outcome)
                .bind(a.http_status)
                .bind(&a.error)
                .bind(a.duration_ms)
                .bind(&a.reply)
                .execute(&mut *tx)
                .await?;
                if f.status == "delivered" {
                    // The first delivered notice of the current period meets the deadline (a
                    // notice from before a severity raise or reopen does not).
                    sqlx::query(
                        "UPDATE defects SET notified_at = $1 WHERE notified_at IS NULL \
                         AND id = (SELECT defect_id FROM notices WHERE id = $2 \
                                   AND kind IN ('defect.opened', 'defect.reconfirmed', \
                                                'defect.severity_raised', 'defect.reopened')) \
                         AND NOT EXISTS (SELECT 1 FROM notices later, notices this \
                             WHERE this.id = $2 AND later.defect_id = this.defect_id \
                             AND later.kind IN ('defect.severity_raised', 'defect.reopened') \
                             AND later.created_at > this.created_at)",
                    )
                    .bind(a.at)
                    .bind(a.notice_id)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(true)
            }

            async fn escalate_overdue(
                &self,
                now: chrono::DateTime<chrono::Utc>,
                limit: i64,
            ) -> $crate::store::StoreResult<Vec<uuid::Uuid>> {
                let candidates: Vec<uuid::Uuid> = sqlx::query_scalar(
                    "SELECT id FROM defects WHERE notified_at IS NULL AND escalated_at IS NULL \
                     AND notify_by < $1 \
                     AND status IN ('open', 'acknowledged', 'repair_scheduled', 'repaired', 'verified') \
                     ORDER BY notify_by LIMIT $2",
                )
                .bind(now)
                .bind(limit)
                .fetch_all(&self.writer)
                .await?;
                let mut escalated = Vec::new();
                for id in candidates {
                    let mut tx = self.writer.begin().await?;
                    // Conditional: of several nodes, one escalates.
                    let done = sqlx::query(
                        "UPDATE defects SET escalated_at = $1 WHERE id = $2 \
                         AND escalated_at IS NULL AND notified_at IS NULL AND notify_by < $1",
                    )
                    .bind(now)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                    if done.rows_affected() == 1 {
                        Self::enqueue_notice(&mut tx, $crate::store::notices::NoticeStore::email_channel(self), id, $crate::domain::notices::NoticeKind::Escalated, now)
                            .await?;
                        tx.commit().await?;
                        escalated.push(id);
                    }
                }
                Ok(escalated)
            }
        }
    };
}

pub(crate) use notices_sql;
