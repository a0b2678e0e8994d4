//! The schedule's own rows: services recorded outside sessions (a site's history brought at
//! onboarding, or entered by the office) and the public holidays an organisation adds per
//! state. Shared SQL for both backends, like the other `*_sql!` macros.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

use super::StoreResult;

/// A service of an asset's routine recorded outside a session.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct HistoryRecord {
    pub id: Uuid,
    pub org_id: Uuid,
    pub building_id: Uuid,
    pub asset_id: Uuid,
    pub rule_code: String,
    pub serviced_on: NaiveDate,
    /// `pass` or `fail`.
    pub outcome: String,
    /// `import` (CSV onboarding) or `office` (entered through the API).
    pub source: String,
    pub note: Option<String>,
    pub recorded_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

/// When a routine of an asset was first and last serviced in a building's sessions.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BuildingSpan {
    pub building_id: Uuid,
    pub asset_id: String,
    pub rule_code: String,
    /// RFC 3339, as the documents have it.
    pub first_recorded_at: String,
    pub last_recorded_at: String,
}

/// An organisation's schedule versions (`ScheduleStore::schedule_versions`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ScheduleVersions {
    /// Holidays, the organisation's rules and the shipped ones.
    pub organisation: i64,
    /// Every building the organisation has or had, by id (ascending), with its version.
    pub buildings: Vec<(Uuid, i64)>,
}

/// A public holiday an organisation added for a state.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct HolidayRow {
    pub state: String,
    pub day: NaiveDate,
    pub name: String,
}

#[async_trait]
pub trait ScheduleStore: Send + Sync {
    /// The history rows of a building of `org_id` serviced before `before`.
    async fn service_history(
        &self,
        org_id: Uuid,
        building_id: Uuid,
        before: NaiveDate,
    ) -> StoreResult<Vec<HistoryRecord>>;

    /// The history rows of every building of `org_id` serviced before `before`.
    async fn org_service_history(
        &self,
        org_id: Uuid,
        before: NaiveDate,
    ) -> StoreResult<Vec<HistoryRecord>>;

    /// The first and last service of every (building, asset, rule code) of `org_id` (or of
    /// one of its buildings) recorded before `before` (compared as
    /// `ReportStore::latest_services` does), by the building of the session they were
    /// recorded in.
    async fn service_spans(
        &self,
        org_id: Uuid,
        building_id: Option<Uuid>,
        before: &str,
    ) -> StoreResult<Vec<BuildingSpan>>;

    /// Building `id` of `org_id` unless it is archived; None when archived or unknown.
    async fn schedule_building(
        &self,
        org_id: Uuid,
        id: Uuid,
    ) -> StoreResult<Option<super::buildings::BuildingRecord>>;

    /// The versions of `org_id`'s schedule, read in one statement (migrations 0020 and
    /// 0021): the organisation-wide one (holidays, rules, shipped rules) and one per building
    /// the organisation has or had (assets, the building row and archive, history, services),
    /// by building id. Read them before loading what they version.
    async fn schedule_versions(&self, org_id: Uuid) -> StoreResult<ScheduleVersions>;

    /// The organisation-wide version of `org_id`'s schedule and building `building_id`'s
    /// (0 when it has none), read in one statement.
    async fn building_schedule_versions(
        &self,
        org_id: Uuid,
        building_id: Uuid,
    ) -> StoreResult<(i64, i64)>;

    /// Every asset of `org_id`, by building.
    async fn org_assets(&self, org_id: Uuid) -> StoreResult<Vec<super::buildings::AssetRecord>>;

    /// The version of `org_id`'s schedule inputs (migration 0020: raised in the same
    /// transaction as every change a schedule is computed from, shipped rules included).
    /// Read it before loading what it versions.
    async fn schedule_version(&self, org_id: Uuid) -> StoreResult<i64>;

    /// Every holiday `org_id` added, all states.
    async fn org_holidays(&self, org_id: Uuid) -> StoreResult<Vec<HolidayRow>>;

    /// One asset's history rows, newest first.
    async fn asset_service_history(
        &self,
        org_id: Uuid,
        asset_id: Uuid,
    ) -> StoreResult<Vec<HistoryRecord>>;

