//! Invariants of the shipped rule library (`server/rules/*.json`, one file per edition).
//! `docs/rules.md` explains the files; the severity review lives in each rule's `rationale`.

use super::*;
use crate::domain::readings::{valid_key, Expectation, ReadingKind};

/// The version every rule of AS 1851-2012 and AS/NZS 2293.2:2019 carries after the
/// typed-readings and severity review (the other editions' rules are at `<year>.1.0`).
const REVIEWED_VERSION: &str = "2012.2.0";

/// Single-item faults whose weight depends on context (the only extinguisher or blanket for a
/// space, a luminaire on a stair, the only exit sign to an exit): never critical by default;
/// an inspector or office user raises one with a severity override. Each entry names a rule
/// that has the condition.
const CONTEXT_DEPENDENT: &[(&str, &str)] = &[
    ("AS1851-10-6M-EXT", "extinguisher_missing"),
    ("AS1851-10-6M-EXT", "extinguisher_discharged_or_empty"),
    ("AS1851-10-12M-EXT", "extinguisher_missing"),
    ("AS1851-10-12M-EXT", "extinguisher_discharged_or_empty"),
    ("AS1851-10-5Y-EXT", "extinguisher_discharged_or_empty"),
    ("AS1851-10-6M-WEXT", "extinguisher_missing"),
    ("AS1851-10-6M-WEXT", "extinguisher_discharged_or_empty"),
    ("AS1851-10-12M-WEXT", "extinguisher_discharged_or_empty"),
    ("AS1851-10-12M-WEXT", "discharge_valve_seized"),
    ("AS1851-11-6M-BLK", "fire_blanket_missing"),
    ("AS1851-8-6M-LFH", "hose_missing"),
    ("AS1851-8-12M-LFH", "hose_missing"),
    ("AS1851-8-12M-LFH", "hose_bursts_under_test"),
    ("AS2293-6M-EL", "luminaire_fails_to_illuminate"),
    ("AS2293-12M-EL", "luminaire_fails_to_illuminate"),
    ("AS2293-6M-EXIT", "exit_sign_not_illuminated"),
    ("AS2293-12M-EXIT", "exit_sign_not_illuminated"),
    ("AS1851-2005-10-6M-EXT", "extinguisher_missing"),
    ("AS1851-2005-10-12M-EXT", "extinguisher_discharged_or_empty"),
    ("AS1851-2005-11-6M-BLK", "fire_blanket_missing"),
    ("AS1851-2005-8-12M-LFH", "hose_bursts_under_test"),
    ("AS2293-1995-6M-EL", "luminaire_fails_to_illuminate"),
];

const AS1851_2005: (&str, &str) = ("AS1851", "2005.1.0");

fn edition_rules(edition: (&str, &str)) -> Vec<&'static RuleDef> {
    let edition = RuleSetRef::new(edition.0, edition.1);
    library()
        .rules
        .iter()
        .filter(|r| r.rule_set.as_ref() == Some(&edition))
        .collect()
}

fn rule(code: &str) -> &'static RuleDef {
    library()
        .rules
        .iter()
        .find(|r| r.code == code)
        .unwrap_or_else(|| panic!("no rule {code} in the library"))
}

fn class_of(code: &str, condition: &str) -> Classification {
    *rule(code)
        .classification_mappings
        .get(condition)
        .unwrap_or_else(|| panic!("{code} has no condition {condition}"))
}

/// The library files as plain JSON, to see what is written rather than what is inferred (in
/// the order `library()` reads them).
fn raw_rules() -> Vec<serde_json::Value> {
    LIBRARY_FILES
        .iter()
        .flat_map(|(_, text)| {
            let raw: serde_json::Value = serde_json::from_str(text).unwrap();
            raw["rules"].as_array().unwrap().clone()
        })
        .collect()
}

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

#[test]
fn every_rule_is_at_its_editions_version() {
    for rule in &library().rules {
        let rs = rule.rule_set.as_ref().unwrap();
        let expected = match (rs.code.as_str(), rs.version.as_str()) {
            ("AS1851", "2012.1.0") | ("AS2293.2", "2019.1.0") => REVIEWED_VERSION.to_owned(),
            (_, v) => format!("{}.1.0", v.split('.').next().unwrap()),
        };
        assert_eq!(rule.version, expected, "{}", rule.code);
    }
}

