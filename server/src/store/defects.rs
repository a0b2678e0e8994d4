//! Defects: the rows the projection keeps in step with findings, manual ones, sightings (each
//! session that found a defect), severity overrides and the lifecycle, every step recorded.
//! What happens to them is decided in `crate::domain::defects`; this is only their storage.

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
    /// The session that first found it.
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
    /// Someone set the severity by hand (with `severity_reason`); findings no longer change it.
    pub severity_overridden: bool,
    pub severity_reason: Option<String>,
    /// The defect this one duplicates (status `duplicate`).
    pub duplicate_of: Option<Uuid>,
    /// When the first notice of the current period was delivered (the deadline is met then);
    /// set by the delivery worker only.
    #[sqlx(default)]
    pub notified_at: Option<DateTime<Utc>>,
    /// When the deadline passed without a delivered notice and it was escalated (once).
    #[sqlx(default)]
    pub escalated_at: Option<DateTime<Utc>>,
    /// The asset's identifier, type and location (read with the defect, never stored on it).
    #[sqlx(default)]
    pub asset_identifier: Option<String>,
    #[sqlx(default)]
    pub asset_type: Option<String>,
    #[sqlx(default)]
    pub asset_location: Option<String>,
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

/// A session that finds a defect (since it last opened: a reopen starts over with the session
/// that found it again, and a withdrawal removes the last one; the events keep every visit).
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Sighting {
    pub session_id: Uuid,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default)]
pub struct DefectFilter {
    pub building_id: Option<Uuid>,
    /// Defects this session found first or finds again.
    pub session_id: Option<Uuid>,
    pub asset_id: Option<Uuid>,
    pub status: Option<String>,
    pub severity: Option<String>,
    /// Past `notify_by` without a delivered notice, still active.
    pub overdue_at: Option<DateTime<Utc>>,
    /// Only what this inspector may see: defects without a session, or found first or again
    /// by a session assigned to them.
    pub visible_to: Option<Uuid>,
    /// Only active defects (open to verified).
    pub active_only: bool,
}

/// One lifecycle step, stamped with who and when.
#[derive(Debug, Clone)]
pub struct Transition<'a> {
    pub from: &'a str,
    pub to: &'a str,
    pub actor: Uuid,
    pub note: Option<&'a str>,
    pub at: DateTime<Utc>,
    /// The defect a `duplicate` duplicates.
    pub duplicate_of: Option<Uuid>,
    /// A reopen starts a new notification period ending here (and clears the acknowledgement).
    pub notify_by: Option<DateTime<Utc>>,
}

/// A severity set by hand.
#[derive(Debug, Clone)]
pub struct SeverityOverride<'a> {
    pub severity: &'a str,
    pub reason: &'a str,
    pub actor: Uuid,
    pub at: DateTime<Utc>,
    pub notify_by: DateTime<Utc>,
}

/// A change the projection makes to the defects of a session's items, in storage terms (see
/// `crate::domain::defects::Action`).
#[derive(Debug, Clone)]
pub enum DefectWrite {
    /// Insert this defect, sighted by its session.
    Open(Box<DefectRecord>),
    /// Record that `session` found it again; refresh severity (unless `None`), evidence, rule.
    Reconfirm {
        id: Uuid,
        session: Uuid,
        at: DateTime<Utc>,
        severity: Option<String>,
        evidence: Vec<String>,
        /// A sooner notification deadline (the finding made it more severe).
        notify_by: Option<DateTime<Utc>>,
    },
    /// Back to open from `from`, sighted by `session`, a new notification period.
    Reopen {
        id: Uuid,
        from: String,
        session: Uuid,
        at: DateTime<Utc>,
        severity: Option<String>,
        evidence: Vec<String>,
        notify_by: DateTime<Utc>,
    },
    /// Same session, new severity (unless `None`) or evidence.
    Refresh {
        id: Uuid,
        at: DateTime<Utc>,
        severity: Option<String>,
        evidence: Vec<String>,
        /// A sooner notification deadline (the finding made it more severe).
        notify_by: Option<DateTime<Utc>>,
    },
    /// The only session that found it no longer does.
    Withdraw { id: Uuid, at: DateTime<Utc> },
    /// `session` no longer finds it (others did).
    Unsight {
        id: Uuid,
        session: Uuid,
        at: DateTime<Utc>,
    },
}

