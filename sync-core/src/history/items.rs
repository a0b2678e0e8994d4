//! Conflicts grouped per item of a session document, and resolving an item in one change.
//!
//! Two tablets that record the same asset offline leave several conflicted properties of one
//! item (`outcome`, `observedCondition`, `notes`, and always `recordedBy`/`recordedAt`). A
//! person decides once per item, not once per property: which writer's version to keep, or
//! what the values should be. So conflicts are grouped by item, bookkeeping fields (who/when)
//! are folded into the writers' *sides*, conflicts whose values are all equal are dropped, and
//! each side carries the fields that go with its conflicted ones (an outcome with its observed
//! conditions, readings and notes), so that picking a side is consistent.

use std::collections::{BTreeMap, HashMap, HashSet};

use automerge::transaction::Transactable;
use automerge::{Automerge, ChangeHash, ObjId, ObjType, ReadDoc, ScalarValue, Value, ROOT};
use serde::Serialize;
use serde_json::Value as Json;

use super::{change_summaries, conflicts, Conflict, ConflictValue};
use crate::read::{pointer_segment, Reader};
use crate::session::Outcome;

/// Item fields that only say who recorded a result and when: never conflicts of their own,
/// shown on the sides instead.
pub const BOOKKEEPING_FIELDS: [&str; 2] = ["recordedBy", "recordedAt"];

/// Item fields that belong together: a side's values include those its own changes wrote,
/// and an edit (`ItemResolution::Values`) may set them.
pub const COMPANION_FIELDS: [&str; 5] = [
    "outcome",
    "observedCondition",
    "observedConditions",
    "readings",
    "notes",
];

/// The conflicts of one document, grouped.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupedConflicts {
    /// One entry per item with at least one field whose concurrent values differ, in key
    /// order.
    pub items: Vec<ItemConflicts>,
    /// Conflicts not under an item (values differing), in document order.
    pub document: Vec<Conflict>,
}

/// The conflicts of one item.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ItemConflicts {
    /// The item's key under `items` (the asset id).
    pub key: String,
    /// JSON pointer of the item, `/items/<key>`.
    pub path: String,
    /// The conflicted fields (bookkeeping fields excluded), in document order.
    pub fields: Vec<FieldConflict>,
    /// One side per writer (automerge actor) with a concurrent value.
    pub sides: Vec<ItemSide>,
}

/// One conflicted field of an item.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldConflict {
    /// The field, as a pointer relative to the item: `outcome`, `readings/pressure`.
    pub field: String,
    /// The conflict (full path, winner, every value).
    pub conflict: Conflict,
    /// For each of `conflict.values`, the index of its side in [`ItemConflicts::sides`].
    pub sides: Vec<usize>,
}

/// One writer's concurrent version of an item.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ItemSide {
    /// The automerge actor, hex.
    pub actor: String,
    /// The writer's latest change to the item in its concurrent version, hex.
    pub change: Option<String>,
    /// The `recordedBy` of this version, if any.
    pub recorded_by: Option<Json>,
    /// The `recordedAt` of this version, if any.
    pub recorded_at: Option<Json>,
    /// Top-level field -> value in this version, for every conflicted field and every
    /// companion field a side's concurrent changes wrote (`null`: absent in this version).
    pub values: BTreeMap<String, Json>,
}

/// How to resolve an item.
#[derive(Debug, Clone, PartialEq)]
pub enum ItemResolution {
    /// Take that side's values (index into [`ItemConflicts::sides`]).
    Side(usize),
    /// Set these companion fields; fields still conflicted get their current winner.
    Values(BTreeMap<String, Json>),
}

/// Why an item could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ResolveItemError {
    /// The document has no such item.
    #[error("the session has no item {0:?}")]
    NoItem(String),
    /// A side was chosen but the item has no conflict.
    #[error("item {0:?} has no conflict")]
    NoConflict(String),
    /// The side index is out of range.
    #[error("there is no side {side}: the item has {sides} side(s)")]
    NoSuchSide {
        /// The index asked for.
        side: usize,
        /// How many sides there are.
        sides: usize,
    },
    /// A value the schema does not allow.
    #[error("{0}")]
    InvalidValue(String),
    /// automerge refused an operation.
    #[error("automerge: {0}")]
    Automerge(#[from] automerge::AutomergeError),
}

