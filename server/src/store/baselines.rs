//! Reference values of assets: baselines and design or manufacturer values (table
//! `asset_reference_values`). The current value of (asset, kind, key) is the row not yet
//! superseded; every earlier row stays as its history.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::StoreResult;

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct ReferenceValue {
    pub id: Uuid,
    pub org_id: Uuid,
    pub building_id: Uuid,
    pub asset_id: Uuid,
    /// `baseline` or `design` (see `domain::reference::Kind`).
    pub kind: String,
    pub key: String,
    pub value: f64,
    pub unit: String,
    /// See `domain::reference::Source`.
    pub source: String,
    pub note: Option<String>,
    pub set_by: Option<Uuid>,
    pub set_at: DateTime<Utc>,
    pub superseded_at: Option<DateTime<Utc>>,
}

/// A value to set (already validated, see `domain::reference`). `value: None` clears.
#[derive(Debug, Clone, PartialEq)]
pub struct NewReferenceValue {
    pub kind: String,
    pub key: String,
    pub value: Option<f64>,
    pub unit: String,
    pub source: String,
    pub note: Option<String>,
}

/// The values to set on one asset.
#[derive(Debug, Clone)]
pub struct AssetValues {
    pub asset_id: Uuid,
    pub values: Vec<NewReferenceValue>,
}

/// One (asset, kind, key) that a write changed: the row it superseded and the row it inserted
/// (`None` for a value set for the first time, and for a clear).
#[derive(Debug, Clone, Serialize)]
pub struct ReferenceChange {
    pub asset_id: Uuid,
    pub kind: String,
    pub key: String,
    pub old: Option<ReferenceValue>,
    pub new: Option<ReferenceValue>,
}

/// Whether setting `new` over `current` would change nothing (value, unit, source and note all
/// equal). A clear (`value: None`) always changes a current value.
pub fn is_unchanged(current: &ReferenceValue, new: &NewReferenceValue) -> bool {
    new.value == Some(current.value)
        && new.unit == current.unit
        && new.source == current.source
        && new.note == current.note
}

/// Whether writing `new` where `current` is the current row (if any) writes anything: a new
/// value, a different one, or a clear of an existing one.
pub fn would_change(current: Option<&ReferenceValue>, new: &NewReferenceValue) -> bool {
    match current {
        None => new.value.is_some(),
        Some(c) => !is_unchanged(c, new),
    }
}

#[async_trait]
pub trait ReferenceStore: Send + Sync {
    /// Current values of these assets (all kinds and keys), one org.
    async fn current_reference_values(
        &self,
        org_id: Uuid,
        asset_ids: &[Uuid],
    ) -> StoreResult<Vec<ReferenceValue>>;
    /// Current values of every asset of a building.
    async fn building_reference_values(
        &self,
        org_id: Uuid,
        building_id: Uuid,
    ) -> StoreResult<Vec<ReferenceValue>>;
    /// Every value ever set for an asset (current and superseded), newest first.
    async fn reference_history(
        &self,
        org_id: Uuid,
        asset_id: Uuid,
    ) -> StoreResult<Vec<ReferenceValue>>;
    /// In one transaction: for each value, supersede the current (kind, key) row and insert the
    /// new one; a value equal to the current one (value, unit, source, note) writes nothing;
    /// `value: None` supersedes without replacement (clears). Returns the rows now current for
    /// the keys touched. NotFound unless the asset belongs to this building of this org. A
    /// key's times never run backwards: when `at` is earlier than the current row's `set_at`
    /// (a concurrent write, another node's clock), that `set_at` is used instead.
    async fn set_reference_values(
        &self,
        org_id: Uuid,
        building_id: Uuid,
        asset_id: Uuid,
        values: &[NewReferenceValue],
        set_by: Uuid,
        at: DateTime<Utc>,
    ) -> StoreResult<Vec<ReferenceValue>>;
    /// `set_reference_values` for several assets of a building in one transaction (all or
    /// nothing), returning what changed with the old and new rows. With `only_over` set, a
    /// current value of another source is never superseded: the whole write fails with
    /// `Conflict("reference_source")` (an inspector's first-service values do not replace
    /// commissioning or design data). `Conflict("reference_value")` when a concurrent write
    /// changed one of the keys first.
    async fn apply_reference_values(
        &self,
        org_id: Uuid,
        building_id: Uuid,
        batch: &[AssetValues],
        set_by: Uuid,
        at: DateTime<Utc>,
        only_over: Option<&str>,
    ) -> StoreResult<Vec<ReferenceChange>>;
}

/// Columns of `asset_reference_values`, in `ReferenceValue` order.
pub(crate) const REFERENCE_COLUMNS: &str = "id, org_id, building_id, asset_id, kind, key, \
     value, unit, source, note, set_by, set_at, superseded_at";

