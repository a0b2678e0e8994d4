//! The AS 1851 rule library: the shipped data file (`server/rules/as1851.json`, compiled into
//! the binary), semantic versions, classification of observed conditions, and seeding.
//!
//! Visibility: every organisation sees the shipped rules (`org_id` NULL) plus its own private
//! rules. An admin may publish a private rule with a new code, or a new version of any code it
//! can see — including a shipped code; that version is visible to its organisation only and,
//! when it is the highest active version, is the organisation's "latest". A code+version that
//! already exists for the organisation (its own or shipped) is a conflict. Should a later
//! shipped library bring a version an organisation already published privately, the
//! organisation's own row wins for that organisation. Versions are immutable; deactivation is
//! the only change, and only an organisation's own versions can be deactivated.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::store::buildings::BuildingRecord;
use crate::store::rules::{NewRule, RuleRecord};
use crate::store::Store;

/// The base file of the shipped library (AS 1851-2012, the equipment kinds and frequencies),
/// as compiled into the binary.
const LIBRARY_JSON: &str = include_str!("../rules/as1851.json");

/// Every file of the shipped library, one edition each, the base file first.
const LIBRARY_FILES: &[(&str, &str)] = &[
    ("as1851.json", LIBRARY_JSON),
    (
        "as1851-2005.json",
        include_str!("../rules/as1851-2005.json"),
    ),
    (
        "as2293.2-2019.json",
        include_str!("../rules/as2293.2-2019.json"),
    ),
    (
        "as2293.2-1995.json",
        include_str!("../rules/as2293.2-1995.json"),
    ),
];

/// The shipped library, parsed and validated once. The files are part of the source tree and
/// a unit test validates them, so a failure here is a build defect, not a runtime condition.
static LIBRARY: LazyLock<Library> = LazyLock::new(|| {
    Library::from_files(LIBRARY_FILES).expect("server/rules/*.json is a valid rule library")
});

/// The shipped library.
pub fn library() -> &'static Library {
    &LIBRARY
}

/// A defect class of AS 1851 cl. 1.5.6, or compliant.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Classification {
    CriticalDefect,
    NonCriticalDefect,
    NonConformance,
    Compliant,
}

impl Classification {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CriticalDefect => "critical_defect",
            Self::NonCriticalDefect => "non_critical_defect",
            Self::NonConformance => "non_conformance",
            Self::Compliant => "compliant",
        }
    }
}

impl fmt::Display for Classification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Classification {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "critical_defect" => Ok(Self::CriticalDefect),
            "non_critical_defect" => Ok(Self::NonCriticalDefect),
            "non_conformance" => Ok(Self::NonConformance),
            "compliant" => Ok(Self::Compliant),
            other => Err(format!("unknown classification '{other}'")),
        }
    }
}

/// A semantic version `major.minor.patch` (no pre-release or build suffix). Components are
/// decimal without leading zeros and at most `i64::MAX`, so they sort in SQL as integers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub major: i64,
    pub minor: i64,
    pub patch: i64,
}

impl FromStr for Version {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("'{s}' is not a semantic version major.minor.patch (e.g. 2012.1.0)");
        let parts: Vec<&str> = s.split('.').collect();
        let [major, minor, patch] = parts.as_slice() else {
            return Err(bad());
        };
        let num = |p: &str| -> Result<i64, String> {
            let valid = !p.is_empty()
                && p.bytes().all(|b| b.is_ascii_digit())
                && (p == "0" || !p.starts_with('0'));
            if !valid {
                return Err(bad());
            }
            p.parse().map_err(|_| bad())
        };
        Ok(Self {
            major: num(major)?,
            minor: num(minor)?,
            patch: num(patch)?,
        })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The shipped library: every edition (rule set) with its rules, and the equipment kinds and
/// frequencies they share.
#[derive(Debug, Clone)]
pub struct Library {
    /// The editions, the base file's first.
    pub rule_sets: Vec<RuleSetDef>,
    pub equipment: Vec<EquipmentKind>,
    pub frequencies: Vec<Frequency>,
    /// Every rule version of every edition; each has `rule_set` set.
    pub rules: Vec<RuleDef>,
    /// Per edition, the equipment kinds it has no routine for, each with the reason (an
    /// edition that left a kind to a Part of its own, a kind the edition did not know).
    pub not_covered: BTreeMap<RuleSetRef, BTreeMap<String, String>>,
}

/// One library file: one edition. Only the base file lists equipment kinds and frequencies;
/// another may add kinds and frequencies of its own (e.g. `weekly` for AS 1851-2005).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct LibraryFile {
    rule_set: RuleSetDef,
    #[serde(default)]
    equipment: Vec<EquipmentKind>,
    #[serde(default)]
    frequencies: Vec<Frequency>,
    /// Equipment kinds the edition has no routine for, kind -> why.
    #[serde(default)]
    not_covered: BTreeMap<String, String>,
    rules: Vec<RuleDef>,
}

