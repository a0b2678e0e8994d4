//! Defects as AS 1851 treats them: severity from the classification (cl. 1.5.6), notification
//! deadlines, identity, the lifecycle, titles, and how a session's findings update the defects
//! already on record.
//!
//! **Identity** is the asset and the observed condition. A fault found again in a later visit
//! is the same defect, reconfirmed by that visit (a *sighting*), not a new one; a closed or
//! withdrawn one found again is reopened, its history linking the visit. Cancelled defects and
//! duplicates are out of identity: a new finding opens a new defect.
//!
//! **Lifecycle**: `open → acknowledged → repair_scheduled → repaired → verified → closed`, one
//! step at a time; from any status before `closed`, `cancelled` (raised in error) or
//! `duplicate` (of another defect), each with a reason; `reopen` brings a closed, cancelled or
//! duplicate defect back to `open`, with a reason. `withdrawn` is the projection's: the item
//! that raised it no longer fails in the session that found it, before anyone acted on it.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::rules::Classification;

/// AS 1851 cl. 1.5.6 classes of defect.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Critical,
    NonCritical,
    NonConformance,
}

impl Severity {
    pub const ALL: [Severity; 3] = [Self::Critical, Self::NonCritical, Self::NonConformance];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Critical => "critical",
            Self::NonCritical => "non_critical",
            Self::NonConformance => "non_conformance",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// The severity of a finding's classification (`None` for compliant).
    pub fn of(c: Classification) -> Option<Self> {
        match c {
            Classification::CriticalDefect => Some(Self::Critical),
            Classification::NonCriticalDefect => Some(Self::NonCritical),
            Classification::NonConformance => Some(Self::NonConformance),
            Classification::Compliant => None,
        }
    }

    /// How long the responsible person may wait to be told in writing: 24 hours for a
    /// critical defect, a week otherwise (cl. 1.5.6).
    pub fn notification_window(self) -> Duration {
        match self {
            Self::Critical => Duration::hours(24),
            _ => Duration::days(7),
        }
    }
}

/// A defect's notification deadline once its severity changes from `old` to `new` at `at`:
/// more severe, the shorter window runs from `at` but never ends later than the deadline it had;
/// less severe, the window runs from when it was found; unchanged, the deadline stays.
pub fn deadline_after(
    old: Severity,
    new: Severity,
    notify_by: DateTime<Utc>,
    discovered_at: DateTime<Utc>,
    at: DateTime<Utc>,
) -> DateTime<Utc> {
    match new.cmp(&old) {
        std::cmp::Ordering::Less => notify_by.min(at + new.notification_window()),
        std::cmp::Ordering::Greater => discovered_at + new.notification_window(),
        std::cmp::Ordering::Equal => notify_by,
    }
}

/// Defect statuses.
pub mod status {
    pub const OPEN: &str = "open";
    pub const ACKNOWLEDGED: &str = "acknowledged";
    pub const REPAIR_SCHEDULED: &str = "repair_scheduled";
    pub const REPAIRED: &str = "repaired";
    pub const VERIFIED: &str = "verified";
    pub const CLOSED: &str = "closed";
    pub const CANCELLED: &str = "cancelled";
    pub const DUPLICATE: &str = "duplicate";
    pub const WITHDRAWN: &str = "withdrawn";
}

/// Where a defect comes from.
pub mod source {
    /// Opened by the projection from an item's findings (and withdrawn when they go).
    pub const AUTOMATIC: &str = "automatic";
    /// Recorded by a person.
    pub const MANUAL: &str = "manual";
    /// The non-conformance for a routine serviced outside its tolerance window (AS 1851
    /// cl. 1.11): raised by the server once per service (asset and session), never withdrawn
    /// by the projection.
    pub const OUT_OF_TOLERANCE: &str = "out_of_tolerance";
    /// Every source, as the API documents them.
    pub const ALL: [&str; 3] = [AUTOMATIC, MANUAL, OUT_OF_TOLERANCE];
}

/// The lifecycle, in order.
pub const LIFECYCLE: [&str; 6] = [
    status::OPEN,
    status::ACKNOWLEDGED,
    status::REPAIR_SCHEDULED,
    status::REPAIRED,
    status::VERIFIED,
    status::CLOSED,
];

/// Every status a defect can have.
pub const STATUSES: [&str; 9] = [
    status::OPEN,
    status::ACKNOWLEDGED,
    status::REPAIR_SCHEDULED,
    status::REPAIRED,
    status::VERIFIED,
    status::CLOSED,
    status::CANCELLED,
    status::DUPLICATE,
    status::WITHDRAWN,
];

/// Still needing attention: open through verified.
pub fn is_active(s: &str) -> bool {
    LIFECYCLE[..5].contains(&s)
}