#[async_trait]
pub trait DefectStore: Send + Sync {
    /// Insert a defect (a manual one), with a sighting when it names a session. An active
    /// defect with the same asset and condition is a `Conflict`.
    async fn insert_defect(&self, d: &DefectRecord) -> StoreResult<()>;
    /// Every defect of these assets (any status) with the sessions that found each.
    async fn defects_of_assets(
        &self,
        org_id: Uuid,
        assets: &[Uuid],
    ) -> StoreResult<Vec<(DefectRecord, Vec<Uuid>)>>;
    /// Apply the projection's defect changes in one transaction.
    async fn write_defects(&self, writes: &[DefectWrite]) -> StoreResult<()>;
    /// A defect of the organisation (filtered by `visible_to` as in [`DefectFilter`]).
    async fn get_defect(
        &self,
        org_id: Uuid,
        id: Uuid,
        visible_to: Option<Uuid>,
    ) -> StoreResult<DefectRecord>;
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
    /// Set the severity by hand (recorded as an event with the reason).
    async fn override_severity(
        &self,
        org_id: Uuid,
        id: Uuid,
        o: &SeverityOverride<'_>,
    ) -> StoreResult<()>;
    async fn defect_events(&self, id: Uuid) -> StoreResult<Vec<DefectEvent>>;
    async fn defect_sightings(&self, id: Uuid) -> StoreResult<Vec<Sighting>>;
}

/// Columns of `defects` as inserted.
pub(crate) const DEFECT_COLUMNS: &str =
    "id, org_id, building_id, asset_id, session_id, rule_code, \
     rule_version, severity, status, source, title, description, observed_condition, evidence, \
     discovered_at, notify_by, acknowledged_at, created_by, created_at, updated_at, \
     severity_overridden, severity_reason, duplicate_of";

/// What a defect read selects (`defects d LEFT JOIN assets a`).
pub(crate) const DEFECT_SELECT: &str =
    "d.id, d.org_id, d.building_id, d.asset_id, d.session_id, d.rule_code, \
     d.rule_version, d.severity, d.status, d.source, d.title, d.description, d.observed_condition, \
     d.evidence, d.discovered_at, d.notify_by, d.acknowledged_at, d.created_by, d.created_at, \
     d.updated_at, d.severity_overridden, d.severity_reason, d.duplicate_of, \
     d.notified_at, d.escalated_at, \
     a.identifier AS asset_identifier, a.asset_type AS asset_type, a.location AS asset_location \
     FROM defects d LEFT JOIN assets a ON a.id = d.asset_id";

/// `d` is visible to inspector `$n` (or `$n` is NULL).
pub(crate) fn visible(n: usize) -> String {
    format!(
        "(${n} IS NULL OR d.session_id IS NULL \
         OR EXISTS (SELECT 1 FROM session_assignees sa WHERE sa.session_id = d.session_id \
                    AND sa.user_id = ${n}) \
         OR EXISTS (SELECT 1 FROM defect_sightings s \
                    JOIN session_assignees sa ON sa.session_id = s.session_id \
                    WHERE s.defect_id = d.id AND sa.user_id = ${n}))"
    )
}

pub(crate) static GET_DEFECT_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT {DEFECT_SELECT} WHERE d.id = $1 AND d.org_id = $2 AND {}",
        visible(3)
    )
});