/// An edition of a standard: a rule set such as `AS1851 2012.1.0`. `code` names the standard
/// (a building pins one edition per standard), `version` the edition (its major is the year).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleSetDef {
    pub code: String,
    pub version: String,
    pub title: String,
    /// The edition a new building is pinned to when it names none (one per standard).
    #[serde(default)]
    pub default: bool,
}

/// An edition, by standard code and version (e.g. AS1851 2012.1.0).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleSetRef {
    pub code: String,
    pub version: String,
}

impl RuleSetRef {
    pub fn new(code: &str, version: &str) -> Self {
        Self {
            code: code.to_owned(),
            version: version.to_owned(),
        }
    }
}

/// A kind of equipment (an asset type), e.g. `portable_extinguisher`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EquipmentKind {
    pub kind: String,
    pub name: String,
    pub section: String,
}

/// A service frequency with its interval and the tolerance of AS 1851 cl. 1.11 (the
/// standard's table: working days for monthly and three-monthly routines, months for longer
/// ones).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Frequency {
    pub code: String,
    /// The interval in months; 0 for a shorter one (then `days` gives it).
    pub months: u32,
    /// The interval in days, for a frequency shorter than a month (`weekly`: 7).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days: Option<u32>,
    pub tolerance: crate::domain::schedule::Tolerance,
}

pub use crate::domain::readings::ReadingSpec as Reading;

/// A rule version as written in the library file or posted by an admin.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleDef {
    /// Stable code, e.g. `AS1851-10-6M-EXT`: letters, digits, `.`, `_`, `-`.
    pub code: String,
    /// Semantic version `major.minor.patch`.
    pub version: String,
    pub name: String,
    pub description: String,
    /// e.g. `AS 1851-2012`.
    pub standard: String,
    pub section: String,
    /// Clause or table reference, e.g. `Table 10.4.1`.
    pub clause: String,
    /// An equipment kind of the library.
    pub equipment: String,
    /// A frequency code of the library.
    pub frequency: String,
    pub readings: Vec<Reading>,
    /// Observed condition -> classification.
    pub classification_mappings: BTreeMap<String, Classification>,
    /// Why a condition has the classification it has (the library gives one for every
    /// critical mapping), by observed condition.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rationale: BTreeMap<String, String>,
    /// The edition the rule belongs to. In a library file it is the file's (and may be left
    /// out); in `POST /v1/rules`, left out means the edition of the code's latest version, or
    /// the default AS 1851 edition for a new code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_set: Option<RuleSetRef>,
    /// The code of the routine this one may replace on an asset (e.g. the yearly fire-door
    /// routine instead of the six-monthly one): an office or admin user chooses it per asset,
    /// and then only this one applies. A routine with this set applies only where chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alternative_to: Option<String>,
}

/// Why a rule definition is invalid: a stable code and a message for the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleDefError {
    pub code: &'static str,
    pub message: String,
}

impl fmt::Display for RuleDefError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

fn invalid(code: &'static str, message: impl Into<String>) -> RuleDefError {
    RuleDefError {
        code,
        message: message.into(),
    }
}