/// Asset ids per `IN (...)` list: well under SQLite's smallest bind limit (999).
pub(crate) const ASSET_ID_CHUNK: usize = 500;

/// `$first, $first+1, ...` for `n` binds.
pub(crate) fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One order for every listing, the same on both backends: asset, kind, key.
pub(crate) fn sort_current(rows: &mut [ReferenceValue]) {
    rows.sort_by(|a, b| (a.asset_id, &a.kind, &a.key).cmp(&(b.asset_id, &b.kind, &b.key)));
}

macro_rules! baselines_sql {
    ($store:ty) => {
        impl $store {
            /// The current row of `v`'s kind and key on an asset, inside `tx`.
            async fn current_reference_row(
                tx: &mut sqlx::Transaction<'static, <$store as $crate::store::Backend>::Db>,
                asset_id: uuid::Uuid,
                v: &$crate::store::baselines::NewReferenceValue,
            ) -> $crate::store::StoreResult<Option<$crate::store::baselines::ReferenceValue>> {
                Ok(sqlx::query_as(&format!(
                    "SELECT {} FROM asset_reference_values \
                     WHERE asset_id = $1 AND kind = $2 AND key = $3 AND superseded_at IS NULL",
                    $crate::store::baselines::REFERENCE_COLUMNS
                ))
                .bind(asset_id)
                .bind(&v.kind)
                .bind(&v.key)
                .fetch_optional(&mut **tx)
                .await?)
            }

            /// Write `values` on one asset inside `tx`; what changed.
            #[allow(clippy::too_many_arguments)]
            async fn apply_asset_reference_values(
                tx: &mut sqlx::Transaction<'static, <$store as $crate::store::Backend>::Db>,
                org_id: uuid::Uuid,
                building_id: uuid::Uuid,
                asset_id: uuid::Uuid,
                values: &[$crate::store::baselines::NewReferenceValue],
                set_by: uuid::Uuid,
                at: chrono::DateTime<chrono::Utc>,
                only_over: Option<&str>,
            ) -> $crate::store::StoreResult<Vec<$crate::store::baselines::ReferenceChange>> {
                use $crate::store::baselines::{ReferenceChange, ReferenceValue, REFERENCE_COLUMNS};
                use $crate::store::StoreError;
                let owned: Option<i32> = sqlx::query_scalar(
                    "SELECT 1 FROM assets WHERE id = $1 AND building_id = $2 AND org_id = $3",
                )
                .bind(asset_id)
                .bind(building_id)
                .bind(org_id)
                .fetch_optional(&mut **tx)
                .await?;
                if owned.is_none() {
                    return Err(StoreError::NotFound);
                }
                let mut changes = Vec::new();
                for v in values {
                    let current = Self::current_reference_row(tx, asset_id, v).await?;
                    if !$crate::store::baselines::would_change(current.as_ref(), v) {
                        continue;
                    }
                    // Times never run backwards along a key's history: a write that took its
                    // time before a concurrent one committed (or on a node whose clock is
                    // behind) is stamped no earlier than the row it supersedes.
                    let at = match &current {
                        Some(c) if c.set_at > at => c.set_at,
                        _ => at,
                    };
                    if let (Some(c), Some(only)) = (&current, only_over) {
                        if c.source != only {
                            return Err(StoreError::Conflict("reference_source"));
                        }
                    }
                    let old = match current {
                        Some(c) => {
                            let done = sqlx::query(
                                "UPDATE asset_reference_values SET superseded_at = $1 \
                                 WHERE id = $2 AND superseded_at IS NULL",
                            )
                            .bind(at)
                            .bind(c.id)
                            .execute(&mut **tx)
                            .await?;
                            if done.rows_affected() != 1 {
                                return Err(StoreError::Conflict("reference_value"));
                            }
                            Some(ReferenceValue {
                                superseded_at: Some(at),
                                ..c
                            })
                        }
                        None => None,
                    };
                    let new = match v.value {
                        None => None,
                        Some(value) => {
                            let row = ReferenceValue {
                                id: uuid::Uuid::now_v7(),
                                org_id,
                                building_id,
                                asset_id,
                                kind: v.kind.clone(),
                                key: v.key.clone(),
                                value,
                                unit: v.unit.clone(),
                                source: v.source.clone(),
                                note: v.note.clone(),
                                set_by: Some(set_by),
                                set_at: at,
                                superseded_at: None,
                            };
                            sqlx::query(&format!(
                                "INSERT INTO asset_reference_values ({REFERENCE_COLUMNS}) \
                                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
                            ))
                            .bind(row.id)
                            .bind(row.org_id)
                            .bind(row.building_id)
                            .bind(row.asset_id)
                            .bind(&row.kind)
                            .bind(&row.key)
                            .bind(row.value)
                            .bind(&row.unit)
                            .bind(&row.source)
                            .bind(&row.note)
                            .bind(row.set_by)
                            .bind(row.set_at)
                            .bind(row.superseded_at)
                            .execute(&mut **tx)
                            .await
                            .map_err(|e| StoreError::unique(e, "reference_value"))?;
                            Some(row)
                        }
                    };
                    changes.push(ReferenceChange {
                        asset_id,
                        kind: v.kind.clone(),
                        key: v.key.clone(),
                        old,
                        new,
                    });
                }
                Ok(changes)
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::baselines::ReferenceStore for $store {
            async fn current_reference_values(
                &self,
                org_id: uuid::Uuid,
                asset_ids: &[uuid::Uuid],
            ) -> $crate::store::StoreResult<Vec<$crate::store::baselines::ReferenceValue>> {
                use $crate::store::baselines::{placeholders, ASSET_ID_CHUNK, REFERENCE_COLUMNS};
                let mut ids = asset_ids.to_vec();
                ids.sort_unstable();
                ids.dedup();
                let mut rows = Vec::new();
                for chunk in ids.chunks(ASSET_ID_CHUNK) {
                    let sql = format!(
                        "SELECT {REFERENCE_COLUMNS} FROM asset_reference_values \
                         WHERE org_id = $1 AND superseded_at IS NULL AND asset_id IN ({})",
                        placeholders(2, chunk.len())
                    );
                    let mut q = sqlx::query_as(&sql).bind(org_id);
                    for id in chunk {
                        q = q.bind(*id);
                    }
                    rows.extend(q.fetch_all(&self.reader).await?);
                }
                $crate::store::baselines::sort_current(&mut rows);
                Ok(rows)
            }

            async fn building_reference_values(
                &self,
                org_id: uuid::Uuid,
                building_id: uuid::Uuid,
            ) -> $crate::store::StoreResult<Vec<$crate::store::baselines::ReferenceValue>> {
                let mut rows = sqlx::query_as(&format!(
                    "SELECT {} FROM asset_reference_values \
                     WHERE org_id = $1 AND building_id = $2 AND superseded_at IS NULL",
                    $crate::store::baselines::REFERENCE_COLUMNS
                ))
                .bind(org_id)
                .bind(building_id)
                .fetch_all(&self.reader)
                .await?;
                $crate::store::baselines::sort_current(&mut rows);
                Ok(rows)
            }

            async fn reference_history(
                &self,
                org_id: uuid::Uuid,
                asset_id: uuid::Uuid,
            ) -> $crate::store::StoreResult<Vec<$crate::store::baselines::ReferenceValue>> {
                let mut rows: Vec<$crate::store::baselines::ReferenceValue> = sqlx::query_as(&format!(
                    "SELECT {} FROM asset_reference_values WHERE org_id = $1 AND asset_id = $2",
                    $crate::store::baselines::REFERENCE_COLUMNS
                ))
                .bind(org_id)
                .bind(asset_id)
                .fetch_all(&self.reader)
                .await?;
                // Sorted here, not in SQL: SQLite keeps times as text whose fractional digits
                // vary, so text order is not time order. Ids are UUIDv7 (time-ordered) for ties.
                rows.sort_by(|a, b| (b.set_at, b.id).cmp(&(a.set_at, a.id)));
                Ok(rows)
            }

            async fn set_reference_values(
                &self,
                org_id: uuid::Uuid,
                building_id: uuid::Uuid,
                asset_id: uuid::Uuid,
                values: &[$crate::store::baselines::NewReferenceValue],
                set_by: uuid::Uuid,
                at: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<Vec<$crate::store::baselines::ReferenceValue>> {
                let mut tx = self.writer.begin().await?;
                Self::apply_asset_reference_values(
                    &mut tx, org_id, building_id, asset_id, values, set_by, at, None,
                )
                .await?;
                // The rows now current for the keys touched (unchanged ones included).
                let mut current = Vec::new();
                for v in values {
                    current.extend(Self::current_reference_row(&mut tx, asset_id, v).await?);
                }
                tx.commit().await?;
                Ok(current)
            }

            async fn apply_reference_values(
                &self,
                org_id: uuid::Uuid,
                building_id: uuid::Uuid,
                batch: &[$crate::store::baselines::AssetValues],
                set_by: uuid::Uuid,
                at: chrono::DateTime<chrono::Utc>,
                only_over: Option<&str>,
            ) -> $crate::store::StoreResult<Vec<$crate::store::baselines::ReferenceChange>> {
                let mut tx = self.writer.begin().await?;
                let mut changes = Vec::new();
                for a in batch {
                    changes.extend(
                        Self::apply_asset_reference_values(
                            &mut tx, org_id, building_id, a.asset_id, &a.values, set_by, at,
                            only_over,
                        )
                        .await?,
                    );
                }
                tx.commit().await?;
                Ok(changes)
            }
        }
    };
}

pub(crate) use baselines_sql;
