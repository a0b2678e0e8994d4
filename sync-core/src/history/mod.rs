//! History and conflict views of any document: who changed what, and where concurrent edits
//! left more than one value.

mod conflicts;
mod diff;
mod items;

use std::collections::{BTreeSet, HashMap};
use std::panic::{catch_unwind, AssertUnwindSafe};

use automerge::legacy::{Key, ObjectId, OpType};
use automerge::{Automerge, Change, ObjId, ObjType, Value, ROOT};
use serde::Serialize;

use crate::read::{pointer_segment, Reader, MAX_DEPTH};

pub use conflicts::{conflicts, Conflict, ConflictValue};
pub use diff::{json_diff, JsonChange};
pub use items::{
    grouped_conflicts, is_bookkeeping, item_field_of, resolve_item, validate_item_values,
    values_differ, FieldConflict, GroupedConflicts, ItemConflicts, ItemResolution, ItemSide,
    ResolveItemError, BOOKKEEPING_FIELDS, COMPANION_FIELDS,
};

/// One change of a document's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChangeSummary {
    /// The change hash, hex.
    pub hash: String,
    /// The actor that made it, hex.
    pub actor: String,
    /// Its sequence number for that actor (1-based).
    pub seq: u64,
    /// When the author's clock says it was made, seconds since the Unix epoch (advisory).
    pub time: i64,
    /// The commit message, if any.
    pub message: Option<String>,
    /// Hashes of the changes it depends on, hex.
    pub deps: Vec<String>,
    /// JSON pointers of the properties it wrote, sorted (`/items/<assetId>/outcome`); edits
    /// inside a list or text are reported at the list or text itself.
    pub touched: Vec<String>,
}

/// Every change of `doc` in causal order (dependencies first).
pub fn change_summaries(doc: &Automerge) -> Vec<ChangeSummary> {
    let mut paths = object_paths(&Reader::new(doc, None));
    doc.get_changes(&[])
        .iter()
        .map(|change| summarize(change, &mut paths))
        .collect()
}

fn summarize(change: &Change, paths: &mut HashMap<String, String>) -> ChangeSummary {
    ChangeSummary {
        hash: change.hash().to_string(),
        actor: change.actor_id().to_hex_string(),
        seq: change.seq(),
        time: change.timestamp(),
        message: change.message().map(str::to_string),
        deps: change.deps().iter().map(ToString::to_string).collect(),
        touched: touched_paths(change, paths),
    }
}

/// Paths written by `change`. Objects are found by id in `paths` (the current document);
/// objects deleted since are found where the change history created them, so `paths` learns
/// each object a change makes.
fn touched_paths(change: &Change, paths: &mut HashMap<String, String>) -> Vec<String> {
    // `decode` expands the stored change; it asserts invariants that automerge checked when
    // the change entered the document. Should one ever fail, a history view without paths
    // beats a crashed server.
    let Ok(expanded) = catch_unwind(AssertUnwindSafe(|| change.decode())) else {
        return Vec::new();
    };
    let start_op = change.start_op().get();
    let actor = change.actor_id().to_hex_string();
    let mut touched = BTreeSet::new();
    for (offset, op) in expanded.operations.iter().enumerate() {
        let obj_path = match &op.obj {
            ObjectId::Root => Some(String::new()),
            ObjectId::Id(id) => paths.get(&id.to_string()).cloned(),
        };
        let Some(obj_path) = obj_path else { continue };
        let path = match &op.key {
            Key::Map(key) => format!("{obj_path}/{}", pointer_segment(key)),
            Key::Seq(_) => obj_path,
        };
        if let OpType::Make(_) = op.action {
            // Ops of a change have consecutive counters from `start_op`.
            let id = format!("{}@{actor}", start_op.saturating_add(offset as u64));
            paths.entry(id).or_insert_with(|| path.clone());
        }
        // Every non-root path starts with '/': a missing object leaves no empty entries.
        if !path.is_empty() {
            touched.insert(path);
        }
    }
    touched.into_iter().collect()
}

/// Object id (`counter@actor`) -> JSON pointer, for every object reachable in the current
/// document, including the losing sides of conflicts.
fn object_paths(reader: &Reader<'_>) -> HashMap<String, String> {
    let mut paths = HashMap::new();
    paths.insert(ROOT.to_string(), String::new());
    collect_paths(reader, &ROOT, ObjType::Map, "", 0, &mut paths);
    paths
}

fn collect_paths(
    reader: &Reader<'_>,
    obj: &ObjId,
    typ: ObjType,
    path: &str,
    depth: usize,
    paths: &mut HashMap<String, String>,
) {
    if depth >= MAX_DEPTH {
        return;
    }
    let mut visit = |values: Vec<(Value<'_>, ObjId)>, child_path: String| {
        for (value, id) in values {
            if let Value::Object(child_type) = value {
                collect_paths(reader, &id, child_type, &child_path, depth + 1, paths);
                paths.insert(id.to_string(), child_path.clone());
            }
        }
    };
    match typ {
        ObjType::Map | ObjType::Table => {
            for key in reader.keys(obj) {
                let child_path = format!("{path}/{}", pointer_segment(&key));
                visit(reader.get_all(obj, key.as_str()), child_path);
            }
        }
        ObjType::List => {
            for index in 0..reader.length(obj) {
                visit(reader.get_all(obj, index), format!("{path}/{index}"));
            }
        }
        ObjType::Text => {}
    }
}

#[cfg(test)]
mod tests;
