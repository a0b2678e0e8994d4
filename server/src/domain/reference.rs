//! Reference values of an asset: baselines (recorded at commissioning or a first service) and
//! design or manufacturer values that AS 1851 readings are compared with. What a valid value is,
//! with no I/O: the REST routes, the CSV import and the store all rely on these rules.

use std::fmt;
use std::str::FromStr;

/// Most values in one request (`PUT .../reference-values`).
pub const MAX_VALUES: usize = 200;
/// Longest key, in characters (`[a-z0-9_]`).
pub const MAX_KEY_CHARS: usize = 100;
/// Longest unit, in characters (may be empty).
pub const MAX_UNIT_CHARS: usize = 50;
/// Longest note, in characters.
pub const MAX_NOTE_CHARS: usize = 2000;

/// Which reference a value is: recorded on the installation (`baseline`) or specified for it
/// (`design`). The same kind a reading's `baseline` or `design` expectation looks up.
pub use super::readings::RefKind as Kind;

/// Every kind, in the order messages list them.
pub const KINDS: [Kind; 2] = [Kind::Baseline, Kind::Design];

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        KINDS
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("must be one of {}", names(KINDS.map(Kind::as_str))))
    }
}

/// Where a value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    Commissioning,
    DesignDocument,
    Manufacturer,
    /// Measured by a technician at the first service (the one source an inspector may set).
    FirstService,
    Other,
}

impl Source {
    pub const ALL: [Source; 5] = [
        Source::Commissioning,
        Source::DesignDocument,
        Source::Manufacturer,
        Source::FirstService,
        Source::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Commissioning => "commissioning",
            Source::DesignDocument => "design_document",
            Source::Manufacturer => "manufacturer",
            Source::FirstService => "first_service",
            Source::Other => "other",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Source {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Source::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("must be one of {}", names(Source::ALL.map(Source::as_str))))
    }
}

fn names<const N: usize>(all: [&str; N]) -> String {
    all.join(", ")
}

/// One problem with one field. `field` is relative to the value (`key`) until
/// [`validate_values`] prefixes it with the value's place (`values[2].key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// A value as given (JSON entry or CSV row), before validation. `value: None` clears.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ValueInput {
    pub kind: String,
    pub key: String,
    pub value: Option<f64>,
    pub unit: String,
    pub source: String,
    pub note: Option<String>,
}

/// A valid value: unit trimmed, a blank note is none.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidValue {
    pub kind: Kind,
    pub key: String,
    pub value: Option<f64>,
    pub unit: String,
    pub source: Source,
    pub note: Option<String>,
}

/// Whether `key` names a reading or design value: 1-100 characters of `[a-z0-9_]`.
pub fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > MAX_KEY_CHARS {
        return Err(format!("must be 1-{MAX_KEY_CHARS} characters"));
    }
    if !key
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err("may hold only a-z, 0-9 and _".into());
    }
    Ok(())
}

/// A finite number, or the reason it is not one.
pub fn check_number(v: f64) -> Result<f64, String> {
    if v.is_finite() {
        // -0.0 and 0.0 are one value: store one form, so "unchanged" means what it says.
        Ok(if v == 0.0 { 0.0 } else { v })
    } else {
        Err("must be a finite number".into())
    }
}

/// A number written as text (a CSV cell): decimal notation, finite. `NaN`, `inf` and the like
/// are refused, as are thousands separators.
pub fn parse_number(text: &str) -> Result<f64, String> {
    let t = text.trim();
    let plain = !t.is_empty()
        && t.bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E'))
        && t.bytes().any(|b| b.is_ascii_digit());
    match t.parse::<f64>() {
        Ok(v) if plain => check_number(v),
        _ => Err(format!("'{}' is not a number", shorten(t, 40))),
    }
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(max).collect();
        out.push('…');
        out
    }
}

/// Text without NUL or other control characters (anywhere, surrounding whitespace included),
/// at most `max_chars` once trimmed; `multiline` lets line breaks and tabs in.
pub fn check_text(text: &str, max_chars: usize, multiline: bool) -> Result<(), String> {
    if text.trim().chars().count() > max_chars {
        return Err(format!("must be at most {max_chars} characters"));
    }
    let allowed = |c: char| multiline && matches!(c, '\n' | '\r' | '\t');
    if let Some(c) = text.chars().find(|&c| c.is_control() && !allowed(c)) {
        return Err(if c == '\0' {
            "must not contain NUL characters".into()
        } else {
            format!(
                "must not contain control characters (found U+{:04X})",
                c as u32
            )
        });
    }
    Ok(())
}

