//! Records owners must keep (`crate::records`): the reads the logbook, the yearly condition
//! report and the essential-safety-measures export are built from, signed condition reports
//! (immutable rows; a new version supersedes an older one) and archived buildings. Shared by
//! both backends like the other `*_sql!` macros.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

use super::defects::DefectEvent;
use super::StoreResult;

/// One recorded item of a session, with the session it belongs to.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RecordItemRow {
    pub session_id: Uuid,
    /// The asset's UUID as the session document has it (text).
    pub asset_id: String,
    pub rule_code: Option<String>,
    pub rule_version: Option<String>,
    /// `pass`, `fail` or `not_accessible`.
    pub outcome: String,
    pub classification: Option<String>,
    pub observed_conditions: sqlx::types::Json<Vec<String>>,
    pub readings: sqlx::types::Json<serde_json::Value>,
    pub notes: String,
    /// The user id of whoever recorded it (text, as the document has it).
    pub recorded_by: Option<String>,
    /// RFC 3339, as the document has it.
    pub recorded_at: String,
    pub assessment: sqlx::types::Json<serde_json::Value>,
    pub session_name: String,
    pub session_frequency: String,
    pub session_status: String,
    pub signed_off_by: Option<Uuid>,
    pub signed_off_licence: Option<String>,
    pub signed_off_at: Option<DateTime<Utc>>,
}

/// A signed yearly condition report as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ConditionReportRow {
    pub id: Uuid,
    pub org_id: Uuid,
    pub building_id: Uuid,
    pub period_start: NaiveDate,
    pub period_end: NaiveDate,
    pub version: i32,
    pub supersedes: Option<Uuid>,
    pub statement: String,
    /// The report as it was when signed (`crate::records::ConditionReport`).
    pub report: sqlx::types::Json<serde_json::Value>,
    pub signed_by: Uuid,
    pub signed_by_name: String,
    pub signed_licence: String,
    pub signed_at: DateTime<Utc>,
}

/// What signing stores; the version and the report it supersedes are the store's.
#[derive(Debug, Clone)]
pub struct NewConditionReport {
    pub id: Uuid,
    pub org_id: Uuid,
    pub building_id: Uuid,
    pub period_start: NaiveDate,
    pub period_end: NaiveDate,
    pub statement: String,
    pub report: serde_json::Value,
    pub signed_by: Uuid,
    pub signed_by_name: String,
    pub signed_licence: String,
    pub signed_at: DateTime<Utc>,
}

/// An archived (deleted) building.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ArchiveRow {
    pub building_id: Uuid,
    pub archived_by: Uuid,
    pub archived_at: DateTime<Utc>,
    pub retain_until: DateTime<Utc>,
}

#[async_trait]
pub trait RecordStore: Send + Sync {
    /// Items of a building of `org_id` recorded in `[from, before)` (RFC 3339 text bounds, as
    /// `ReportStore::latest_services` compares them) whose outcome is `pass`, `fail` or
    /// `not_accessible`, oldest first, with their sessions.
    async fn record_items(
        &self,
        org_id: Uuid,
        building_id: Uuid,
        from: &str,
        before: &str,
    ) -> StoreResult<Vec<RecordItemRow>>;

    /// Every lifecycle event of every defect of a building of `org_id`, oldest first.
    async fn building_defect_events(
        &self,
        org_id: Uuid,
        building_id: Uuid,
    ) -> StoreResult<Vec<DefectEvent>>;

    /// Store a signed condition report as the next version for its building and period
    /// (superseding the latest one, if any), in one transaction. `Conflict("version")` when
    /// another signature for the same period won the race.
    async fn sign_condition_report(
        &self,
        new: &NewConditionReport,
    ) -> StoreResult<ConditionReportRow>;
    /// Signed condition reports of a building of `org_id`, newest period first, then newest
    /// version first.
    async fn list_condition_reports(
        &self,
        org_id: Uuid,
        building_id: Uuid,
    ) -> StoreResult<Vec<ConditionReportRow>>;
    /// One signed condition report of `org_id`; NotFound otherwise.
    async fn find_condition_report(
        &self,
        org_id: Uuid,
        id: Uuid,
    ) -> StoreResult<ConditionReportRow>;