/// Numbers compare as numbers (an integer 5 written by JS equals 5.0).
fn same_json(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => x.as_f64() == y.as_f64(),
        (Json::Array(x), Json::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_json(a, b))
        }
        (Json::Object(x), Json::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

/// True when the conflict's values are not all equal.
pub fn values_differ(conflict: &Conflict) -> bool {
    match conflict.values.split_first() {
        Some((first, rest)) => rest.iter().any(|v| !same_json(&first.value, &v.value)),
        None => false,
    }
}

fn decode_segment(seg: &str) -> String {
    seg.replace("~1", "/").replace("~0", "~")
}

/// `(item key, field relative pointer, top-level field)` of a path under an item's field.
pub fn item_field_of(path: &str) -> Option<(String, String, String)> {
    let rest = path.strip_prefix("/items/")?;
    let (key, field) = rest.split_once('/')?;
    if key.is_empty() || field.is_empty() {
        return None;
    }
    let top = field.split('/').next().unwrap_or(field);
    Some((decode_segment(key), field.to_owned(), decode_segment(top)))
}

/// True for a bookkeeping (who/when) path of an item.
pub fn is_bookkeeping(path: &str) -> bool {
    item_field_of(path).is_some_and(|(_, _, top)| BOOKKEEPING_FIELDS.contains(&top.as_str()))
}

/// The document's conflicts grouped per item: equal-valued conflicts dropped, bookkeeping
/// fields folded into sides.
pub fn grouped_conflicts(doc: &Automerge) -> GroupedConflicts {
    let all = conflicts(doc);
    let mut document = Vec::new();
    // key -> (every conflict under the item, the differing non-bookkeeping ones)
    let mut by_item: BTreeMap<String, ItemRaw> = BTreeMap::new();
    for c in all {
        match item_field_of(&c.path) {
            Some((key, field, top)) => {
                let entry = by_item.entry(key).or_default();
                if values_differ(&c) && !BOOKKEEPING_FIELDS.contains(&top.as_str()) {
                    entry.1.push((field, c.clone()));
                }
                entry.0.push(c);
            }
            None => {
                if values_differ(&c) {
                    document.push(c);
                }
            }
        }
    }
    if by_item.values().all(|(_, real)| real.is_empty()) {
        return GroupedConflicts {
            items: Vec::new(),
            document,
        };
    }
    let history = History::of(doc);
    let items = by_item
        .into_iter()
        .filter(|(_, (_, real))| !real.is_empty())
        .map(|(key, (every, real))| group_item(doc, &history, key, &every, real))
        .collect();
    GroupedConflicts { items, document }
}

/// An item's conflicts: all of them, and the differing non-bookkeeping ones by field.
type ItemRaw = (Vec<Conflict>, Vec<(String, Conflict)>);

/// What the sides need from the history: each change's actor, deps and touched paths.
struct History {
    order: Vec<String>,
    actor: HashMap<String, String>,
    deps: HashMap<String, Vec<String>>,
    touched: HashMap<String, Vec<String>>,
}

impl History {
    fn of(doc: &Automerge) -> Self {
        let mut h = History {
            order: Vec::new(),
            actor: HashMap::new(),
            deps: HashMap::new(),
            touched: HashMap::new(),
        };
        for s in change_summaries(doc) {
            h.order.push(s.hash.clone());
            h.actor.insert(s.hash.clone(), s.actor);
            h.deps.insert(s.hash.clone(), s.deps);
            h.touched.insert(s.hash, s.touched);
        }
        h
    }

    /// Every change in the history of `hashes`, themselves included.
    fn ancestors<'a>(&self, hashes: impl IntoIterator<Item = &'a String>) -> HashSet<String> {
        let mut seen = HashSet::new();
        let mut todo: Vec<String> = hashes.into_iter().cloned().collect();
        while let Some(h) = todo.pop() {
            if seen.insert(h.clone()) {
                if let Some(deps) = self.deps.get(&h) {
                    todo.extend(deps.iter().cloned());
                }
            }
        }
        seen
    }
}