/// A rule code: 1-64 of letters, digits, `.`, `_`, `-` (safe in URLs and as a cursor).
pub fn valid_rule_code(code: &str) -> bool {
    (1..=64).contains(&code.len())
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn text(field: &str, value: &str, max: usize) -> Result<(), RuleDefError> {
    if value.trim().is_empty() || value.chars().count() > max {
        return Err(invalid(
            "invalid_field",
            format!("{field} must be 1-{max} characters"),
        ));
    }
    Ok(())
}

impl RuleDef {
    /// Check the definition against the library's equipment kinds and frequencies; returns the
    /// parsed version.
    pub fn validate(&self, lib: &Library) -> Result<Version, RuleDefError> {
        if !valid_rule_code(&self.code) {
            return Err(invalid(
                "invalid_rule_code",
                "code must be 1-64 characters of letters, digits, '.', '_' or '-'",
            ));
        }
        let version: Version = self
            .version
            .parse()
            .map_err(|m| invalid("invalid_version", m))?;
        text("name", &self.name, 200)?;
        text("description", &self.description, 4000)?;
        text("standard", &self.standard, 100)?;
        text("section", &self.section, 50)?;
        text("clause", &self.clause, 200)?;
        if lib.equipment_kind(&self.equipment).is_none() {
            return Err(invalid(
                "invalid_equipment",
                format!(
                    "equipment '{}' is not one of: {}",
                    self.equipment,
                    lib.equipment_codes().join(", ")
                ),
            ));
        }
        if lib.any_frequency(&self.frequency).is_none() {
            return Err(invalid(
                "invalid_frequency",
                format!(
                    "frequency '{}' is not one of: {}",
                    self.frequency,
                    lib.frequency_codes().join(", ")
                ),
            ));
        }
        if let Some(alt) = &self.alternative_to {
            if !valid_rule_code(alt) || *alt == self.code {
                return Err(invalid(
                    "invalid_alternative",
                    "alternative_to must be the code of another rule",
                ));
            }
        }
        if self.readings.len() > 100 {
            return Err(invalid("invalid_field", "a rule has at most 100 readings"));
        }
        let mut names = BTreeSet::new();
        for r in &self.readings {
            // `fails_as` must name a condition that is a defect (not a compliant one).
            r.validate(
                self.classification_mappings
                    .iter()
                    .filter(|(_, c)| **c != Classification::Compliant)
                    .map(|(k, _)| k.as_str()),
            )
            .map_err(|e| invalid("invalid_reading", e.0))?;
            if !names.insert(r.name.as_str()) {
                return Err(invalid(
                    "invalid_field",
                    format!("reading '{}' appears twice", r.name),
                ));
            }
        }
        if self.classification_mappings.is_empty() || self.classification_mappings.len() > 200 {
            return Err(invalid(
                "invalid_mappings",
                "classification_mappings needs 1-200 observed conditions",
            ));
        }
        for condition in self.classification_mappings.keys() {
            if condition.trim() != condition || condition.is_empty() || condition.len() > 100 {
                return Err(invalid(
                    "invalid_mappings",
                    format!("observed condition '{condition}' must be 1-100 characters without surrounding spaces"),
                ));
            }
        }
        for (condition, why) in &self.rationale {
            if !self.classification_mappings.contains_key(condition) {
                return Err(invalid(
                    "invalid_mappings",
                    format!("rationale for '{condition}', which is not an observed condition"),
                ));
            }
            text("rationale", why, 2000)?;
        }
        if !self
            .classification_mappings
            .values()
            .any(|c| *c == Classification::Compliant)
        {
            return Err(invalid(
                "invalid_mappings",
                "classification_mappings needs at least one condition classified compliant",
            ));
        }
        Ok(version)
    }
}

impl Library {
    /// Parse and validate one complete library file (one edition with its equipment kinds
    /// and frequencies).
    pub fn from_json(text: &str) -> anyhow::Result<Self> {
        Self::from_files(&[("library", text)])
    }

    /// Parse and validate library files, the base file (with the equipment kinds and
    /// frequencies) first.
    pub fn from_files(files: &[(&str, &str)]) -> anyhow::Result<Self> {
        let mut lib = Library {
            rule_sets: Vec::new(),
            equipment: Vec::new(),
            frequencies: Vec::new(),
            rules: Vec::new(),
            not_covered: BTreeMap::new(),
        };
        for (name, text) in files {
            let file: LibraryFile = serde_json::from_str(text)
                .with_context(|| format!("the rule library file {name} is not valid"))?;
            let edition = RuleSetRef::new(&file.rule_set.code, &file.rule_set.version);
            for kind in file.equipment {
                if lib.equipment_kind(&kind.kind).is_some() {
                    anyhow::bail!("{name}: equipment kind {} appears twice", kind.kind);
                }
                lib.equipment.push(kind);
            }
            for f in file.frequencies {
                if lib.any_frequency(&f.code).is_some() {
                    anyhow::bail!("{name}: frequency {} appears twice", f.code);
                }
                if (f.months == 0) != f.days.is_some() {
                    anyhow::bail!("{name}: frequency {} needs months or days", f.code);
                }
                lib.frequencies.push(f);
            }
            for mut rule in file.rules {
                match &rule.rule_set {
                    Some(rs) if *rs != edition => anyhow::bail!(
                        "{name}: rule {} {} names another edition",
                        rule.code,
                        rule.version
                    ),
                    _ => rule.rule_set = Some(edition.clone()),
                }
                lib.rules.push(rule);
            }
            if lib.rule_set(&edition).is_some() {
                anyhow::bail!(
                    "{name}: edition {} {} appears twice",
                    edition.code,
                    edition.version
                );
            }
            if !file.not_covered.is_empty() {
                lib.not_covered.insert(edition, file.not_covered);
            }
            lib.rule_sets.push(file.rule_set);
        }
        lib.validate()?;
        Ok(lib)
    }

    fn validate(&self) -> anyhow::Result<()> {
        for rs in &self.rule_sets {
            rs.version
                .parse::<Version>()
                .map_err(|m| anyhow::anyhow!("rule set {} version: {m}", rs.code))?;
            if !valid_rule_code(&rs.code) {
                anyhow::bail!("rule set code {} is not valid", rs.code);
            }
        }
        let standards: BTreeSet<&str> = self.rule_sets.iter().map(|r| r.code.as_str()).collect();
        for standard in standards {
            let defaults = self
                .rule_sets
                .iter()
                .filter(|r| r.code == standard && r.default)
                .count();
            if defaults != 1 {
                anyhow::bail!("{standard} needs exactly one default edition, has {defaults}");
            }
        }
        for (edition, kinds) in &self.not_covered {
            for (kind, why) in kinds {
                if self.equipment_kind(kind).is_none() {
                    anyhow::bail!(
                        "{} {}: not_covered names unknown kind {kind}",
                        edition.code,
                        edition.version
                    );
                }
                if why.trim().len() < 20 {
                    anyhow::bail!(
                        "{} {}: not_covered {kind} needs a reason",
                        edition.code,
                        edition.version
                    );
                }
                if self
                    .rules
                    .iter()
                    .any(|r| r.rule_set.as_ref() == Some(edition) && r.equipment == *kind)
                {
                    anyhow::bail!(
                        "{} {}: {kind} is not_covered but has rules",
                        edition.code,
                        edition.version
                    );
                }
            }
        }
        let mut seen = BTreeSet::new();
        for rule in &self.rules {
            rule.validate(self)
                .map_err(|e| anyhow::anyhow!("rule {} {}: {e}", rule.code, rule.version))?;
            if !seen.insert((&rule.code, &rule.version)) {
                anyhow::bail!("rule {} {} appears twice", rule.code, rule.version);
            }
            let edition = rule
                .rule_set
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("rule {} has no edition", rule.code))?;
            if self.rule_set(edition).is_none() {
                anyhow::bail!("rule {} names an unknown edition", rule.code);
            }
            if let Some(default) = &rule.alternative_to {
                let ok = self.rules.iter().any(|d| {
                    d.code == *default
                        && d.rule_set == rule.rule_set
                        && d.equipment == rule.equipment
                        && d.frequency != rule.frequency
                        && d.alternative_to.is_none()
                });
                if !ok {
                    anyhow::bail!(
                        "rule {}: alternative_to {default} is not a routine of the same edition \
                         and equipment at another frequency (and not itself an alternative)",
                        rule.code
                    );
                }
            }
        }
        Ok(())
    }

    pub fn equipment_kind(&self, kind: &str) -> Option<&EquipmentKind> {
        self.equipment.iter().find(|e| e.kind == kind)
    }

    /// A frequency the schedule counts in months (every one but `weekly`).
    pub fn frequency(&self, code: &str) -> Option<&Frequency> {
        self.frequencies
            .iter()
            .find(|f| f.code == code && f.months > 0)
    }

    /// Any frequency of the library, `weekly` included.
    pub fn any_frequency(&self, code: &str) -> Option<&Frequency> {
        self.frequencies.iter().find(|f| f.code == code)
    }

    pub fn rule_set(&self, edition: &RuleSetRef) -> Option<&RuleSetDef> {
        self.rule_sets
            .iter()
            .find(|r| r.code == edition.code && r.version == edition.version)
    }

    /// The edition of each standard a building gets when it names none.
    pub fn default_editions(&self) -> BTreeMap<String, String> {
        self.rule_sets
            .iter()
            .filter(|r| r.default)
            .map(|r| (r.code.clone(), r.version.clone()))
            .collect()
    }

    pub fn equipment_codes(&self) -> Vec<&str> {
        self.equipment.iter().map(|e| e.kind.as_str()).collect()
    }

    pub fn frequency_codes(&self) -> Vec<&str> {
        self.frequencies.iter().map(|f| f.code.as_str()).collect()
    }
}

