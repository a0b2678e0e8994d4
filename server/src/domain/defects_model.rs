//! Model test of defect identity over random interleavings: sessions record and change their
//! findings on a few assets, the office moves defects along (or cancels them), someone overrides
//! a severity — in any order. The planner's actions are applied to an in-memory store the way
//! the database applies them. After every step:
//! - at most one active defect per asset and condition;
//! - every finding a session holds has an active defect that the session is a sighting of
//!   (nothing recorded is ever without its defect), unless the office closed, cancelled or
//!   marked as duplicate the defect that session found (its decision stands until the session
//!   records again; a cancelled one is never reopened by that session's finding);
//! - a defect still `open` (nobody acted on it) is found by at least one session, and only by
//!   sessions that hold the finding now;
//! - an overridden severity is never changed by findings;
//! - a defect recorded by hand (which sessions may reconfirm) is never withdrawn by them.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use uuid::Uuid;

use super::defects::{
    self, apply_move, is_active, plan, status, Action, Found, Known, Move, Severity,
};

const SESSIONS: u128 = 3;
const ASSETS: u128 = 2;
const CONDITIONS: [&str; 3] = ["gauge", "hose", "tag"];

fn severity_of(condition: &str) -> Severity {
    match condition {
        "gauge" => Severity::NonCritical,
        "hose" => Severity::Critical,
        _ => Severity::NonConformance,
    }
}

#[derive(Debug, Clone)]
enum Op {
    /// Session `s` records, for asset `a`, exactly these conditions (a bit mask of CONDITIONS).
    Record { s: u128, a: u128, mask: u8 },
    /// The office moves the n-th defect: one lifecycle step, or cancels it.
    Office { n: usize, cancel: bool },
    /// Someone overrides the n-th defect's severity to critical.
    Override { n: usize },
    /// The office records a defect by hand for asset `a` and condition `c` (refused, as the API
    /// does, when one is active for that identity).
    Manual { a: u128, c: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..SESSIONS, 0..ASSETS, 0u8..8).prop_map(|(s, a, mask)| Op::Record { s, a, mask }),
        2 => (0usize..16, any::<bool>()).prop_map(|(n, cancel)| Op::Office { n, cancel }),
        1 => (0usize..16).prop_map(|n| Op::Override { n }),
        1 => (0..ASSETS, 0usize..3).prop_map(|(a, c)| Op::Manual { a, c }),
    ]
}

fn uuid(kind: u128, n: u128) -> Uuid {
    Uuid::from_u128((kind << 64) | n)
}

struct Model {
    defects: Vec<Known>,
    /// What each (session, asset) currently finds.
    findings: BTreeMap<(Uuid, Uuid), BTreeSet<&'static str>>,
    next: u128,
}

impl Model {
    fn apply(&mut self, session: Uuid, action: Action) {
        let find = |defects: &mut Vec<Known>, id: Uuid| -> usize {
            defects.iter().position(|k| k.id == id).expect("known id")
        };
        match action {
            Action::Open(f) => {
                self.next += 1;
                self.defects.push(Known {
                    id: uuid(9, self.next),
                    asset_id: f.asset_id,
                    condition: f.condition,
                    status: status::OPEN.into(),
                    severity: f.severity,
                    severity_overridden: false,
                    automatic: true,
                    found_in: Some(session),
                    sighted_in: BTreeSet::from([session]),
                    evidence: f.evidence,
                    created_at_order: self.next as i64,
                });
            }
            Action::Reconfirm { id, found } => {
                let i = find(&mut self.defects, id);
                let k = &mut self.defects[i];
                k.sighted_in.insert(session);
                if !k.severity_overridden {
                    k.severity = found.severity;
                }
            }
            Action::Reopen { id, found, .. } => {
                let i = find(&mut self.defects, id);
                let k = &mut self.defects[i];
                k.status = status::OPEN.into();
                k.sighted_in = BTreeSet::from([session]);
                if !k.severity_overridden {
                    k.severity = found.severity;
                }
            }
            Action::Refresh { id, found } => {
                let i = find(&mut self.defects, id);
                let k = &mut self.defects[i];
                if !k.severity_overridden {
                    k.severity = found.severity;
                }
                k.evidence = found.evidence;
            }
            Action::Withdraw { id } => {
                let i = find(&mut self.defects, id);
                let k = &mut self.defects[i];
                assert_eq!(k.status, status::OPEN);
                assert!(
                    k.automatic,
                    "a defect recorded by hand is never withdrawn: {k:?}"
                );
                k.status = status::WITHDRAWN.into();
                k.sighted_in.clear();
            }
            Action::Unsight { id } => {
                let i = find(&mut self.defects, id);
                self.defects[i].sighted_in.remove(&session);
            }
        }
    }

