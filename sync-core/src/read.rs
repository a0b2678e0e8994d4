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

    /// The winning value of every key of a map, read in one pass. Looking keys up one by one
    /// with [`Reader::get`] seeks the document's op columns again for each key, which in
    /// automerge 0.12 costs about as much as reading the whole (small) map.
    pub(crate) fn entries(&self, obj: &ObjId) -> MapEntries {
        let range = match self.heads {
            Some(heads) => self.doc.map_range_at(obj, .., heads),
            None => self.doc.map_range(obj, ..),
        };
        let mut entries: Vec<(String, Value<'static>, ObjId)> = range
            .map(|item| {
                let id = item.id();
                (item.key.into_owned(), Value::from(item.value), id)
            })
            .collect();
        // Lookups search by key; do not depend on the order automerge yields them in.
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        MapEntries(entries)
    }

    /// The winning value at every index of a list, read in one pass (see [`Reader::entries`]).
    pub(crate) fn list(&self, obj: &ObjId) -> Vec<(Value<'static>, ObjId)> {
        let range = match self.heads {
            Some(heads) => self.doc.list_range_at(obj, .., heads),
            None => self.doc.list_range(obj, ..),
        };
        range
            .map(|item| {
                let id = item.id();
                (Value::from(item.value), id)
            })
            .collect()
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

/// A map's keys and their winning values, as [`Reader::entries`] read them, sorted by key.
#[derive(Debug, Default)]
pub(crate) struct MapEntries(Vec<(String, Value<'static>, ObjId)>);

impl MapEntries {
    /// The winning value at `key`, as [`Reader::get`] would answer.
    pub(crate) fn get(&self, key: &str) -> Option<(Value<'static>, ObjId)> {
        let at = self
            .0
            .binary_search_by(|(k, _, _)| k.as_str().cmp(key))
            .ok()?;
        let (_, value, id) = &self.0[at];
        Some((value.clone(), id.clone()))
    }

    /// Every key with its value, in key order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &Value<'static>, &ObjId)> {
        self.0.iter().map(|(k, v, id)| (k.as_str(), v, id))
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

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::transaction::Transactable;
    use automerge::{ActorId, ROOT};

    /// Two devices writing the same keys and list slots concurrently, merged: the one-pass
    /// reads pick the same winners as key-by-key reads, now and at earlier heads.
    #[test]
    fn one_pass_reads_agree_with_lookups_under_conflicts() {
        let mut a = Automerge::new().with_actor(ActorId::from(b"aaaa".as_slice()));
        let mut tx = a.transaction();
        let map = tx.put_object(ROOT, "m", ObjType::Map).unwrap();
        let list = tx.put_object(ROOT, "l", ObjType::List).unwrap();
        for i in 0..5 {
            tx.put(&map, format!("k{i}"), i as i64).unwrap();
            tx.insert(&list, i, format!("v{i}")).unwrap();
        }
        tx.commit();
        let early = a.get_heads();
        let mut b = a.fork().with_actor(ActorId::from(b"bbbb".as_slice()));
        let mut tx = a.transaction();
        tx.put(&map, "k1", "from a").unwrap();
        tx.put(&map, "k3", 30).unwrap();
        tx.put(&list, 2, "a2").unwrap();
        tx.put_object(&map, "obj", ObjType::Text).unwrap();
        tx.put(&map, "count", ScalarValue::counter(5)).unwrap();
        tx.commit();
        let mut tx = a.transaction();
        tx.increment(&map, "count", 3).unwrap();
        tx.commit();
        let mut tx = b.transaction();
        tx.put(&map, "k1", "from b").unwrap();
        tx.delete(&map, "k3").unwrap();
        tx.put(&list, 2, "b2").unwrap();
        tx.put(&map, "k9", true).unwrap();
        tx.delete(&list, 4).unwrap();
        tx.put(&list, 0, ScalarValue::counter(1)).unwrap();
        tx.commit();
        let mut tx = b.transaction();
        tx.increment(&list, 0, 10).unwrap();
        tx.commit();
        a.merge(&mut b).unwrap();
        let now = a.get_heads();
        for heads in [None, Some(early.as_slice()), Some(now.as_slice())] {
            let reader = Reader::new(&a, heads);
            let entries = reader.entries(&map);
            let keys = reader.keys(&map);
            assert_eq!(
                entries
                    .iter()
                    .map(|(k, _, _)| k.to_owned())
                    .collect::<Vec<_>>(),
                keys
            );
            for key in keys.iter().map(String::as_str).chain(["absent"]) {
                assert_eq!(entries.get(key), reader.get(&map, key), "key {key}");
            }
            let list_now = reader.list(&list);
            assert_eq!(list_now.len(), reader.length(&list));
            for (i, item) in list_now.into_iter().enumerate() {
                assert_eq!(Some(item), reader.get(&list, i), "index {i}");
            }
        }
    }
}
