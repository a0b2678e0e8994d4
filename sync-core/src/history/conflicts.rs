//! Conflicts: properties where concurrent changes left more than one value.
//!
//! automerge keeps every concurrent value of a property and picks a winner deterministically
//! (`get` returns it, `get_all` returns them all). Listing them lets a person see that two
//! inspectors recorded different things and choose.

use automerge::{Automerge, ObjId, ObjType, Prop, Value, ROOT};
use serde::Serialize;

use crate::read::{pointer_segment, Reader, MAX_DEPTH};

/// A property with concurrent values.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Conflict {
    /// JSON pointer of the property, e.g. `/items/<assetId>/outcome`.
    pub path: String,
    /// The value automerge shows (the winner), as JSON.
    pub winner: serde_json::Value,
    /// Every concurrent value, winner included.
    pub values: Vec<ConflictValue>,
}

/// One of the concurrent values of a property.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConflictValue {
    /// The value, as JSON.
    pub value: serde_json::Value,
    /// The actor whose operation wrote it, hex.
    pub actor: String,
    /// The id of that operation, `counter@actor`.
    pub op_id: String,
    /// The change that wrote it, hex (`None` only for a change automerge no longer knows).
    pub change: Option<String>,
}

/// Every conflicted property of the current document, in document order. The walk follows
/// the winning value of each property (the losing sides are listed, not descended into).
pub fn conflicts(doc: &Automerge) -> Vec<Conflict> {
    let reader = Reader::new(doc, None);
    let mut found = Vec::new();
    walk(&reader, &ROOT, ObjType::Map, "", 0, &mut found);
    found
}

fn walk(
    reader: &Reader<'_>,
    obj: &ObjId,
    typ: ObjType,
    path: &str,
    depth: usize,
    found: &mut Vec<Conflict>,
) {
    if depth >= MAX_DEPTH {
        return;
    }
    match typ {
        ObjType::Map | ObjType::Table => {
            for key in reader.keys(obj) {
                let child_path = format!("{path}/{}", pointer_segment(&key));
                visit(reader, obj, key.into(), &child_path, depth, found);
            }
        }
        ObjType::List => {
            for index in 0..reader.length(obj) {
                let child_path = format!("{path}/{index}");
                visit(reader, obj, index.into(), &child_path, depth, found);
            }
        }
        // Characters of a text are inserted and deleted, never overwritten concurrently.
        ObjType::Text => {}
    }
}

fn visit(
    reader: &Reader<'_>,
    obj: &ObjId,
    prop: Prop,
    path: &str,
    depth: usize,
    found: &mut Vec<Conflict>,
) {
    let all = reader.get_all(obj, prop.clone());
    let winner = reader.get(obj, prop);
    if all.len() > 1 {
        let values = all
            .iter()
            .map(|(value, id)| ConflictValue {
                value: reader.json(value, id, depth + 1),
                actor: actor_hex(id),
                op_id: id.to_string(),
                change: reader.doc().hash_for_opid(id).map(|h| h.to_string()),
            })
            .collect();
        let winner = winner
            .as_ref()
            .map_or(serde_json::Value::Null, |(value, id)| {
                reader.json(value, id, depth + 1)
            });
        found.push(Conflict {
            path: path.to_string(),
            winner,
            values,
        });
    }
    if let Some((Value::Object(typ), id)) = winner {
        walk(reader, &id, typ, path, depth + 1, found);
    }
}

fn actor_hex(id: &ObjId) -> String {
    match id {
        ObjId::Id(_, actor, _) => actor.to_hex_string(),
        ObjId::Root => String::new(),
    }
}
