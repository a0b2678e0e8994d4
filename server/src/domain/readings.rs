//! Typed readings: what a rule's reading is (its kind) and what it should be (its expectation),
//! checking a recorded value against both, and evaluating it against constants, the asset's
//! baseline or its design / manufacturer values.
//!
//! A rule's reading in the library (and in `POST /v1/rules`):
//! ```json
//! { "name": "alarm_signal_time", "kind": "number", "unit": "s", "decimals": 0,
//!   "expect": { "type": "compare", "op": "<=", "value": 30 },
//!   "fails_as": "brigade_alarm_signal_not_transmitted" }
//! ```
//! Kinds: `number` (unit, decimals), `yes_no`, `choice` (`choices`), `text`. Expectations
//! (`expect.type`): `none`, `compare` (`op` one of `<`, `<=`, `=`, `>=`, `>` and `value`),
//! `range` (`min`, `max`, inclusive), `equals` (`value`: `true`/`false` for yes/no, a choice),
//! `one_of` (`values`: acceptable choices), `baseline` and `design` (`op` `within`, `>=` or
//! `<=` against the asset's stored value under `key` — the reading's name when absent for a
//! baseline — with a `tolerance` in `tolerance_unit` `absolute` or `percent`). `fails_as`
//! names the observed condition suggested when the reading falls outside.
//!
//! Rules stored before readings had kinds carry `{name, unit, expected}` with a free-text
//! `expected`; those are read with a kind and expectation inferred from the text (a "yes"
//! becomes a yes/no reading expecting yes, "<= 30" a comparison, anything unrecognised a
//! reading that is recorded but not evaluated).

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use firemode_sync_core::ReadingValue;

/// Longest text reading, in characters.
pub const MAX_TEXT_READING: usize = 500;
/// Largest magnitude a number reading may have (keeps values exact in JSON and databases).
pub const MAX_NUMBER_READING: f64 = 1e12;

/// What kind of value a reading holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReadingKind {
    /// A measured number in `unit`.
    Number,
    /// Yes or no (`true`/`false`; `"yes"`/`"no"` accepted).
    YesNo,
    /// One of the reading's `choices`.
    Choice,
    /// Free text (at most 500 characters).
    Text,
}

impl ReadingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Number => "number",
            Self::YesNo => "yes_no",
            Self::Choice => "choice",
            Self::Text => "text",
        }
    }
}

/// A comparison with a constant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum CompareOp {
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = "=")]
    Eq,
    #[serde(rename = ">=")]
    Ge,
    #[serde(rename = ">")]
    Gt,
}

impl CompareOp {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Lt => "<",
            Self::Le => "<=",
            Self::Eq => "=",
            Self::Ge => ">=",
            Self::Gt => ">",
        }
    }

    fn holds(self, x: f64, y: f64) -> bool {
        match self {
            Self::Lt => x < y,
            Self::Le => x <= y,
            Self::Eq => x == y,
            Self::Ge => x >= y,
            Self::Gt => x > y,
        }
    }
}

/// How a reading relates to a stored reference value (baseline or design value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum RefOp {
    /// Within the tolerance either side.
    #[serde(rename = "within", alias = "=")]
    Within,
    /// At least the reference, less the tolerance.
    #[serde(rename = ">=")]
    AtLeast,
    /// At most the reference, plus the tolerance.
    #[serde(rename = "<=")]
    AtMost,
}

impl RefOp {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Within => "within",
            Self::AtLeast => ">=",
            Self::AtMost => "<=",
        }
    }
}

/// The unit of a tolerance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ToleranceUnit {
    /// In the reading's own unit.
    #[default]
    Absolute,
    /// Percent of the reference value.
    Percent,
}

/// A reference value kind: where `baseline` and `design` expectations look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefKind {
    /// Recorded at commissioning or a first service.
    Baseline,
    /// From design documents or the manufacturer.
    Design,
}

impl RefKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Baseline => "baseline",
            Self::Design => "design",
        }
    }
}

/// A value an `equals` expectation wants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Expected {
    Bool(bool),
    Number(f64),
    Text(String),
}