    fn check(&self) {
        let mut active = BTreeSet::new();
        for k in self.defects.iter().filter(|k| is_active(&k.status)) {
            assert!(
                active.insert((k.asset_id, k.condition.clone())),
                "two active defects for {:?}",
                (k.asset_id, &k.condition)
            );
        }
        for ((s, a), conditions) in &self.findings {
            for c in conditions {
                // The office's decision covers a finding: a cancelled or duplicate defect this
                // session found, or a closed one (until the session records again).
                let decided = self.defects.iter().any(|k| {
                    k.asset_id == *a
                        && k.condition.as_deref() == Some(*c)
                        && k.sighted_in.contains(s)
                        && matches!(
                            k.status.as_str(),
                            status::CANCELLED | status::DUPLICATE | status::CLOSED
                        )
                });
                if decided {
                    continue;
                }
                let k = defects::current(&self.defects, *a, Some(c)).expect("a defect");
                assert!(
                    is_active(&k.status),
                    "finding {c} of {s} has no active defect: {k:?}"
                );
                assert!(
                    k.sighted_in.contains(s),
                    "finding {c} of {s} is not a sighting: {k:?}"
                );
            }
        }
        for k in self
            .defects
            .iter()
            .filter(|k| k.status == status::OPEN && k.automatic)
        {
            assert!(
                !k.sighted_in.is_empty(),
                "open with nobody finding it: {k:?}"
            );
            for s in &k.sighted_in {
                let holds = self
                    .findings
                    .get(&(*s, k.asset_id))
                    .is_some_and(|f| k.condition.as_deref().is_some_and(|c| f.contains(c)));
                assert!(holds, "{s} is a sighting of {k:?} but no longer finds it");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn defect_identity_holds_over_any_interleaving(ops in proptest::collection::vec(op(), 1..60)) {
        let mut m = Model { defects: Vec::new(), findings: BTreeMap::new(), next: 0 };
        for op in ops {
            match op {
                Op::Record { s, a, mask } => {
                    let (session, asset) = (uuid(1, s), uuid(2, a));
                    let conditions: BTreeSet<&'static str> = CONDITIONS
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| mask & (1 << i) != 0)
                        .map(|(_, c)| *c)
                        .collect();
                    let found: Vec<Found> = conditions
                        .iter()
                        .map(|c| Found {
                            asset_id: asset,
                            condition: Some((*c).to_owned()),
                            severity: severity_of(c),
                            evidence: vec![],
                        })
                        .collect();
                    let actions = plan(session, &BTreeSet::from([asset]), &found, &m.defects);
                    for action in actions {
                        m.apply(session, action);
                    }
                    m.findings.insert((session, asset), conditions);
                }
                Op::Office { n, cancel } => {
                    let len = m.defects.len();
                    if len == 0 {
                        continue;
                    }
                    let k = &mut m.defects[n % len];
                    let mv = if cancel {
                        Move::Cancel
                    } else {
                        match defects::next_status(&k.status) {
                            Some(next) => Move::Step(next),
                            None => continue,
                        }
                    };
                    if let Ok(to) = apply_move(&k.status, &mv, Some("office")) {
                        k.status = to.to_owned();
                        // Closing or cancelling settles the findings of the sessions that found
                        // it: until they record again, they need no active defect.
                        if !is_active(to) {
                            let (asset, condition) = (k.asset_id, k.condition.clone());
                            let finders = k.sighted_in.clone();
                            for ((s, a), f) in m.findings.iter_mut() {
                                if *a == asset && finders.contains(s) {
                                    if let Some(c) = &condition {
                                        f.remove(c.as_str());
                                    }
                                }
                            }
                        }
                    }
                }
                Op::Manual { a, c } => {
                    let asset = uuid(2, a);
                    let condition = CONDITIONS[c];
                    let clash = m.defects.iter().any(|k| {
                        k.asset_id == asset
                            && k.condition.as_deref() == Some(condition)
                            && is_active(&k.status)
                    });
                    if !clash {
                        m.next += 1;
                        m.defects.push(Known {
                            id: uuid(9, m.next),
                            asset_id: asset,
                            condition: Some(condition.to_owned()),
                            status: status::OPEN.into(),
                            severity: severity_of(condition),
                            severity_overridden: false,
                            automatic: false,
                            found_in: None,
                            sighted_in: BTreeSet::new(),
                            evidence: vec![],
                            created_at_order: m.next as i64,
                        });
                    }
                }
                Op::Override { n } => {
                    let len = m.defects.len();
                    if len == 0 {
                        continue;
                    }
                    let k = &mut m.defects[n % len];
                    if is_active(&k.status) {
                        k.severity = Severity::Critical;
                        k.severity_overridden = true;
                    }
                }
            }
            m.check();
            for k in &m.defects {
                if k.severity_overridden && is_active(&k.status) {
                    prop_assert_eq!(k.severity, Severity::Critical);
                }
            }
        }
    }
}