fn touches(paths: &[String], prefix: &str) -> bool {
    paths.iter().any(|p| {
        p == prefix
            || p.strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('/'))
    })
}

/// The value of an item's top-level field at `heads`, as JSON.
fn field_at(doc: &Automerge, heads: Option<&[ChangeHash]>, key: &str, field: &str) -> Option<Json> {
    let reader = Reader::new(doc, heads);
    let (_, items) = reader.get(&ROOT, "items")?;
    let (_, item) = reader.get(&items, key)?;
    let (value, id) = reader.get(&item, field)?;
    Some(reader.json(&value, &id, 3))
}

fn group_item(
    doc: &Automerge,
    history: &History,
    key: String,
    every: &[Conflict],
    real: Vec<(String, Conflict)>,
) -> ItemConflicts {
    let path = format!("/items/{}", pointer_segment(&key));
    // Sides: the writer of the first field's winner first (what the document shows), then by
    // actor; deterministic, so a side index means the same thing until the document changes.
    let mut actors: Vec<String> = Vec::new();
    for (_, c) in &real {
        for v in &c.values {
            if !actors.contains(&v.actor) {
                actors.push(v.actor.clone());
            }
        }
    }
    let first_winner = real.first().and_then(|(_, c)| {
        c.values
            .iter()
            .find(|v| same_json(&v.value, &c.winner))
            .map(|v| v.actor.clone())
    });
    actors.sort_by_key(|a| (Some(a) != first_winner.as_ref(), a.clone()));

    // The changes that wrote each actor's concurrent values under this item.
    let mut conflict_changes: HashMap<&str, Vec<String>> = HashMap::new();
    for c in every {
        for v in &c.values {
            if let Some(h) = &v.change {
                conflict_changes
                    .entry(v.actor.as_str())
                    .or_default()
                    .push(h.clone());
            }
        }
    }

    // Each writer's version: its changes touching the item that no other side had seen.
    let own: Vec<Vec<&String>> = actors
        .iter()
        .map(|actor| {
            let others_seen = history.ancestors(
                actors
                    .iter()
                    .filter(|a| *a != actor)
                    .flat_map(|a| conflict_changes.get(a.as_str()).into_iter().flatten()),
            );
            history
                .order
                .iter()
                .filter(|h| history.actor.get(*h) == Some(actor))
                .filter(|h| !others_seen.contains(*h))
                .filter(|h| history.touched.get(*h).is_some_and(|t| touches(t, &path)))
                .collect()
        })
        .collect();
    // The fields a side carries: the conflicted ones, and the companions any side's version
    // wrote (so that taking a side also takes its outcome's conditions, readings and notes).
    let mut tops: Vec<String> = Vec::new();
    for (_, c) in &real {
        if let Some((_, _, top)) = item_field_of(&c.path) {
            if !tops.contains(&top) {
                tops.push(top);
            }
        }
    }
    for f in COMPANION_FIELDS {
        let prefix = format!("{path}/{}", pointer_segment(f));
        let touched = own
            .iter()
            .flatten()
            .any(|h| history.touched.get(*h).is_some_and(|t| touches(t, &prefix)));
        if touched && !tops.iter().any(|t| t == f) {
            tops.push(f.to_owned());
        }
    }

    let mut sides = Vec::with_capacity(actors.len());
    for (actor, own) in actors.iter().zip(&own) {
        let heads: Option<ChangeHash> = own
            .last()
            .map(|h| (*h).clone())
            .or_else(|| {
                conflict_changes
                    .get(actor.as_str())
                    .and_then(|c| c.last().cloned())
            })
            .and_then(|h| h.parse().ok());
        let direct = |top: &str| -> Option<Json> {
            let field_path = format!("{path}/{}", pointer_segment(top));
            every
                .iter()
                .find(|c| c.path == field_path)
                .and_then(|c| c.values.iter().find(|v| &v.actor == actor))
                .map(|v| v.value.clone())
        };
        // The writer's value: the one it wrote concurrently, else the field as its version
        // shows it (null when absent there).
        let pick = |top: &str| -> Json {
            direct(top)
                .or_else(|| {
                    heads.and_then(|h| field_at(doc, Some(std::slice::from_ref(&h)), &key, top))
                })
                .unwrap_or(Json::Null)
        };
        let values = tops.iter().map(|t| (t.clone(), pick(t))).collect();
        let recorded = |f: &str| Some(pick(f)).filter(|v| !v.is_null());
        sides.push(ItemSide {
            actor: actor.clone(),
            change: heads.map(|h| h.to_string()),
            recorded_by: recorded(BOOKKEEPING_FIELDS[0]),
            recorded_at: recorded(BOOKKEEPING_FIELDS[1]),
            values,
        });
    }

    let fields = real
        .into_iter()
        .map(|(field, conflict)| {
            let sides = conflict
                .values
                .iter()
                .map(|v: &ConflictValue| actors.iter().position(|a| *a == v.actor).unwrap_or(0))
                .collect();
            FieldConflict {
                field,
                conflict,
                sides,
            }
        })
        .collect();
    ItemConflicts {
        key,
        path,
        fields,
        sides,
    }
}