/// What a reading should be.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Expectation {
    /// Recorded, not evaluated.
    #[default]
    None,
    /// `reading <op> value`.
    Compare { op: CompareOp, value: f64 },
    /// `min <= reading <= max`.
    Range { min: f64, max: f64 },
    /// Exactly this value (yes/no, a choice, or a number).
    Equals { value: Expected },
    /// One of these choices.
    OneOf { values: Vec<String> },
    /// Against the asset's baseline under `key` (default: the reading's name).
    Baseline {
        #[serde(default = "within")]
        op: RefOp,
        #[serde(default)]
        tolerance: f64,
        #[serde(default)]
        tolerance_unit: ToleranceUnit,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
    },
    /// Against the asset's design or manufacturer value under `key`.
    Design {
        key: String,
        #[serde(default = "within")]
        op: RefOp,
        #[serde(default)]
        tolerance: f64,
        #[serde(default)]
        tolerance_unit: ToleranceUnit,
    },
}

fn within() -> RefOp {
    RefOp::Within
}

impl Expectation {
    /// The stored reference this expectation needs, as (kind, key).
    pub fn reference<'a>(&'a self, reading: &'a str) -> Option<(RefKind, &'a str)> {
        match self {
            Self::Baseline { key, .. } => {
                Some((RefKind::Baseline, key.as_deref().unwrap_or(reading)))
            }
            Self::Design { key, .. } => Some((RefKind::Design, key.as_str())),
            _ => None,
        }
    }
}

/// One reading of a rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "ReadingWire")]
pub struct ReadingSpec {
    pub name: String,
    pub kind: ReadingKind,
    /// Unit of a number reading (`kPa`, `s`, `count`; empty when it has none).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub unit: String,
    /// Decimal places a number reading is recorded with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decimals: Option<u8>,
    /// The values a choice reading may take.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub choices: Vec<String>,
    #[serde(default)]
    pub expect: Expectation,
    /// The observed condition (of the same rule) suggested when the reading falls outside.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fails_as: Option<String>,
}

/// A reading as written: the current form, or the older `{name, unit, expected}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadingWire {
    name: String,
    kind: Option<ReadingKind>,
    #[serde(default)]
    unit: String,
    #[serde(default)]
    decimals: Option<u8>,
    #[serde(default)]
    choices: Vec<String>,
    expect: Option<Expectation>,
    fails_as: Option<String>,
    /// The older free-text expectation.
    expected: Option<String>,
}

impl TryFrom<ReadingWire> for ReadingSpec {
    type Error = String;

    fn try_from(w: ReadingWire) -> Result<Self, String> {
        let (kind, expect) = match (w.kind, w.expect, w.expected.as_deref()) {
            (Some(_), _, Some(_)) | (None, Some(_), Some(_)) => {
                return Err(format!(
                    "reading '{}': give kind and expect, or the older expected, not both",
                    w.name
                ))
            }
            (Some(kind), expect, None) => (kind, expect.unwrap_or_default()),
            (None, Some(expect), None) => (kind_of(&expect, &w.choices, &w.unit), expect),
            (None, None, Some(expected)) => infer_legacy(expected, &w.unit),
            (None, None, None) => {
                return Err(format!("reading '{}' needs a kind", w.name));
            }
        };
        Ok(Self {
            name: w.name,
            kind,
            unit: w.unit,
            decimals: w.decimals,
            choices: w.choices,
            expect,
            fails_as: w.fails_as,
        })
    }
}

/// The kind an expectation implies when a reading does not say.
fn kind_of(expect: &Expectation, choices: &[String], unit: &str) -> ReadingKind {
    match expect {
        Expectation::Equals {
            value: Expected::Bool(_),
        } => ReadingKind::YesNo,
        Expectation::OneOf { .. }
        | Expectation::Equals {
            value: Expected::Text(_),
        } => ReadingKind::Choice,
        Expectation::None if !choices.is_empty() => ReadingKind::Choice,
        Expectation::None if unit.is_empty() => ReadingKind::Text,
        _ => ReadingKind::Number,
    }
}