#[test]
fn editions_defaults_and_codes() {
    let lib = library();
    let editions: Vec<(&str, &str, bool)> = lib
        .rule_sets
        .iter()
        .map(|r| (r.code.as_str(), r.version.as_str(), r.default))
        .collect();
    assert_eq!(
        editions,
        vec![
            ("AS1851", "2012.1.0", true),
            ("AS1851", "2005.1.0", false),
            ("AS2293.2", "2019.1.0", true),
            ("AS2293.2", "1995.1.0", false),
        ]
    );
    // In the shipped library a code belongs to one edition (the model would allow a later
    // edition to reuse one; the shipped files do not).
    let mut edition_of: BTreeMap<&str, &RuleSetRef> = BTreeMap::new();
    for rule in &lib.rules {
        let rs = rule.rule_set.as_ref().unwrap();
        assert_eq!(
            *edition_of.entry(&rule.code).or_insert(rs),
            rs,
            "{}",
            rule.code
        );
        // Each rule's `standard` names its edition's year.
        let year = rs.version.split('.').next().unwrap();
        assert!(
            rule.standard.contains(year) || rs.version == "2019.1.0",
            "{}: standard {} is not of {year}",
            rule.code,
            rule.standard
        );
    }
    // The emergency-lighting rules are AS/NZS 2293.2's, not AS 1851's.
    for rule in &lib.rules {
        let is_2293 = rule.code.starts_with("AS2293");
        assert_eq!(
            rule.rule_set.as_ref().unwrap().code == "AS2293.2",
            is_2293,
            "{}",
            rule.code
        );
    }
}

#[test]
fn every_equipment_kind_has_routines_in_the_default_editions() {
    let lib = library();
    let defaults = lib.default_editions();
    for kind in &lib.equipment {
        assert!(
            lib.rules.iter().any(|r| {
                let rs = r.rule_set.as_ref().unwrap();
                r.equipment == kind.kind && defaults.get(&rs.code) == Some(&rs.version)
            }),
            "no AS 1851-2012 / AS/NZS 2293.2:2019 routine for {}",
            kind.kind
        );
    }
}

#[test]
fn the_2005_edition_has_its_weekly_routines() {
    let weekly: BTreeSet<&str> = library()
        .rules
        .iter()
        .filter(|r| r.frequency == "weekly")
        .map(|r| r.equipment.as_str())
        .collect();
    for kind in [
        "sprinkler_system",
        "dry_pipe_sprinkler_system",
        "deluge_system",
        "pre_action_sprinkler_system",
        "sprinkler_alarm_valve",
        "fire_pumpset",
        "diesel_fire_pumpset",
        "electric_fire_pumpset",
    ] {
        assert!(weekly.contains(kind), "no weekly routine for {kind}");
        // In AS 1851-2005 the weekly test is the short routine of these kinds: the monthly
        // one is AS 1851-2012's replacement for it, not an addition.
        assert!(
            !edition_rules(AS1851_2005)
                .iter()
                .any(|r| r.equipment == kind && r.frequency == "monthly"),
            "{kind}: a monthly routine beside the weekly one in AS 1851-2005"
        );
    }
    for rule in library().rules.iter().filter(|r| r.frequency == "weekly") {
        assert_eq!(
            rule.rule_set,
            Some(RuleSetRef::new("AS1851", "2005.1.0")),
            "{}: weekly routines belong to AS 1851-2005",
            rule.code
        );
    }
}

#[test]
fn alternatives_are_marked_and_replace_a_routine_of_their_edition() {
    let alternatives: BTreeMap<&str, &str> = library()
        .rules
        .iter()
        .filter_map(|r| Some((r.code.as_str(), r.alternative_to.as_deref()?)))
        .collect();
    assert_eq!(
        alternatives.get("AS1851-12-12M-FD"),
        Some(&"AS1851-12-6M-FD")
    );
    assert_eq!(
        alternatives.get("AS1851-12-12M-SD"),
        Some(&"AS1851-12-6M-SD")
    );
    for (alt, default) in &alternatives {
        let (a, d) = (rule(alt), rule(default));
        assert_eq!(a.equipment, d.equipment, "{alt}");
        assert_eq!(a.rule_set, d.rule_set, "{alt}");
        assert!(
            d.alternative_to.is_none(),
            "{default} is itself an alternative"
        );
        // A critical condition of the routine replaced is critical in its alternative too,
        // where the alternative knows it.
        for (condition, class) in &d.classification_mappings {
            if let Some(c) = a.classification_mappings.get(condition) {
                assert_eq!(c, class, "{alt} {condition}");
            }
        }
    }
}

