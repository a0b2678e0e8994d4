//! Rule persistence: the `RuleStore` contract and its SQL (shared by both backends).
//!
//! Visibility (see `crate::rules`): an organisation sees the shipped rows (`org_id` NULL) and
//! its own. "Latest" is the highest semantic version among active versions; on a tie between a
//! shipped and an own row of the same version, the own row wins.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::StoreResult;
use crate::rules::{RuleDef, Version};

/// A stored rule version.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RuleRecord {
    pub id: Uuid,
    pub code: String,
    pub version: String,
    /// `None` for a shipped rule; the owning organisation for a private one.
    pub org_id: Option<Uuid>,
    pub name: String,
    pub description: String,
    pub standard: String,
    pub section: String,
    pub clause: String,
    pub equipment: String,
    pub frequency: String,
    /// The readings (`crate::domain::readings::ReadingSpec`; rows stored before readings had
    /// kinds hold `{name, unit, expected}`, read with an inferred kind).
    pub readings: sqlx::types::Json<serde_json::Value>,
    /// Observed condition -> `critical_defect` | `non_critical_defect` | `non_conformance` |
    /// `compliant`.
    pub classification_mappings: sqlx::types::Json<BTreeMap<String, String>>,
    /// Why a condition is classified as it is (condition -> text).
    pub rationale: sqlx::types::Json<BTreeMap<String, String>>,
    /// The edition the rule belongs to (e.g. `AS1851` `2012.1.0`).
    pub rule_set_code: String,
    pub rule_set_version: String,
    /// The code of the routine this one may replace on an asset, if it is an alternative.
    pub alternative_to: Option<String>,
    pub active: bool,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub deactivated_at: Option<DateTime<Utc>>,
}

/// A rule version to insert. `version` is `def.version`, already parsed (validated).
#[derive(Debug, Clone)]
pub struct NewRule<'a> {
    pub org_id: Option<Uuid>,
    pub def: &'a RuleDef,
    pub version: Version,
    pub created_by: Option<Uuid>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RuleSetRecord {
    pub code: String,
    pub version: String,
    pub title: String,
    pub created_at: DateTime<Utc>,
}

/// Filters of a rule listing; `None` matches all.
#[derive(Debug, Clone, Default)]
pub struct RuleFilter {
    pub equipment: Option<String>,
    pub frequency: Option<String>,
}