/// A kind and expectation from the older free-text `expected`.
fn infer_legacy(expected: &str, unit: &str) -> (ReadingKind, Expectation) {
    let e = expected.trim();
    let lower = e.to_ascii_lowercase();
    match lower.as_str() {
        "yes" | "true" => {
            return (
                ReadingKind::YesNo,
                Expectation::Equals {
                    value: Expected::Bool(true),
                },
            )
        }
        "no" | "false" => {
            return (
                ReadingKind::YesNo,
                Expectation::Equals {
                    value: Expected::Bool(false),
                },
            )
        }
        _ => {}
    }
    let ops = [
        ("<=", CompareOp::Le),
        (">=", CompareOp::Ge),
        ("<", CompareOp::Lt),
        (">", CompareOp::Gt),
        ("=", CompareOp::Eq),
    ];
    let (op, rest) = ops
        .iter()
        .find_map(|(p, op)| lower.strip_prefix(p).map(|r| (*op, r.trim())))
        .unwrap_or((CompareOp::Eq, lower.as_str()));
    if let Ok(value) = rest.parse::<f64>() {
        if value.is_finite() {
            return (ReadingKind::Number, Expectation::Compare { op, value });
        }
    }
    if let Some((a, b)) = rest.split_once(" to ") {
        if let (Ok(min), Ok(max)) = (a.trim().parse::<f64>(), b.trim().parse::<f64>()) {
            if min.is_finite() && max.is_finite() && min <= max {
                return (ReadingKind::Number, Expectation::Range { min, max });
            }
        }
    }
    if rest.contains("baseline") {
        let op = match op {
            CompareOp::Ge | CompareOp::Gt => RefOp::AtLeast,
            CompareOp::Le | CompareOp::Lt => RefOp::AtMost,
            CompareOp::Eq => RefOp::Within,
        };
        return (
            ReadingKind::Number,
            Expectation::Baseline {
                op,
                tolerance: 0.0,
                tolerance_unit: ToleranceUnit::Absolute,
                key: None,
            },
        );
    }
    let kind = if unit.is_empty() {
        ReadingKind::Text
    } else {
        ReadingKind::Number
    };
    (kind, Expectation::None)
}