/// Check every field of one value; every problem is reported (fields relative to the value).
pub fn validate(input: &ValueInput) -> Result<ValidValue, Vec<FieldError>> {
    let mut errors = Vec::new();
    let kind = input
        .kind
        .parse::<Kind>()
        .map_err(|m| errors.push(FieldError::new("kind", m)))
        .ok();
    if let Err(m) = check_key(&input.key) {
        errors.push(FieldError::new("key", m));
    }
    let value = match input.value.map(check_number).transpose() {
        Ok(v) => v,
        Err(m) => {
            errors.push(FieldError::new("value", m));
            None
        }
    };
    let unit = input.unit.trim();
    if let Err(m) = check_text(&input.unit, MAX_UNIT_CHARS, false) {
        errors.push(FieldError::new("unit", m));
    }
    let source = input
        .source
        .parse::<Source>()
        .map_err(|m| errors.push(FieldError::new("source", m)))
        .ok();
    if let Some(n) = input.note.as_deref() {
        if let Err(m) = check_text(n, MAX_NOTE_CHARS, true) {
            errors.push(FieldError::new("note", m));
        }
    }
    let note = input
        .note
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty());
    match (kind, source) {
        (Some(kind), Some(source)) if errors.is_empty() => Ok(ValidValue {
            kind,
            key: input.key.clone(),
            value,
            unit: unit.to_owned(),
            source,
            note: note.map(str::to_owned),
        }),
        _ => Err(errors),
    }
}

/// Check a whole request: 1-200 values, each valid, no (kind, key) twice. Errors name the
/// value's place: `values[2].key`.
pub fn validate_values(inputs: &[ValueInput]) -> Result<Vec<ValidValue>, Vec<FieldError>> {
    if inputs.is_empty() || inputs.len() > MAX_VALUES {
        return Err(vec![FieldError::new(
            "values",
            format!("must hold 1-{MAX_VALUES} values"),
        )]);
    }
    let mut errors = Vec::new();
    let mut valid: Vec<ValidValue> = Vec::with_capacity(inputs.len());
    for (i, input) in inputs.iter().enumerate() {
        match validate(input) {
            Ok(v) => {
                if let Some(first) = valid
                    .iter()
                    .position(|o| o.kind == v.kind && o.key == v.key)
                {
                    errors.push(FieldError::new(
                        format!("values[{i}].key"),
                        format!("{} '{}' is already given by values[{first}]", v.kind, v.key),
                    ));
                }
                valid.push(v);
            }
            Err(es) => {
                // Keep the index aligned with `inputs` for the duplicate check's message.
                valid.push(ValidValue {
                    kind: Kind::Baseline,
                    key: String::new(),
                    value: None,
                    unit: String::new(),
                    source: Source::Other,
                    note: None,
                });
                errors.extend(es.into_iter().map(|e| FieldError {
                    field: format!("values[{i}].{}", e.field),
                    message: e.message,
                }));
            }
        }
    }
    if errors.is_empty() {
        Ok(valid)
    } else {
        Err(errors)
    }
}

