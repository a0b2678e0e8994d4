//! Invariants of the shipped rule library (`server/rules/as1851.json`).

use super::*;

#[test]
fn every_rule_has_a_serviceable_condition() {
    for rule in &library().rules {
        assert_eq!(
            rule.classification_mappings.get("serviceable"),
            Some(&Classification::Compliant),
            "{}",
            rule.code
        );
    }
}