    /// How many records (test sessions and defects) a building of `org_id` holds.
    async fn building_records(&self, org_id: Uuid, building_id: Uuid) -> StoreResult<i64>;
    /// Archive a building of `org_id`; `Conflict("archived")` when it already is.
    async fn archive_building(
        &self,
        org_id: Uuid,
        building_id: Uuid,
        by: Uuid,
        at: DateTime<Utc>,
        retain_until: DateTime<Utc>,
    ) -> StoreResult<ArchiveRow>;
    /// The archive row of a building of `org_id`, if it is archived.
    async fn building_archive(
        &self,
        org_id: Uuid,
        building_id: Uuid,
    ) -> StoreResult<Option<ArchiveRow>>;
}

pub(crate) const RECORD_ITEMS_SQL: &str = "SELECT i.session_id, i.asset_id, i.rule_code, \
     i.rule_version, i.outcome, i.classification, i.observed_conditions, i.readings, i.notes, \
     i.recorded_by, i.recorded_at, i.assessment, s.name AS session_name, \
     s.frequency AS session_frequency, s.status AS session_status, s.signed_off_by, \
     s.signed_off_licence, s.signed_off_at \
     FROM session_items i JOIN test_sessions s ON s.id = i.session_id \
     WHERE i.building_id = $1 AND i.org_id = $2 AND i.recorded_at IS NOT NULL \
       AND i.recorded_at >= $3 AND i.recorded_at < $4 \
       AND i.outcome IN ('pass', 'fail', 'not_accessible') \
     ORDER BY i.recorded_at, i.asset_id, i.session_id";

pub(crate) const BUILDING_DEFECT_EVENTS_SQL: &str = "SELECT e.id, e.defect_id, e.from_status, \
     e.to_status, e.actor_id, e.note, e.at \
     FROM defect_events e JOIN defects d ON d.id = e.defect_id \
     WHERE d.building_id = $1 AND d.org_id = $2 ORDER BY e.at, e.id";

pub(crate) const CONDITION_REPORT_COLUMNS: &str = "id, org_id, building_id, period_start, \
     period_end, version, supersedes, statement, report, signed_by, signed_by_name, \
     signed_licence, signed_at";

pub(crate) const BUILDING_RECORDS_SQL: &str =
    "SELECT (SELECT COUNT(*) FROM test_sessions WHERE building_id = $1 AND org_id = $2) \
          + (SELECT COUNT(*) FROM defects WHERE building_id = $1 AND org_id = $2)";