/// The equipment kinds of the shipped library: the allowed `asset_type`s.
pub fn equipment_kinds() -> &'static [EquipmentKind] {
    &library().equipment
}

/// Whether `kind` is an equipment kind of the shipped library.
pub fn is_equipment_kind(kind: &str) -> bool {
    library().equipment_kind(kind).is_some()
}

/// The service frequencies of the shipped library.
pub fn frequencies() -> &'static [Frequency] {
    &library().frequencies
}

/// The service interval of a frequency code in months (`six_monthly` -> 6); `None` if unknown.
pub fn frequency_months(code: &str) -> Option<u32> {
    library().frequency(code).map(|f| f.months)
}

/// The tolerance (AS 1851 cl. 1.11) of a frequency code; `None` if unknown.
pub fn frequency_tolerance(code: &str) -> Option<crate::domain::schedule::Tolerance> {
    library().frequency(code).map(|f| f.tolerance)
}

/// The AS 1851 edition a building is serviced under unless it says otherwise: the default
/// edition of the base file's standard.
pub fn default_rule_set() -> (&'static str, &'static str) {
    let lib = library();
    let base = &lib.rule_sets[0].code;
    let rs = lib
        .rule_sets
        .iter()
        .find(|r| r.code == *base && r.default)
        .expect("validated: every standard has a default edition");
    (&rs.code, &rs.version)
}

