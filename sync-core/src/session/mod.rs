//! The session document, schema 2 (docs/protocol.md, "The session document").
//!
//! ```text
//! { schema: 2, sessionId, buildingId, orgId, ruleSet: {code, version}, frequency, name,
//!   status: "in_progress" | "completed",
//!   signedOff?: { userId, licence, at },
//!   items: { <assetId>: { assetId, ruleCode, outcome, observedConditions: [<condition>],
//!                         readings: {<name>: number | boolean | string},
//!                         notes: Text, evidence: [<evidenceId>], recordedBy, recordedAt } },
//!   notes: Text }
//! ```
//!
//! Schema 1 documents (readings numbers only, one `observedCondition` string per item) are
//! still read: an item's `observedCondition` counts as a one-element `observedConditions` when
//! the list is absent. The server writes the list (and drops the single field) when it records
//! conditions on an item.
//!
//! JS clients edit the same document, and automerge-repo 2.x stores a plain JS string as a
//! text object, not a scalar. So every reader here accepts a string field as either, and a
//! writer keeps a field a text object when it already is one.

mod incremental;
mod json;
mod project;
mod write;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use incremental::ProjectionCache;
pub use json::{heads_known, to_json};
pub use project::{project, project_items, ProjectedItem, Projection, SchemaProblem};
pub use write::{apply_results, create_session_document, set_name, set_sign_off, set_status};

/// The schema version this module writes.
pub const SCHEMA_VERSION: i64 = 2;

/// The oldest schema version still read.
pub const OLDEST_SCHEMA_VERSION: i64 = 1;

/// `status` of a session still being worked on.
pub const STATUS_IN_PROGRESS: &str = "in_progress";

/// `status` of a finished session.
pub const STATUS_COMPLETED: &str = "completed";

/// Field names, camelCase as JS clients see them.
pub(crate) mod keys {
    pub const SCHEMA: &str = "schema";
    pub const SESSION_ID: &str = "sessionId";
    pub const BUILDING_ID: &str = "buildingId";
    pub const ORG_ID: &str = "orgId";
    pub const RULE_SET: &str = "ruleSet";
    pub const CODE: &str = "code";
    pub const VERSION: &str = "version";
    pub const FREQUENCY: &str = "frequency";
    pub const NAME: &str = "name";
    pub const STATUS: &str = "status";
    pub const ITEMS: &str = "items";
    pub const NOTES: &str = "notes";
    pub const ASSET_ID: &str = "assetId";
    pub const RULE_CODE: &str = "ruleCode";
    pub const OUTCOME: &str = "outcome";
    pub const OBSERVED_CONDITION: &str = "observedCondition";
    pub const OBSERVED_CONDITIONS: &str = "observedConditions";
    pub const SIGNED_OFF: &str = "signedOff";
    pub const USER_ID: &str = "userId";
    pub const LICENCE: &str = "licence";
    pub const AT: &str = "at";
    pub const READINGS: &str = "readings";
    pub const EVIDENCE: &str = "evidence";
    pub const RECORDED_BY: &str = "recordedBy";
    pub const RECORDED_AT: &str = "recordedAt";
}

/// What a new session document starts with.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionInit {
    /// The session id; also the document id.
    pub session_id: Uuid,
    /// The building inspected.
    pub building_id: Uuid,
    /// The owning organisation.
    pub org_id: Uuid,
    /// Code of the rule set (edition of AS 1851) that applies.
    pub rule_set_code: String,
    /// Version of that rule set.
    pub rule_set_version: String,
    /// Service frequency, e.g. `six_monthly`.
    pub frequency: String,
    /// Display name of the session.
    pub name: String,
    /// One entry per asset to test.
    pub items: Vec<ItemInit>,
}

/// One asset to test in a new session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemInit {
    /// The asset.
    pub asset_id: Uuid,
    /// The rule it is tested against.
    pub rule_code: String,
}

/// The outcome of testing one asset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The asset passed.
    Pass,
    /// The asset failed.
    Fail,
    /// Not tested (yet).
    NotTested,
    /// The inspector could not reach the asset.
    NotAccessible,
}

impl Outcome {
    /// Every outcome, in declaration order.
    pub const ALL: [Outcome; 4] = [
        Outcome::Pass,
        Outcome::Fail,
        Outcome::NotTested,
        Outcome::NotAccessible,
    ];

    /// The string stored in the document.
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "fail",
            Outcome::NotTested => "not_tested",
            Outcome::NotAccessible => "not_accessible",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The string is not one of the four outcomes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown outcome {0:?} (expected pass, fail, not_tested or not_accessible)")]
pub struct UnknownOutcome(pub String);

impl FromStr for Outcome {
    type Err = UnknownOutcome;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Outcome::ALL
            .into_iter()
            .find(|o| o.as_str() == s)
            .ok_or_else(|| UnknownOutcome(s.chars().take(64).collect()))
    }
}

/// A recorded reading: a number, yes/no, or text (a choice is its text). What a reading must
/// be is the rule's business (the server's domain layer); the document holds any of these.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ReadingValue {
    /// Yes (`true`) or no.
    Bool(bool),
    /// A measured number.
    Number(f64),
    /// Text, or one of a choice reading's values.
    Text(String),
}

/// One test result to record, e.g. from `POST /v1/tests/sessions/{id}/results`.
///
/// `None` and absent entries leave the document as it is: results merge into what tablets
/// wrote rather than erase it.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultInput {
    /// The asset tested.
    pub asset_id: Uuid,
    /// The rule; required when the asset is not in the session yet.
    pub rule_code: Option<String>,
    /// The outcome.
    pub outcome: Outcome,
    /// The observed conditions (keys of the rule's classification mappings), replacing the
    /// item's list, if given.
    pub observed_conditions: Option<Vec<String>>,
    /// Readings to set; readings not named here are kept.
    pub readings: BTreeMap<String, ReadingValue>,
    /// New content of the item's notes, replacing the old content, if given.
    pub notes: Option<String>,
    /// Evidence ids to add to the item's list (ids already listed are not repeated).
    pub evidence: Vec<Uuid>,
    /// The user who recorded the result.
    pub recorded_by: Uuid,
    /// When it was recorded, RFC 3339.
    pub recorded_at: String,
}

/// The sign-off of a completed session: who signed, under which licence or accreditation
/// number, and when (RFC 3339).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignOff {
    /// The signing user's id.
    pub user_id: String,
    /// Their licence or accreditation number.
    pub licence: String,
    /// When they signed, RFC 3339.
    pub at: String,
}

/// Why a write to a session document was refused.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The same asset is listed twice in a new session.
    #[error("asset {0} is listed more than once")]
    DuplicateItem(Uuid),
    /// A reading is NaN or infinite (JSON cannot carry it, and NaN never equals itself).
    #[error("reading {name:?} of asset {asset_id} is not a finite number")]
    InvalidReading {
        /// The asset.
        asset_id: Uuid,
        /// The reading's name.
        name: String,
    },
    /// A result for an asset not in the session came without a rule code.
    #[error("asset {0} is not in the session; a rule code is needed to add it")]
    MissingRuleCode(Uuid),
    /// The status is not `in_progress` or `completed`.
    #[error("unknown status {0:?} (expected in_progress or completed)")]
    InvalidStatus(String),
    /// automerge refused an operation.
    #[error("automerge: {0}")]
    Automerge(#[from] automerge::AutomergeError),
}

/// The canonical text form of ids in the document: lowercase and hyphenated.
pub(crate) fn id_string(id: &Uuid) -> String {
    id.hyphenated().to_string()
}

#[cfg(test)]
mod tests;