/// Why a reading definition is invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError(pub String);

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A reading name or reference key: 1-100 of `a-z`, `0-9`, `_`.
pub fn valid_key(name: &str) -> bool {
    (1..=100).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn finite(what: &str, x: f64) -> Result<(), SpecError> {
    if x.is_finite() && x.abs() <= MAX_NUMBER_READING {
        Ok(())
    } else {
        Err(SpecError(format!("{what} must be a finite number")))
    }
}

impl ReadingSpec {
    /// Check the definition; `conditions` are the rule's observed conditions (for `fails_as`).
    pub fn validate<'a>(
        &self,
        mut conditions: impl Iterator<Item = &'a str>,
    ) -> Result<(), SpecError> {
        let name = &self.name;
        if !valid_key(name) {
            return Err(SpecError(format!(
                "reading name '{name}' must be 1-100 characters of a-z, 0-9 and _"
            )));
        }
        if self.unit.chars().count() > 50 || self.unit.chars().any(char::is_control) {
            return Err(SpecError(format!(
                "reading '{name}': unit must be at most 50 characters"
            )));
        }
        let kind_err = |what: &str| {
            Err(SpecError(format!(
                "reading '{name}' of kind {}: {what}",
                self.kind.as_str()
            )))
        };
        if self.kind != ReadingKind::Number && (self.decimals.is_some() || !self.unit.is_empty()) {
            return kind_err("only number readings have a unit or decimals");
        }
        if self.decimals.is_some_and(|d| d > 6) {
            return kind_err("decimals must be 0-6");
        }
        match self.kind {
            ReadingKind::Choice => {
                if !(2..=50).contains(&self.choices.len()) {
                    return kind_err("needs 2-50 choices");
                }
                let mut seen = std::collections::BTreeSet::new();
                for c in &self.choices {
                    if !valid_key(c) || !seen.insert(c.as_str()) {
                        return kind_err(
                            "each choice must be unique, 1-100 characters of a-z, 0-9 and _",
                        );
                    }
                }
            }
            _ if !self.choices.is_empty() => return kind_err("only choice readings have choices"),
            _ => {}
        }
        match (&self.expect, self.kind) {
            (Expectation::None, _) => {}
            (Expectation::Compare { value, .. }, ReadingKind::Number) => finite("value", *value)?,
            (Expectation::Range { min, max }, ReadingKind::Number) => {
                finite("min", *min)?;
                finite("max", *max)?;
                if min > max {
                    return kind_err("range min is above max");
                }
            }
            (Expectation::Equals { value }, kind) => match (value, kind) {
                (Expected::Bool(_), ReadingKind::YesNo) => {}
                (Expected::Number(x), ReadingKind::Number) => finite("value", *x)?,
                (Expected::Text(t), ReadingKind::Choice) if self.choices.contains(t) => {}
                _ => return kind_err("the expected value is not of the reading's kind"),
            },
            (Expectation::OneOf { values }, ReadingKind::Choice) => {
                if values.is_empty() || values.iter().any(|v| !self.choices.contains(v)) {
                    return kind_err("one_of needs values among the choices");
                }
            }
            (Expectation::Baseline { tolerance, key, .. }, ReadingKind::Number) => {
                finite("tolerance", *tolerance)?;
                if *tolerance < 0.0 || key.as_deref().is_some_and(|k| !valid_key(k)) {
                    return kind_err("tolerance must be >= 0 and key 1-100 of a-z, 0-9, _");
                }
            }
            (Expectation::Design { tolerance, key, .. }, ReadingKind::Number) => {
                finite("tolerance", *tolerance)?;
                if *tolerance < 0.0 || !valid_key(key) {
                    return kind_err("tolerance must be >= 0 and key 1-100 of a-z, 0-9, _");
                }
            }
            _ => return kind_err("this expectation does not apply to the kind"),
        }
        if let Some(c) = &self.fails_as {
            if !conditions.any(|k| k == c) {
                return Err(SpecError(format!(
                    "reading '{name}': fails_as '{c}' is not a defect condition of the rule"
                )));
            }
        }
        Ok(())
    }

    /// The expectation in words, e.g. `<= 30 s`, `yes`, `within 10 % of baseline`.
    pub fn describe(&self) -> String {
        let unit = if self.unit.is_empty() {
            String::new()
        } else {
            format!(" {}", self.unit)
        };
        let tol = |t: f64, u: ToleranceUnit| {
            if t == 0.0 {
                String::new()
            } else if u == ToleranceUnit::Percent {
                format!(" ± {t} %")
            } else {
                format!(" ± {t}{unit}")
            }
        };
        match &self.expect {
            Expectation::None => "recorded, not evaluated".into(),
            Expectation::Compare { op, value } => format!("{} {value}{unit}", op.as_str()),
            Expectation::Range { min, max } => format!("{min} to {max}{unit}"),
            Expectation::Equals { value } => match value {
                Expected::Bool(true) => "yes".into(),
                Expected::Bool(false) => "no".into(),
                Expected::Number(x) => format!("= {x}{unit}"),
                Expected::Text(t) => t.clone(),
            },
            Expectation::OneOf { values } => format!("one of {}", values.join(", ")),
            Expectation::Baseline {
                op,
                tolerance,
                tolerance_unit,
                key,
            } => format!(
                "{} baseline{}{}",
                op.as_str(),
                key.as_deref().map(|k| format!(" {k}")).unwrap_or_default(),
                tol(*tolerance, *tolerance_unit)
            ),
            Expectation::Design {
                key,
                op,
                tolerance,
                tolerance_unit,
            } => format!(
                "{} design value {key}{}",
                op.as_str(),
                tol(*tolerance, *tolerance_unit)
            ),
        }
    }

    /// Check a recorded value against the kind, returning it in canonical form (`"yes"` for a
    /// yes/no reading becomes `true`, a choice is matched case-insensitively). The error says
    /// what was wrong, for a message naming the field.
    pub fn accept(&self, value: &ReadingValue) -> Result<ReadingValue, String> {
        match (self.kind, value) {
            (ReadingKind::Number, ReadingValue::Number(x)) => {
                if x.is_finite() && x.abs() <= MAX_NUMBER_READING {
                    Ok(ReadingValue::Number(*x))
                } else {
                    Err(format!(
                        "must be a finite number of at most {MAX_NUMBER_READING:e}"
                    ))
                }
            }
            (ReadingKind::Number, _) => Err(format!("must be a number ({})", self.unit_words())),
            (ReadingKind::YesNo, ReadingValue::Bool(b)) => Ok(ReadingValue::Bool(*b)),
            (ReadingKind::YesNo, ReadingValue::Text(t)) => {
                match t.trim().to_ascii_lowercase().as_str() {
                    "yes" => Ok(ReadingValue::Bool(true)),
                    "no" => Ok(ReadingValue::Bool(false)),
                    _ => Err("must be true or false (or \"yes\" / \"no\")".into()),
                }
            }
            (ReadingKind::YesNo, _) => Err("must be true or false (or \"yes\" / \"no\")".into()),
            (ReadingKind::Choice, ReadingValue::Text(t)) => self
                .choices
                .iter()
                .find(|c| c.eq_ignore_ascii_case(t.trim()))
                .map(|c| ReadingValue::Text(c.clone()))
                .ok_or_else(|| format!("must be one of: {}", self.choices.join(", "))),
            (ReadingKind::Choice, _) => Err(format!("must be one of: {}", self.choices.join(", "))),
            (ReadingKind::Text, ReadingValue::Text(t)) => {
                if t.chars().count() > MAX_TEXT_READING {
                    Err(format!("must be at most {MAX_TEXT_READING} characters"))
                } else if t.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
                    Err("must not contain control characters".into())
                } else {
                    Ok(ReadingValue::Text(t.clone()))
                }
            }
            (ReadingKind::Text, _) => Err("must be text".into()),
        }
    }

    fn unit_words(&self) -> String {
        if self.unit.is_empty() {
            "no unit".into()
        } else {
            format!("in {}", self.unit)
        }
    }

    /// Evaluate a value (already accepted by [`Self::accept`]) against the expectation.
    /// `reference` finds the asset's stored value of a kind and key.
    pub fn evaluate(
        &self,
        value: &ReadingValue,
        reference: impl Fn(RefKind, &str) -> Option<f64>,
    ) -> Evaluation {
        let expected = self.describe();
        let verdict_of = |ok: bool| {
            if ok {
                Verdict::Within
            } else {
                Verdict::Outside
            }
        };
        let (verdict, reference_value) = match (&self.expect, value) {
            (Expectation::None, _) => (Verdict::NotEvaluated, None),
            (Expectation::Compare { op, value: c }, ReadingValue::Number(x)) => {
                (verdict_of(op.holds(*x, *c)), None)
            }
            (Expectation::Range { min, max }, ReadingValue::Number(x)) => {
                (verdict_of(*min <= *x && *x <= *max), None)
            }
            (Expectation::Equals { value: want }, got) => {
                let ok = match (want, got) {
                    (Expected::Bool(a), ReadingValue::Bool(b)) => a == b,
                    (Expected::Number(a), ReadingValue::Number(b)) => a == b,
                    (Expected::Text(a), ReadingValue::Text(b)) => a.eq_ignore_ascii_case(b),
                    _ => return Evaluation::not_evaluated(expected),
                };
                (verdict_of(ok), None)
            }
            (Expectation::OneOf { values }, ReadingValue::Text(t)) => (
                verdict_of(values.iter().any(|v| v.eq_ignore_ascii_case(t))),
                None,
            ),
            (
                Expectation::Baseline {
                    op,
                    tolerance,
                    tolerance_unit,
                    ..
                }
                | Expectation::Design {
                    op,
                    tolerance,
                    tolerance_unit,
                    ..
                },
                ReadingValue::Number(x),
            ) => {
                let (kind, key) = self.expect.reference(&self.name).expect("a reference");
                match reference(kind, key) {
                    None => (
                        match kind {
                            RefKind::Baseline => Verdict::NoBaseline,
                            RefKind::Design => Verdict::NoDesignValue,
                        },
                        None,
                    ),
                    Some(r) => {
                        let slack = match tolerance_unit {
                            ToleranceUnit::Absolute => *tolerance,
                            ToleranceUnit::Percent => r.abs() * tolerance / 100.0,
                        };
                        // A hair of slack for decimal values that do not add up exactly.
                        let eps = 1e-9 * r.abs().max(1.0);
                        let ok = match op {
                            RefOp::Within => (x - r).abs() <= slack + eps,
                            RefOp::AtLeast => *x >= r - slack - eps,
                            RefOp::AtMost => *x <= r + slack + eps,
                        };
                        (verdict_of(ok), Some(r))
                    }
                }
            }
            _ => (Verdict::NotEvaluated, None),
        };
        Evaluation {
            verdict,
            expected,
            reference: reference_value,
        }
    }
}