#[async_trait]
pub trait RuleStore: Send + Sync {
    /// The latest ACTIVE version of every rule code visible to `org_id` (shipped + its own),
    /// optionally only for one equipment kind and/or frequency, ordered by code.
    async fn latest_rules(
        &self,
        org_id: Uuid,
        equipment: Option<&str>,
        frequency: Option<&str>,
    ) -> StoreResult<Vec<RuleRecord>>;
    /// The latest ACTIVE version of every rule code visible to `org_id` within each edition
    /// (a code shared by two editions gives one row per edition), optionally only at one
    /// frequency and/or for one code, ordered by code. `crate::rules::building_rules` picks
    /// a building's editions from these.
    async fn edition_rules(
        &self,
        org_id: Uuid,
        frequency: Option<&str>,
        code: Option<&str>,
    ) -> StoreResult<Vec<RuleRecord>>;
    /// [`RuleStore::latest_rules`], one page: codes after `after_code`, at most `limit`.
    async fn latest_rules_page(
        &self,
        org_id: Uuid,
        filter: &RuleFilter,
        after_code: Option<&str>,
        limit: i64,
    ) -> StoreResult<Vec<RuleRecord>>;
    /// The latest active version of `code` visible to `org_id`; NotFound if none is active.
    async fn latest_rule(&self, org_id: Uuid, code: &str) -> StoreResult<RuleRecord>;
    /// Every version of `code` visible to `org_id`, inactive ones included, newest first.
    /// Empty when the code is unknown to the organisation.
    async fn rule_versions(&self, org_id: Uuid, code: &str) -> StoreResult<Vec<RuleRecord>>;
    /// One version of `code` visible to `org_id` (its own row first); NotFound otherwise.
    async fn get_rule_version(
        &self,
        org_id: Uuid,
        code: &str,
        version: &str,
    ) -> StoreResult<RuleRecord>;
    /// Insert an organisation-private rule version (`rule.org_id` must be set). Conflict when
    /// the organisation already sees this code+version (its own or shipped).
    async fn create_rule(&self, rule: &NewRule<'_>) -> StoreResult<RuleRecord>;
    /// Deactivate one of the organisation's own versions (idempotent). NotFound for shipped
    /// rows, other organisations' rows and unknown versions.
    async fn deactivate_rule(
        &self,
        org_id: Uuid,
        code: &str,
        version: &str,
    ) -> StoreResult<RuleRecord>;

    /// (code, version) of every shipped rule row.
    async fn shipped_rule_keys(&self) -> StoreResult<Vec<(String, String)>>;
    /// Insert a shipped rule set and shipped rules in one transaction, skipping rows that exist
    /// (existing rows are never modified). Returns how many rules were inserted.
    async fn seed_shipped(
        &self,
        rule_set: (&str, &str, &str),
        rules: &[NewRule<'_>],
    ) -> StoreResult<u64>;
    async fn rule_set_exists(&self, code: &str, version: &str) -> StoreResult<bool>;
    async fn list_rule_sets(&self) -> StoreResult<Vec<RuleSetRecord>>;
}

/// Columns of `rules`, in `RuleRecord` order.
pub(crate) const RULE_COLUMNS: &str = "id, code, version, org_id, name, description, standard, \
     section, clause, equipment, frequency, readings, classification_mappings, rationale, \
     rule_set_code, rule_set_version, alternative_to, active, created_by, created_at, deactivated_at";

/// Columns written on insert; 24 binds per row.
pub(crate) const RULE_INSERT_COLUMNS: &str = "id, code, version, v_major, v_minor, v_patch, \
     org_id, name, description, standard, section, clause, equipment, frequency, readings, \
     classification_mappings, rationale, rule_set_code, rule_set_version, alternative_to, active, \
     created_by, created_at, deactivated_at";

/// The latest active version per code visible to `$1`, filtered by `$2` equipment, `$3`
/// frequency, `$4` one code, codes after `$5`, at most `$6`. Own rows sort before shipped rows
/// of the same version (`org_id IS NULL` is false for them).
pub(crate) const LATEST_RULES_SQL: &str = "SELECT id, code, version, org_id, name, description, \
     standard, section, clause, equipment, frequency, readings, classification_mappings, rationale, \
     rule_set_code, rule_set_version, alternative_to, active, created_by, created_at, deactivated_at FROM (\
       SELECT r.*, ROW_NUMBER() OVER (PARTITION BY code \
         ORDER BY v_major DESC, v_minor DESC, v_patch DESC, (org_id IS NULL)) AS rn \
       FROM rules r WHERE active AND (org_id IS NULL OR org_id = $1)\
     ) latest \
     WHERE rn = 1 AND ($2 IS NULL OR equipment = $2) AND ($3 IS NULL OR frequency = $3) \
     AND ($4 IS NULL OR code = $4) AND ($5 IS NULL OR code > $5) \
     ORDER BY code LIMIT $6";

/// The latest active version of every code per edition that `$1` sees (its own and shipped
/// rules), optionally only at frequency `$2` and only of code `$3`. The code is filtered before
/// the window (each partition holds one code, so the partitions kept are the same), and the
/// window numbers ids and sort keys alone, the rows being read by id after it: numbering whole
/// rows of every rule copied their JSON columns through the window, once per rule code, on
/// every result write and projection. The frequency stays a filter on the latest version (a
/// newer version at another frequency must still hide an older one).
pub(crate) const EDITION_RULES_SQL: &str = "SELECT r.id, r.code, r.version, r.org_id, r.name, \
     r.description, r.standard, r.section, r.clause, r.equipment, r.frequency, r.readings, \
     r.classification_mappings, r.rationale, r.rule_set_code, r.rule_set_version, \
     r.alternative_to, r.active, r.created_by, r.created_at, r.deactivated_at \
     FROM (\
       SELECT id, ROW_NUMBER() OVER (PARTITION BY code, rule_set_code, rule_set_version \
         ORDER BY v_major DESC, v_minor DESC, v_patch DESC, (org_id IS NULL)) AS rn \
       FROM rules WHERE active AND (org_id IS NULL OR org_id = $1) AND ($3 IS NULL OR code = $3)\
     ) latest JOIN rules r ON r.id = latest.id \
     WHERE latest.rn = 1 AND ($2 IS NULL OR r.frequency = $2) \
     ORDER BY r.code, r.rule_set_code, r.rule_set_version";

/// Rows per multi-row INSERT: 100 x 24 binds stays far below both drivers' limits.
pub(crate) const RULE_INSERT_CHUNK: usize = 100;

/// `($1, ..., $20), ($21, ...)` for `rows` rows of `cols` binds.
pub(crate) fn placeholders(rows: usize, cols: usize) -> String {
    (0..rows)
        .map(|r| {
            let row: Vec<String> = (1..=cols).map(|c| format!("${}", r * cols + c)).collect();
            format!("({})", row.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl RuleRecord {
    /// The rule as applicability sees it.
    pub fn facts(&self) -> crate::domain::applicability::RuleFacts<'_> {
        crate::domain::applicability::RuleFacts {
            code: &self.code,
            equipment: &self.equipment,
            frequency: &self.frequency,
            alternative_to: self.alternative_to.as_deref(),
        }
    }

    /// The rule as the domain layer assesses items with it. Readings that cannot be read are
    /// left out (they were validated when the rule was stored).
    pub fn view(&self) -> crate::domain::assess::RuleView {
        crate::domain::assess::RuleView {
            code: self.code.clone(),
            version: self.version.clone(),
            name: self.name.clone(),
            mappings: self
                .classification_mappings
                .0
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), v.parse().ok()?)))
                .collect(),
            readings: match &self.readings.0 {
                serde_json::Value::Array(items) => items
                    .iter()
                    .filter_map(|r| serde_json::from_value(r.clone()).ok())
                    .collect(),
                _ => Vec::new(),
            },
        }
    }
}

impl NewRule<'_> {
    /// The stored form, as inserted.
    pub(crate) fn record(&self, id: Uuid, now: DateTime<Utc>) -> RuleRecord {
        let d = self.def;
        RuleRecord {
            id,
            code: d.code.clone(),
            version: self.version.to_string(),
            org_id: self.org_id,
            name: d.name.clone(),
            description: d.description.clone(),
            standard: d.standard.clone(),
            section: d.section.clone(),
            clause: d.clause.clone(),
            equipment: d.equipment.clone(),
            frequency: d.frequency.clone(),
            readings: sqlx::types::Json(serde_json::to_value(&d.readings).unwrap_or_default()),
            classification_mappings: sqlx::types::Json(
                d.classification_mappings
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().to_owned()))
                    .collect(),
            ),
            rationale: sqlx::types::Json(d.rationale.clone()),
            rule_set_code: d.rule_set.as_ref().map_or_else(
                || crate::rules::default_rule_set().0.to_owned(),
                |r| r.code.clone(),
            ),
            rule_set_version: d.rule_set.as_ref().map_or_else(
                || crate::rules::default_rule_set().1.to_owned(),
                |r| r.version.clone(),
            ),
            alternative_to: d.alternative_to.clone(),
            active: true,
            created_by: self.created_by,
            created_at: now,
            deactivated_at: None,
        }
    }
}