/// The editions a building is serviced under (`crate::domain::editions::pinned`).
pub fn building_pins(b: &BuildingRecord) -> crate::domain::editions::Pins {
    crate::domain::editions::pinned(
        (&b.rule_set_code, &b.rule_set_version),
        &b.editions.0,
        &library().default_editions(),
    )
}

/// Of `candidates` (latest versions per code and edition, `RuleStore::edition_rules`), the
/// rules `building` is serviced under: those of its pinned editions.
pub fn for_building(b: &BuildingRecord, candidates: &[RuleRecord]) -> Vec<RuleRecord> {
    crate::domain::editions::select(
        &building_pins(b),
        candidates,
        |r| &r.code,
        |r| (&r.rule_set_code, &r.rule_set_version),
    )
    .into_iter()
    .cloned()
    .collect()
}

/// The rules `building` is serviced under (optionally at one frequency): the latest active
/// version of every code of its pinned editions. The one way the server chooses a
/// building's rules — session items, the projection, the compliance report and schedule.
pub async fn building_rules(
    store: &dyn Store,
    building: &BuildingRecord,
    frequency: Option<&str>,
) -> crate::store::StoreResult<Vec<RuleRecord>> {
    let candidates = store
        .edition_rules(building.org_id, frequency, None)
        .await?;
    Ok(for_building(building, &candidates))
}

/// The version of `code` that `building` is serviced under: the latest active one in its
/// pinned editions. NotFound when none of its editions has the code.
pub async fn building_rule(
    store: &dyn Store,
    building: &BuildingRecord,
    code: &str,
) -> crate::store::StoreResult<RuleRecord> {
    let candidates = store
        .edition_rules(building.org_id, None, Some(code))
        .await?;
    for_building(building, &candidates)
        .into_iter()
        .next()
        .ok_or(crate::store::StoreError::NotFound)
}

