//! Projection of a session document into plain values (result rows for the database).
//!
//! CRDT history cannot be rejected, so a document may hold anything a client wrote. The
//! projection never fails: it reads what fits the schema and reports the rest as
//! [`SchemaProblem`]s with a JSON-pointer path.

use std::collections::BTreeMap;
use std::rc::Rc;

use automerge::{Automerge, ObjId, ObjType, ScalarValue, Value, ROOT};
use serde::Serialize;
use uuid::Uuid;

use super::keys::*;
use super::{
    Outcome, ReadingValue, SignOff, OLDEST_SCHEMA_VERSION, SCHEMA_VERSION, STATUS_COMPLETED,
    STATUS_IN_PROGRESS,
};
use crate::read::{kind, pointer_segment, scalar_f64, MapEntries, Reader};

/// A place where the document does not follow the schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SchemaProblem {
    /// JSON pointer to the offending value, e.g. `/items/<assetId>/outcome`.
    pub path: String,
    /// What is wrong, for humans.
    pub message: String,
}

/// The session as plain values. Fields that are missing or of the wrong type are `None`
/// (and reported in `problems`).
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Projection {
    /// `schema`; 1 for documents this crate writes.
    pub schema: Option<i64>,
    /// `sessionId`.
    pub session_id: Option<String>,
    /// `buildingId`.
    pub building_id: Option<String>,
    /// `orgId`.
    pub org_id: Option<String>,
    /// `name`.
    pub name: Option<String>,
    /// `status`, as written (even when it is not a known status).
    pub status: Option<String>,
    /// `frequency`.
    pub frequency: Option<String>,
    /// `ruleSet` as (code, version), when both are strings.
    pub rule_set: Option<(String, String)>,
    /// The session's `notes` text.
    pub notes: String,
    /// `signedOff`, when it is complete.
    pub signed_off: Option<SignOff>,
    /// The items that are maps, sorted by asset id.
    pub items: Vec<ProjectedItem>,
    /// Problems outside the items, and items that could not be read at all.
    pub problems: Vec<SchemaProblem>,
}

impl Projection {
    /// Every problem, the document's and the items', in document order.
    pub fn all_problems(&self) -> impl Iterator<Item = &SchemaProblem> {
        self.problems
            .iter()
            .chain(self.items.iter().flat_map(|item| item.problems.iter()))
    }

    /// The item for `asset_id`, if the document has it.
    pub fn item(&self, asset_id: &str) -> Option<&ProjectedItem> {
        self.items.iter().find(|item| item.asset_id == asset_id)
    }
}

/// One item (asset) of the session.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct ProjectedItem {
    /// The key of the item in `items` (an asset UUID).
    pub asset_id: String,
    /// `ruleCode`.
    pub rule_code: Option<String>,
    /// `outcome`, when it is one of the four known outcomes.
    pub outcome: Option<Outcome>,
    /// `outcome` as written, known or not.
    pub raw_outcome: Option<String>,
    /// `observedConditions` (or, in a schema 1 item, its one `observedCondition`).
    pub observed_conditions: Vec<String>,
    /// The readings that are finite numbers, booleans or strings.
    pub readings: BTreeMap<String, ReadingValue>,
    /// The item's notes.
    pub notes: String,
    /// The evidence ids that are strings, in list order.
    pub evidence: Vec<String>,
    /// `recordedBy`.
    pub recorded_by: Option<String>,
    /// `recordedAt`.
    pub recorded_at: Option<String>,
    /// Where this item departs from the schema.
    pub problems: Vec<SchemaProblem>,
}

