//! Building persistence: the `BuildingStore` contract and its SQL (shared by both backends).
//! Contact name and phone are PII and arrive here already sealed (see `crypto`).

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

use super::{Page, StoreResult};

/// A building row as stored: contact name and phone are ciphertext.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BuildingRecord {
    pub id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    pub address: String,
    pub building_type: String,
    pub contact_name_enc: Option<Vec<u8>>,
    pub contact_phone_enc: Option<Vec<u8>>,
    pub contact_email: Option<String>,
    pub rule_set_code: String,
    pub rule_set_version: String,
    /// The building's pinned editions of the standards other than `rule_set_code`'s
    /// (standard code -> edition version, e.g. `AS2293.2` -> `2019.1.0`).
    pub editions: sqlx::types::Json<std::collections::BTreeMap<String, String>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Australian state or territory (`NSW`, `VIC`, ...): whose public holidays its working
    /// days skip.
    pub state: Option<String>,
    /// The date its routines are anchored on (commissioning, or a service contract's start),
    /// unless an asset has its own.
    pub schedule_anchor: Option<NaiveDate>,
}

/// A building's contact as stored (name and phone sealed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredContact {
    pub name_enc: Option<Vec<u8>>,
    pub phone_enc: Option<Vec<u8>>,
    pub email: Option<String>,
}

/// A partial update; `None` leaves the column alone. `contact: Some(c)` replaces the whole
/// contact (a default `StoredContact` clears it).
#[derive(Debug, Clone, Default)]
pub struct BuildingPatch {
    pub name: Option<String>,
    pub address: Option<String>,
    pub building_type: Option<String>,
    pub contact: Option<StoredContact>,
    /// (code, version)
    pub rule_set: Option<(String, String)>,
    pub state: Option<Option<String>>,
    pub schedule_anchor: Option<Option<NaiveDate>>,
    /// Replaces the pins of the other standards.
    pub editions: Option<std::collections::BTreeMap<String, String>>,
}

/// Filters of a building listing; `None` matches all.
#[derive(Debug, Clone, Default)]
pub struct BuildingFilter {
    pub building_type: Option<String>,
    /// Case-insensitive substring of the name or address.
    pub search: Option<String>,
}

/// An asset (a piece of equipment) of a building.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AssetRecord {
    pub id: Uuid,
    pub org_id: Uuid,
    pub building_id: Uuid,
    /// An equipment kind of the rule library.
    pub asset_type: String,
    pub location: String,
    /// Tag or barcode, unique within the building.
    pub identifier: Option<String>,
    pub install_date: Option<NaiveDate>,
    /// Rule codes that apply to this asset; empty means "every rule for its type".
    pub rule_codes: sqlx::types::Json<Vec<String>>,
    /// Routine alternatives chosen for the asset: default rule code -> alternative code.
    pub rule_alternatives: sqlx::types::Json<std::collections::BTreeMap<String, String>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The asset's own schedule anchor (overrides the building's).
    pub schedule_anchor: Option<NaiveDate>,
    /// When it was made (pressure tests and replacements count from it).
    pub manufacture_date: Option<NaiveDate>,
}

impl AssetRecord {
    /// The asset as applicability sees it.
    pub fn facts(&self) -> crate::domain::applicability::AssetFacts<'_> {
        crate::domain::applicability::AssetFacts {
            asset_type: &self.asset_type,
            rule_codes: &self.rule_codes.0,
            alternatives: &self.rule_alternatives.0,
        }
    }
}

/// A partial asset update; `None` leaves the column alone, `Some(None)` clears it.
#[derive(Debug, Clone, Default)]
pub struct AssetPatch {
    pub asset_type: Option<String>,
    pub location: Option<String>,
    pub identifier: Option<Option<String>>,
    pub install_date: Option<Option<NaiveDate>>,
    pub rule_codes: Option<Vec<String>>,
    pub schedule_anchor: Option<Option<NaiveDate>>,
    pub manufacture_date: Option<Option<NaiveDate>>,
    /// Replaces the chosen routine alternatives (default code -> alternative code).
    pub rule_alternatives: Option<std::collections::BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Default)]
pub struct AssetFilter {
    pub asset_type: Option<String>,
    /// Exact tag or barcode (a scan).
    pub identifier: Option<String>,
}