    /// Insert history rows in one transaction; a row for an (asset, routine, day) already
    /// recorded is left as it is. Returns how many were new.
    async fn add_service_history(&self, rows: &[HistoryRecord]) -> StoreResult<u64>;

    /// The holidays `org_id` added for `state`.
    async fn holidays(&self, org_id: Uuid, state: &str) -> StoreResult<Vec<HolidayRow>>;

    /// Replace the holidays `org_id` added for `state` in `year` with `days`.
    async fn replace_holidays(
        &self,
        org_id: Uuid,
        state: &str,
        year: i32,
        days: &[(NaiveDate, String)],
    ) -> StoreResult<()>;
}

/// Spans recorded before `$2` from `routine_service_spans` (migration 0021: one row per
/// building, asset and routine); a routine last serviced after the bound has its span
/// aggregated from the items instead. `{building}` narrows both halves to building `$3`.
macro_rules! spans_sql {
    ($building_s:literal, $building_i:literal) => {
        concat!(
            "SELECT building_id, asset_id, rule_code, first_recorded_at, last_recorded_at \
             FROM routine_service_spans WHERE org_id = $1 AND last_recorded_at < $2",
            $building_s,
            " UNION ALL \
             SELECT i.building_id, i.asset_id, i.rule_code, MIN(i.recorded_at) AS first_recorded_at, \
               MAX(i.recorded_at) AS last_recorded_at \
             FROM routine_service_spans s JOIN session_items i \
               ON i.org_id = s.org_id AND i.building_id = s.building_id \
              AND i.asset_id = s.asset_id AND i.rule_code = s.rule_code \
             WHERE s.org_id = $1 AND s.last_recorded_at >= $2 AND s.first_recorded_at < $2",
            $building_i,
            " AND i.recorded_at IS NOT NULL AND i.recorded_at < $2 \
               AND i.outcome IN ('pass', 'fail') \
             GROUP BY i.building_id, i.asset_id, i.rule_code"
        )
    };
}

pub(crate) const ORG_SPANS_SQL: &str = spans_sql!("", "");
pub(crate) const BUILDING_SPANS_SQL: &str =
    spans_sql!(" AND building_id = $3", " AND s.building_id = $3");

pub(crate) const HISTORY_COLUMNS: &str = "id, org_id, building_id, asset_id, rule_code, \
     serviced_on, outcome, source, note, recorded_by, created_at";