/// The next lifecycle step, if any.
pub fn next_status(current: &str) -> Option<&'static str> {
    let i = LIFECYCLE.iter().position(|s| *s == current)?;
    LIFECYCLE.get(i + 1).copied()
}

/// A change of status somebody asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Move<'a> {
    /// The next lifecycle step.
    Step(&'a str),
    Cancel,
    Duplicate,
    Reopen,
}

/// Why a move is refused (the message names what is allowed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveError(pub String);

/// The status a move leads to from `current`, or why it cannot be made. `reason` is required
/// for cancel, duplicate and reopen.
pub fn apply_move(
    current: &str,
    m: &Move<'_>,
    reason: Option<&str>,
) -> Result<&'static str, MoveError> {
    let needs_reason = |to: &'static str| {
        if reason.is_some_and(|r| !r.trim().is_empty()) {
            Ok(to)
        } else {
            Err(MoveError(format!(
                "moving a defect to '{to}' needs a reason"
            )))
        }
    };
    match m {
        Move::Step(to) => match next_status(current) {
            Some(next) if next == *to => Ok(next),
            Some(next) => Err(MoveError(format!(
                "a defect in '{current}' can only move to '{next}' (or be cancelled or marked duplicate), not '{to}'"
            ))),
            None => Err(MoveError(format!(
                "a defect in '{current}' cannot move to '{to}'"
            ))),
        },
        Move::Cancel | Move::Duplicate if is_active(current) => needs_reason(if *m == Move::Cancel {
            status::CANCELLED
        } else {
            status::DUPLICATE
        }),
        Move::Cancel | Move::Duplicate => Err(MoveError(format!(
            "a defect in '{current}' cannot be cancelled or marked duplicate"
        ))),
        Move::Reopen
            if [status::CLOSED, status::CANCELLED, status::DUPLICATE].contains(&current) =>
        {
            needs_reason(status::OPEN)
        }
        Move::Reopen => Err(MoveError(format!(
            "only closed, cancelled or duplicate defects can be reopened, this one is '{current}'"
        ))),
    }
}

/// An asset as a defect names it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AssetLabel {
    pub identifier: Option<String>,
    /// The equipment kind's name (`Portable fire extinguisher`).
    pub kind: String,
    pub location: String,
}

impl AssetLabel {
    /// `EXT-003 (Portable fire extinguisher, Level 2 kitchen)`.
    pub fn describe(&self) -> String {
        let mut tail: Vec<&str> = Vec::new();
        if !self.kind.is_empty() {
            tail.push(&self.kind);
        }
        if !self.location.trim().is_empty() {
            tail.push(self.location.trim());
        }
        let head = self.identifier.as_deref().unwrap_or("Unidentified asset");
        if tail.is_empty() {
            head.to_owned()
        } else {
            format!("{head} ({})", tail.join(", "))
        }
    }
}

/// A condition in words: `pressure_gauge_not_in_green` → `pressure gauge not in green`.
pub fn condition_words(condition: Option<&str>) -> String {
    match condition {
        Some(super::assess::FAILED_UNSPECIFIED) | None => "failed, no condition recorded".into(),
        Some(c) => c.replace('_', " "),
    }
}

/// The title of an automatic defect: the asset, then the fault.
pub fn title(asset: &AssetLabel, condition: Option<&str>) -> String {
    let mut t = format!("{}: {}", asset.describe(), condition_words(condition));
    if t.chars().count() > 200 {
        t = t.chars().take(199).collect::<String>() + "…";
    }
    t
}

/// A defect on record, as the planner needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    pub id: Uuid,
    pub asset_id: Uuid,
    pub condition: Option<String>,
    pub status: String,
    pub severity: Severity,
    /// Someone overrode the severity: findings no longer change it.
    pub severity_overridden: bool,
    /// Opened by the projection from a finding (not recorded by hand): only those are withdrawn
    /// when no session finds them any more.
    pub automatic: bool,
    /// The session that first found it.
    pub found_in: Option<Uuid>,
    /// The sessions that find it now (since it last opened).
    pub sighted_in: BTreeSet<Uuid>,
    pub evidence: Vec<String>,
    pub created_at_order: i64,
}

/// A finding of this session, for one asset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub asset_id: Uuid,
    pub condition: Option<String>,
    pub severity: Severity,
    pub evidence: Vec<String>,
}