macro_rules! rules_sql {
    ($store:ty) => {
        impl $store {
            /// Insert rule rows (and optionally a rule set) in one transaction. With
            /// `skip_existing`, rows that would violate a unique key are skipped.
            async fn rules_insert(
                &self,
                rule_set: Option<(&str, &str, &str)>,
                rules: &[$crate::store::rules::NewRule<'_>],
                skip_existing: bool,
            ) -> $crate::store::StoreResult<(u64, Vec<$crate::store::rules::RuleRecord>)> {
                let now = chrono::Utc::now();
                let suffix = if skip_existing { " ON CONFLICT DO NOTHING" } else { "" };
                let mut tx = self.writer.begin().await?;
                if let Some((code, version, title)) = rule_set {
                    sqlx::query(&format!(
                        "INSERT INTO rule_sets (code, version, title, created_at) VALUES ($1, $2, $3, $4){suffix}"
                    ))
                    .bind(code)
                    .bind(version)
                    .bind(title)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
                let mut inserted = 0;
                let mut records = Vec::with_capacity(rules.len());
                for chunk in rules.chunks($crate::store::rules::RULE_INSERT_CHUNK) {
                    let sql = format!(
                        "INSERT INTO rules ({}) VALUES {}{suffix}",
                        $crate::store::rules::RULE_INSERT_COLUMNS,
                        $crate::store::rules::placeholders(chunk.len(), 24)
                    );
                    let mut q = sqlx::query(&sql);
                    for new in chunk {
                        let r = new.record(uuid::Uuid::now_v7(), now);
                        q = q
                            .bind(r.id)
                            .bind(r.code.clone())
                            .bind(r.version.clone())
                            .bind(new.version.major)
                            .bind(new.version.minor)
                            .bind(new.version.patch)
                            .bind(r.org_id)
                            .bind(r.name.clone())
                            .bind(r.description.clone())
                            .bind(r.standard.clone())
                            .bind(r.section.clone())
                            .bind(r.clause.clone())
                            .bind(r.equipment.clone())
                            .bind(r.frequency.clone())
                            .bind(r.readings.clone())
                            .bind(r.classification_mappings.clone())
                            .bind(r.rationale.clone())
                            .bind(r.rule_set_code.clone())
                            .bind(r.rule_set_version.clone())
                            .bind(r.alternative_to.clone())
                            .bind(r.active)
                            .bind(r.created_by)
                            .bind(r.created_at)
                            .bind(r.deactivated_at);
                        records.push(r);
                    }
                    inserted += q
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| $crate::store::StoreError::unique(e, "code and version"))?
                        .rows_affected();
                }
                tx.commit().await?;
                Ok((inserted, records))
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::rules::RuleStore for $store {
            async fn latest_rules(
                &self,
                org_id: uuid::Uuid,
                equipment: Option<&str>,
                frequency: Option<&str>,
            ) -> $crate::store::StoreResult<Vec<$crate::store::rules::RuleRecord>> {
                let filter = $crate::store::rules::RuleFilter {
                    equipment: equipment.map(str::to_owned),
                    frequency: frequency.map(str::to_owned),
                };
                $crate::store::rules::RuleStore::latest_rules_page(self, org_id, &filter, None, i64::MAX)
                    .await
            }

            async fn edition_rules(
                &self,
                org_id: uuid::Uuid,
                frequency: Option<&str>,
                code: Option<&str>,
            ) -> $crate::store::StoreResult<Vec<$crate::store::rules::RuleRecord>> {
                Ok(sqlx::query_as($crate::store::rules::EDITION_RULES_SQL)
                    .bind(org_id)
                    .bind(frequency)
                    .bind(code)
                    .fetch_all(&self.reader)
                    .await?)
            }

            async fn latest_rules_page(
                &self,
                org_id: uuid::Uuid,
                filter: &$crate::store::rules::RuleFilter,
                after_code: Option<&str>,
                limit: i64,
            ) -> $crate::store::StoreResult<Vec<$crate::store::rules::RuleRecord>> {
                Ok(sqlx::query_as($crate::store::rules::LATEST_RULES_SQL)
                    .bind(org_id)
                    .bind(filter.equipment.as_deref())
                    .bind(filter.frequency.as_deref())
                    .bind(None::<&str>)
                    .bind(after_code)
                    .bind(limit)
                    .fetch_all(&self.reader)
                    .await?)
            }

            async fn latest_rule(
                &self,
                org_id: uuid::Uuid,
                code: &str,
            ) -> $crate::store::StoreResult<$crate::store::rules::RuleRecord> {
                sqlx::query_as($crate::store::rules::LATEST_RULES_SQL)
                    .bind(org_id)
                    .bind(None::<&str>)
                    .bind(None::<&str>)
                    .bind(code)
                    .bind(None::<&str>)
                    .bind(1_i64)
                    .fetch_optional(&self.reader)
                    .await?
                    .ok_or($crate::store::StoreError::NotFound)
            }

            async fn rule_versions(
                &self,
                org_id: uuid::Uuid,
                code: &str,
            ) -> $crate::store::StoreResult<Vec<$crate::store::rules::RuleRecord>> {
                Ok(sqlx::query_as(&format!(
                    "SELECT {} FROM rules WHERE code = $1 AND (org_id IS NULL OR org_id = $2) \
                     ORDER BY v_major DESC, v_minor DESC, v_patch DESC, (org_id IS NULL)",
                    $crate::store::rules::RULE_COLUMNS
                ))
                .bind(code)
                .bind(org_id)
                .fetch_all(&self.reader)
                .await?)
            }

            async fn get_rule_version(
                &self,
                org_id: uuid::Uuid,
                code: &str,
                version: &str,
            ) -> $crate::store::StoreResult<$crate::store::rules::RuleRecord> {
                sqlx::query_as(&format!(
                    "SELECT {} FROM rules WHERE code = $1 AND version = $2 \
                     AND (org_id IS NULL OR org_id = $3) ORDER BY (org_id IS NULL) LIMIT 1",
                    $crate::store::rules::RULE_COLUMNS
                ))
                .bind(code)
                .bind(version)
                .bind(org_id)
                .fetch_optional(&self.reader)
                .await?
                .ok_or($crate::store::StoreError::NotFound)
            }

            async fn create_rule(
                &self,
                rule: &$crate::store::rules::NewRule<'_>,
            ) -> $crate::store::StoreResult<$crate::store::rules::RuleRecord> {
                let Some(org_id) = rule.org_id else {
                    return Err($crate::store::StoreError::Conflict("code and version"));
                };
                // The partial unique indexes guard each scope; this guards the pair of scopes
                // an organisation sees (its own rows and the shipped ones).
                let taken: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM rules WHERE code = $1 AND version = $2 \
                     AND (org_id IS NULL OR org_id = $3)",
                )
                .bind(&rule.def.code)
                .bind(rule.version.to_string())
                .bind(org_id)
                .fetch_one(&self.writer)
                .await?;
                if taken > 0 {
                    return Err($crate::store::StoreError::Conflict("code and version"));
                }
                let (_, mut records) = self
                    .rules_insert(None, std::slice::from_ref(rule), false)
                    .await?;
                Ok(records.remove(0))
            }

            async fn deactivate_rule(
                &self,
                org_id: uuid::Uuid,
                code: &str,
                version: &str,
            ) -> $crate::store::StoreResult<$crate::store::rules::RuleRecord> {
                let done = sqlx::query(
                    "UPDATE rules SET active = $1, deactivated_at = COALESCE(deactivated_at, $2) \
                     WHERE org_id = $3 AND code = $4 AND version = $5",
                )
                .bind(false)
                .bind(chrono::Utc::now())
                .bind(org_id)
                .bind(code)
                .bind(version)
                .execute(&self.writer)
                .await?;
                if done.rows_affected() == 0 {
                    return Err($crate::store::StoreError::NotFound);
                }
                sqlx::query_as(&format!(
                    "SELECT {} FROM rules WHERE org_id = $1 AND code = $2 AND version = $3",
                    $crate::store::rules::RULE_COLUMNS
                ))
                .bind(org_id)
                .bind(code)
                .bind(version)
                .fetch_one(&self.writer)
                .await
                .map_err(Into::into)
            }

            async fn shipped_rule_keys(&self) -> $crate::store::StoreResult<Vec<(String, String)>> {
                Ok(sqlx::query_as("SELECT code, version FROM rules WHERE org_id IS NULL")
                    .fetch_all(&self.reader)
                    .await?)
            }

            async fn seed_shipped(
                &self,
                rule_set: (&str, &str, &str),
                rules: &[$crate::store::rules::NewRule<'_>],
            ) -> $crate::store::StoreResult<u64> {
                Ok(self.rules_insert(Some(rule_set), rules, true).await?.0)
            }

            async fn rule_set_exists(&self, code: &str, version: &str) -> $crate::store::StoreResult<bool> {
                let n: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM rule_sets WHERE code = $1 AND version = $2",
                )
                .bind(code)
                .bind(version)
                .fetch_one(&self.reader)
                .await?;
                Ok(n > 0)
            }

            async fn list_rule_sets(
                &self,
            ) -> $crate::store::StoreResult<Vec<$crate::store::rules::RuleSetRecord>> {
                Ok(sqlx::query_as(
                    "SELECT code, version, title, created_at FROM rule_sets ORDER BY code, version",
                )
                .fetch_all(&self.reader)
                .await?)
            }
        }
    };
}

pub(crate) use rules_sql;