/// Projects the current state of `doc`. Never fails and never panics.
pub fn project(doc: &Automerge) -> Projection {
    let reader = Reader::new(doc, None);
    let mut problems = Problems::default();
    let root = Field::root().loaded(&reader);

    let schema = read_schema(&reader, &root, &mut problems);
    let session_id = read_uuid(&reader, &root, SESSION_ID, &mut problems);
    let building_id = read_uuid(&reader, &root, BUILDING_ID, &mut problems);
    let org_id = read_uuid(&reader, &root, ORG_ID, &mut problems);
    let name = read_string(&reader, &root, NAME, Need::Required, &mut problems);
    let frequency = read_string(&reader, &root, FREQUENCY, Need::Required, &mut problems);
    let status = read_string(&reader, &root, STATUS, Need::Required, &mut problems);
    if let Some(status) = &status {
        if status != STATUS_IN_PROGRESS && status != STATUS_COMPLETED {
            problems.push(
                root.child(STATUS),
                format!("unknown status {status:?} (expected in_progress or completed)"),
            );
        }
    }
    let rule_set = read_map(&reader, &root, RULE_SET, &mut problems).and_then(|rule_set| {
        let code = read_string(&reader, &rule_set, CODE, Need::Required, &mut problems);
        let version = read_string(&reader, &rule_set, VERSION, Need::Required, &mut problems);
        code.zip(version)
    });
    let notes = read_text(&reader, &root, NOTES, &mut problems).unwrap_or_default();
    let signed_off = read_sign_off(&reader, &root, &mut problems);

    let mut items = Vec::new();
    if let Some(items_obj) = read_map(&reader, &root, ITEMS, &mut problems) {
        for (key, value, obj) in reader.entries(&items_obj.obj).iter() {
            let field = items_obj.child(key);
            match value {
                Value::Object(ObjType::Map) => {
                    items.push(project_item(
                        &reader,
                        field.with_obj(obj.clone()),
                        key.into(),
                    ));
                }
                other => {
                    problems.push(field, format!("expected a map, found {}", kind(other)));
                }
            }
        }
    }
    items.sort_by(|a, b| a.asset_id.cmp(&b.asset_id));

    Projection {
        schema,
        session_id,
        building_id,
        org_id,
        name,
        status,
        frequency,
        rule_set,
        notes,
        signed_off,
        items,
        problems: problems.0,
    }
}

/// The items of these assets as [`project`] would give them, read without projecting the rest
/// of the document (a REST write that checks a few results needs only their items). `None`
/// for an asset with no item (or one that is not a map, which only [`project`] reports).
pub fn project_items(doc: &Automerge, assets: &[&str]) -> Vec<Option<ProjectedItem>> {
    let reader = Reader::new(doc, None);
    let items = match reader.get(&ROOT, ITEMS) {
        Some((Value::Object(ObjType::Map), items)) => items,
        _ => return assets.iter().map(|_| None).collect(),
    };
    assets
        .iter()
        .map(|asset| match reader.get(&items, *asset) {
            Some((Value::Object(ObjType::Map), obj)) => Some(project_item(
                &reader,
                item_field(&items, asset).with_obj(obj),
                (*asset).to_owned(),
            )),
            _ => None,
        })
        .collect()
}

/// `signedOff`, when present and complete.
fn read_sign_off(reader: &Reader<'_>, root: &Field, problems: &mut Problems) -> Option<SignOff> {
    match root.get(reader, SIGNED_OFF) {
        None => None,
        Some((Value::Scalar(s), _)) if matches!(s.as_ref(), ScalarValue::Null) => None,
        _ => {
            let field = read_map(reader, root, SIGNED_OFF, problems)?;
            let user_id = read_string(reader, &field, USER_ID, Need::Required, problems);
            let licence = read_string(reader, &field, LICENCE, Need::Required, problems);
            let at = read_string(reader, &field, AT, Need::Required, problems);
            Some(SignOff {
                user_id: user_id?,
                licence: licence?,
                at: at?,
            })
        }
    }
}

pub(super) fn project_item(reader: &Reader<'_>, item: Field, asset_id: String) -> ProjectedItem {
    // One pass over the item's map instead of a lookup per field.
    let item = item.loaded(reader);
    let mut problems = Problems::default();
    if Uuid::try_parse(&asset_id).is_err() {
        problems.push(
            item.clone(),
            "the item key is not an asset UUID".to_string(),
        );
    }
    let stored_id = read_string(reader, &item, ASSET_ID, Need::Required, &mut problems);
    if stored_id.as_ref().is_some_and(|id| *id != asset_id) {
        problems.push(
            item.child(ASSET_ID),
            "assetId differs from the item's key".to_string(),
        );
    }
    let rule_code = read_string(reader, &item, RULE_CODE, Need::Required, &mut problems);
    let raw_outcome = read_string(reader, &item, OUTCOME, Need::Required, &mut problems);
    let outcome = raw_outcome.as_deref().and_then(|raw| match raw.parse() {
        Ok(outcome) => Some(outcome),
        Err(e) => {
            problems.push(item.child(OUTCOME), format!("{e}"));
            None
        }
    });
    let observed_conditions = read_conditions(reader, &item, &mut problems);
    let readings = read_readings(reader, &item, &mut problems);
    let notes = read_text(reader, &item, NOTES, &mut problems).unwrap_or_default();
    let evidence = read_evidence(reader, &item, &mut problems);
    let recorded_by = read_string(reader, &item, RECORDED_BY, Need::Optional, &mut problems);
    let recorded_at = read_string(reader, &item, RECORDED_AT, Need::Optional, &mut problems);

    ProjectedItem {
        asset_id,
        rule_code,
        outcome,
        raw_outcome,
        observed_conditions,
        readings,
        notes,
        evidence,
        recorded_by,
        recorded_at,
        problems: problems.0,
    }
}