macro_rules! schedule_sql {
    ($store:ty) => {
        impl $store {
            /// Insert history rows in `tx`, 500 to a statement; a row for an (asset, routine,
            /// day) already recorded is left as it is. Returns how many were new. Shared by
            /// `add_service_history` and the asset import.
            pub(crate) async fn insert_history_rows(
                tx: &mut sqlx::Transaction<'static, <$store as $crate::store::Backend>::Db>,
                rows: &[$crate::store::schedule::HistoryRecord],
            ) -> $crate::store::StoreResult<u64> {
                let mut added = 0;
                for chunk in rows.chunks(500) {
                    let sql = format!(
                        "INSERT INTO asset_service_history ({}) VALUES {} \
                         ON CONFLICT (asset_id, rule_code, serviced_on) DO NOTHING",
                        $crate::store::schedule::HISTORY_COLUMNS,
                        $crate::store::rules::placeholders(chunk.len(), 11)
                    );
                    let mut q = sqlx::query(&sql);
                    for r in chunk {
                        q = q
                            .bind(r.id)
                            .bind(r.org_id)
                            .bind(r.building_id)
                            .bind(r.asset_id)
                            .bind(&r.rule_code)
                            .bind(r.serviced_on)
                            .bind(&r.outcome)
                            .bind(&r.source)
                            .bind(&r.note)
                            .bind(r.recorded_by)
                            .bind(r.created_at);
                    }
                    added += q.execute(&mut **tx).await?.rows_affected();
                }
                Ok(added)
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::schedule::ScheduleStore for $store {
            async fn service_history(
                &self,
                org_id: uuid::Uuid,
                building_id: uuid::Uuid,
                before: chrono::NaiveDate,
            ) -> $crate::store::StoreResult<Vec<$crate::store::schedule::HistoryRecord>> {
                Ok(sqlx::query_as(&format!(
                    "SELECT {} FROM asset_service_history \
                     WHERE building_id = $1 AND org_id = $2 AND serviced_on < $3",
                    $crate::store::schedule::HISTORY_COLUMNS
                ))
                .bind(building_id)
                .bind(org_id)
                .bind(before)
                .fetch_all(&self.reader)
                .await?)
            }

            async fn org_service_history(
                &self,
                org_id: uuid::Uuid,
                before: chrono::NaiveDate,
            ) -> $crate::store::StoreResult<Vec<$crate::store::schedule::HistoryRecord>> {
                Ok(sqlx::query_as(&format!(
                    "SELECT {} FROM asset_service_history WHERE org_id = $1 AND serviced_on < $2",
                    $crate::store::schedule::HISTORY_COLUMNS
                ))
                .bind(org_id)
                .bind(before)
                .fetch_all(&self.reader)
                .await?)
            }

            async fn service_spans(
                &self,
                org_id: uuid::Uuid,
                building_id: Option<uuid::Uuid>,
                before: &str,
            ) -> $crate::store::StoreResult<Vec<$crate::store::schedule::BuildingSpan>> {
                let q = match building_id {
                    Some(b) => sqlx::query_as($crate::store::schedule::BUILDING_SPANS_SQL)
                        .bind(org_id)
                        .bind(before)
                        .bind(b),
                    None => sqlx::query_as($crate::store::schedule::ORG_SPANS_SQL)
                        .bind(org_id)
                        .bind(before),
                };
                Ok(q.fetch_all(&self.reader).await?)
            }

            async fn schedule_building(
                &self,
                org_id: uuid::Uuid,
                id: uuid::Uuid,
            ) -> $crate::store::StoreResult<Option<$crate::store::buildings::BuildingRecord>> {
                Ok(sqlx::query_as(&format!(
                    "SELECT {} FROM buildings WHERE id = $1 AND org_id = $2 AND NOT EXISTS \
                     (SELECT 1 FROM building_archives ba WHERE ba.building_id = buildings.id)",
                    $crate::store::buildings::BUILDING_COLUMNS
                ))
                .bind(id)
                .bind(org_id)
                .fetch_optional(&self.reader)
                .await?)
            }

            async fn schedule_versions(
                &self,
                org_id: uuid::Uuid,
            ) -> $crate::store::StoreResult<$crate::store::schedule::ScheduleVersions> {
                // One statement: one snapshot of every version. The organisation-wide row is
                // the one keyed by the nil id (no building has it).
                let rows: Vec<(uuid::Uuid, i64)> = sqlx::query_as(
                    "SELECT building_id, version FROM schedule_building_versions \
                     WHERE org_id = $1 \
                     UNION ALL \
                     SELECT $2, CAST(COALESCE(SUM(version), 0) AS BIGINT) FROM schedule_versions \
                     WHERE org_id = $1 OR org_id = $2",
                )
                .bind(org_id)
                .bind(uuid::Uuid::nil())
                .fetch_all(&self.reader)
                .await?;
                let mut out = $crate::store::schedule::ScheduleVersions {
                    organisation: 0,
                    buildings: Vec::with_capacity(rows.len()),
                };
                for (id, v) in rows {
                    if id.is_nil() {
                        out.organisation = v;
                    } else {
                        out.buildings.push((id, v));
                    }
                }
                out.buildings.sort_unstable();
                Ok(out)
            }

            async fn building_schedule_versions(
                &self,
                org_id: uuid::Uuid,
                building_id: uuid::Uuid,
            ) -> $crate::store::StoreResult<(i64, i64)> {
                Ok(sqlx::query_as(
                    "SELECT CAST((SELECT COALESCE(SUM(version), 0) FROM schedule_versions \
                       WHERE org_id = $1 OR org_id = $2) AS BIGINT), \
                     CAST(COALESCE((SELECT version FROM schedule_building_versions \
                       WHERE org_id = $1 AND building_id = $3), 0) AS BIGINT)",
                )
                .bind(org_id)
                .bind(uuid::Uuid::nil())
                .bind(building_id)
                .fetch_one(&self.reader)
                .await?)
            }

            async fn org_assets(
                &self,
                org_id: uuid::Uuid,
            ) -> $crate::store::StoreResult<Vec<$crate::store::buildings::AssetRecord>> {
                Ok(sqlx::query_as(&format!(
                    "SELECT {} FROM assets WHERE org_id = $1 ORDER BY building_id, id",
                    $crate::store::buildings::ASSET_COLUMNS
                ))
                .bind(org_id)
                .fetch_all(&self.reader)
                .await?)
            }

            async fn schedule_version(
                &self,
                org_id: uuid::Uuid,
            ) -> $crate::store::StoreResult<i64> {
                Ok(sqlx::query_scalar(
                    "SELECT CAST(COALESCE(SUM(version), 0) AS BIGINT) FROM schedule_versions \
                     WHERE org_id = $1 OR org_id = $2",
                )
                .bind(org_id)
                .bind(uuid::Uuid::nil())
                .fetch_one(&self.reader)
                .await?)
            }

            async fn org_holidays(
                &self,
                org_id: uuid::Uuid,
            ) -> $crate::store::StoreResult<Vec<$crate::store::schedule::HolidayRow>> {
                Ok(sqlx::query_as(
                    "SELECT state, day, name FROM public_holidays WHERE org_id = $1 ORDER BY day",
                )
                .bind(org_id)
                .fetch_all(&self.reader)
                .await?)
            }

            async fn asset_service_history(
                &self,
                org_id: uuid::Uuid,
                asset_id: uuid::Uuid,
            ) -> $crate::store::StoreResult<Vec<$crate::store::schedule::HistoryRecord>> {
                Ok(sqlx::query_as(&format!(
                    "SELECT {} FROM asset_service_history WHERE asset_id = $1 AND org_id = $2 \
                     ORDER BY serviced_on DESC, rule_code",
                    $crate::store::schedule::HISTORY_COLUMNS
                ))
                .bind(asset_id)
                .bind(org_id)
                .fetch_all(&self.reader)
                .await?)
            }

            async fn add_service_history(
                &self,
                rows: &[$crate::store::schedule::HistoryRecord],
            ) -> $crate::store::StoreResult<u64> {
                let mut tx = self.writer.begin().await?;
                let added = Self::insert_history_rows(&mut tx, rows).await?;
                tx.commit().await?;
                Ok(added)
            }

            async fn holidays(
                &self,
                org_id: uuid::Uuid,
                state: &str,
            ) -> $crate::store::StoreResult<Vec<$crate::store::schedule::HolidayRow>> {
                Ok(sqlx::query_as(
                    "SELECT state, day, name FROM public_holidays \
                     WHERE org_id = $1 AND state = $2 ORDER BY day",
                )
                .bind(org_id)
                .bind(state)
                .fetch_all(&self.reader)
                .await?)
            }

            async fn replace_holidays(
                &self,
                org_id: uuid::Uuid,
                state: &str,
                year: i32,
                days: &[(chrono::NaiveDate, String)],
            ) -> $crate::store::StoreResult<()> {
                let first = chrono::NaiveDate::from_ymd_opt(year, 1, 1)
                    .ok_or($crate::store::StoreError::NotFound)?;
                let last = chrono::NaiveDate::from_ymd_opt(year, 12, 31)
                    .ok_or($crate::store::StoreError::NotFound)?;
                let mut tx = self.writer.begin().await?;
                sqlx::query(
                    "DELETE FROM public_holidays WHERE org_id = $1 AND state = $2 \
                     AND day >= $3 AND day <= $4",
                )
                .bind(org_id)
                .bind(state)
                .bind(first)
                .bind(last)
                .execute(&mut *tx)
                .await?;
                for (day, name) in days {
                    sqlx::query(
                        "INSERT INTO public_holidays (org_id, state, day, name) \
                         VALUES ($1, $2, $3, $4)",
                    )
                    .bind(org_id)
                    .bind(state)
                    .bind(day)
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(())
            }
        }
    };
}

pub(crate) use schedule_sql;