#[test]
fn every_reading_declares_its_kind_and_expectation_in_the_file() {
    for rule in raw_rules() {
        let code = rule["code"].as_str().unwrap();
        for reading in rule["readings"].as_array().unwrap() {
            let name = reading["name"].as_str().unwrap_or("?");
            let obj = reading.as_object().unwrap();
            assert!(
                obj.get("kind").is_some_and(|k| k.is_string()),
                "{code} {name}: no explicit kind"
            );
            assert!(
                obj.get("expect").is_some_and(|e| e.is_object()),
                "{code} {name}: no explicit expect"
            );
            assert!(
                !obj.contains_key("expected"),
                "{code} {name}: still has the free-text expected"
            );
        }
    }
    // What is written is what the server reads: the parsed kind equals the written one.
    for (raw, rule) in raw_rules().iter().zip(&library().rules) {
        for (r, spec) in raw["readings"]
            .as_array()
            .unwrap()
            .iter()
            .zip(&rule.readings)
        {
            assert_eq!(
                r["kind"].as_str(),
                Some(spec.kind.as_str()),
                "{}",
                rule.code
            );
        }
    }
}

#[test]
fn every_reading_and_expectation_validates() {
    // `library()` parses and validates the whole file (panics otherwise); check each reading
    // again here so a failure names it.
    let lib = Library::from_json(LIBRARY_JSON).expect("the library validates");
    for rule in &lib.rules {
        for r in &rule.readings {
            r.validate(rule.classification_mappings.keys().map(String::as_str))
                .unwrap_or_else(|e| panic!("{} {}: {e}", rule.code, r.name));
            match (&r.expect, r.kind) {
                (Expectation::None, _) => {
                    panic!("{} {}: not evaluated (none)", rule.code, r.name)
                }
                (Expectation::OneOf { values }, ReadingKind::Choice) => assert!(
                    values.len() < r.choices.len(),
                    "{} {}: every choice is acceptable",
                    rule.code,
                    r.name
                ),
                _ => {}
            }
            if r.kind == ReadingKind::Number {
                assert!(
                    !r.unit.is_empty(),
                    "{} {}: a number needs a unit",
                    rule.code,
                    r.name
                );
                assert!(r.decimals.is_some(), "{} {}: decimals", rule.code, r.name);
            }
        }
    }
}

#[test]
fn reading_names_are_unique_within_a_rule() {
    for rule in &library().rules {
        let mut seen = BTreeSet::new();
        for r in &rule.readings {
            assert!(seen.insert(&r.name), "{}: {} twice", rule.code, r.name);
        }
    }
}

#[test]
fn every_evaluated_reading_fails_as_a_defect_condition_of_its_rule() {
    for rule in &library().rules {
        for r in &rule.readings {
            if r.expect == Expectation::None {
                continue;
            }
            let condition = r
                .fails_as
                .as_deref()
                .unwrap_or_else(|| panic!("{} {}: no fails_as", rule.code, r.name));
            let class = rule
                .classification_mappings
                .get(condition)
                .unwrap_or_else(|| panic!("{} {}: unknown {condition}", rule.code, r.name));
            assert_ne!(
                *class,
                Classification::Compliant,
                "{} {}: fails as the compliant {condition}",
                rule.code,
                r.name
            );
        }
    }
}

#[test]
fn every_critical_mapping_has_a_rationale() {
    for rule in &library().rules {
        for (condition, class) in &rule.classification_mappings {
            if *class == Classification::CriticalDefect {
                let why = rule.rationale.get(condition).map(|s| s.trim());
                assert!(
                    why.is_some_and(|w| w.len() >= 40),
                    "{} {condition}: critical without a rationale",
                    rule.code
                );
            }
        }
    }
}

