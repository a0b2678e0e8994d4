//! Editions: a building pins one edition of each standard (AS 1851-2012, AS/NZS 2293.2:2019,
//! ...), and it is serviced under the rules of its pinned editions only — whatever later
//! editions the library gains. Every place that chooses rules for a building (session items,
//! the projection's classification, the compliance report and schedule) goes through
//! [`pinned`] and [`select`].

use std::collections::BTreeMap;

/// A building's pins: standard code -> edition version (e.g. `AS1851` -> `2012.1.0`).
pub type Pins = BTreeMap<String, String>;

/// The editions a building is serviced under: its primary rule set (`rule_set_code`,
/// `rule_set_version`), its pins for other standards, and — for a standard it has no pin for
/// (only rows written without one) — the library's default edition of that standard. The
/// primary rule set wins over a pin of the same standard.
pub fn pinned(primary: (&str, &str), others: &Pins, defaults: &Pins) -> Pins {
    let mut pins = defaults.clone();
    pins.extend(others.iter().map(|(k, v)| (k.clone(), v.clone())));
    pins.insert(primary.0.to_owned(), primary.1.to_owned());
    pins
}

/// Whether a rule of `edition` (standard code, edition version) is in `pins`.
pub fn is_pinned(pins: &Pins, edition: (&str, &str)) -> bool {
    pins.get(edition.0).is_some_and(|v| v == edition.1)
}

/// The rules a building is serviced under, from candidates that each carry their edition
/// (the latest version of every code within every edition): those of its pinned editions,
/// in the candidates' order. Should one code be in two pinned editions (two standards
/// sharing a code), the first is kept, so a code is never applied twice.
pub fn select<'r, R>(
    pins: &Pins,
    candidates: &'r [R],
    code: impl Fn(&R) -> &str,
    edition: impl Fn(&R) -> (&str, &str),
) -> Vec<&'r R> {
    let mut seen = std::collections::BTreeSet::new();
    candidates
        .iter()
        .filter(|r| is_pinned(pins, edition(r)))
        .filter(|r| seen.insert(code(r).to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pins(items: &[(&str, &str)]) -> Pins {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// (code, standard, edition)
    type R = (&'static str, &'static str, &'static str);
    const RULES: [R; 6] = [
        ("AS1851-2-1M-SPR", "AS1851", "2012.1.0"),
        ("AS1851-2005-2-1W-SPR", "AS1851", "2005.1.0"),
        ("AS1851-2-1M-SPR", "AS1851", "2030.1.0"),
        ("AS2293-6M-EL", "AS2293.2", "2019.1.0"),
        ("AS2293-1995-6M-EL", "AS2293.2", "1995.1.0"),
        ("PRIVATE-1", "AS1851", "2012.1.0"),
    ];

    fn chosen(p: &Pins) -> Vec<(&'static str, &'static str)> {
        select(p, &RULES, |r| r.0, |r| (r.1, r.2))
            .into_iter()
            .map(|r| (r.0, r.2))
            .collect()
    }

    #[test]
    fn a_building_gets_the_rules_of_its_pinned_editions_only() {
        let defaults = pins(&[("AS1851", "2012.1.0"), ("AS2293.2", "2019.1.0")]);
        let modern = pinned(("AS1851", "2012.1.0"), &pins(&[]), &defaults);
        assert_eq!(
            chosen(&modern),
            vec![
                ("AS1851-2-1M-SPR", "2012.1.0"),
                ("AS2293-6M-EL", "2019.1.0"),
                ("PRIVATE-1", "2012.1.0")
            ]
        );
        let old = pinned(
            ("AS1851", "2005.1.0"),
            &pins(&[("AS2293.2", "1995.1.0")]),
            &defaults,
        );
        assert_eq!(
            chosen(&old),
            vec![
                ("AS1851-2005-2-1W-SPR", "2005.1.0"),
                ("AS2293-1995-6M-EL", "1995.1.0")
            ]
        );
        // The primary rule set wins over a stray pin of the same standard.
        let stray = pinned(
            ("AS1851", "2012.1.0"),
            &pins(&[("AS1851", "2005.1.0")]),
            &defaults,
        );
        assert_eq!(stray["AS1851"], "2012.1.0");
        // A standard the library does not know stays pinned as given (and selects nothing).
        let odd = pinned(
            ("AS1851", "2012.1.0"),
            &pins(&[("XYZ", "1.0.0")]),
            &defaults,
        );
        assert_eq!(odd["XYZ"], "1.0.0");
    }

    proptest! {
        /// Whatever editions exist, a building's rules are exactly those of its pins: adding
        /// rules of an edition it is not pinned to (a future edition, even one reusing codes)
        /// changes nothing, and no code is chosen twice.
        #[test]
        fn other_editions_never_change_a_pinned_building(
            extra in proptest::collection::vec(("[A-C]-[1-3]", "AS1851|AS2293\\.2", "20[3-9][0-9]\\.1\\.0"), 0..20)
        ) {
            let p = pins(&[("AS1851", "2012.1.0"), ("AS2293.2", "2019.1.0")]);
            let before = chosen(&p);
            let mut all: Vec<(String, String, String)> = RULES
                .iter()
                .map(|r| (r.0.to_string(), r.1.to_string(), r.2.to_string()))
                .collect();
            all.extend(extra);
            let after: Vec<(&str, &str)> = select(&p, &all, |r| r.0.as_str(), |r| (r.1.as_str(), r.2.as_str()))
                .into_iter()
                .map(|r| (r.0.as_str(), r.2.as_str()))
                .collect();
            prop_assert_eq!(before, after.clone());
            let mut codes: Vec<&str> = after.iter().map(|r| r.0).collect();
            codes.sort();
            codes.dedup();
            prop_assert_eq!(codes.len(), after.len());
        }
    }
}
