//! Defects: automatic ones kept in step with the projection, manual ones, and their lifecycle.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::{Page, StoreResult};

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct DefectRecord {
    pub id: Uuid,
    pub org_id: Uuid,
    pub building_id: Uuid,
    pub asset_id: Option<Uuid>,
    pub session_id: Option<Uuid>,
    pub rule_code: Option<String>,
    pub rule_version: Option<String>,
    pub severity: String,
    pub status: String,
    pub source: String,
    pub title: String,
    pub description: String,
    pub observed_condition: Option<String>,
    pub evidence: sqlx::types::Json<Vec<String>>,
    pub discovered_at: DateTime<Utc>,
    pub notify_by: DateTime<Utc>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct DefectEvent {
    pub id: Uuid,
    pub defect_id: Uuid,
    pub from_status: Option<String>,
    pub to_status: String,
    pub actor_id: Option<Uuid>,
    pub note: Option<String>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default)]
pub struct DefectFilter {
    pub building_id: Option<Uuid>,
    pub session_id: Option<Uuid>,
    pub status: Option<String>,
    pub severity: Option<String>,
    /// Past `notify_by`, never acknowledged, still open.
    pub overdue_at: Option<DateTime<Utc>>,
}

/// One lifecycle step, stamped with who and when.
#[derive(Debug, Clone)]
pub struct Transition<'a> {
    pub from: &'a str,
    pub to: &'a str,
    pub actor: Uuid,
    pub note: Option<&'a str>,
    pub at: DateTime<Utc>,
}

/// What became of an automatic defect when a projection was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoOutcome {
    Created,
    Updated,
    Withdrawn,
    Unchanged,
}

#[async_trait]
pub trait DefectStore: Send + Sync {
    async fn insert_defect(&self, d: &DefectRecord) -> StoreResult<()>;
    /// Open (or refresh, or reopen if withdrawn) the automatic defect of a failed item.
    async fn upsert_automatic_defect(&self, d: &DefectRecord) -> StoreResult<AutoOutcome>;
    /// Withdraw the open automatic defect of an item that no longer fails.
    async fn withdraw_automatic_defect(
        &self,
        session_id: Uuid,
        asset_id: Uuid,
        at: DateTime<Utc>,
    ) -> StoreResult<AutoOutcome>;
    async fn get_defect(&self, org_id: Uuid, id: Uuid) -> StoreResult<DefectRecord>;
    async fn list_defects(
        &self,
        org_id: Uuid,
        f: &DefectFilter,
        page: Page,
    ) -> StoreResult<Vec<DefectRecord>>;
    /// Apply `step` if the defect is still in `step.from` (false when someone moved it first).
    async fn transition_defect(
        &self,
        org_id: Uuid,
        id: Uuid,
        step: &Transition<'_>,
    ) -> StoreResult<bool>;
    async fn defect_events(&self, id: Uuid) -> StoreResult<Vec<DefectEvent>>;
}

pub(crate) const DEFECT_COLUMNS: &str =
    "id, org_id, building_id, asset_id, session_id, rule_code, \
     rule_version, severity, status, source, title, description, observed_condition, evidence, \
     discovered_at, notify_by, acknowledged_at, created_by, created_at, updated_at";