/// Checks the values of an item edit: only companion fields, each as the schema wants it
/// (an outcome, a condition string or null, a list of condition strings, a map of scalar
/// readings, notes text).
pub fn validate_item_values(values: &BTreeMap<String, Json>) -> Result<(), String> {
    if values.is_empty() {
        return Err("values must set at least one field".into());
    }
    for (field, value) in values {
        let ok = match field.as_str() {
            "outcome" => value.as_str().is_some_and(|s| s.parse::<Outcome>().is_ok()),
            "observedCondition" => value.is_string() || value.is_null(),
            "observedConditions" => value
                .as_array()
                .is_some_and(|a| a.iter().all(Json::is_string)),
            "readings" => value.as_object().is_some_and(|m| {
                m.values()
                    .all(|v| v.is_string() || v.is_boolean() || v.is_number())
            }),
            "notes" => value.is_string(),
            _ => {
                return Err(format!(
                    "{field:?} cannot be set here (allowed: {})",
                    COMPANION_FIELDS.join(", ")
                ))
            }
        };
        if !ok {
            let want = match field.as_str() {
                "outcome" => "one of pass, fail, not_tested, not_accessible",
                "observedCondition" => "a string or null",
                "observedConditions" => "a list of strings",
                "readings" => "an object of numbers, booleans or strings",
                _ => "a string",
            };
            return Err(format!("{field} must be {want}"));
        }
    }
    Ok(())
}

