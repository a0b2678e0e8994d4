//! Which rules apply to an asset: the rule codes the asset lists, or else every rule for its
//! equipment kind — where a routine that is an alternative to another (the yearly fire-door
//! routine instead of the six-monthly one) applies only when chosen for the asset, and then
//! replaces the routine it is an alternative to: never both. The session at a frequency tests
//! an asset under one rule: the first by code among those that apply at that frequency. The
//! rules given here are already those of the building's editions (`super::editions`).

use std::collections::BTreeMap;

/// An asset, as far as applicability is concerned.
#[derive(Debug, Clone, Copy)]
pub struct AssetFacts<'a> {
    pub asset_type: &'a str,
    /// Rule codes listed on the asset (empty: decided by equipment kind).
    pub rule_codes: &'a [String],
    /// Routine alternatives chosen for the asset: default rule code -> alternative code.
    pub alternatives: &'a BTreeMap<String, String>,
}

/// A rule, as far as applicability is concerned.
#[derive(Debug, Clone, Copy)]
pub struct RuleFacts<'a> {
    pub code: &'a str,
    pub equipment: &'a str,
    pub frequency: &'a str,
    /// The code of the routine this one is an alternative to, if it is one.
    pub alternative_to: Option<&'a str>,
}

/// Whether `rule` applies to `asset` (at any frequency). Listed codes are taken as they are;
/// by equipment kind, an alternative applies only where chosen and the routine it replaces
/// then does not.
pub fn applies(asset: &AssetFacts<'_>, rule: &RuleFacts<'_>) -> bool {
    if !asset.rule_codes.is_empty() {
        return asset.rule_codes.iter().any(|c| c == rule.code);
    }
    if rule.equipment != asset.asset_type {
        return false;
    }
    match rule.alternative_to {
        Some(default) => asset.alternatives.get(default).map(String::as_str) == Some(rule.code),
        None => !asset.alternatives.contains_key(rule.code),
    }
}

/// Why a routine alternative cannot be chosen for an asset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlternativeError {
    /// No rule of the building's editions has this code.
    UnknownRule(String),
    /// The rule is not an alternative to another routine.
    NotAnAlternative(String),
    /// The rule is for another equipment kind.
    WrongEquipment { code: String, equipment: String },
    /// Two chosen alternatives replace the same routine.
    SameRoutineTwice { default: String },
}

/// Check the alternatives chosen for an asset of `asset_type` against the rules of its
/// building's editions, and return them as default code -> alternative code.
pub fn choose_alternatives<'r, R>(
    asset_type: &str,
    chosen: &[String],
    rules: &'r [R],
    facts: impl Fn(&'r R) -> RuleFacts<'r>,
) -> Result<BTreeMap<String, String>, AlternativeError> {
    let mut out = BTreeMap::new();
    for code in chosen {
        let rule = rules
            .iter()
            .map(&facts)
            .find(|f| f.code == code)
            .ok_or_else(|| AlternativeError::UnknownRule(code.clone()))?;
        let default = rule
            .alternative_to
            .ok_or_else(|| AlternativeError::NotAnAlternative(code.clone()))?;
        if rule.equipment != asset_type {
            return Err(AlternativeError::WrongEquipment {
                code: code.clone(),
                equipment: rule.equipment.to_owned(),
            });
        }
        if let Some(other) = out.insert(default.to_owned(), code.clone()) {
            if other != *code {
                return Err(AlternativeError::SameRoutineTwice {
                    default: default.to_owned(),
                });
            }
        }
    }
    Ok(out)
}