/// The field of the item `asset` in the `items` map `items`, as `project` names it.
pub(super) fn item_field(items: &ObjId, asset: &str) -> Field {
    Field::root()
        .child(ITEMS)
        .with_obj(items.clone())
        .child(asset)
}

/// An object of the document together with its JSON-pointer path, and, for a map read in
/// one pass ([`Field::loaded`]), its entries.
#[derive(Clone)]
pub(super) struct Field {
    obj: ObjId,
    path: String,
    entries: Option<Rc<MapEntries>>,
}

impl Field {
    fn root() -> Self {
        Self {
            obj: ROOT,
            path: String::new(),
            entries: None,
        }
    }

    /// The path of `key` inside this object (the object id is left as this one's).
    fn child(&self, key: &str) -> Field {
        Self {
            obj: self.obj.clone(),
            path: format!("{}/{}", self.path, pointer_segment(key)),
            entries: None,
        }
    }

    pub(super) fn with_obj(self, obj: ObjId) -> Field {
        Self {
            obj,
            path: self.path,
            entries: None,
        }
    }

    /// This map with every entry read at once: later lookups answer from them.
    fn loaded(self, reader: &Reader<'_>) -> Field {
        let entries = reader.entries(&self.obj);
        Self {
            entries: Some(Rc::new(entries)),
            ..self
        }
    }

    /// The winning value at `key` of this map.
    fn get<'a>(&self, reader: &Reader<'a>, key: &str) -> Option<(Value<'a>, ObjId)> {
        match &self.entries {
            Some(entries) => entries.get(key),
            None => reader.get(&self.obj, key),
        }
    }
}

#[derive(Default)]
struct Problems(Vec<SchemaProblem>);