macro_rules! records_sql {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::records::RecordStore for $store {
            async fn record_items(
                &self,
                org_id: uuid::Uuid,
                building_id: uuid::Uuid,
                from: &str,
                before: &str,
            ) -> $crate::store::StoreResult<Vec<$crate::store::records::RecordItemRow>> {
                Ok(sqlx::query_as($crate::store::records::RECORD_ITEMS_SQL)
                    .bind(building_id)
                    .bind(org_id)
                    .bind(from)
                    .bind(before)
                    .fetch_all(&self.reader)
                    .await?)
            }

            async fn building_defect_events(
                &self,
                org_id: uuid::Uuid,
                building_id: uuid::Uuid,
            ) -> $crate::store::StoreResult<Vec<$crate::store::defects::DefectEvent>> {
                Ok(
                    sqlx::query_as($crate::store::records::BUILDING_DEFECT_EVENTS_SQL)
                        .bind(building_id)
                        .bind(org_id)
                        .fetch_all(&self.reader)
                        .await?,
                )
            }

            async fn sign_condition_report(
                &self,
                n: &$crate::store::records::NewConditionReport,
            ) -> $crate::store::StoreResult<$crate::store::records::ConditionReportRow> {
                let mut tx = self.writer.begin().await?;
                let latest: Option<(uuid::Uuid, i32)> = sqlx::query_as(
                    "SELECT id, version FROM condition_reports WHERE building_id = $1 \
                     AND org_id = $2 AND period_start = $3 AND period_end = $4 \
                     ORDER BY version DESC LIMIT 1",
                )
                .bind(n.building_id)
                .bind(n.org_id)
                .bind(n.period_start)
                .bind(n.period_end)
                .fetch_optional(&mut *tx)
                .await?;
                let version = latest.map_or(1, |(_, v)| v + 1);
                let supersedes = latest.map(|(id, _)| id);
                sqlx::query(&format!(
                    "INSERT INTO condition_reports ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, \
                     $9, $10, $11, $12, $13)",
                    $crate::store::records::CONDITION_REPORT_COLUMNS
                ))
                .bind(n.id)
                .bind(n.org_id)
                .bind(n.building_id)
                .bind(n.period_start)
                .bind(n.period_end)
                .bind(version)
                .bind(supersedes)
                .bind(&n.statement)
                .bind(sqlx::types::Json(&n.report))
                .bind(n.signed_by)
                .bind(&n.signed_by_name)
                .bind(&n.signed_licence)
                .bind(n.signed_at)
                .execute(&mut *tx)
                .await
                .map_err(|e| $crate::store::StoreError::unique(e, "version"))?;
                tx.commit()
                    .await
                    .map_err(|e| $crate::store::StoreError::unique(e, "version"))?;
                Ok($crate::store::records::ConditionReportRow {
                    id: n.id,
                    org_id: n.org_id,
                    building_id: n.building_id,
                    period_start: n.period_start,
                    period_end: n.period_end,
                    version,
                    supersedes,
                    statement: n.statement.clone(),
                    report: sqlx::types::Json(n.report.clone()),
                    signed_by: n.signed_by,
                    signed_by_name: n.signed_by_name.clone(),
                    signed_licence: n.signed_licence.clone(),
                    signed_at: n.signed_at,
                })
            }

            async fn list_condition_reports(
                &self,
                org_id: uuid::Uuid,
                building_id: uuid::Uuid,
            ) -> $crate::store::StoreResult<Vec<$crate::store::records::ConditionReportRow>> {
                Ok(sqlx::query_as(&format!(
                    "SELECT {} FROM condition_reports WHERE building_id = $1 AND org_id = $2 \
                     ORDER BY period_end DESC, period_start DESC, version DESC",
                    $crate::store::records::CONDITION_REPORT_COLUMNS
                ))
                .bind(building_id)
                .bind(org_id)
                .fetch_all(&self.reader)
                .await?)
            }

            async fn find_condition_report(
                &self,
                org_id: uuid::Uuid,
                id: uuid::Uuid,
            ) -> $crate::store::StoreResult<$crate::store::records::ConditionReportRow> {
                sqlx::query_as(&format!(
                    "SELECT {} FROM condition_reports WHERE id = $1 AND org_id = $2",
                    $crate::store::records::CONDITION_REPORT_COLUMNS
                ))
                .bind(id)
                .bind(org_id)
                .fetch_optional(&self.reader)
                .await?
                .ok_or($crate::store::StoreError::NotFound)
            }

            async fn building_records(
                &self,
                org_id: uuid::Uuid,
                building_id: uuid::Uuid,
            ) -> $crate::store::StoreResult<i64> {
                Ok(sqlx::query_scalar($crate::store::records::BUILDING_RECORDS_SQL)
                    .bind(building_id)
                    .bind(org_id)
                    .fetch_one(&self.writer)
                    .await?)
            }

            async fn archive_building(
                &self,
                org_id: uuid::Uuid,
                building_id: uuid::Uuid,
                by: uuid::Uuid,
                at: chrono::DateTime<chrono::Utc>,
                retain_until: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<$crate::store::records::ArchiveRow> {
                sqlx::query(
                    "INSERT INTO building_archives (building_id, org_id, archived_by, \
                     archived_at, retain_until) \
                     SELECT id, org_id, $3, $4, $5 FROM buildings WHERE id = $1 AND org_id = $2",
                )
                .bind(building_id)
                .bind(org_id)
                .bind(by)
                .bind(at)
                .bind(retain_until)
                .execute(&self.writer)
                .await
                .map_err(|e| $crate::store::StoreError::unique(e, "archived"))
                .and_then(|done| {
                    if done.rows_affected() == 1 {
                        Ok(())
                    } else {
                        Err($crate::store::StoreError::NotFound)
                    }
                })?;
                Ok($crate::store::records::ArchiveRow {
                    building_id,
                    archived_by: by,
                    archived_at: at,
                    retain_until,
                })
            }

            async fn building_archive(
                &self,
                org_id: uuid::Uuid,
                building_id: uuid::Uuid,
            ) -> $crate::store::StoreResult<Option<$crate::store::records::ArchiveRow>> {
                Ok(sqlx::query_as(
                    "SELECT building_id, archived_by, archived_at, retain_until \
                     FROM building_archives WHERE building_id = $1 AND org_id = $2",
                )
                .bind(building_id)
                .bind(org_id)
                .fetch_optional(&self.reader)
                .await?)
            }
        }
    };
}

pub(crate) use records_sql;