#[test]
fn a_condition_has_one_classification_across_the_library() {
    let mut seen: BTreeMap<&str, (Classification, &str)> = BTreeMap::new();
    for rule in &library().rules {
        for (condition, class) in &rule.classification_mappings {
            let (first, in_rule) = *seen
                .entry(condition.as_str())
                .or_insert((*class, rule.code.as_str()));
            assert_eq!(
                first, *class,
                "{condition} is {first} in {in_rule} but {class} in {}",
                rule.code
            );
        }
    }
}

#[test]
fn design_keys_are_snake_case_with_one_unit_each() {
    let mut units: BTreeMap<&str, (&str, &str)> = BTreeMap::new();
    for rule in &library().rules {
        for r in &rule.readings {
            if let Expectation::Design { key, .. } = &r.expect {
                assert!(
                    valid_key(key) && !key.starts_with('_') && !key.ends_with('_'),
                    "{} {}: design key '{key}' is not snake_case",
                    rule.code,
                    r.name
                );
                assert!(!key.contains("__"), "{key}");
                assert_eq!(r.kind, ReadingKind::Number, "{} {}", rule.code, r.name);
                let (unit, first) = *units
                    .entry(key.as_str())
                    .or_insert((r.unit.as_str(), rule.code.as_str()));
                assert_eq!(
                    unit, r.unit,
                    "design key {key} is in {unit} in {first} but {} in {} {}",
                    r.unit, rule.code, r.name
                );
            }
        }
    }
    assert!(units.contains_key("required_test_pressure"));
}

#[test]
fn baseline_readings_have_a_missing_baseline_condition() {
    for rule in &library().rules {
        let uses_baseline = rule
            .readings
            .iter()
            .any(|r| matches!(r.expect, Expectation::Baseline { .. }));
        if uses_baseline {
            assert_eq!(
                rule.classification_mappings.get("baseline_data_missing"),
                Some(&Classification::NonConformance),
                "{}",
                rule.code
            );
        }
    }
}

#[test]
fn not_in_automatic_is_classified_alike_for_pumps_and_fire_fans() {
    assert_eq!(
        class_of("AS1851-3-1M-PMP", "pump_controller_not_in_automatic"),
        Classification::CriticalDefect
    );
    assert_eq!(
        class_of("AS1851-13-6M-SMC", "fire_fan_control_panel_not_in_auto"),
        Classification::CriticalDefect
    );
    // Both are recorded through a yes/no reading that suggests them.
    for (code, reading, condition) in [
        (
            "AS1851-3-1M-PMP",
            "controller_in_automatic",
            "pump_controller_not_in_automatic",
        ),
        (
            "AS1851-13-6M-SMC",
            "ffcp_switches_in_auto",
            "fire_fan_control_panel_not_in_auto",
        ),
    ] {
        let r = rule(code)
            .readings
            .iter()
            .find(|r| r.name == reading)
            .unwrap();
        assert_eq!(r.kind, ReadingKind::YesNo);
        assert_eq!(r.fails_as.as_deref(), Some(condition));
    }
}

#[test]
fn a_door_that_does_not_close_is_critical_whatever_the_cause_or_interval() {
    for code in ["AS1851-12-6M-FD", "AS1851-12-12M-FD"] {
        for condition in [
            "door_closer_removed_or_disconnected",
            "door_fails_to_self_close",
            "door_leaf_or_frame_breached",
        ] {
            assert_eq!(
                class_of(code, condition),
                Classification::CriticalDefect,
                "{code} {condition}"
            );
        }
        // Closing but not latching stays an impairment.
        assert_eq!(
            class_of(code, "door_fails_to_latch"),
            Classification::NonCriticalDefect
        );
    }
    assert_eq!(
        class_of("AS1851-12-6M-FD", "hold_open_device_fails_to_release"),
        Classification::CriticalDefect
    );
    for code in ["AS1851-12-6M-SD", "AS1851-12-12M-SD", "AS1851-12-3M-SFD"] {
        assert_eq!(
            class_of(code, "door_fails_to_close"),
            Classification::CriticalDefect,
            "{code}"
        );
    }
}