/// Resolves an item in one change made by the document's current actor: takes a side's
/// values (and its `recordedBy`/`recordedAt`), or sets `values` with `recorded` as
/// `recordedBy`/`recordedAt`. Every other field of the item still conflicted (bookkeeping and
/// equal-valued conflicts included) is rewritten with its current winner, so the item has no
/// conflict left. A field is deleted then written, so the new value supersedes every
/// concurrent one even when it equals the current winner.
pub fn resolve_item(
    doc: &mut Automerge,
    key: &str,
    resolution: &ItemResolution,
    recorded: Option<(&str, &str)>,
    message: &str,
    time: i64,
) -> Result<Option<ChangeHash>, ResolveItemError> {
    let item_exists = Reader::new(doc, None)
        .get(&ROOT, "items")
        .and_then(|(_, items)| Reader::new(doc, None).get(&items, key))
        .is_some_and(|(v, _)| matches!(v, Value::Object(ObjType::Map)));
    if !item_exists {
        return Err(ResolveItemError::NoItem(key.to_owned()));
    }
    let grouped = grouped_conflicts(doc);
    let item = grouped.items.iter().find(|i| i.key == key);
    let mut writes: BTreeMap<String, Json> = BTreeMap::new();
    match resolution {
        ItemResolution::Side(n) => {
            let item = item.ok_or_else(|| ResolveItemError::NoConflict(key.to_owned()))?;
            let side = item.sides.get(*n).ok_or(ResolveItemError::NoSuchSide {
                side: *n,
                sides: item.sides.len(),
            })?;
            writes.extend(side.values.clone());
            if let Some(v) = &side.recorded_by {
                writes.insert(BOOKKEEPING_FIELDS[0].into(), v.clone());
            }
            if let Some(v) = &side.recorded_at {
                writes.insert(BOOKKEEPING_FIELDS[1].into(), v.clone());
            }
        }
        ItemResolution::Values(values) => {
            validate_item_values(values).map_err(ResolveItemError::InvalidValue)?;
            writes.extend(values.clone());
            if let Some((by, at)) = recorded {
                writes.insert(BOOKKEEPING_FIELDS[0].into(), Json::from(by));
                writes.insert(BOOKKEEPING_FIELDS[1].into(), Json::from(at));
            }
        }
    }
    // Whatever else under the item is still conflicted keeps its winner, written anew.
    for c in conflicts(doc) {
        if let Some((k, _, top)) = item_field_of(&c.path) {
            if k == key && !writes.contains_key(&top) {
                if let Some(v) = field_at(doc, None, key, &top) {
                    writes.insert(top, v);
                }
            }
        }
    }
    let key = key.to_owned();
    let result = doc.transact_with(
        |_| {
            automerge::transaction::CommitOptions::default()
                .with_message(message)
                .with_time(time)
        },
        |tx| {
            let (_, items) = tx
                .get(ROOT, "items")?
                .ok_or_else(|| ResolveItemError::NoItem(key.clone()))?;
            let (_, item) = tx
                .get(&items, key.as_str())?
                .ok_or_else(|| ResolveItemError::NoItem(key.clone()))?;
            for (field, value) in &writes {
                if tx.get(&item, field.as_str())?.is_some() {
                    tx.delete(&item, field.as_str())?;
                }
                // A side's null is a field its version does not have: it stays deleted.
                if !(value.is_null() && matches!(resolution, ItemResolution::Side(_))) {
                    put_json(tx, &item, field, value, field == "notes")?;
                }
            }
            Ok::<_, ResolveItemError>(())
        },
    );
    match result {
        Ok(success) => Ok(success.hash),
        Err(failure) => Err(failure.error),
    }
}

fn scalar(value: &Json) -> ScalarValue {
    match value {
        Json::String(s) => ScalarValue::Str(s.as_str().into()),
        Json::Bool(b) => ScalarValue::Boolean(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => ScalarValue::Int(i),
            None => ScalarValue::F64(n.as_f64().unwrap_or_default()),
        },
        _ => ScalarValue::Null,
    }
}

/// Writes `value` at `key` of the map `obj`: objects and arrays as maps and lists, a string
/// as a text object when `text`, readings' numbers as floats (as the server writes them).
fn put_json<T: Transactable>(
    tx: &mut T,
    obj: &ObjId,
    key: &str,
    value: &Json,
    text: bool,
) -> Result<(), automerge::AutomergeError> {
    match value {
        Json::String(s) if text => {
            let id = tx.put_object(obj, key, ObjType::Text)?;
            if !s.is_empty() {
                tx.splice_text(&id, 0, 0, s)?;
            }
        }
        Json::Object(map) => {
            let id = tx.put_object(obj, key, ObjType::Map)?;
            for (k, v) in map {
                match v {
                    Json::Number(n) if key == "readings" => tx.put(
                        &id,
                        k.as_str(),
                        ScalarValue::F64(n.as_f64().unwrap_or_default()),
                    )?,
                    _ => put_json(tx, &id, k, v, false)?,
                }
            }
        }
        Json::Array(list) => {
            let id = tx.put_object(obj, key, ObjType::List)?;
            for (i, v) in list.iter().enumerate() {
                match v {
                    Json::Object(_) | Json::Array(_) => {
                        // Nested containers in lists do not occur in the schema; keep the
                        // element as its JSON text rather than fail.
                        tx.insert(&id, i, v.to_string())?
                    }
                    _ => tx.insert(&id, i, scalar(v))?,
                }
            }
        }
        _ => tx.put(obj, key, scalar(value))?,
    }
    Ok(())
}
