//! Report queries: the compliance report's aggregations, done in SQL so a building with
//! thousands of assets and years of sessions is answered in a few set-based queries (no query
//! per asset). Shared by both backends like the other `*_sql!` macros.

use async_trait::async_trait;
use uuid::Uuid;

use super::StoreResult;

/// One service of an asset under a rule: a projected item that was passed or failed.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ServiceRow {
    /// The asset's UUID as the session document has it (text).
    pub asset_id: String,
    pub rule_code: String,
    /// `pass` or `fail`.
    pub outcome: String,
    pub classification: Option<String>,
    /// RFC 3339, as the document has it.
    pub recorded_at: String,
    pub session_id: Uuid,
    /// The item's assessment (suggested outcome, whether the outcome overrides it).
    #[sqlx(default)]
    pub assessment: sqlx::types::Json<serde_json::Value>,
    /// The first service of this (asset, rule code) before the bound: a grid's anchor when
    /// nothing else anchors it.
    pub first_recorded_at: String,
}

/// How many open defects of one severity an asset has (`asset_id` NULL: building-level).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DefectCountRow {
    pub asset_id: Option<Uuid>,
    pub severity: String,
    pub open: i64,
}

#[async_trait]
pub trait ReportStore: Send + Sync {
    /// The latest `per_rule` services of every (asset, rule code) of a building of `org_id`,
    /// recorded before `before` (compared as text: `YYYY-MM-DD` is the first instant of that
    /// UTC day for the UTC `...Z` timestamps clients write). Services are items whose outcome
    /// is `pass` or `fail`: `not_tested` and `not_accessible` items were not serviced.
    async fn latest_services(
        &self,
        org_id: Uuid,
        building_id: Uuid,
        before: &str,
        per_rule: i64,
    ) -> StoreResult<Vec<ServiceRow>>;

    /// Active defects (open through verified) of a building of `org_id`, counted per asset and
    /// severity.
    async fn open_defect_counts(
        &self,
        org_id: Uuid,
        building_id: Uuid,
    ) -> StoreResult<Vec<DefectCountRow>>;

    /// Active defects of every building of `org_id`, counted per building and severity.
    async fn org_open_defect_counts(&self, org_id: Uuid) -> StoreResult<Vec<BuildingDefectCount>>;
}

/// How many active defects of one severity a building has.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BuildingDefectCount {
    pub building_id: Uuid,
    pub severity: String,
    pub open: i64,
}

/// Ranks each (asset, rule) pair's services newest first and keeps the first `$4`. Served by
/// `session_items_report_idx` (migration 0008): the rows of one building come out of the index
/// already in partition order.
pub(crate) const LATEST_SERVICES_SQL: &str = "SELECT asset_id, rule_code, outcome, \
     classification, recorded_at, session_id, assessment, first_recorded_at FROM (\
       SELECT asset_id, rule_code, outcome, classification, recorded_at, session_id, assessment, \
         ROW_NUMBER() OVER (PARTITION BY asset_id, rule_code \
           ORDER BY recorded_at DESC, session_id) AS rn, \
         MIN(recorded_at) OVER (PARTITION BY asset_id, rule_code) AS first_recorded_at \
       FROM session_items \
       WHERE building_id = $1 AND org_id = $2 AND rule_code IS NOT NULL \
         AND recorded_at IS NOT NULL AND recorded_at < $3 AND outcome IN ('pass', 'fail')\
     ) ranked WHERE rn <= $4";

pub(crate) const OPEN_DEFECT_COUNTS_SQL: &str = "SELECT asset_id, severity, COUNT(*) AS open \
     FROM defects WHERE building_id = $1 AND org_id = $2 \
     AND status IN ('open', 'acknowledged', 'repair_scheduled', 'repaired', 'verified') \
     GROUP BY asset_id, severity";

pub(crate) const ORG_OPEN_DEFECT_COUNTS_SQL: &str = "SELECT building_id, severity, \
     COUNT(*) AS open FROM defects WHERE org_id = $1 \
     AND status IN ('open', 'acknowledged', 'repair_scheduled', 'repaired', 'verified') \
     GROUP BY building_id, severity";

macro_rules! reports_sql {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::reports::ReportStore for $store {
            async fn latest_services(
                &self,
                org_id: uuid::Uuid,
                building_id: uuid::Uuid,
                before: &str,
                per_rule: i64,
            ) -> $crate::store::StoreResult<Vec<$crate::store::reports::ServiceRow>> {
                Ok(sqlx::query_as($crate::store::reports::LATEST_SERVICES_SQL)
                    .bind(building_id)
                    .bind(org_id)
                    .bind(before)
                    .bind(per_rule)
                    .fetch_all(&self.reader)
                    .await?)
            }

            async fn open_defect_counts(
                &self,
                org_id: uuid::Uuid,
                building_id: uuid::Uuid,
            ) -> $crate::store::StoreResult<Vec<$crate::store::reports::DefectCountRow>> {
                Ok(
                    sqlx::query_as($crate::store::reports::OPEN_DEFECT_COUNTS_SQL)
                        .bind(building_id)
                        .bind(org_id)
                        .fetch_all(&self.reader)
                        .await?,
                )
            }

            async fn org_open_defect_counts(
                &self,
                org_id: uuid::Uuid,
            ) -> $crate::store::StoreResult<Vec<$crate::store::reports::BuildingDefectCount>> {
                Ok(
                    sqlx::query_as($crate::store::reports::ORG_OPEN_DEFECT_COUNTS_SQL)
                        .bind(org_id)
                        .fetch_all(&self.reader)
                        .await?,
                )
            }
        }
    };
}

pub(crate) use reports_sql;