#[test]
fn context_dependent_single_item_faults_are_not_critical_by_default() {
    for (code, condition) in CONTEXT_DEPENDENT {
        assert_eq!(
            class_of(code, condition),
            Classification::NonCriticalDefect,
            "{code} {condition}"
        );
        let why = rule(code)
            .rationale
            .get(*condition)
            .unwrap_or_else(|| panic!("{code} {condition}: no rationale"));
        assert!(
            why.contains("severity override"),
            "{code} {condition}: the rationale should say how it is raised to critical"
        );
    }
    // Wherever else these conditions appear, they are not critical either.
    let names: BTreeSet<&str> = CONTEXT_DEPENDENT.iter().map(|(_, c)| *c).collect();
    for rule in &library().rules {
        for (condition, class) in &rule.classification_mappings {
            if names.contains(condition.as_str()) {
                assert_ne!(
                    *class,
                    Classification::CriticalDefect,
                    "{} {condition}",
                    rule.code
                );
            }
        }
    }
}

/// Every equipment kind is, in every edition of AS 1851 and of AS/NZS 2293.2, either serviced
/// by routines of that edition or declared `not_covered` with the reason — never silently
/// left without rules. AS 1851 editions leave emergency lighting and exit signs to AS/NZS
/// 2293.2, whose editions cover exactly those.
#[test]
fn every_kind_is_covered_or_declared_in_every_edition() {
    let lib = library();
    for rs in &lib.rule_sets {
        let edition = RuleSetRef::new(&rs.code, &rs.version);
        let declared = lib.not_covered.get(&edition).cloned().unwrap_or_default();
        let covered: BTreeSet<&str> = edition_rules((&rs.code, &rs.version))
            .iter()
            .map(|r| r.equipment.as_str())
            .collect();
        for kind in &lib.equipment {
            let in_2293 = kind.section == "2293.2";
            if rs.code == "AS2293.2" {
                assert_eq!(
                    covered.contains(kind.kind.as_str()),
                    in_2293,
                    "{} {}: {}",
                    rs.code,
                    rs.version,
                    kind.kind
                );
                continue;
            }
            if in_2293 {
                // Another standard's kinds: never AS 1851's.
                assert!(
                    !covered.contains(kind.kind.as_str()),
                    "{} {}: {}",
                    rs.code,
                    rs.version,
                    kind.kind
                );
                continue;
            }
            assert!(
                covered.contains(kind.kind.as_str()) != declared.contains_key(&kind.kind),
                "{} {}: {} is neither covered nor declared not covered (or both)",
                rs.code,
                rs.version,
                kind.kind
            );
        }
    }
}