macro_rules! defects_sql {
    ($store:ty) => {
        impl $store {
            async fn defect_event(
                tx: &mut sqlx::Transaction<'static, <$store as $crate::store::Backend>::Db>,
                defect: uuid::Uuid,
                from: Option<&str>,
                to: &str,
                actor: Option<uuid::Uuid>,
                note: Option<&str>,
                at: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<()> {
                sqlx::query(
                    "INSERT INTO defect_events (id, defect_id, from_status, to_status, actor_id, note, at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(uuid::Uuid::now_v7())
                .bind(defect)
                .bind(from)
                .bind(to)
                .bind(actor)
                .bind(note)
                .bind(at)
                .execute(&mut **tx)
                .await?;
                Ok(())
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::defects::DefectStore for $store {
            async fn insert_defect(&self, d: &$crate::store::defects::DefectRecord) -> $crate::store::StoreResult<()> {
                let mut tx = self.writer.begin().await?;
                insert_defect_row(&mut tx, d, "").await?;
                Self::defect_event(&mut tx, d.id, None, &d.status, d.created_by, None, d.created_at).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn upsert_automatic_defect(
                &self,
                d: &$crate::store::defects::DefectRecord,
            ) -> $crate::store::StoreResult<$crate::store::defects::AutoOutcome> {
                use $crate::store::defects::AutoOutcome;
                let mut tx = self.writer.begin().await?;
                let existing: Option<(uuid::Uuid, String, String, Option<String>, sqlx::types::Json<Vec<String>>)> = sqlx::query_as(
                    "SELECT id, status, severity, observed_condition, evidence FROM defects \
                     WHERE session_id = $1 AND asset_id = $2 AND source = 'automatic'",
                )
                .bind(d.session_id)
                .bind(d.asset_id)
                .fetch_optional(&mut *tx)
                .await?;
                let outcome = match existing {
                    None => {
                        insert_defect_row(&mut tx, d, " ON CONFLICT DO NOTHING").await?;
                        Self::defect_event(&mut tx, d.id, None, "open", None, Some("opened from a failed item"), d.created_at).await?;
                        AutoOutcome::Created
                    }
                    Some((id, status, severity, cond, evidence)) => {
                        let reopen = status == "withdrawn";
                        let changed = severity != d.severity || cond != d.observed_condition || evidence.0 != d.evidence.0;
                        if !reopen && !changed {
                            AutoOutcome::Unchanged
                        } else {
                            sqlx::query(
                                "UPDATE defects SET severity = $1, observed_condition = $2, evidence = $3, \
                                 rule_code = $4, rule_version = $5, description = $6, updated_at = $7, \
                                 status = CASE WHEN status = 'withdrawn' THEN 'open' ELSE status END, \
                                 notify_by = CASE WHEN status = 'withdrawn' THEN $8 ELSE notify_by END \
                                 WHERE id = $9",
                            )
                            .bind(&d.severity)
                            .bind(&d.observed_condition)
                            .bind(&d.evidence)
                            .bind(&d.rule_code)
                            .bind(&d.rule_version)
                            .bind(&d.description)
                            .bind(d.updated_at)
                            .bind(d.notify_by)
                            .bind(id)
                            .execute(&mut *tx)
                            .await?;
                            if reopen {
                                Self::defect_event(&mut tx, id, Some("withdrawn"), "open", None, Some("the item failed again"), d.updated_at).await?;
                            }
                            AutoOutcome::Updated
                        }
                    }
                };
                tx.commit().await?;
                Ok(outcome)
            }

            async fn withdraw_automatic_defect(
                &self,
                session_id: uuid::Uuid,
                asset_id: uuid::Uuid,
                at: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<$crate::store::defects::AutoOutcome> {
                let mut tx = self.writer.begin().await?;
                let id: Option<uuid::Uuid> = sqlx::query_scalar(
                    "UPDATE defects SET status = 'withdrawn', updated_at = $1 WHERE session_id = $2 \
                     AND asset_id = $3 AND source = 'automatic' AND status = 'open' RETURNING id",
                )
                .bind(at)
                .bind(session_id)
                .bind(asset_id)
                .fetch_optional(&mut *tx)
                .await?;
                let outcome = match id {
                    Some(id) => {
                        Self::defect_event(&mut tx, id, Some("open"), "withdrawn", None, Some("the item no longer fails"), at).await?;
                        $crate::store::defects::AutoOutcome::Withdrawn
                    }
                    None => $crate::store::defects::AutoOutcome::Unchanged,
                };
                tx.commit().await?;
                Ok(outcome)
            }

            async fn get_defect(&self, org_id: uuid::Uuid, id: uuid::Uuid) -> $crate::store::StoreResult<$crate::store::defects::DefectRecord> {
                sqlx::query_as(&format!(
                    "SELECT {} FROM defects WHERE id = $1 AND org_id = $2",
                    $crate::store::defects::DEFECT_COLUMNS
                ))
                .bind(id)
                .bind(org_id)
                .fetch_optional(&self.reader)
                .await?
                .ok_or($crate::store::StoreError::NotFound)
            }

            async fn list_defects(
                &self,
                org_id: uuid::Uuid,
                f: &$crate::store::defects::DefectFilter,
                page: $crate::store::Page,
            ) -> $crate::store::StoreResult<Vec<$crate::store::defects::DefectRecord>> {
                Ok(sqlx::query_as(&format!(
                    "SELECT {} FROM defects WHERE org_id = $1 \
                     AND ($2 IS NULL OR building_id = $2) AND ($3 IS NULL OR session_id = $3) \
                     AND ($4 IS NULL OR status = $4) AND ($5 IS NULL OR severity = $5) \
                     AND ($6 IS NULL OR (notify_by < $6 AND acknowledged_at IS NULL \
                          AND status NOT IN ('closed', 'withdrawn'))) \
                     AND ($7 IS NULL OR id > $7) ORDER BY id LIMIT $8",
                    $crate::store::defects::DEFECT_COLUMNS
                ))
                .bind(org_id)
                .bind(f.building_id)
                .bind(f.session_id)
                .bind(&f.status)
                .bind(&f.severity)
                .bind(f.overdue_at)
                .bind(page.after)
                .bind(page.limit)
                .fetch_all(&self.reader)
                .await?)
            }

            async fn transition_defect(
                &self,
                org_id: uuid::Uuid,
                id: uuid::Uuid,
                step: &$crate::store::defects::Transition<'_>,
            ) -> $crate::store::StoreResult<bool> {
                let (from, to, at) = (step.from, step.to, step.at);
                let mut tx = self.writer.begin().await?;
                let done = sqlx::query(
                    "UPDATE defects SET status = $1, updated_at = $2, \
                     acknowledged_at = CASE WHEN $1 = 'acknowledged' THEN $2 ELSE acknowledged_at END \
                     WHERE id = $3 AND org_id = $4 AND status = $5",
                )
                .bind(to)
                .bind(at)
                .bind(id)
                .bind(org_id)
                .bind(from)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 0 {
                    return Ok(false);
                }
                Self::defect_event(&mut tx, id, Some(from), to, Some(step.actor), step.note, at).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn defect_events(&self, id: uuid::Uuid) -> $crate::store::StoreResult<Vec<$crate::store::defects::DefectEvent>> {
                Ok(sqlx::query_as(
                    "SELECT id, defect_id, from_status, to_status, actor_id, note, at FROM defect_events \
                     WHERE defect_id = $1 ORDER BY at, id",
                )
                .bind(id)
                .fetch_all(&self.reader)
                .await?)
            }
        }

        async fn insert_defect_row(
            tx: &mut sqlx::Transaction<'static, <$store as $crate::store::Backend>::Db>,
            d: &$crate::store::defects::DefectRecord,
            suffix: &str,
        ) -> $crate::store::StoreResult<()> {
            sqlx::query(&format!(
                "INSERT INTO defects ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, \
                 $15, $16, $17, $18, $19, $20){suffix}",
                $crate::store::defects::DEFECT_COLUMNS
            ))
            .bind(d.id)
            .bind(d.org_id)
            .bind(d.building_id)
            .bind(d.asset_id)
            .bind(d.session_id)
            .bind(&d.rule_code)
            .bind(&d.rule_version)
            .bind(&d.severity)
            .bind(&d.status)
            .bind(&d.source)
            .bind(&d.title)
            .bind(&d.description)
            .bind(&d.observed_condition)
            .bind(&d.evidence)
            .bind(d.discovered_at)
            .bind(d.notify_by)
            .bind(d.acknowledged_at)
            .bind(d.created_by)
            .bind(d.created_at)
            .bind(d.updated_at)
            .execute(&mut **tx)
            .await?;
            Ok(())
        }
    };
}

pub(crate) use defects_sql;
