//! Which rules apply to an asset: the rule codes the asset lists, or else every rule for its
//! equipment kind. The session at a frequency tests an asset under one rule: the first by code
//! among those that apply at that frequency.

/// An asset, as far as applicability is concerned.
#[derive(Debug, Clone, Copy)]
pub struct AssetFacts<'a> {
    pub asset_type: &'a str,
    /// Rule codes listed on the asset (empty: decided by equipment kind).
    pub rule_codes: &'a [String],
}

/// A rule, as far as applicability is concerned.
#[derive(Debug, Clone, Copy)]
pub struct RuleFacts<'a> {
    pub code: &'a str,
    pub equipment: &'a str,
    pub frequency: &'a str,
}

/// Whether `rule` applies to `asset` (at any frequency).
pub fn applies(asset: &AssetFacts<'_>, rule: &RuleFacts<'_>) -> bool {
    if asset.rule_codes.is_empty() {
        rule.equipment == asset.asset_type
    } else {
        asset.rule_codes.iter().any(|c| c == rule.code)
    }
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
        };
        let by_kind = AssetFacts {
            asset_type: "portable_extinguisher",
            rule_codes: &[],
        };
        let pick = |a: &AssetFacts<'_>, f: &str| session_rule(a, f, rules, facts).map(|r| r.0);
        assert_eq!(pick(&by_kind, "six_monthly"), Some("A-6M"));
        assert_eq!(pick(&by_kind, "yearly"), Some("C-12M"));
        assert_eq!(pick(&by_kind, "monthly"), None);
        let listed = ["B-6M".to_string()];
        let by_code = AssetFacts {
            asset_type: "portable_extinguisher",
            rule_codes: &listed,
        };
        assert_eq!(pick(&by_code, "six_monthly"), Some("B-6M"));
        assert!(!applies(&by_code, &facts(&rules[1])));
        let listed_other = ["D-6M".to_string()];
        let odd = AssetFacts {
            asset_type: "portable_extinguisher",
            rule_codes: &listed_other,
        };
        assert!(
            applies(&odd, &facts(&rules[3])),
            "a listed code applies whatever its kind"
        );
    }
}