/// How a recorded reading compares with what it should be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// As expected.
    Within,
    /// Not as expected: the item is suggested to fail.
    Outside,
    /// Needs the asset's baseline, which is not recorded (a non-conformance).
    NoBaseline,
    /// Needs a design or manufacturer value of the asset, which is not recorded.
    NoDesignValue,
    /// No expectation to evaluate against (or the value could not be read).
    NotEvaluated,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Within => "within",
            Self::Outside => "outside",
            Self::NoBaseline => "no_baseline",
            Self::NoDesignValue => "no_design_value",
            Self::NotEvaluated => "not_evaluated",
        }
    }
}

/// A reading's verdict with what it was compared against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Evaluation {
    pub verdict: Verdict,
    /// The expectation in words.
    pub expected: String,
    /// The baseline or design value used, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<f64>,
}

impl Evaluation {
    fn not_evaluated(expected: String) -> Self {
        Self {
            verdict: Verdict::NotEvaluated,
            expected,
            reference: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> ReadingSpec {
        serde_json::from_str(json).unwrap()
    }

    fn none(_: RefKind, _: &str) -> Option<f64> {
        None
    }

    #[test]
    fn every_kind_accepts_its_values_and_refuses_others() {
        let n = spec(
            r#"{"name":"t","kind":"number","unit":"s","expect":{"type":"compare","op":"<=","value":30}}"#,
        );
        assert_eq!(
            n.accept(&ReadingValue::Number(12.0)),
            Ok(ReadingValue::Number(12.0))
        );
        assert!(n.accept(&ReadingValue::Text("12".into())).is_err());
        assert!(n.accept(&ReadingValue::Number(f64::NAN)).is_err());
        assert!(n.accept(&ReadingValue::Number(1e13)).is_err());
        let y = spec(r#"{"name":"ok","kind":"yes_no","expect":{"type":"equals","value":true}}"#);
        assert_eq!(
            y.accept(&ReadingValue::Text(" YES".into())),
            Ok(ReadingValue::Bool(true))
        );
        assert_eq!(
            y.accept(&ReadingValue::Bool(false)),
            Ok(ReadingValue::Bool(false))
        );
        assert!(y.accept(&ReadingValue::Text("maybe".into())).is_err());
        assert!(y.accept(&ReadingValue::Number(1.0)).is_err());
        let c = spec(
            r#"{"name":"g","kind":"choice","choices":["in_green","out_of_green"],"expect":{"type":"one_of","values":["in_green"]}}"#,
        );
        assert_eq!(
            c.accept(&ReadingValue::Text("In_Green".into())),
            Ok(ReadingValue::Text("in_green".into()))
        );
        assert!(c.accept(&ReadingValue::Text("blue".into())).is_err());
        let t = spec(r#"{"name":"remark","kind":"text"}"#);
        assert!(t.accept(&ReadingValue::Text("fine".into())).is_ok());
        assert!(t.accept(&ReadingValue::Text("a\0b".into())).is_err());
        assert!(t.accept(&ReadingValue::Text("x".repeat(501))).is_err());
    }

    #[test]
    fn expectations_evaluate() {
        let n = spec(
            r#"{"name":"t","kind":"number","unit":"s","expect":{"type":"compare","op":"<=","value":30}}"#,
        );
        assert_eq!(
            n.evaluate(&ReadingValue::Number(30.0), none).verdict,
            Verdict::Within
        );
        assert_eq!(
            n.evaluate(&ReadingValue::Number(31.0), none).verdict,
            Verdict::Outside
        );
        assert_eq!(n.describe(), "<= 30 s");
        let r = spec(
            r#"{"name":"v","kind":"number","unit":"V","expect":{"type":"range","min":20,"max":50}}"#,
        );
        assert_eq!(
            r.evaluate(&ReadingValue::Number(19.9), none).verdict,
            Verdict::Outside
        );
        assert_eq!(
            r.evaluate(&ReadingValue::Number(50.0), none).verdict,
            Verdict::Within
        );
        let y = spec(r#"{"name":"ok","kind":"yes_no","expect":{"type":"equals","value":true}}"#);
        assert_eq!(
            y.evaluate(&ReadingValue::Bool(false), none).verdict,
            Verdict::Outside
        );
        let b = spec(
            r#"{"name":"p","kind":"number","unit":"kPa","expect":{"type":"baseline","op":"within","tolerance":10,"tolerance_unit":"percent"}}"#,
        );
        assert_eq!(
            b.evaluate(&ReadingValue::Number(500.0), none).verdict,
            Verdict::NoBaseline
        );
        let base = |k: RefKind, key: &str| (k == RefKind::Baseline && key == "p").then_some(500.0);
        assert_eq!(
            b.evaluate(&ReadingValue::Number(550.0), base).verdict,
            Verdict::Within
        );
        let e = b.evaluate(&ReadingValue::Number(551.0), base);
        assert_eq!((e.verdict, e.reference), (Verdict::Outside, Some(500.0)));
        let d = spec(
            r#"{"name":"p","kind":"number","unit":"kPa","expect":{"type":"design","key":"required_test_pressure","op":">="}}"#,
        );
        assert_eq!(
            d.evaluate(&ReadingValue::Number(1.0), base).verdict,
            Verdict::NoDesignValue
        );
        let design = |k: RefKind, key: &str| {
            (k == RefKind::Design && key == "required_test_pressure").then_some(1400.0)
        };
        assert_eq!(
            d.evaluate(&ReadingValue::Number(1400.0), design).verdict,
            Verdict::Within
        );
        assert_eq!(
            d.evaluate(&ReadingValue::Number(1399.0), design).verdict,
            Verdict::Outside
        );
        let plain = spec(r#"{"name":"remark","kind":"text"}"#);
        assert_eq!(
            plain
                .evaluate(&ReadingValue::Text("x".into()), none)
                .verdict,
            Verdict::NotEvaluated
        );
    }

    #[test]
    fn older_free_text_expectations_are_inferred() {
        let cases = [
            (
                r#"{"name":"a","unit":"","expected":"yes"}"#,
                ReadingKind::YesNo,
            ),
            (
                r#"{"name":"a","unit":"s","expected":"<= 30"}"#,
                ReadingKind::Number,
            ),
            (
                r#"{"name":"a","unit":"count","expected":"0"}"#,
                ReadingKind::Number,
            ),
            (
                r#"{"name":"a","unit":"V","expected":"20 to 50"}"#,
                ReadingKind::Number,
            ),
            (
                r#"{"name":"a","unit":"kPa","expected":"matches_baseline"}"#,
                ReadingKind::Number,
            ),
            (
                r#"{"name":"a","unit":"","expected":"in_green"}"#,
                ReadingKind::Text,
            ),
        ];
        for (json, kind) in cases {
            let s = spec(json);
            assert_eq!(s.kind, kind, "{json}");
            assert!(s.validate(std::iter::empty()).is_ok(), "{json}");
        }
        assert_eq!(
            spec(r#"{"name":"a","unit":"s","expected":"<= 30"}"#).expect,
            Expectation::Compare {
                op: CompareOp::Le,
                value: 30.0
            }
        );
        assert!(matches!(
            spec(r#"{"name":"a","unit":"kPa","expected":">= baseline"}"#).expect,
            Expectation::Baseline {
                op: RefOp::AtLeast,
                ..
            }
        ));
    }

    #[test]
    fn invalid_definitions_are_refused() {
        let bad = [
            r#"{"name":"Bad Name","kind":"text"}"#,
            r#"{"name":"a","kind":"yes_no","unit":"s"}"#,
            r#"{"name":"a","kind":"choice","choices":["x"]}"#,
            r#"{"name":"a","kind":"choice","choices":["x","y"],"expect":{"type":"one_of","values":["z"]}}"#,
            r#"{"name":"a","kind":"yes_no","expect":{"type":"compare","op":"<","value":1}}"#,
            r#"{"name":"a","kind":"number","expect":{"type":"range","min":5,"max":1}}"#,
            r#"{"name":"a","kind":"number","expect":{"type":"baseline","tolerance":-1}}"#,
            r#"{"name":"a","kind":"number","fails_as":"unknown"}"#,
        ];
        for json in bad {
            assert!(
                spec(json).validate(["serviceable"].into_iter()).is_err(),
                "{json}"
            );
        }
        for json in [
            r#"{"name":"a","kind":"number","bogus":1}"#,
            r#"{"name":"a"}"#,
            r#"{"name":"a","kind":"number","expected":"<= 3"}"#,
        ] {
            assert!(serde_json::from_str::<ReadingSpec>(json).is_err(), "{json}");
        }
    }
}