#[async_trait]
pub trait BuildingStore: Send + Sync {
    async fn create_building(&self, building: &BuildingRecord) -> StoreResult<()>;
    /// A building of `org_id`; NotFound for another organisation's building or a missing id.
    async fn get_building(&self, org_id: Uuid, id: Uuid) -> StoreResult<BuildingRecord>;
    async fn list_buildings(
        &self,
        org_id: Uuid,
        filter: &BuildingFilter,
        page: Page,
    ) -> StoreResult<Vec<BuildingRecord>>;
    async fn update_building(
        &self,
        org_id: Uuid,
        id: Uuid,
        patch: &BuildingPatch,
    ) -> StoreResult<BuildingRecord>;
    /// Delete a building and its assets (with their reference values) in one transaction;
    /// returns the deleted row and how many assets went with it. NotFound as for
    /// `get_building`; `Conflict("sessions")` when test sessions refer to it (checked inside
    /// the transaction).
    async fn delete_building(&self, org_id: Uuid, id: Uuid) -> StoreResult<(BuildingRecord, u64)>;

    /// Every building's contact PII, for key rotation: (id, contact_name_enc, contact_phone_enc).
    async fn all_building_contact_pii(
        &self,
    ) -> StoreResult<Vec<(Uuid, Option<Vec<u8>>, Option<Vec<u8>>)>>;
    /// Replace a building's sealed contact name and phone if they still equal `old` (a
    /// compare-and-swap, so a concurrent edit is never overwritten). Returns whether it did.
    async fn reseal_building_contact(
        &self,
        id: Uuid,
        old: (Option<&[u8]>, Option<&[u8]>),
        new: (Option<&[u8]>, Option<&[u8]>),
    ) -> StoreResult<bool>;

    /// Insert assets in one transaction (all or none). `Conflict("identifier")` when an
    /// identifier is already used in its building.
    async fn create_assets(&self, assets: &[AssetRecord]) -> StoreResult<()>;
    /// An asset of a building of `org_id`; NotFound otherwise.
    async fn get_asset(
        &self,
        org_id: Uuid,
        building_id: Uuid,
        id: Uuid,
    ) -> StoreResult<AssetRecord>;
    async fn list_assets(
        &self,
        org_id: Uuid,
        building_id: Uuid,
        filter: &AssetFilter,
        page: Page,
    ) -> StoreResult<Vec<AssetRecord>>;
    /// Every asset of a building of `org_id`, ordered by id (empty for a foreign building).
    async fn building_assets(
        &self,
        org_id: Uuid,
        building_id: Uuid,
    ) -> StoreResult<Vec<AssetRecord>>;
    async fn update_asset(
        &self,
        org_id: Uuid,
        building_id: Uuid,
        id: Uuid,
        patch: &AssetPatch,
    ) -> StoreResult<AssetRecord>;
    /// Write an asset import in one transaction (all or none), in multi-row statements: each
    /// of `assets` is inserted, or, when its id exists, updated in place (type, location,
    /// dates, rule codes, `updated_at`; its id, identifier and `created_at` stay) provided it
    /// belongs to the same organisation and building; then `history` rows are added, an
    /// (asset, routine, day) already recorded left as it is. Returns how many history rows
    /// were new. `Conflict("identifier")` when a new asset's identifier is taken meanwhile.
    async fn import_assets(
        &self,
        assets: &[AssetRecord],
        history: &[crate::store::schedule::HistoryRecord],
    ) -> StoreResult<u64>;
}

/// Columns of `buildings`, in `BuildingRecord` order.
pub(crate) const BUILDING_COLUMNS: &str = "id, org_id, name, address, building_type, \
     contact_name_enc, contact_phone_enc, contact_email, rule_set_code, rule_set_version, \
     editions, created_at, updated_at, state, schedule_anchor";

/// Columns of `assets`, in `AssetRecord` order.
pub(crate) const ASSET_COLUMNS: &str = "id, org_id, building_id, asset_type, location, \
     identifier, install_date, rule_codes, rule_alternatives, created_at, updated_at, \
     schedule_anchor, manufacture_date";

/// Rows per multi-row asset INSERT (13 binds each).
pub(crate) const ASSET_INSERT_CHUNK: usize = 500;