impl Problems {
    fn push(&mut self, field: Field, message: String) {
        self.0.push(SchemaProblem {
            path: field.path,
            message,
        });
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Need {
    Required,
    Optional,
}

/// A string field, stored either as a scalar string or as a text object. `null` counts as
/// absent.
fn read_string(
    reader: &Reader<'_>,
    parent: &Field,
    key: &str,
    need: Need,
    problems: &mut Problems,
) -> Option<String> {
    let value = parent.get(reader, key);
    match value {
        Some((Value::Scalar(s), _)) if s.as_str().is_some() => s.as_str().map(str::to_string),
        Some((Value::Object(ObjType::Text), id)) => reader.text(&id),
        None => {
            if need == Need::Required {
                problems.push(parent.child(key), "missing".to_string());
            }
            None
        }
        Some((Value::Scalar(s), _)) if matches!(s.as_ref(), ScalarValue::Null) => {
            if need == Need::Required {
                problems.push(parent.child(key), "missing (null)".to_string());
            }
            None
        }
        Some((other, _)) => {
            problems.push(
                parent.child(key),
                format!("expected a string, found {}", kind(&other)),
            );
            None
        }
    }
}

/// A required string field that must hold a UUID.
fn read_uuid(
    reader: &Reader<'_>,
    parent: &Field,
    key: &str,
    problems: &mut Problems,
) -> Option<String> {
    let value = read_string(reader, parent, key, Need::Required, problems)?;
    if Uuid::try_parse(&value).is_err() {
        problems.push(parent.child(key), "not a UUID".to_string());
    }
    Some(value)
}

/// A required map field, as the `Field` to read inside it.
fn read_map(
    reader: &Reader<'_>,
    parent: &Field,
    key: &str,
    problems: &mut Problems,
) -> Option<Field> {
    let field = parent.child(key);
    match parent.get(reader, key) {
        Some((Value::Object(ObjType::Map), obj)) => Some(field.with_obj(obj)),
        Some((other, _)) => {
            problems.push(field, format!("expected a map, found {}", kind(&other)));
            None
        }
        None => {
            problems.push(field, "missing".to_string());
            None
        }
    }
}

/// A notes field: a text object (a plain string is accepted but reported).
fn read_text(
    reader: &Reader<'_>,
    parent: &Field,
    key: &str,
    problems: &mut Problems,
) -> Option<String> {
    match parent.get(reader, key) {
        Some((Value::Object(ObjType::Text), id)) => reader.text(&id),
        Some((Value::Scalar(s), _)) if s.as_str().is_some() => {
            problems.push(
                parent.child(key),
                "expected a text object, found a string".to_string(),
            );
            s.as_str().map(str::to_string)
        }
        Some((other, _)) => {
            problems.push(
                parent.child(key),
                format!("expected a text object, found {}", kind(&other)),
            );
            None
        }
        None => {
            problems.push(parent.child(key), "missing".to_string());
            None
        }
    }
}

fn read_schema(reader: &Reader<'_>, root: &Field, problems: &mut Problems) -> Option<i64> {
    let field = root.child(SCHEMA);
    let schema = match root.get(reader, SCHEMA) {
        None => {
            problems.push(field, "missing".to_string());
            return None;
        }
        Some((Value::Scalar(s), _)) => match s.as_ref() {
            ScalarValue::Int(i) => Some(*i),
            ScalarValue::Uint(u) => i64::try_from(*u).ok(),
            ScalarValue::F64(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(*f as i64),
            _ => None,
        },
        Some(_) => None,
    };
    match schema {
        None => problems.push(field, "expected an integer".to_string()),
        Some(v) if !(OLDEST_SCHEMA_VERSION..=SCHEMA_VERSION).contains(&v) => {
            problems.push(field, format!("unsupported schema version {v}"))
        }
        Some(_) => {}
    }
    schema
}

fn read_readings(
    reader: &Reader<'_>,
    item: &Field,
    problems: &mut Problems,
) -> BTreeMap<String, ReadingValue> {
    let mut readings = BTreeMap::new();
    let Some(map) = read_map(reader, item, READINGS, problems) else {
        return readings;
    };
    for (name, value, id) in reader.entries(&map.obj).iter() {
        let value = match (value, id) {
            (Value::Scalar(s), _) => match s.as_ref() {
                ScalarValue::Boolean(b) => Ok(ReadingValue::Bool(*b)),
                ScalarValue::Str(t) => Ok(ReadingValue::Text(t.to_string())),
                other => match scalar_f64(other) {
                    Some(n) if n.is_finite() => Ok(ReadingValue::Number(n)),
                    Some(_) => Err("not a finite number".to_string()),
                    None => Err(format!(
                        "expected a number, boolean or string, found {}",
                        kind(&Value::Scalar(s.clone()))
                    )),
                },
            },
            (Value::Object(ObjType::Text), id) => reader
                .text(id)
                .map(ReadingValue::Text)
                .ok_or_else(|| "unreadable text".to_string()),
            (other, _) => Err(format!(
                "expected a number, boolean or string, found {}",
                kind(other)
            )),
        };
        match value {
            Ok(v) => {
                readings.insert(name.to_owned(), v);
            }
            Err(message) => problems.push(map.child(name), message),
        }
    }
    readings
}

/// `observedConditions` (a list of strings), and a schema 1 item's `observedCondition` (which
/// tablet apps written for schema 1 still set) when the list does not hold it already.
fn read_conditions(reader: &Reader<'_>, item: &Field, problems: &mut Problems) -> Vec<String> {
    let field = item.child(OBSERVED_CONDITIONS);
    let mut out = Vec::new();
    match item.get(reader, OBSERVED_CONDITIONS) {
        Some((Value::Object(ObjType::List), obj)) => {
            let list = field.with_obj(obj);
            for (index, (value, id)) in reader.list(&list.obj).into_iter().enumerate() {
                let text = match value {
                    Value::Scalar(s) => s.as_str().map(str::to_string),
                    Value::Object(ObjType::Text) => reader.text(&id),
                    _ => None,
                };
                match text {
                    Some(t) if !out.contains(&t) => out.push(t),
                    Some(_) => {}
                    None => problems.push(
                        list.child(&index.to_string()),
                        "expected an observed condition string".to_string(),
                    ),
                }
            }
        }
        Some((other, _)) => {
            problems.push(field, format!("expected a list, found {}", kind(&other)));
        }
        None => {}
    }
    if let Some(single) = read_string(reader, item, OBSERVED_CONDITION, Need::Optional, problems) {
        if !out.contains(&single) {
            out.push(single);
        }
    }
    out
}

fn read_evidence(reader: &Reader<'_>, item: &Field, problems: &mut Problems) -> Vec<String> {
    let field = item.child(EVIDENCE);
    let list = match item.get(reader, EVIDENCE) {
        Some((Value::Object(ObjType::List), obj)) => field.with_obj(obj),
        Some((other, _)) => {
            problems.push(field, format!("expected a list, found {}", kind(&other)));
            return Vec::new();
        }
        None => {
            problems.push(field, "missing".to_string());
            return Vec::new();
        }
    };
    let mut evidence = Vec::new();
    for (index, (value, id)) in reader.list(&list.obj).into_iter().enumerate() {
        let text = match value {
            Value::Scalar(s) => s.as_str().map(str::to_string),
            Value::Object(ObjType::Text) => reader.text(&id),
            _ => None,
        };
        match text {
            Some(text) => evidence.push(text),
            None => problems.push(
                list.child(&index.to_string()),
                "expected an evidence id string".to_string(),
            ),
        }
    }
    evidence
}
