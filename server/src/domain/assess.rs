//! Assessing one item of a session: its readings against the rule, its observed conditions
//! against the rule's classification, whether outcome and conditions agree, what the readings
//! suggest, and the findings that become defects.
//!
//! - Each observed condition is classified by the rule (exact match, then trimmed and
//!   case-insensitive). Two conditions are the server's own, valid under every rule: a reading
//!   that needs baseline data the asset does not have records `baseline_data_missing`, one that
//!   needs a design or manufacturer value records `design_data_missing` — both non-conformances
//!   (missing information needed for ongoing service, AS 1851 cl. 1.5.6 and Amendment 1).
//! - Findings (future defects) come from recorded results only (`pass` or `fail`): every
//!   condition that is not compliant, each on its own; a `fail` with no such condition is one
//!   finding with no condition, a non-critical defect.
//! - A `pass` with a defect condition, or a `fail` whose conditions are all compliant,
//!   contradicts itself: REST refuses it; in a tablet's document it is reported as a problem and
//!   its findings are still kept (a recorded fault is never dropped silently).
//! - Readings outside their expectation suggest `fail` with their `fails_as` conditions; all
//!   evaluated readings within suggest `pass`. The inspector's outcome decides; one that differs
//!   from the suggestion is an override, shown as such.

use std::collections::BTreeMap;

use firemode_sync_core::Outcome;
use serde::Serialize;
use utoipa::ToSchema;

use super::readings::{Evaluation, ReadingSpec, ReadingValue, RefKind, Verdict};
use crate::rules::Classification;

/// The server's condition for a reading whose baseline data is not recorded.
pub const BASELINE_MISSING: &str = "baseline_data_missing";
/// The server's condition for a reading whose design or manufacturer value is not recorded.
pub const DESIGN_MISSING: &str = "design_data_missing";
/// The server's condition for a failure recorded without a defect condition (so that it, too,
/// is one defect per asset that later visits reconfirm).
pub const FAILED_UNSPECIFIED: &str = "failed_condition_not_recorded";

/// A rule as assessment needs it.
#[derive(Debug, Clone, Default)]
pub struct RuleView {
    pub code: String,
    pub version: String,
    pub name: String,
    pub mappings: BTreeMap<String, Classification>,
    pub readings: Vec<ReadingSpec>,
}

impl RuleView {
    /// The spec of a reading by name.
    pub fn reading(&self, name: &str) -> Option<&ReadingSpec> {
        self.readings.iter().find(|r| r.name == name)
    }

    /// Classify an observed condition: the rule's mapping (exact, then trimmed and
    /// case-insensitive), or one of the server's own conditions. Returns the canonical name.
    pub fn classify<'a>(&'a self, condition: &str) -> Option<(&'a str, Classification)> {
        if let Some((k, v)) = self.mappings.get_key_value(condition) {
            return Some((k.as_str(), *v));
        }
        let wanted = condition.trim();
        if let Some((k, v)) = self
            .mappings
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(wanted))
        {
            return Some((k.as_str(), *v));
        }
        [BASELINE_MISSING, DESIGN_MISSING]
            .into_iter()
            .find(|k| k.eq_ignore_ascii_case(wanted))
            .map(|k| (k, Classification::NonConformance))
            .or_else(|| {
                FAILED_UNSPECIFIED
                    .eq_ignore_ascii_case(wanted)
                    .then_some((FAILED_UNSPECIFIED, Classification::NonCriticalDefect))
            })
    }

    /// The rule's observed conditions, sorted, then the server's own.
    pub fn known_conditions(&self) -> Vec<&str> {
        self.mappings
            .keys()
            .map(String::as_str)
            .chain([BASELINE_MISSING, DESIGN_MISSING, FAILED_UNSPECIFIED])
            .collect()
    }
}

