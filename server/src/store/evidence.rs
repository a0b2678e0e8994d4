//! Evidence persistence: the `EvidenceStore` contract and its SQL (shared by both backends).
//!
//! Rows describe uploads; the bytes live in the object store under their SHA-256 (see
//! `crate::evidence`). There is deliberately no delete.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

#[allow(unused_imports)]
use super::{NewAudit, Page, StoreError, StoreResult};

/// One evidence record.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct EvidenceRecord {
    pub id: Uuid,
    pub org_id: Uuid,
    pub session_id: Uuid,
    pub asset_id: Option<Uuid>,
    /// `photo`, `video` or `document`.
    pub evidence_type: String,
    /// The 32-byte SHA-256 of the content, which is also its object-store address.
    pub sha256: Vec<u8>,
    pub size: i64,
    /// Detected from the content (magic bytes), never taken from the client.
    pub content_type: String,
    /// The client's file name, for display only.
    pub filename: Option<String>,
    pub metadata: sqlx::types::Json<serde_json::Value>,
    pub uploaded_by: Uuid,
    pub created_at: DateTime<Utc>,
}

#[async_trait]
pub trait EvidenceStore: Send + Sync {
    /// Record an upload and its audit row in one transaction: both or neither.
    async fn insert_evidence(&self, record: &EvidenceRecord, audit: &NewAudit) -> StoreResult<()>;
    /// An evidence record of `org_id` (NotFound for other organisations').
    async fn get_evidence(&self, org_id: Uuid, id: Uuid) -> StoreResult<EvidenceRecord>;
    /// A session's evidence, oldest first.
    async fn list_session_evidence(
        &self,
        org_id: Uuid,
        session_id: Uuid,
        page: Page,
    ) -> StoreResult<Vec<EvidenceRecord>>;
}

pub(crate) const EVIDENCE_COLUMNS: &str = "id, org_id, session_id, asset_id, evidence_type, \
     sha256, size, content_type, filename, metadata, uploaded_by, created_at";

macro_rules! evidence_sql {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::evidence::EvidenceStore for $store {
            async fn insert_evidence(
                &self,
                r: &$crate::store::evidence::EvidenceRecord,
                a: &$crate::store::NewAudit,
            ) -> $crate::store::StoreResult<()> {
                let mut tx = self.writer.begin().await?;
                sqlx::query(&format!(
                    "INSERT INTO evidence ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                    $crate::store::evidence::EVIDENCE_COLUMNS
                ))
                .bind(r.id)
                .bind(r.org_id)
                .bind(r.session_id)
                .bind(r.asset_id)
                .bind(&r.evidence_type)
                .bind(&r.sha256)
                .bind(r.size)
                .bind(&r.content_type)
                .bind(&r.filename)
                .bind(&r.metadata)
                .bind(r.uploaded_by)
                .bind(r.created_at)
                .execute(&mut *tx)
                .await
                .map_err(|e| $crate::store::StoreError::unique(e, "id"))?;
                sqlx::query(
                    "INSERT INTO audits (id, org_id, actor_id, action, target_type, target_id, \
                     details, request_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(uuid::Uuid::now_v7())
                .bind(a.org_id)
                .bind(a.actor_id)
                .bind(&a.action)
                .bind(&a.target_type)
                .bind(&a.target_id)
                .bind(sqlx::types::Json(&a.details))
                .bind(&a.request_id)
                .bind(r.created_at)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn get_evidence(
                &self,
                org_id: uuid::Uuid,
                id: uuid::Uuid,
            ) -> $crate::store::StoreResult<$crate::store::evidence::EvidenceRecord> {
                sqlx::query_as(&format!(
                    "SELECT {} FROM evidence WHERE id = $1 AND org_id = $2",
                    $crate::store::evidence::EVIDENCE_COLUMNS
                ))
                .bind(id)
                .bind(org_id)
                .fetch_optional(&self.reader)
                .await?
                .ok_or($crate::store::StoreError::NotFound)
            }

            async fn list_session_evidence(
                &self,
                org_id: uuid::Uuid,
                session_id: uuid::Uuid,
                page: $crate::store::Page,
            ) -> $crate::store::StoreResult<Vec<$crate::store::evidence::EvidenceRecord>> {
                Ok(sqlx::query_as(&format!(
                    "SELECT {} FROM evidence WHERE org_id = $1 AND session_id = $2 \
                     AND ($3 IS NULL OR id > $3) ORDER BY id LIMIT $4",
                    $crate::store::evidence::EVIDENCE_COLUMNS
                ))
                .bind(org_id)
                .bind(session_id)
                .bind(page.after)
                .bind(page.limit)
                .fetch_all(&self.reader)
                .await?)
            }
        }
    };
}

pub(crate) use evidence_sql;
