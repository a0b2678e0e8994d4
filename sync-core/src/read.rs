//! Reading any automerge document through the generic API, now or at given heads.
//!
//! Documents come from JS clients too, so nothing here assumes a shape: every read answers
//! `None`/empty instead of failing, and walks stop at [`MAX_DEPTH`] so a hostile document
//! cannot exhaust the stack.

use automerge::{Automerge, ChangeHash, ObjId, ObjType, Prop, ReadDoc, ScalarValue, Value};
use serde_json::{Map, Number, Value as Json};

/// Deepest nesting the recursive walks follow; deeper objects render as `null`.
pub(crate) const MAX_DEPTH: usize = 64;

/// A read-only view of a document, at its current state or at some heads.
#[derive(Clone, Copy)]
pub(crate) struct Reader<'a> {
    doc: &'a Automerge,
    heads: Option<&'a [ChangeHash]>,
}

impl<'a> Reader<'a> {
    /// A view of `doc` at `heads` (the current state when `None`).
    pub(crate) fn new(doc: &'a Automerge, heads: Option<&'a [ChangeHash]>) -> Self {
        Self { doc, heads }
    }

    /// The document read.
    pub(crate) fn doc(&self) -> &'a Automerge {
        self.doc
    }

    /// The winning value at `prop`, if any.
    pub(crate) fn get(&self, obj: &ObjId, prop: impl Into<Prop>) -> Option<(Value<'a>, ObjId)> {
        let result = match self.heads {
            Some(heads) => self.doc.get_at(obj, prop, heads),
            None => self.doc.get(obj, prop),
        };
        result.ok().flatten()
    }

    /// Every concurrent value at `prop`; more than one means a conflict.
    pub(crate) fn get_all(&self, obj: &ObjId, prop: impl Into<Prop>) -> Vec<(Value<'a>, ObjId)> {
        let result = match self.heads {
            Some(heads) => self.doc.get_all_at(obj, prop, heads),
            None => self.doc.get_all(obj, prop),
        };
        result.unwrap_or_default()
    }

    /// The keys of a map, in automerge's (lexicographic) order.
    pub(crate) fn keys(&self, obj: &ObjId) -> Vec<String> {
        match self.heads {
            Some(heads) => self.doc.keys_at(obj, heads).collect(),
            None => self.doc.keys(obj).collect(),
        }
    }

    /// The length of a list or text.
    pub(crate) fn length(&self, obj: &ObjId) -> usize {
        match self.heads {
            Some(heads) => self.doc.length_at(obj, heads),
            None => self.doc.length(obj),
        }
    }

    /// The content of a text object.
    pub(crate) fn text(&self, obj: &ObjId) -> Option<String> {
        let result = match self.heads {
            Some(heads) => self.doc.text_at(obj, heads),
            None => self.doc.text(obj),
        };
        result.ok()
    }

    /// A value as plain JSON: maps and lists recursively, text as a string.
    pub(crate) fn json(&self, value: &Value<'_>, id: &ObjId, depth: usize) -> Json {
        match value {
            Value::Scalar(s) => scalar_json(s),
            Value::Object(typ) => self.object_json(id, *typ, depth),
        }
    }

    /// An object as plain JSON.
    pub(crate) fn object_json(&self, obj: &ObjId, typ: ObjType, depth: usize) -> Json {
        if depth >= MAX_DEPTH {
            return Json::Null;
        }
        match typ {
            ObjType::Map | ObjType::Table => {
                let mut map = Map::new();
                for key in self.keys(obj) {
                    if let Some((value, id)) = self.get(obj, key.as_str()) {
                        map.insert(key, self.json(&value, &id, depth + 1));
                    }
                }
                Json::Object(map)
            }
            ObjType::List => Json::Array(
                (0..self.length(obj))
                    .filter_map(|i| self.get(obj, i))
                    .map(|(value, id)| self.json(&value, &id, depth + 1))
                    .collect(),
            ),
            ObjType::Text => self.text(obj).map(Json::String).unwrap_or(Json::Null),
        }
    }
}

/// A scalar as JSON: counters and timestamps become numbers, bytes an array of numbers,
/// non-finite floats and values from future automerge versions `null`.
pub(crate) fn scalar_json(s: &ScalarValue) -> Json {
    match s {
        ScalarValue::Str(s) => Json::String(s.to_string()),
        ScalarValue::Int(i) | ScalarValue::Timestamp(i) => Json::Number((*i).into()),
        ScalarValue::Uint(u) => Json::Number((*u).into()),
        ScalarValue::F64(f) => Number::from_f64(*f).map_or(Json::Null, Json::Number),
        ScalarValue::Counter(c) => Json::Number(i64::from(c).into()),
        ScalarValue::Boolean(b) => Json::Bool(*b),
        ScalarValue::Bytes(b) => Json::Array(b.iter().map(|byte| Json::from(*byte)).collect()),
        ScalarValue::Null | ScalarValue::Unknown { .. } => Json::Null,
    }
}

/// A short name for the kind of a value, for schema problem messages.
pub(crate) fn kind(value: &Value<'_>) -> &'static str {
    match value {
        Value::Object(ObjType::Map) => "a map",
        Value::Object(ObjType::Table) => "a table",
        Value::Object(ObjType::List) => "a list",
        Value::Object(ObjType::Text) => "a text",
        Value::Scalar(s) => match s.as_ref() {
            ScalarValue::Str(_) => "a string",
            ScalarValue::Int(_) | ScalarValue::Uint(_) => "an integer",
            ScalarValue::F64(_) => "a number",
            ScalarValue::Counter(_) => "a counter",
            ScalarValue::Timestamp(_) => "a timestamp",
            ScalarValue::Boolean(_) => "a boolean",
            ScalarValue::Bytes(_) => "bytes",
            ScalarValue::Null => "null",
            ScalarValue::Unknown { .. } => "a value of an unknown type",
        },
    }
}

/// A numeric scalar as `f64` (integers, floats and counters count as numbers).
pub(crate) fn scalar_f64(s: &ScalarValue) -> Option<f64> {
    match s {
        ScalarValue::Int(i) => Some(*i as f64),
        ScalarValue::Uint(u) => Some(*u as f64),
        ScalarValue::F64(f) => Some(*f),
        ScalarValue::Counter(c) => Some(f64::from(c)),
        _ => None,
    }
}

/// Escapes one JSON-pointer segment (RFC 6901): `~` -> `~0`, `/` -> `~1`.
pub(crate) fn pointer_segment(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}