/// What was recorded for an item.
#[derive(Debug, Clone, Copy)]
pub struct ItemFacts<'a> {
    pub outcome: Option<Outcome>,
    pub conditions: &'a [String],
    pub readings: &'a BTreeMap<String, ReadingValue>,
}

/// One finding of an item: a future defect, identified by its condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Finding {
    /// The observed condition ([`FAILED_UNSPECIFIED`] for a failure recorded without one).
    pub condition: Option<String>,
    pub classification: Classification,
}

/// A reading as assessed.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ReadingAssessment {
    #[schema(value_type = Object)]
    pub value: ReadingValue,
    #[serde(flatten)]
    pub evaluation: Evaluation,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub unit: String,
}

/// Something wrong with an item, at a field relative to the item (`outcome`,
/// `observedConditions/1`, `readings/name`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ItemProblem {
    pub field: String,
    pub message: String,
}

/// The assessment of one item.
#[derive(Debug, Clone, PartialEq, Default, Serialize, ToSchema)]
pub struct Assessment {
    /// The worst classification of the findings; `compliant` for a pass without any.
    pub classification: Option<Classification>,
    /// The conditions as the rule names them, in the order recorded (unknown ones dropped).
    pub conditions: Vec<String>,
    pub findings: Vec<Finding>,
    /// Each recorded reading with its verdict.
    pub readings: BTreeMap<String, ReadingAssessment>,
    /// What the readings suggest (`pass` or `fail`), when they suggest anything.
    #[schema(value_type = Option<String>)]
    pub suggested_outcome: Option<Outcome>,
    /// Conditions suggested by readings outside their expectation.
    pub suggested_conditions: Vec<String>,
    /// The recorded outcome differs from the suggestion.
    pub overrides_suggestion: bool,
    /// Outcome and conditions disagree (REST refuses this; tablets get it flagged).
    pub contradiction: Option<String>,
    #[serde(skip)]
    pub problems: Vec<ItemProblem>,
}