/// What to do about one defect identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Open a new defect.
    Open(Found),
    /// Found again by this session: record the sighting (and refresh the evidence).
    Reconfirm { id: Uuid, found: Found },
    /// Closed or withdrawn, found again: back to open, sighted by this session.
    Reopen {
        id: Uuid,
        from: String,
        found: Found,
    },
    /// Already sighted by this session; its severity (unless overridden) or evidence changed.
    Refresh { id: Uuid, found: Found },
    /// This session no longer finds it and was the only one that did, nobody acted on it yet
    /// (its sighting goes too).
    Withdraw { id: Uuid },
    /// This session no longer finds it, but others did: drop this session's sighting.
    Unsight { id: Uuid },
}

/// The defect an identity (asset, condition) refers to among `known`: an active one, else the
/// most recent closed or withdrawn one. Cancelled and duplicate defects are never chosen, and a
/// defect without a condition (recorded by hand without one) has no identity.
pub fn current<'a>(known: &'a [Known], asset: Uuid, condition: Option<&str>) -> Option<&'a Known> {
    condition?;
    let same = known
        .iter()
        .filter(|k| k.asset_id == asset && k.condition.as_deref() == condition);
    let mut best: Option<&Known> = None;
    for k in same {
        let rank = |k: &Known| {
            (
                is_active(&k.status),
                k.status == status::CLOSED || k.status == status::WITHDRAWN,
                k.created_at_order,
            )
        };
        if k.status == status::CANCELLED || k.status == status::DUPLICATE {
            continue;
        }
        if best.is_none_or(|b| rank(k) > rank(b)) {
            best = Some(k);
        }
    }
    best
}