/// The rule a session at `frequency` tests `asset` under, among `rules`: the first by code of
/// those that apply at that frequency.
pub fn session_rule<'r, R>(
    asset: &AssetFacts<'_>,
    frequency: &str,
    rules: &'r [R],
    facts: impl Fn(&'r R) -> RuleFacts<'r>,
) -> Option<&'r R> {
    rules
        .iter()
        .map(|r| (facts(r), r))
        .filter(|(f, _)| f.frequency == frequency && applies(asset, f))
        .min_by(|(a, _), (b, _)| a.code.cmp(b.code))
        .map(|(_, r)| r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_codes_win_over_equipment_and_the_first_code_is_chosen() {
        let none = BTreeMap::new();
        static RULES: [(&str, &str, &str); 4] = [
            ("B-6M", "portable_extinguisher", "six_monthly"),
            ("A-6M", "portable_extinguisher", "six_monthly"),
            ("C-12M", "portable_extinguisher", "yearly"),
            ("D-6M", "fire_blanket", "six_monthly"),
        ];
        let rules = &RULES;
        let facts = |r: &'static (&str, &str, &str)| RuleFacts {
            code: r.0,
            equipment: r.1,
            frequency: r.2,
            alternative_to: None,
        };
        let by_kind = AssetFacts {
            asset_type: "portable_extinguisher",
            rule_codes: &[],
            alternatives: &none,
        };
        let pick = |a: &AssetFacts<'_>, f: &str| session_rule(a, f, rules, facts).map(|r| r.0);
        assert_eq!(pick(&by_kind, "six_monthly"), Some("A-6M"));
        assert_eq!(pick(&by_kind, "yearly"), Some("C-12M"));
        assert_eq!(pick(&by_kind, "monthly"), None);
        let listed = ["B-6M".to_string()];
        let by_code = AssetFacts {
            asset_type: "portable_extinguisher",
            rule_codes: &listed,
            alternatives: &none,
        };
        assert_eq!(pick(&by_code, "six_monthly"), Some("B-6M"));
        assert!(!applies(&by_code, &facts(&rules[1])));
        let listed_other = ["D-6M".to_string()];
        let odd = AssetFacts {
            asset_type: "portable_extinguisher",
            rule_codes: &listed_other,
            alternatives: &none,
        };
        assert!(
            applies(&odd, &facts(&rules[3])),
            "a listed code applies whatever its kind"
        );
    }

    /// (code, equipment, frequency, alternative_to)
    type Alt = (
        &'static str,
        &'static str,
        &'static str,
        Option<&'static str>,
    );
    const DOORS: [Alt; 4] = [
        ("FD-6M", "fire_door", "six_monthly", None),
        ("FD-12M", "fire_door", "yearly", Some("FD-6M")),
        ("FD-5Y", "fire_door", "five_yearly", None),
        ("EXT-6M", "portable_extinguisher", "six_monthly", None),
    ];

    fn alt_facts(r: &'static Alt) -> RuleFacts<'static> {
        RuleFacts {
            code: r.0,
            equipment: r.1,
            frequency: r.2,
            alternative_to: r.3,
        }
    }

    fn applying(alternatives: &BTreeMap<String, String>) -> Vec<&'static str> {
        let asset = AssetFacts {
            asset_type: "fire_door",
            rule_codes: &[],
            alternatives,
        };
        DOORS
            .iter()
            .filter(|r| applies(&asset, &alt_facts(r)))
            .map(|r| r.0)
            .collect()
    }

    #[test]
    fn an_alternative_applies_only_when_chosen_and_never_with_its_default() {
        assert_eq!(applying(&BTreeMap::new()), vec!["FD-6M", "FD-5Y"]);
        let chosen =
            choose_alternatives("fire_door", &["FD-12M".to_string()], &DOORS, alt_facts).unwrap();
        assert_eq!(chosen, BTreeMap::from([("FD-6M".into(), "FD-12M".into())]));
        assert_eq!(applying(&chosen), vec!["FD-12M", "FD-5Y"]);
        // The session at each frequency follows the choice.
        let asset = AssetFacts {
            asset_type: "fire_door",
            rule_codes: &[],
            alternatives: &chosen,
        };
        assert_eq!(session_rule(&asset, "six_monthly", &DOORS, alt_facts), None);
        assert_eq!(
            session_rule(&asset, "yearly", &DOORS, alt_facts).map(|r| r.0),
            Some("FD-12M")
        );
        let plain = AssetFacts {
            alternatives: &BTreeMap::new(),
            ..asset
        };
        assert_eq!(session_rule(&plain, "yearly", &DOORS, alt_facts), None);
    }

    #[test]
    fn choices_are_checked() {
        let c = |kind: &str, codes: &[&str]| {
            let codes: Vec<String> = codes.iter().map(|s| s.to_string()).collect();
            choose_alternatives(kind, &codes, &DOORS, alt_facts)
        };
        assert_eq!(c("fire_door", &[]), Ok(BTreeMap::new()));
        assert_eq!(
            c("fire_door", &["NOPE"]),
            Err(AlternativeError::UnknownRule("NOPE".into()))
        );
        assert_eq!(
            c("fire_door", &["FD-6M"]),
            Err(AlternativeError::NotAnAlternative("FD-6M".into()))
        );
        assert_eq!(
            c("smoke_door", &["FD-12M"]),
            Err(AlternativeError::WrongEquipment {
                code: "FD-12M".into(),
                equipment: "fire_door".into()
            })
        );
        // The same choice twice is one choice.
        assert_eq!(c("fire_door", &["FD-12M", "FD-12M"]).unwrap().len(), 1);
    }

    proptest::proptest! {
        /// Whatever is chosen (valid or stale), a routine and its alternatives never both
        /// apply, and when the chosen alternative is among the rules exactly one of them does.
        #[test]
        fn a_routine_and_its_alternatives_never_both_apply(
            choice in proptest::option::of(proptest::sample::select(vec!["FD-12M", "FD-3M", "NOPE"])),
        ) {
            const RULES: [Alt; 3] = [
                ("FD-6M", "fire_door", "six_monthly", None),
                ("FD-12M", "fire_door", "yearly", Some("FD-6M")),
                ("FD-3M", "fire_door", "three_monthly", Some("FD-6M")),
            ];
            let alternatives: BTreeMap<String, String> = choice
                .map(|c| ("FD-6M".to_string(), c.to_string()))
                .into_iter()
                .collect();
            let asset = AssetFacts { asset_type: "fire_door", rule_codes: &[], alternatives: &alternatives };
            let applying: Vec<&str> = RULES
                .iter()
                .filter(|r| applies(&asset, &alt_facts(r)))
                .map(|r| r.0)
                .collect();
            proptest::prop_assert!(applying.len() <= 1, "{:?}", applying);
            match choice {
                None => proptest::prop_assert_eq!(applying, vec!["FD-6M"]),
                Some("NOPE") => proptest::prop_assert!(applying.is_empty()),
                Some(c) => proptest::prop_assert_eq!(applying, vec![c]),
            }
        }
    }
}