/// Assess an item under its rule (`None`: the rule is unknown, nothing can be classified).
/// `reference` finds the asset's baseline or design value of a key.
pub fn assess(
    rule: Option<&RuleView>,
    item: ItemFacts<'_>,
    reference: impl Fn(RefKind, &str) -> Option<f64>,
) -> Assessment {
    let mut a = Assessment::default();
    let Some(rule) = rule else {
        a.classification = (item.outcome == Some(Outcome::Pass) && item.conditions.is_empty())
            .then_some(Classification::Compliant);
        return a;
    };
    let mut missing: Vec<&'static str> = Vec::new();
    for (name, value) in item.readings {
        let Some(spec) = rule.reading(name) else {
            a.problems.push(ItemProblem {
                field: format!("readings/{name}"),
                message: format!("'{name}' is not a reading of rule {}", rule.code),
            });
            continue;
        };
        let value = match spec.accept(value) {
            Ok(v) => v,
            Err(why) => {
                a.problems.push(ItemProblem {
                    field: format!("readings/{name}"),
                    message: format!("'{name}' {why}"),
                });
                continue;
            }
        };
        let evaluation = spec.evaluate(&value, &reference);
        match evaluation.verdict {
            Verdict::Outside => {
                if let Some(c) = &spec.fails_as {
                    if !a.suggested_conditions.contains(c) {
                        a.suggested_conditions.push(c.clone());
                    }
                }
            }
            Verdict::NoBaseline if !missing.contains(&BASELINE_MISSING) => {
                missing.push(BASELINE_MISSING)
            }
            Verdict::NoDesignValue if !missing.contains(&DESIGN_MISSING) => {
                missing.push(DESIGN_MISSING)
            }
            _ => {}
        }
        a.readings.insert(
            name.clone(),
            ReadingAssessment {
                value,
                evaluation,
                unit: spec.unit.clone(),
            },
        );
    }
    let verdicts: Vec<Verdict> = a.readings.values().map(|r| r.evaluation.verdict).collect();
    a.suggested_outcome = if verdicts.contains(&Verdict::Outside) {
        Some(Outcome::Fail)
    } else if verdicts.contains(&Verdict::Within) {
        Some(Outcome::Pass)
    } else {
        None
    };

    let mut classified: Vec<(String, Classification)> = Vec::new();
    for (i, c) in item.conditions.iter().enumerate() {
        match rule.classify(c) {
            Some((name, class)) => {
                if !classified.iter().any(|(n, _)| n == name) {
                    classified.push((name.to_owned(), class));
                }
            }
            None => a.problems.push(ItemProblem {
                field: format!("observedConditions/{i}"),
                message: format!(
                    "'{}' is not an observed condition of rule {}",
                    c.chars().take(100).collect::<String>(),
                    rule.code
                ),
            }),
        }
    }
    a.conditions = classified.iter().map(|(n, _)| n.clone()).collect();
    let faults: Vec<&(String, Classification)> = classified
        .iter()
        .filter(|(_, c)| *c != Classification::Compliant)
        .collect();
    let recorded = matches!(item.outcome, Some(Outcome::Pass | Outcome::Fail));
    match item.outcome {
        Some(Outcome::Pass) if !faults.is_empty() => {
            a.contradiction = Some(format!(
                "outcome pass contradicts observed condition '{}' ({})",
                faults[0].0, faults[0].1
            ));
        }
        Some(Outcome::Fail) if faults.is_empty() && !classified.is_empty() => {
            a.contradiction = Some(format!(
                "outcome fail contradicts observed condition '{}' (compliant)",
                classified[0].0
            ));
        }
        _ => {}
    }
    if let Some(message) = &a.contradiction {
        a.problems.push(ItemProblem {
            field: "outcome".into(),
            message: message.clone(),
        });
    }
    if recorded {
        for (name, class) in &faults {
            a.findings.push(Finding {
                condition: Some(name.clone()),
                classification: *class,
            });
        }
        if item.outcome == Some(Outcome::Fail) && faults.is_empty() {
            a.findings.push(Finding {
                condition: Some(FAILED_UNSPECIFIED.to_owned()),
                classification: Classification::NonCriticalDefect,
            });
        }
        for m in missing {
            if !a.findings.iter().any(|f| f.condition.as_deref() == Some(m)) {
                a.findings.push(Finding {
                    condition: Some(m.to_owned()),
                    classification: Classification::NonConformance,
                });
            }
        }
        a.overrides_suggestion = a.suggested_outcome.is_some_and(|s| Some(s) != item.outcome);
    }
    // `Classification`'s order puts the worst first.
    a.classification = a
        .findings
        .iter()
        .map(|f| f.classification)
        .min()
        .or((item.outcome == Some(Outcome::Pass)).then_some(Classification::Compliant));
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> RuleView {
        RuleView {
            code: "R".into(),
            version: "1.0.0".into(),
            name: "Rule".into(),
            mappings: [
                ("serviceable", Classification::Compliant),
                ("pressure_low", Classification::NonCriticalDefect),
                ("valve_closed", Classification::CriticalDefect),
                ("label_missing", Classification::NonConformance),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
            readings: serde_json::from_str(
                r#"[{"name":"pressure","kind":"number","unit":"kPa","expect":{"type":"baseline","op":">=","tolerance":10,"tolerance_unit":"percent"},"fails_as":"pressure_low"},
                    {"name":"valve_secured","kind":"yes_no","expect":{"type":"equals","value":true},"fails_as":"valve_closed"},
                    {"name":"remark","kind":"text"}]"#,
            )
            .unwrap(),
        }
    }

    fn readings(pairs: &[(&str, ReadingValue)]) -> BTreeMap<String, ReadingValue> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    fn baseline(_: RefKind, key: &str) -> Option<f64> {
        (key == "pressure").then_some(500.0)
    }

    #[test]
    fn several_conditions_each_become_a_finding_and_the_worst_classifies() {
        let r = rule();
        let conditions = vec!["pressure_low".to_string(), "Valve_Closed ".to_string()];
        let a = assess(
            Some(&r),
            ItemFacts {
                outcome: Some(Outcome::Fail),
                conditions: &conditions,
                readings: &BTreeMap::new(),
            },
            baseline,
        );
        assert_eq!(a.classification, Some(Classification::CriticalDefect));
        assert_eq!(a.conditions, vec!["pressure_low", "valve_closed"]);
        assert_eq!(a.findings.len(), 2);
        assert!(a.contradiction.is_none());
    }

    #[test]
    fn contradictions_are_reported_and_faults_kept() {
        let r = rule();
        let fault = vec!["valve_closed".to_string()];
        let a = assess(
            Some(&r),
            ItemFacts {
                outcome: Some(Outcome::Pass),
                conditions: &fault,
                readings: &BTreeMap::new(),
            },
            baseline,
        );
        assert!(a.contradiction.as_deref().unwrap().contains("valve_closed"));
        assert_eq!(a.findings.len(), 1, "the recorded fault is not dropped");
        let fine = vec!["serviceable".to_string()];
        let a = assess(
            Some(&r),
            ItemFacts {
                outcome: Some(Outcome::Fail),
                conditions: &fine,
                readings: &BTreeMap::new(),
            },
            baseline,
        );
        assert!(a.contradiction.is_some());
        assert_eq!(
            a.findings,
            vec![Finding {
                condition: Some(FAILED_UNSPECIFIED.into()),
                classification: Classification::NonCriticalDefect
            }]
        );
    }

    #[test]
    fn readings_suggest_and_missing_baselines_are_non_conformances() {
        let r = rule();
        let rd = readings(&[
            ("pressure", ReadingValue::Number(400.0)),
            ("valve_secured", ReadingValue::Text("yes".into())),
        ]);
        let a = assess(
            Some(&r),
            ItemFacts {
                outcome: Some(Outcome::Pass),
                conditions: &[],
                readings: &rd,
            },
            baseline,
        );
        assert_eq!(a.suggested_outcome, Some(Outcome::Fail));
        assert_eq!(a.suggested_conditions, vec!["pressure_low"]);
        assert!(a.overrides_suggestion);
        assert_eq!(a.readings["pressure"].evaluation.verdict, Verdict::Outside);
        assert_eq!(a.readings["valve_secured"].value, ReadingValue::Bool(true));
        assert_eq!(a.classification, Some(Classification::Compliant));

        let a = assess(
            Some(&r),
            ItemFacts {
                outcome: Some(Outcome::Pass),
                conditions: &[],
                readings: &rd,
            },
            |_, _| None,
        );
        assert_eq!(
            a.readings["pressure"].evaluation.verdict,
            Verdict::NoBaseline
        );
        assert_eq!(a.suggested_outcome, Some(Outcome::Pass));
        assert_eq!(
            a.findings,
            vec![Finding {
                condition: Some(BASELINE_MISSING.into()),
                classification: Classification::NonConformance
            }]
        );
        assert_eq!(a.classification, Some(Classification::NonConformance));
    }

    #[test]
    fn bad_readings_and_unknown_conditions_are_problems() {
        let r = rule();
        let rd = readings(&[
            ("pressure", ReadingValue::Text("high".into())),
            ("colour", ReadingValue::Number(1.0)),
        ]);
        let odd = vec!["on_fire".to_string()];
        let a = assess(
            Some(&r),
            ItemFacts {
                outcome: Some(Outcome::NotTested),
                conditions: &odd,
                readings: &rd,
            },
            baseline,
        );
        let fields: Vec<&str> = a.problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "readings/colour",
                "readings/pressure",
                "observedConditions/0"
            ]
        );
        assert!(a.findings.is_empty() && a.classification.is_none());
    }
}