pub(crate) static LIST_DEFECTS_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT {DEFECT_SELECT} WHERE d.org_id = $1 \
         AND ($2 IS NULL OR d.building_id = $2) \
         AND ($3 IS NULL OR d.session_id = $3 \
              OR EXISTS (SELECT 1 FROM defect_sightings s WHERE s.defect_id = d.id AND s.session_id = $3)) \
         AND ($4 IS NULL OR d.status = $4) AND ($5 IS NULL OR d.severity = $5) \
         AND ($6 IS NULL OR (d.notify_by < $6 AND d.notified_at IS NULL \
              AND d.status IN ('open', 'acknowledged', 'repair_scheduled', 'repaired', 'verified'))) \
         AND ($7 IS NULL OR d.id > $7) AND ($9 IS NULL OR d.asset_id = $9) AND {} \
         AND ($11 = 0 OR d.status IN ('open', 'acknowledged', 'repair_scheduled', 'repaired', 'verified')) \
         ORDER BY d.id LIMIT $8",
        visible(10)
    )
});

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

            async fn defect_sighting(
                tx: &mut sqlx::Transaction<'static, <$store as $crate::store::Backend>::Db>,
                defect: uuid::Uuid,
                session: uuid::Uuid,
                at: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<()> {
                sqlx::query(
                    "INSERT INTO defect_sightings (defect_id, session_id, at) VALUES ($1, $2, $3) \
                     ON CONFLICT (defect_id, session_id) DO NOTHING",
                )
                .bind(defect)
                .bind(session)
                .bind(at)
                .execute(&mut **tx)
                .await?;
                Ok(())
            }

            /// A finding's update of a defect: severity (unless `None`), evidence, a sooner
            /// deadline.
            async fn defect_refresh(
                tx: &mut sqlx::Transaction<'static, <$store as $crate::store::Backend>::Db>,
                id: uuid::Uuid,
                at: chrono::DateTime<chrono::Utc>,
                severity: &Option<String>,
                evidence: &[String],
                notify_by: Option<chrono::DateTime<chrono::Utc>>,
            ) -> $crate::store::StoreResult<()> {
                sqlx::query(
                    "UPDATE defects SET severity = COALESCE($1, severity), evidence = $2, \
                     updated_at = $3, notify_by = COALESCE($5, notify_by) WHERE id = $4",
                )
                .bind(severity)
                .bind(sqlx::types::Json(evidence))
                .bind(at)
                .bind(id)
                .bind(notify_by)
                .execute(&mut **tx)
                .await?;
                Ok(())
            }

            /// Forget which sessions find a defect (a new cycle begins, or none is left).
            async fn clear_sightings(
                tx: &mut sqlx::Transaction<'static, <$store as $crate::store::Backend>::Db>,
                id: uuid::Uuid,
            ) -> $crate::store::StoreResult<()> {
                sqlx::query("DELETE FROM defect_sightings WHERE defect_id = $1")
                    .bind(id)
                    .execute(&mut **tx)
                    .await?;
                Ok(())
            }

            async fn defect_severity(
                tx: &mut sqlx::Transaction<'static, <$store as $crate::store::Backend>::Db>,
                id: uuid::Uuid,
            ) -> $crate::store::StoreResult<String> {
                sqlx::query_scalar("SELECT severity FROM defects WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut **tx)
                    .await?
                    .ok_or($crate::store::StoreError::NotFound)
            }

            /// The notice a change of severity (and a sighting by another visit) needs, if any
            /// (`crate::domain::notices::on_finding_update`), into the outbox.
            async fn notice_for_finding(
                tx: &mut sqlx::Transaction<'static, <$store as $crate::store::Backend>::Db>,
                email: bool,
                id: uuid::Uuid,
                old: &str,
                new: &Option<String>,
                found_again: bool,
                at: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<()> {
                use $crate::domain::defects::Severity;
                let Some(old) = Severity::parse(old) else { return Ok(()) };
                let new = new.as_deref().and_then(Severity::parse).unwrap_or(old);
                if let Some(kind) = $crate::domain::notices::on_finding_update(old, new, found_again) {
                    Self::enqueue_notice(tx, email, id, kind, at).await?;
                }
                Ok(())
            }

            async fn defect_status(
                tx: &mut sqlx::Transaction<'static, <$store as $crate::store::Backend>::Db>,
                id: uuid::Uuid,
            ) -> $crate::store::StoreResult<String> {
                sqlx::query_scalar("SELECT status FROM defects WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut **tx)
                    .await?
                    .ok_or($crate::store::StoreError::NotFound)
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::defects::DefectStore for $store {
            async fn insert_defect(&self, d: &$crate::store::defects::DefectRecord) -> $crate::store::StoreResult<()> {
                let mut tx = self.writer.begin().await?;
                insert_defect_row(&mut tx, d).await?;
                Self::defect_event(&mut tx, d.id, None, &d.status, d.created_by, None, d.created_at).await?;
                if let Some(session) = d.session_id {
                    Self::defect_sighting(&mut tx, d.id, session, d.discovered_at).await?;
                }
                // The outbox row commits with the defect or not at all.
                Self::enqueue_notice(&mut tx, $crate::store::notices::NoticeStore::email_channel(self), d.id, $crate::domain::notices::NoticeKind::Opened, d.created_at).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn defects_of_assets(
                &self,
                org_id: uuid::Uuid,
                assets: &[uuid::Uuid],
            ) -> $crate::store::StoreResult<Vec<($crate::store::defects::DefectRecord, Vec<uuid::Uuid>)>> {
                let mut out = Vec::new();
                // Chunks keep the statement under SQLite's variable limit.
                for chunk in assets.chunks(500) {
                    let mut q = sqlx::QueryBuilder::<<$store as $crate::store::Backend>::Db>::new(format!(
                        "SELECT {} WHERE d.org_id = ",
                        $crate::store::defects::DEFECT_SELECT
                    ));
                    q.push_bind(org_id).push(" AND d.asset_id IN (");
                    let mut list = q.separated(", ");
                    for a in chunk {
                        list.push_bind(*a);
                    }
                    q.push(") ORDER BY d.id");
                    let rows: Vec<$crate::store::defects::DefectRecord> =
                        q.build_query_as().fetch_all(&self.writer).await?;
                    if rows.is_empty() {
                        continue;
                    }
                    let mut q = sqlx::QueryBuilder::<<$store as $crate::store::Backend>::Db>::new(
                        "SELECT defect_id, session_id FROM defect_sightings WHERE defect_id IN (",
                    );
                    let mut list = q.separated(", ");
                    for d in &rows {
                        list.push_bind(d.id);
                    }
                    q.push(")");
                    let sightings: Vec<(uuid::Uuid, uuid::Uuid)> =
                        q.build_query_as().fetch_all(&self.writer).await?;
                    for d in rows {
                        let seen = sightings.iter().filter(|(id, _)| *id == d.id).map(|(_, s)| *s).collect();
                        out.push((d, seen));
                    }
                }
                Ok(out)
            }

            async fn write_defects(
                &self,
                writes: &[$crate::store::defects::DefectWrite],
            ) -> $crate::store::StoreResult<()> {
                use $crate::store::defects::DefectWrite;
                if writes.is_empty() {
                    return Ok(());
                }
                let mut tx = self.writer.begin().await?;
                for w in writes {
                    match w {
                        DefectWrite::Open(d) => {
                            insert_defect_row(&mut tx, d).await?;
                            let note = d.session_id.map(|s| format!("found in session {s}"));
                            Self::defect_event(&mut tx, d.id, None, "open", None, note.as_deref(), d.created_at).await?;
                            if let Some(session) = d.session_id {
                                Self::defect_sighting(&mut tx, d.id, session, d.discovered_at).await?;
                            }
                            Self::enqueue_notice(&mut tx, $crate::store::notices::NoticeStore::email_channel(self), d.id, $crate::domain::notices::NoticeKind::Opened, d.created_at).await?;
                        }
                        DefectWrite::Reconfirm { id, session, at, severity, evidence, notify_by } => {
                            let status = Self::defect_status(&mut tx, *id).await?;
                            let old = Self::defect_severity(&mut tx, *id).await?;
                            Self::defect_refresh(&mut tx, *id, *at, severity, evidence, *notify_by).await?;
                            Self::defect_sighting(&mut tx, *id, *session, *at).await?;
                            let note = format!("found again in session {session}");
                            Self::defect_event(&mut tx, *id, Some(&status), &status, None, Some(&note), *at).await?;
                            Self::notice_for_finding(&mut tx, $crate::store::notices::NoticeStore::email_channel(self), *id, &old, severity, true, *at).await?;
                        }
                        DefectWrite::Reopen { id, from, session, at, severity, evidence, notify_by } => {
                            sqlx::query(
                                "UPDATE defects SET status = 'open', severity = COALESCE($1, severity), \
                                 evidence = $2, updated_at = $3, notify_by = $4, acknowledged_at = NULL, \
                                 duplicate_of = NULL WHERE id = $5",
                            )
                            .bind(severity)
                            .bind(sqlx::types::Json(evidence))
                            .bind(at)
                            .bind(notify_by)
                            .bind(id)
                            .execute(&mut *tx)
                            .await?;
                            // A new cycle: the sessions that found it before are history (events).
                            Self::clear_sightings(&mut tx, *id).await?;
                            Self::defect_sighting(&mut tx, *id, *session, *at).await?;
                            let note = format!("found again in session {session}");
                            Self::defect_event(&mut tx, *id, Some(from), "open", None, Some(&note), *at).await?;
                            Self::enqueue_notice(&mut tx, $crate::store::notices::NoticeStore::email_channel(self), *id, $crate::domain::notices::NoticeKind::Reopened, *at).await?;
                        }
                        DefectWrite::Refresh { id, at, severity, evidence, notify_by } => {
                            let old = Self::defect_severity(&mut tx, *id).await?;
                            Self::defect_refresh(&mut tx, *id, *at, severity, evidence, *notify_by).await?;
                            Self::notice_for_finding(&mut tx, $crate::store::notices::NoticeStore::email_channel(self), *id, &old, severity, false, *at).await?;
                        }
                        DefectWrite::Withdraw { id, at } => {
                            let done = sqlx::query(
                                "UPDATE defects SET status = 'withdrawn', updated_at = $1 \
                                 WHERE id = $2 AND status = 'open'",
                            )
                            .bind(at)
                            .bind(id)
                            .execute(&mut *tx)
                            .await?;
                            if done.rows_affected() > 0 {
                                Self::clear_sightings(&mut tx, *id).await?;
                                Self::defect_event(&mut tx, *id, Some("open"), "withdrawn", None,
                                    Some("the item no longer fails"), *at).await?;
                            }
                        }
                        DefectWrite::Unsight { id, session, at } => {
                            let status = Self::defect_status(&mut tx, *id).await?;
                            sqlx::query("DELETE FROM defect_sightings WHERE defect_id = $1 AND session_id = $2")
                                .bind(id)
                                .bind(session)
                                .execute(&mut *tx)
                                .await?;
                            let note = format!("no longer found in session {session}");
                            Self::defect_event(&mut tx, *id, Some(&status), &status, None, Some(&note), *at).await?;
                        }
                    }
                }
                tx.commit().await.map_err($crate::store::StoreError::from)?;
                Ok(())
            }

            async fn get_defect(
                &self,
                org_id: uuid::Uuid,
                id: uuid::Uuid,
                visible_to: Option<uuid::Uuid>,
            ) -> $crate::store::StoreResult<$crate::store::defects::DefectRecord> {
                sqlx::query_as($crate::store::defects::GET_DEFECT_SQL.as_str())
                    .bind(id)
                    .bind(org_id)
                    .bind(visible_to)
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
                Ok(sqlx::query_as($crate::store::defects::LIST_DEFECTS_SQL.as_str())
                    .bind(org_id)
                    .bind(f.building_id)
                    .bind(f.session_id)
                    .bind(&f.status)
                    .bind(&f.severity)
                    .bind(f.overdue_at)
                    .bind(page.after)
                    .bind(page.limit)
                    .bind(f.asset_id)
                    .bind(f.visible_to)
                    .bind(i32::from(f.active_only))
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
                     acknowledged_at = CASE WHEN $1 = 'acknowledged' THEN $2 \
                                            WHEN $6 IS NOT NULL THEN NULL ELSE acknowledged_at END, \
                     notify_by = COALESCE($6, notify_by), \
                     duplicate_of = CASE WHEN $1 = 'duplicate' THEN $7 ELSE NULL END \
                     WHERE id = $3 AND org_id = $4 AND status = $5",
                )
                .bind(to)
                .bind(at)
                .bind(id)
                .bind(org_id)
                .bind(from)
                .bind(step.notify_by)
                .bind(step.duplicate_of)
                .execute(&mut *tx)
                .await
                .map_err(|e| $crate::store::StoreError::unique(e, "an active defect for this asset and condition"))?;
                if done.rows_affected() == 0 {
                    return Ok(false);
                }
                if step.notify_by.is_some() {
                    // A reopen starts a new cycle: the sessions of the last one are history.
                    Self::clear_sightings(&mut tx, id).await?;
                }
                Self::defect_event(&mut tx, id, Some(from), to, Some(step.actor), step.note, at).await?;
                if to == $crate::domain::defects::status::OPEN {
                    Self::enqueue_notice(&mut tx, $crate::store::notices::NoticeStore::email_channel(self), id, $crate::domain::notices::NoticeKind::Reopened, at).await?;
                }
                tx.commit().await?;
                Ok(true)
            }

            async fn override_severity(
                &self,
                org_id: uuid::Uuid,
                id: uuid::Uuid,
                o: &$crate::store::defects::SeverityOverride<'_>,
            ) -> $crate::store::StoreResult<()> {
                let mut tx = self.writer.begin().await?;
                let before: Option<(String, String)> = sqlx::query_as(
                    "SELECT severity, status FROM defects WHERE id = $1 AND org_id = $2",
                )
                .bind(id)
                .bind(org_id)
                .fetch_optional(&mut *tx)
                .await?;
                let Some((old, status)) = before else {
                    return Err($crate::store::StoreError::NotFound);
                };
                sqlx::query(
                    "UPDATE defects SET severity = $1, severity_overridden = TRUE, severity_reason = $2, \
                     notify_by = $3, updated_at = $4 WHERE id = $5",
                )
                .bind(o.severity)
                .bind(o.reason)
                .bind(o.notify_by)
                .bind(o.at)
                .bind(id)
                .execute(&mut *tx)
                .await?;
                let note = format!("severity {old} -> {}: {}", o.severity, o.reason);
                Self::defect_event(&mut tx, id, Some(&status), &status, Some(o.actor), Some(&note), o.at).await?;
                let new = Some(o.severity.to_owned());
                Self::notice_for_finding(&mut tx, $crate::store::notices::NoticeStore::email_channel(self), id, &old, &new, false, o.at).await?;
                tx.commit().await?;
                Ok(())
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

            async fn defect_sightings(&self, id: uuid::Uuid) -> $crate::store::StoreResult<Vec<$crate::store::defects::Sighting>> {
                Ok(sqlx::query_as(
                    "SELECT session_id, at FROM defect_sightings WHERE defect_id = $1 ORDER BY at, session_id",
                )
                .bind(id)
                .fetch_all(&self.reader)
                .await?)
            }
        }

        async fn insert_defect_row(
            tx: &mut sqlx::Transaction<'static, <$store as $crate::store::Backend>::Db>,
            d: &$crate::store::defects::DefectRecord,
        ) -> $crate::store::StoreResult<()> {
            sqlx::query(&format!(
                "INSERT INTO defects ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, \
                 $15, $16, $17, $18, $19, $20, $21, $22, $23)",
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
            .bind(d.severity_overridden)
            .bind(&d.severity_reason)
            .bind(d.duplicate_of)
            .execute(&mut **tx)
            .await
            .map_err(|e| $crate::store::StoreError::unique(e, "an active defect for this asset and condition"))?;
            Ok(())
        }
    };
}

pub(crate) use defects_sql;
