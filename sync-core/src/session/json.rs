//! The whole document as plain JSON, now or at some point of its history.

use automerge::{Automerge, ChangeHash, ObjType, ROOT};

use crate::read::Reader;

/// The document (at `heads` when given) as plain JSON: text objects become strings, counters
/// and timestamps numbers, bytes arrays of numbers; conflicts show their winning value.
///
/// automerge ignores heads it does not know, so check [`heads_known`] first when the heads
/// come from a request.
pub fn to_json(doc: &Automerge, heads: Option<&[ChangeHash]>) -> serde_json::Value {
    Reader::new(doc, heads).object_json(&ROOT, ObjType::Map, 0)
}

/// True when the document contains every change in `heads`.
pub fn heads_known(doc: &Automerge, heads: &[ChangeHash]) -> bool {
    heads
        .iter()
        .all(|hash| doc.get_change_meta_by_hash(hash).is_some())
}