/// The version of `code` to assess an item of `building` with: the one of its pinned editions
/// ([`building_rule`]); for a code none of them has — an item of a session created before the
/// building's pin changed — the latest active version of the code. NotFound when no version
/// is active.
pub async fn item_rule(
    store: &dyn Store,
    building: &BuildingRecord,
    code: &str,
) -> crate::store::StoreResult<RuleRecord> {
    match building_rule(store, building, code).await {
        Err(crate::store::StoreError::NotFound) => store.latest_rule(building.org_id, code).await,
        other => other,
    }
}

/// Insert the shipped library's rule set and rules missing from the database. Idempotent: an
/// upgraded library file adds its new versions; existing rows are never modified. Returns how
/// many rules were added. Runs at every start, so the common case is one read and no write.
pub async fn seed_library(store: &dyn Store) -> anyhow::Result<u64> {
    seed(store, library()).await
}

/// [`seed_library`] for any library value (tests seed an "upgraded" library with it).
pub async fn seed(store: &dyn Store, lib: &Library) -> anyhow::Result<u64> {
    lib.validate()?;
    let present: BTreeSet<(String, String)> =
        store.shipped_rule_keys().await?.into_iter().collect();
    let mut added = 0;
    for rs in &lib.rule_sets {
        let edition = RuleSetRef::new(&rs.code, &rs.version);
        let set_present = store.rule_set_exists(&rs.code, &rs.version).await?;
        let missing: Vec<NewRule<'_>> = lib
            .rules
            .iter()
            .filter(|r| r.rule_set.as_ref() == Some(&edition))
            .filter(|r| !present.contains(&(r.code.clone(), r.version.clone())))
            .map(|def| NewRule {
                org_id: None,
                version: def.version.parse().expect("validated above"),
                def,
                created_by: None,
            })
            .collect();
        if missing.is_empty() && set_present {
            continue;
        }
        let n = store
            .seed_shipped((&rs.code, &rs.version, &rs.title), &missing)
            .await
            .context("cannot seed the rule library")?;
        tracing::info!(
            added = n,
            rule_set = %format!("{} {}", rs.code, rs.version),
            "rule library seeded"
        );
        added += n;
    }
    Ok(added)
}