/// Plan how the findings of `session` for the assets in `assets` (the items written this time)
/// change the defects on record (`known`: every defect of those assets).
pub fn plan(
    session: Uuid,
    assets: &BTreeSet<Uuid>,
    found: &[Found],
    known: &[Known],
) -> Vec<Action> {
    let mut actions = Vec::new();
    let mut found_keys: BTreeMap<(Uuid, Option<&str>), &Found> = BTreeMap::new();
    for f in found.iter().filter(|f| assets.contains(&f.asset_id)) {
        found_keys
            .entry((f.asset_id, f.condition.as_deref()))
            .or_insert(f);
    }
    for ((asset, condition), f) in &found_keys {
        let f = (*f).clone();
        match current(known, *asset, *condition) {
            // The office cancelled it or marked it a duplicate while this session held it:
            // that decision stands for this session's finding.
            None if known.iter().any(|k| {
                k.asset_id == *asset
                    && k.condition.as_deref() == *condition
                    && (k.status == status::CANCELLED || k.status == status::DUPLICATE)
                    && k.sighted_in.contains(&session)
            }) => {}
            None => actions.push(Action::Open(f)),
            Some(k) if is_active(&k.status) => {
                if !k.sighted_in.contains(&session) {
                    actions.push(Action::Reconfirm { id: k.id, found: f });
                } else if (!k.severity_overridden && k.severity != f.severity)
                    || k.evidence != f.evidence
                {
                    actions.push(Action::Refresh { id: k.id, found: f });
                }
            }
            Some(k) => actions.push(Action::Reopen {
                id: k.id,
                from: k.status.clone(),
                found: f,
            }),
        }
    }
    // Defects this session found on these assets that it no longer finds.
    for k in known {
        if !assets.contains(&k.asset_id)
            || !k.sighted_in.contains(&session)
            || found_keys.contains_key(&(k.asset_id, k.condition.as_deref()))
            || k.status != status::OPEN
        {
            continue;
        }
        // Only a defect the projection opened is withdrawn, when its last finder drops it; one
        // recorded by hand stays (this session's sighting of it goes).
        if k.automatic && k.sighted_in.len() == 1 {
            actions.push(Action::Withdraw { id: k.id });
        } else {
            actions.push(Action::Unsight { id: k.id });
        }
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(asset: Uuid, cond: &str, st: &str, found_in: Uuid, sighted: &[Uuid]) -> Known {
        Known {
            id: Uuid::new_v4(),
            asset_id: asset,
            condition: Some(cond.into()),
            status: st.into(),
            severity: Severity::NonCritical,
            severity_overridden: false,
            automatic: true,
            found_in: Some(found_in),
            sighted_in: sighted.iter().copied().collect(),
            evidence: vec![],
            created_at_order: 0,
        }
    }

    fn found(asset: Uuid, cond: &str) -> Found {
        Found {
            asset_id: asset,
            condition: Some(cond.into()),
            severity: Severity::NonCritical,
            evidence: vec![],
        }
    }

    #[test]
    fn found_again_is_reconfirmed_closed_is_reopened_new_is_opened() {
        let (a, s1, s2) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let assets = BTreeSet::from([a]);
        let open = known(a, "gauge", status::ACKNOWLEDGED, s1, &[s1]);
        let closed = known(a, "hose", status::CLOSED, s1, &[s1]);
        let cancelled = known(a, "tag", status::CANCELLED, s1, &[s1]);
        let k = vec![open.clone(), closed.clone(), cancelled];
        let f = vec![found(a, "gauge"), found(a, "hose"), found(a, "tag")];
        let plan = plan(s2, &assets, &f, &k);
        assert!(plan.contains(&Action::Reconfirm {
            id: open.id,
            found: found(a, "gauge")
        }));
        assert!(plan.contains(&Action::Reopen {
            id: closed.id,
            from: "closed".into(),
            found: found(a, "hose")
        }));
        assert!(
            plan.contains(&Action::Open(found(a, "tag"))),
            "a cancelled defect is out of identity"
        );
        assert_eq!(plan.len(), 3);
    }

    #[test]
    fn no_longer_found_withdraws_or_unsights() {
        let (a, s1, s2) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let assets = BTreeSet::from([a]);
        let mine = known(a, "gauge", status::OPEN, s2, &[s2]);
        let shared = known(a, "hose", status::OPEN, s1, &[s1, s2]);
        let acted = known(a, "tag", status::ACKNOWLEDGED, s2, &[s2]);
        let plan = plan(s2, &assets, &[], &[mine.clone(), shared.clone(), acted]);
        assert_eq!(
            plan,
            vec![
                Action::Withdraw { id: mine.id },
                Action::Unsight { id: shared.id }
            ]
        );
        // Items not written this time are left alone.
        assert!(super::plan(s2, &BTreeSet::new(), &[], &[mine]).is_empty());
    }

    #[test]
    fn sighted_again_by_the_same_session_changes_nothing_unless_it_differs() {
        let (a, s1) = (Uuid::new_v4(), Uuid::new_v4());
        let assets = BTreeSet::from([a]);
        let k = known(a, "gauge", status::OPEN, s1, &[s1]);
        assert!(plan(s1, &assets, &[found(a, "gauge")], std::slice::from_ref(&k)).is_empty());
        let mut worse = found(a, "gauge");
        worse.severity = Severity::Critical;
        assert_eq!(
            plan(s1, &assets, &[worse.clone()], std::slice::from_ref(&k)),
            vec![Action::Refresh {
                id: k.id,
                found: worse.clone()
            }]
        );
        let mut overridden = k.clone();
        overridden.severity_overridden = true;
        assert!(plan(s1, &assets, &[worse], &[overridden]).is_empty());
    }

    #[test]
    fn deadlines_follow_severity_changes() {
        let found = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .to_utc();
        let week = found + Duration::days(7);
        let later = found + Duration::days(2);
        let (c, n) = (Severity::Critical, Severity::NonCritical);
        assert_eq!(
            deadline_after(n, c, week, found, later),
            later + Duration::hours(24)
        );
        // Raised on day 6: 24 hours from then would end after the week; the week stands.
        let late = found + Duration::days(6) + Duration::hours(12);
        assert_eq!(deadline_after(n, c, week, found, late), week);
        assert_eq!(
            deadline_after(c, n, found + Duration::hours(24), found, later),
            week
        );
        assert_eq!(deadline_after(n, n, week, found, later), week);
    }

    #[test]
    fn moves() {
        assert_eq!(
            apply_move("open", &Move::Step("acknowledged"), None),
            Ok("acknowledged")
        );
        assert!(apply_move("open", &Move::Step("closed"), None).is_err());
        assert!(
            apply_move("open", &Move::Cancel, None).is_err(),
            "a reason is required"
        );
        assert_eq!(
            apply_move("repaired", &Move::Cancel, Some("raised in error")),
            Ok("cancelled")
        );
        assert_eq!(
            apply_move("open", &Move::Duplicate, Some("same as D-1")),
            Ok("duplicate")
        );
        assert!(apply_move("closed", &Move::Cancel, Some("x")).is_err());
        assert_eq!(
            apply_move("closed", &Move::Reopen, Some("leaks again")),
            Ok("open")
        );
        assert!(apply_move("open", &Move::Reopen, Some("x")).is_err());
        assert!(apply_move("withdrawn", &Move::Step("acknowledged"), None).is_err());
    }

    #[test]
    fn titles_name_the_asset() {
        let label = AssetLabel {
            identifier: Some("EXT-003".into()),
            kind: "Portable fire extinguisher".into(),
            location: "Level 2 kitchen".into(),
        };
        assert_eq!(
            title(&label, Some("pressure_gauge_not_in_green")),
            "EXT-003 (Portable fire extinguisher, Level 2 kitchen): pressure gauge not in green"
        );
        assert_eq!(
            title(&AssetLabel::default(), None),
            "Unidentified asset: failed, no condition recorded"
        );
        assert!(title(&label, Some(&"x".repeat(300))).chars().count() <= 200);
    }
}