/// `%s%` for a LIKE with `\` as the escape character.
pub(crate) fn like_pattern(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('%');
    for c in s.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

macro_rules! buildings_sql {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::buildings::BuildingStore for $store {
            async fn create_building(
                &self,
                b: &$crate::store::buildings::BuildingRecord,
            ) -> $crate::store::StoreResult<()> {
                sqlx::query(&format!(
                    "INSERT INTO buildings ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
                    $crate::store::buildings::BUILDING_COLUMNS
                ))
                .bind(b.id)
                .bind(b.org_id)
                .bind(&b.name)
                .bind(&b.address)
                .bind(&b.building_type)
                .bind(&b.contact_name_enc)
                .bind(&b.contact_phone_enc)
                .bind(&b.contact_email)
                .bind(&b.rule_set_code)
                .bind(&b.rule_set_version)
                .bind(&b.editions)
                .bind(b.created_at)
                .bind(b.updated_at)
                .bind(&b.state)
                .bind(b.schedule_anchor)
                .execute(&self.writer)
                .await
                .map_err(|e| $crate::store::StoreError::unique(e, "id"))?;
                Ok(())
            }

            async fn get_building(
                &self,
                org_id: uuid::Uuid,
                id: uuid::Uuid,
            ) -> $crate::store::StoreResult<$crate::store::buildings::BuildingRecord> {
                sqlx::query_as(&format!(
                    "SELECT {} FROM buildings WHERE id = $1 AND org_id = $2",
                    $crate::store::buildings::BUILDING_COLUMNS
                ))
                .bind(id)
                .bind(org_id)
                .fetch_optional(&self.reader)
                .await?
                .ok_or($crate::store::StoreError::NotFound)
            }

            async fn list_buildings(
                &self,
                org_id: uuid::Uuid,
                f: &$crate::store::buildings::BuildingFilter,
                page: $crate::store::Page,
            ) -> $crate::store::StoreResult<Vec<$crate::store::buildings::BuildingRecord>> {
                let search = f.search.as_deref().map($crate::store::buildings::like_pattern);
                Ok(sqlx::query_as(&format!(
                    "SELECT {} FROM buildings WHERE org_id = $1 \
                     AND ($2 IS NULL OR building_type = $2) \
                     AND ($3 IS NULL OR LOWER(name) LIKE $3 ESCAPE '\\' OR LOWER(address) LIKE $3 ESCAPE '\\') \
                     AND ($4 IS NULL OR id > $4) \
                     AND NOT EXISTS (SELECT 1 FROM building_archives ba WHERE ba.building_id = buildings.id) \
                     ORDER BY id LIMIT $5",
                    $crate::store::buildings::BUILDING_COLUMNS
                ))
                .bind(org_id)
                .bind(&f.building_type)
                .bind(search)
                .bind(page.after)
                .bind(page.limit)
                .fetch_all(&self.reader)
                .await?)
            }

            async fn update_building(
                &self,
                org_id: uuid::Uuid,
                id: uuid::Uuid,
                p: &$crate::store::buildings::BuildingPatch,
            ) -> $crate::store::StoreResult<$crate::store::buildings::BuildingRecord> {
                let mut tx = self.writer.begin().await?;
                let current: $crate::store::buildings::BuildingRecord = sqlx::query_as(&format!(
                    "SELECT {} FROM buildings WHERE id = $1 AND org_id = $2",
                    $crate::store::buildings::BUILDING_COLUMNS
                ))
                .bind(id)
                .bind(org_id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or($crate::store::StoreError::NotFound)?;
                let (contact_name_enc, contact_phone_enc, contact_email) = match p.contact.clone() {
                    Some(c) => (c.name_enc, c.phone_enc, c.email),
                    None => (
                        current.contact_name_enc.clone(),
                        current.contact_phone_enc.clone(),
                        current.contact_email.clone(),
                    ),
                };
                let (rule_set_code, rule_set_version) = p.rule_set.clone().unwrap_or((
                    current.rule_set_code.clone(),
                    current.rule_set_version.clone(),
                ));
                let mut editions = p
                    .editions
                    .clone()
                    .map(sqlx::types::Json)
                    .unwrap_or_else(|| current.editions.clone());
                // The primary rule set's standard is pinned by rule_set_code only.
                editions.0.remove(&rule_set_code);
                let next = $crate::store::buildings::BuildingRecord {
                    editions,
                    name: p.name.clone().unwrap_or(current.name),
                    address: p.address.clone().unwrap_or(current.address),
                    building_type: p.building_type.clone().unwrap_or(current.building_type),
                    contact_name_enc,
                    contact_phone_enc,
                    contact_email,
                    rule_set_code,
                    rule_set_version,
                    state: p.state.clone().unwrap_or(current.state),
                    schedule_anchor: p.schedule_anchor.unwrap_or(current.schedule_anchor),
                    updated_at: chrono::Utc::now(),
                    ..current
                };
                sqlx::query(
                    "UPDATE buildings SET name = $1, address = $2, building_type = $3, \
                     contact_name_enc = $4, contact_phone_enc = $5, contact_email = $6, \
                     rule_set_code = $7, rule_set_version = $8, updated_at = $9, editions = $11, \
                     state = $12, schedule_anchor = $13 WHERE id = $10",
                )
                .bind(&next.name)
                .bind(&next.address)
                .bind(&next.building_type)
                .bind(&next.contact_name_enc)
                .bind(&next.contact_phone_enc)
                .bind(&next.contact_email)
                .bind(&next.rule_set_code)
                .bind(&next.rule_set_version)
                .bind(next.updated_at)
                .bind(id)
                .bind(&next.editions)
                .bind(&next.state)
                .bind(next.schedule_anchor)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(next)
            }

            async fn delete_building(
                &self,
                org_id: uuid::Uuid,
                id: uuid::Uuid,
            ) -> $crate::store::StoreResult<($crate::store::buildings::BuildingRecord, u64)> {
                // A session registered concurrently either is seen here or makes the DELETE
                // fail its foreign key; both answer Conflict.
                let in_use = |e: sqlx::Error| match &e {
                    sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
                        $crate::store::StoreError::Conflict("sessions")
                    }
                    _ => $crate::store::StoreError::Database(e),
                };
                let mut tx = self.writer.begin().await?;
                let current: $crate::store::buildings::BuildingRecord = sqlx::query_as(&format!(
                    "SELECT {} FROM buildings WHERE id = $1 AND org_id = $2",
                    $crate::store::buildings::BUILDING_COLUMNS
                ))
                .bind(id)
                .bind(org_id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or($crate::store::StoreError::NotFound)?;
                let sessions: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM test_sessions WHERE building_id = $1")
                        .bind(id)
                        .fetch_one(&mut *tx)
                        .await?;
                if sessions > 0 {
                    return Err($crate::store::StoreError::Conflict("sessions"));
                }
                // The assets' reference values (current and history) and service history go
                // with their assets.
                for table in ["asset_reference_values", "asset_service_history"] {
                    sqlx::query(&format!(
                        "DELETE FROM {table} WHERE building_id = $1 AND org_id = $2"
                    ))
                    .bind(id)
                    .bind(org_id)
                    .execute(&mut *tx)
                    .await?;
                }
                let assets = sqlx::query("DELETE FROM assets WHERE building_id = $1 AND org_id = $2")
                    .bind(id)
                    .bind(org_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(in_use)?
                    .rows_affected();
                sqlx::query("DELETE FROM buildings WHERE id = $1 AND org_id = $2")
                    .bind(id)
                    .bind(org_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(in_use)?;
                tx.commit().await.map_err(in_use)?;
                Ok((current, assets))
            }

            async fn all_building_contact_pii(
                &self,
            ) -> $crate::store::StoreResult<Vec<(uuid::Uuid, Option<Vec<u8>>, Option<Vec<u8>>)>> {
                Ok(sqlx::query_as(
                    "SELECT id, contact_name_enc, contact_phone_enc FROM buildings \
                     WHERE contact_name_enc IS NOT NULL OR contact_phone_enc IS NOT NULL ORDER BY id",
                )
                .fetch_all(&self.reader)
                .await?)
            }

            async fn reseal_building_contact(
                &self,
                id: uuid::Uuid,
                old: (Option<&[u8]>, Option<&[u8]>),
                new: (Option<&[u8]>, Option<&[u8]>),
            ) -> $crate::store::StoreResult<bool> {
                let done = sqlx::query(
                    "UPDATE buildings SET contact_name_enc = $1, contact_phone_enc = $2 \
                     WHERE id = $3 \
                     AND (contact_name_enc = $4 OR (contact_name_enc IS NULL AND $4 IS NULL)) \
                     AND (contact_phone_enc = $5 OR (contact_phone_enc IS NULL AND $5 IS NULL))",
                )
                .bind(new.0)
                .bind(new.1)
                .bind(id)
                .bind(old.0)
                .bind(old.1)
                .execute(&self.writer)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn create_assets(
                &self,
                assets: &[$crate::store::buildings::AssetRecord],
            ) -> $crate::store::StoreResult<()> {
                let mut tx = self.writer.begin().await?;
                for chunk in assets.chunks($crate::store::buildings::ASSET_INSERT_CHUNK) {
                    let sql = format!(
                        "INSERT INTO assets ({}) VALUES {}",
                        $crate::store::buildings::ASSET_COLUMNS,
                        $crate::store::rules::placeholders(chunk.len(), 13)
                    );
                    let mut q = sqlx::query(&sql);
                    for a in chunk {
                        q = q
                            .bind(a.id)
                            .bind(a.org_id)
                            .bind(a.building_id)
                            .bind(&a.asset_type)
                            .bind(&a.location)
                            .bind(&a.identifier)
                            .bind(a.install_date)
                            .bind(&a.rule_codes)
                            .bind(&a.rule_alternatives)
                            .bind(a.created_at)
                            .bind(a.updated_at)
                            .bind(a.schedule_anchor)
                            .bind(a.manufacture_date);
                    }
                    q.execute(&mut *tx)
                        .await
                        .map_err(|e| $crate::store::StoreError::unique(e, "identifier"))?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn get_asset(
                &self,
                org_id: uuid::Uuid,
                building_id: uuid::Uuid,
                id: uuid::Uuid,
            ) -> $crate::store::StoreResult<$crate::store::buildings::AssetRecord> {
                sqlx::query_as(&format!(
                    "SELECT {} FROM assets WHERE id = $1 AND building_id = $2 AND org_id = $3",
                    $crate::store::buildings::ASSET_COLUMNS
                ))
                .bind(id)
                .bind(building_id)
                .bind(org_id)
                .fetch_optional(&self.reader)
                .await?
                .ok_or($crate::store::StoreError::NotFound)
            }

            async fn list_assets(
                &self,
                org_id: uuid::Uuid,
                building_id: uuid::Uuid,
                f: &$crate::store::buildings::AssetFilter,
                page: $crate::store::Page,
            ) -> $crate::store::StoreResult<Vec<$crate::store::buildings::AssetRecord>> {
                Ok(sqlx::query_as(&format!(
                    "SELECT {} FROM assets WHERE org_id = $1 AND building_id = $2 \
                     AND ($3 IS NULL OR asset_type = $3) AND ($4 IS NULL OR identifier = $4) \
                     AND ($5 IS NULL OR id > $5) ORDER BY id LIMIT $6",
                    $crate::store::buildings::ASSET_COLUMNS
                ))
                .bind(org_id)
                .bind(building_id)
                .bind(&f.asset_type)
                .bind(&f.identifier)
                .bind(page.after)
                .bind(page.limit)
                .fetch_all(&self.reader)
                .await?)
            }

            async fn building_assets(
                &self,
                org_id: uuid::Uuid,
                building_id: uuid::Uuid,
            ) -> $crate::store::StoreResult<Vec<$crate::store::buildings::AssetRecord>> {
                Ok(sqlx::query_as(&format!(
                    "SELECT {} FROM assets WHERE org_id = $1 AND building_id = $2 ORDER BY id",
                    $crate::store::buildings::ASSET_COLUMNS
                ))
                .bind(org_id)
                .bind(building_id)
                .fetch_all(&self.reader)
                .await?)
            }

            async fn update_asset(
                &self,
                org_id: uuid::Uuid,
                building_id: uuid::Uuid,
                id: uuid::Uuid,
                p: &$crate::store::buildings::AssetPatch,
            ) -> $crate::store::StoreResult<$crate::store::buildings::AssetRecord> {
                let mut tx = self.writer.begin().await?;
                let current: $crate::store::buildings::AssetRecord = sqlx::query_as(&format!(
                    "SELECT {} FROM assets WHERE id = $1 AND building_id = $2 AND org_id = $3",
                    $crate::store::buildings::ASSET_COLUMNS
                ))
                .bind(id)
                .bind(building_id)
                .bind(org_id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or($crate::store::StoreError::NotFound)?;
                let next = $crate::store::buildings::AssetRecord {
                    asset_type: p.asset_type.clone().unwrap_or(current.asset_type),
                    location: p.location.clone().unwrap_or(current.location),
                    identifier: p.identifier.clone().unwrap_or(current.identifier),
                    install_date: p.install_date.unwrap_or(current.install_date),
                    rule_codes: p
                        .rule_codes
                        .clone()
                        .map(sqlx::types::Json)
                        .unwrap_or(current.rule_codes),
                    schedule_anchor: p.schedule_anchor.unwrap_or(current.schedule_anchor),
                    manufacture_date: p.manufacture_date.unwrap_or(current.manufacture_date),
                    rule_alternatives: p
                        .rule_alternatives
                        .clone()
                        .map(sqlx::types::Json)
                        .unwrap_or(current.rule_alternatives),
                    updated_at: chrono::Utc::now(),
                    ..current
                };
                sqlx::query(
                    "UPDATE assets SET asset_type = $1, location = $2, identifier = $3, \
                     install_date = $4, rule_codes = $5, updated_at = $6, rule_alternatives = $8, \
                     schedule_anchor = $9, manufacture_date = $10 WHERE id = $7",
                )
                .bind(&next.asset_type)
                .bind(&next.location)
                .bind(&next.identifier)
                .bind(next.install_date)
                .bind(&next.rule_codes)
                .bind(next.updated_at)
                .bind(id)
                .bind(&next.rule_alternatives)
                .bind(next.schedule_anchor)
                .bind(next.manufacture_date)
                .execute(&mut *tx)
                .await
                .map_err(|e| $crate::store::StoreError::unique(e, "identifier"))?;
                tx.commit().await?;
                Ok(next)
            }

            async fn import_assets(
                &self,
                assets: &[$crate::store::buildings::AssetRecord],
                history: &[$crate::store::schedule::HistoryRecord],
            ) -> $crate::store::StoreResult<u64> {
                let mut tx = self.writer.begin().await?;
                for chunk in assets.chunks($crate::store::buildings::ASSET_INSERT_CHUNK) {
                    // The same statement on both backends: an upsert on the primary key. The
                    // WHERE keeps an id of another building or organisation untouched.
                    let sql = format!(
                        "INSERT INTO assets ({}) VALUES {} ON CONFLICT (id) DO UPDATE SET \
                         asset_type = excluded.asset_type, location = excluded.location, \
                         install_date = excluded.install_date, rule_codes = excluded.rule_codes, \
                         updated_at = excluded.updated_at, \
                         schedule_anchor = excluded.schedule_anchor, \
                         manufacture_date = excluded.manufacture_date \
                         WHERE assets.org_id = excluded.org_id \
                         AND assets.building_id = excluded.building_id",
                        $crate::store::buildings::ASSET_COLUMNS,
                        $crate::store::rules::placeholders(chunk.len(), 13)
                    );
                    let mut q = sqlx::query(&sql);
                    for a in chunk {
                        q = q
                            .bind(a.id)
                            .bind(a.org_id)
                            .bind(a.building_id)
                            .bind(&a.asset_type)
                            .bind(&a.location)
                            .bind(&a.identifier)
                            .bind(a.install_date)
                            .bind(&a.rule_codes)
                            .bind(&a.rule_alternatives)
                            .bind(a.created_at)
                            .bind(a.updated_at)
                            .bind(a.schedule_anchor)
                            .bind(a.manufacture_date);
                    }
                    let done = q
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| $crate::store::StoreError::unique(e, "identifier"))?;
                    if done.rows_affected() != chunk.len() as u64 {
                        // An id of another building: nothing of this import is written.
                        return Err($crate::store::StoreError::NotFound);
                    }
                }
                let added = Self::insert_history_rows(&mut tx, history).await?;
                tx.commit().await?;
                Ok(added)
            }
        }
    };
}

pub(crate) use buildings_sql;