#[cfg(test)]
mod library_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_library_is_valid_and_complete() {
        // The base file alone is a complete library too.
        Library::from_json(LIBRARY_JSON).unwrap();
        let lib = Library::from_files(LIBRARY_FILES).unwrap();
        assert!(lib.rules.len() >= 40);
        for rule in &lib.rules {
            assert!(lib.equipment_kind(&rule.equipment).is_some());
        }
        for kind in &lib.equipment {
            assert!(
                lib.rules.iter().any(|r| r.equipment == kind.kind),
                "no rule for {}",
                kind.kind
            );
        }
        assert_eq!(frequency_months("six_monthly"), Some(6));
        use crate::domain::schedule::Tolerance;
        assert_eq!(frequency_tolerance("yearly"), Some(Tolerance::Months(2)));
        assert_eq!(
            frequency_tolerance("monthly"),
            Some(Tolerance::WorkingDays(5))
        );
        assert_eq!(
            frequency_tolerance("three_monthly"),
            Some(Tolerance::WorkingDays(10))
        );
        assert_eq!(
            frequency_tolerance("six_monthly"),
            Some(Tolerance::Months(1))
        );
        assert_eq!(
            frequency_tolerance("five_yearly"),
            Some(Tolerance::Months(3))
        );
        assert_eq!(
            frequency_tolerance("thirty_yearly"),
            Some(Tolerance::Months(6))
        );
        assert_eq!(frequency_months("fortnightly"), None);
        assert_eq!(default_rule_set(), ("AS1851", "2012.1.0"));
        // Weekly (AS 1851-2005 only) is a frequency, but not one the schedule counts in months.
        assert_eq!(frequency_months("weekly"), None);
        let weekly = library().any_frequency("weekly").unwrap();
        assert_eq!(weekly.days, Some(7));
        assert_eq!(weekly.tolerance, Tolerance::WorkingDays(2));
    }

    #[test]
    fn editions_are_checked_when_the_library_loads() {
        let base = LIBRARY_JSON;
        let extra = |rules: &str, default: bool| {
            format!(
                r#"{{"rule_set": {{"code": "AS1851", "version": "2030.1.0", "title": "future", "default": {default}}}, "rules": {rules}}}"#
            )
        };
        // A second default edition of a standard is refused.
        let two_defaults = extra("[]", true);
        assert!(Library::from_files(&[("a", base), ("b", &two_defaults)])
            .unwrap_err()
            .to_string()
            .contains("exactly one default"));
        // A future edition may reuse a code (with its own version).
        let mut rule = serde_json::to_value(&library().rules[0]).unwrap();
        rule["version"] = "2030.1.0".into();
        rule.as_object_mut().unwrap().remove("rule_set");
        let reuse = extra(&serde_json::to_string(&vec![rule.clone()]).unwrap(), false);
        let lib = Library::from_files(&[("a", base), ("b", &reuse)]).unwrap();
        assert_eq!(lib.rule_sets.len(), 2);
        assert_eq!(
            lib.rules.last().unwrap().rule_set,
            Some(RuleSetRef::new("AS1851", "2030.1.0"))
        );
        // A rule naming another edition than its file's is refused.
        rule["rule_set"] = serde_json::json!({"code": "AS1851", "version": "2012.1.0"});
        let wrong = extra(&serde_json::to_string(&vec![rule.clone()]).unwrap(), false);
        assert!(Library::from_files(&[("a", base), ("b", &wrong)]).is_err());
        // An alternative must replace a routine of its own edition and equipment.
        rule.as_object_mut().unwrap().remove("rule_set");
        rule["code"] = "FUTURE-ALT".into();
        rule["alternative_to"] = "AS1851-12-6M-FD".into();
        let alt = extra(&serde_json::to_string(&vec![rule]).unwrap(), false);
        assert!(Library::from_files(&[("a", base), ("b", &alt)])
            .unwrap_err()
            .to_string()
            .contains("alternative_to"));
    }

    #[test]
    fn versions_parse_strictly_and_sort_numerically() {
        let v = |s: &str| s.parse::<Version>();
        assert_eq!(
            v("2012.1.0").unwrap(),
            Version {
                major: 2012,
                minor: 1,
                patch: 0
            }
        );
        assert!(v("1.10.0").unwrap() > v("1.9.9").unwrap());
        assert_eq!(v("0.0.0").unwrap().to_string(), "0.0.0");
        for bad in [
            "",
            "1",
            "1.2",
            "1.2.3.4",
            "01.2.3",
            "1.2.x",
            "1.2.3-beta",
            "v1.2.3",
            " 1.2.3",
            "1..3",
            "-1.2.3",
            "1.2.+3",
        ] {
            assert!(v(bad).is_err(), "{bad} accepted");
        }
        assert!(v("99999999999999999999.0.0").is_err());
    }

    #[test]
    fn classification_serde_names() {
        assert_eq!(
            serde_json::to_value(Classification::NonCriticalDefect).unwrap(),
            "non_critical_defect"
        );
        for c in [
            Classification::CriticalDefect,
            Classification::NonCriticalDefect,
            Classification::NonConformance,
            Classification::Compliant,
        ] {
            assert_eq!(c.as_str().parse::<Classification>().unwrap(), c);
        }
    }

    #[test]
    fn definitions_are_checked() {
        let lib = library();
        let mut def = lib.rules[0].clone();
        assert!(def.validate(lib).is_ok());
        def.version = "1.0".into();
        assert_eq!(def.validate(lib).unwrap_err().code, "invalid_version");
        def.version = "1.0.0".into();
        def.equipment = "toaster".into();
        assert_eq!(def.validate(lib).unwrap_err().code, "invalid_equipment");
        def.equipment = lib.rules[0].equipment.clone();
        // Without readings or rationale that name the old conditions, so the mappings are
        // what is refused.
        def.readings.clear();
        def.rationale.clear();
        def.classification_mappings =
            BTreeMap::from([("broken".to_string(), Classification::CriticalDefect)]);
        assert_eq!(def.validate(lib).unwrap_err().code, "invalid_mappings");
        def.code = "has space".into();
        assert_eq!(def.validate(lib).unwrap_err().code, "invalid_rule_code");
    }
}