/// Whether an inspector may write this value: only values measured at a first service.
pub fn inspector_may_set(source: Source) -> bool {
    source == Source::FirstService
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> ValueInput {
        ValueInput {
            kind: "baseline".into(),
            key: "churn_pressure".into(),
            value: Some(700.0),
            unit: "kPa".into(),
            source: "commissioning".into(),
            note: Some("from the commissioning report".into()),
        }
    }

    fn fields(r: Result<ValidValue, Vec<FieldError>>) -> Vec<String> {
        r.expect_err("invalid")
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn enums_round_trip() {
        for k in KINDS {
            assert_eq!(k.as_str().parse::<Kind>(), Ok(k));
            assert_eq!(k.to_string(), k.as_str());
        }
        for s in Source::ALL {
            assert_eq!(s.as_str().parse::<Source>(), Ok(s));
        }
        assert!("Baseline".parse::<Kind>().is_err());
        assert!("".parse::<Source>().is_err());
        let e = "factory".parse::<Source>().unwrap_err();
        assert!(e.contains("first_service"), "{e}");
    }

    #[test]
    fn a_good_value_is_normalised() {
        let mut i = input();
        i.unit = "  kPa ".into();
        i.note = Some("   ".into());
        let v = validate(&i).unwrap();
        assert_eq!(v.kind, Kind::Baseline);
        assert_eq!(v.source, Source::Commissioning);
        assert_eq!(v.unit, "kPa");
        assert_eq!(v.note, None);
        assert_eq!(v.value, Some(700.0));
        i.value = Some(-0.0);
        assert!(validate(&i).unwrap().value.unwrap().is_sign_positive());
        i.value = None;
        i.unit = String::new();
        assert_eq!(validate(&i).unwrap().value, None, "null clears");
    }

    #[test]
    fn keys() {
        assert!(check_key("flow_l_per_min_2").is_ok());
        assert!(check_key(&"k".repeat(100)).is_ok());
        for bad in [
            "",
            "Churn",
            "churn pressure",
            "churn-pressure",
            "é",
            "a\0",
            &"k".repeat(101),
        ] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_number(" 12.5 "), Ok(12.5));
        assert_eq!(parse_number("-3e2"), Ok(-300.0));
        assert_eq!(parse_number("+7"), Ok(7.0));
        for bad in [
            "",
            "NaN",
            "nan",
            "inf",
            "-Infinity",
            "1,000",
            "12 kPa",
            "0x10",
            "1e400",
            ".",
        ] {
            assert!(parse_number(bad).is_err(), "{bad:?}");
        }
        assert!(check_number(f64::NAN).is_err());
        assert!(check_number(f64::INFINITY).is_err());
    }

    #[test]
    fn text() {
        assert!(check_text("kPa", 50, false).is_ok());
        assert!(
            check_text(&"é".repeat(50), 50, false).is_ok(),
            "characters, not bytes"
        );
        assert!(check_text(&"é".repeat(51), 50, false).is_err());
        assert!(check_text("a\0b", 50, false).unwrap_err().contains("NUL"));
        assert!(check_text("a\u{1b}b", 50, true).is_err());
        assert!(check_text("a\u{85}b", 50, true).is_err(), "C1 controls too");
        assert!(check_text("line\nline\ttab", 50, false).is_err());
        assert!(check_text("line\r\nline\ttab", 50, true).is_ok());
    }

    #[test]
    fn every_bad_field_is_named() {
        let bad = ValueInput {
            kind: "measured".into(),
            key: "Bad Key".into(),
            value: Some(f64::NAN),
            unit: "u".repeat(51),
            source: "guess".into(),
            note: Some(format!("x{}", "\0")),
        };
        assert_eq!(
            fields(validate(&bad)),
            ["kind", "key", "value", "unit", "source", "note"]
        );
        let mut long_note = input();
        long_note.note = Some("n".repeat(2001));
        assert_eq!(fields(validate(&long_note)), ["note"]);
        let mut nul_unit = input();
        nul_unit.unit = "k\0Pa".into();
        assert_eq!(fields(validate(&nul_unit)), ["unit"]);
        let mut trailing_newline = input();
        trailing_newline.unit = "kPa\n".into();
        assert_eq!(
            fields(validate(&trailing_newline)),
            ["unit"],
            "checked before trimming"
        );
        let mut trailing_nul = input();
        trailing_nul.note = Some("ok\0".into());
        assert_eq!(fields(validate(&trailing_nul)), ["note"]);
    }

    #[test]
    fn requests_name_the_place() {
        assert_eq!(
            validate_values(&[]).unwrap_err()[0].field,
            "values",
            "at least one"
        );
        let many = vec![input(); MAX_VALUES + 1];
        assert_eq!(validate_values(&many).unwrap_err()[0].field, "values");
        let mut second = input();
        second.key = "design_flow".into();
        second.kind = "design".into();
        let mut third = input();
        third.source = "nope".into();
        let errs = validate_values(&[input(), second.clone(), third]).unwrap_err();
        assert_eq!(
            errs,
            [FieldError::new("values[2].source", errs[0].message.clone())]
        );
        // The same (kind, key) twice is refused; the same key under the other kind is not.
        let mut same_key_other_kind = input();
        same_key_other_kind.kind = "design".into();
        assert_eq!(
            validate_values(&[input(), same_key_other_kind])
                .unwrap()
                .len(),
            2
        );
        let errs = validate_values(&[input(), second, input()]).unwrap_err();
        assert_eq!(errs[0].field, "values[2].key");
        assert!(errs[0].message.contains("values[0]"), "{}", errs[0].message);
    }

    #[test]
    fn inspectors_set_first_service_values_only() {
        assert!(inspector_may_set(Source::FirstService));
        for s in Source::ALL
            .into_iter()
            .filter(|s| *s != Source::FirstService)
        {
            assert!(!inspector_may_set(s), "{s}");
        }
    }
}