/// What AS 1851-2005 does not cover, and why: kinds that stayed under Parts of their own until
/// AS 1851-2012 took them in (wheeled extinguishers AS/NZS 1851.13:1995, aerosol systems
/// AS/NZS 1851.16:1997), kinds for which the library found no 2005 routine and invents none,
/// and the AS/NZS 2293.2 kinds. Everything else has its 2005 routines.
#[test]
fn as1851_2005_covers_every_kind_of_the_edition() {
    let lib = library();
    let declared: BTreeSet<&str> = lib.not_covered[&RuleSetRef::new("AS1851", "2005.1.0")]
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        declared,
        BTreeSet::from([
            "aerosol_suppression_system",
            "heat_alarm",
            "smoke_alarm",
            "water_mist_system",
            "wheeled_extinguisher",
        ])
    );
    let rules = edition_rules(AS1851_2005);
    let by_kind = |kind: &str| -> BTreeSet<&str> {
        rules
            .iter()
            .filter(|r| r.equipment == kind)
            .map(|r| r.frequency.as_str())
            .collect()
    };
    // The systems the brief of the edition names, with the frequencies the library gives them.
    for (kind, frequencies) in [
        (
            "sprinkler_system",
            &["weekly", "six_monthly", "yearly", "five_yearly"][..],
        ),
        ("fire_pumpset", &["weekly", "six_monthly", "yearly"]),
        ("diesel_fire_pumpset", &["weekly", "yearly"]),
        ("electric_fire_pumpset", &["weekly", "yearly"]),
        (
            "fire_hydrant_system",
            &["six_monthly", "yearly", "five_yearly"],
        ),
        (
            "fire_detection_alarm",
            &["monthly", "six_monthly", "yearly", "five_yearly"],
        ),
        ("fire_indicator_panel", &["monthly", "yearly"]),
        ("emergency_warning_system", &["six_monthly", "yearly"]),
        ("fire_hose_reel", &["six_monthly", "yearly"]),
        (
            "portable_extinguisher",
            &["six_monthly", "yearly", "five_yearly"],
        ),
        ("fire_blanket", &["six_monthly"]),
        ("fire_door", &["six_monthly"]),
        ("smoke_door", &["six_monthly"]),
        ("sliding_fire_door", &["three_monthly"]),
        ("smoke_control_mechanical", &["six_monthly", "yearly"]),
        ("gaseous_suppression_system", &["six_monthly", "yearly"]),
        ("foam_suppression_system", &["six_monthly", "yearly"]),
        ("emergency_plan", &["yearly"]),
    ] {
        assert_eq!(
            by_kind(kind),
            frequencies.iter().copied().collect::<BTreeSet<_>>(),
            "{kind}"
        );
    }
    for rule in &rules {
        // The 2005 schedule tables stop at five-yearly; ten-, twenty-five- and thirty-yearly
        // items are AS 1851-2012's.
        assert!(
            [
                "weekly",
                "monthly",
                "three_monthly",
                "six_monthly",
                "yearly",
                "five_yearly"
            ]
            .contains(&rule.frequency.as_str()),
            "{}: {}",
            rule.code,
            rule.frequency
        );
        // The yearly door cycle is an AS 1851-2012 alternative; the 2005 edition has none.
        assert!(rule.alternative_to.is_none(), "{}", rule.code);
        assert_eq!(rule.standard, "AS 1851-2005", "{}", rule.code);
        assert!(rule.code.starts_with("AS1851-2005-"), "{}", rule.code);
        // A clause names the 2005 section by number only where that number is confirmed,
        // otherwise by subject, saying so.
        assert!(
            rule.clause.starts_with("AS 1851-2005 Section")
                || rule.clause.contains("(number not confirmed here)"),
            "{}: {}",
            rule.code,
            rule.clause
        );
        assert!(
            !rule.clause.contains("Table") && !rule.clause.contains("Cl."),
            "{}: a 2005 clause cites no table or clause number it cannot vouch for",
            rule.code
        );
        assert!(rule.name.ends_with("(AS 1851-2005)"), "{}", rule.code);
    }
}

/// A kind serviced under both AS 1851 editions keeps the severity of what it shares: every
/// condition a 2005 routine and a 2012 routine of the same kind both know is classified alike
/// (the library-wide rule, checked here per kind so a failure names both rules), and every
/// critical condition of a 2012 routine is known to the 2005 routine of the kind at the same
/// interval (the weekly one standing for the 2012 monthly), so no way for the system to be
/// inoperative is lost by pinning the older edition.
#[test]
fn the_2005_routines_classify_like_the_2012_ones() {
    let r2012 = edition_rules(("AS1851", "2012.1.0"));
    let r2005 = edition_rules(AS1851_2005);
    let kinds: BTreeSet<&str> = r2005.iter().map(|r| r.equipment.as_str()).collect();
    for kind in kinds {
        let old: Vec<&&RuleDef> = r2005.iter().filter(|r| r.equipment == kind).collect();
        let new: Vec<&&RuleDef> = r2012.iter().filter(|r| r.equipment == kind).collect();
        for n in &new {
            for (condition, class) in &n.classification_mappings {
                for o in &old {
                    if let Some(c) = o.classification_mappings.get(condition) {
                        assert_eq!(c, class, "{} vs {} {condition}", o.code, n.code);
                    }
                }
                let counterpart = |o: &&&RuleDef| {
                    o.frequency == n.frequency
                        || (n.frequency == "monthly" && o.frequency == "weekly")
                };
                if *class == Classification::CriticalDefect && old.iter().any(counterpart) {
                    assert!(
                        old.iter()
                            .filter(|o| counterpart(o))
                            .any(|o| o.classification_mappings.contains_key(condition)),
                        "{kind}: critical {condition} of {} unknown to every 2005 routine",
                        n.code
                    );
                }
            }
        }
    }
}
