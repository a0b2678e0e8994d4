//! Incremental projection: after new changes, read again only the items they touched.
//!
//! A full [`project`] reads every field of every item (about 1 ms for a 20-item session in
//! automerge 0.12, whatever changed). A tablet's edit usually touches one item, so
//! [`ProjectionCache`] remembers which automerge object belongs to which item and, for the
//! changes since its last update, re-reads just those items. Anything it cannot place (an
//! operation on the root, on the `items` map itself, on an object it has not seen, too many
//! changes at once) falls back to a full projection, so the result always equals [`project`].

use std::collections::{BTreeSet, HashMap};

use automerge::legacy::{ObjectId as OpObject, OpType};
use automerge::{ActorId, Automerge, ChangeHash, ObjId, ObjType, ReadDoc, Value, ROOT};

use super::keys::ITEMS;
use super::project::{item_field, project, project_item, Projection};
use crate::read::{Reader, MAX_DEPTH};

/// Above this many new changes a full projection is cheaper than decoding them all.
const MAX_INCREMENTAL_CHANGES: usize = 64;
/// Objects nested deeper than this inside an item when the index is taken are not indexed
/// (ops on them re-project everything); objects made later are placed from the operation that
/// makes them, at any depth.
const INDEX_DEPTH: usize = 4;

/// An automerge object as named in a change's operations: (counter, actor).
type ObjKey = (u64, ActorId);

fn obj_key(id: &ObjId) -> Option<ObjKey> {
    match id {
        ObjId::Root => None,
        ObjId::Id(counter, actor, _) => Some((*counter, actor.clone())),
    }
}

/// The last projection of a document, and what is needed to bring it up to date cheaply.
#[derive(Debug, Clone)]
pub struct ProjectionCache {
    projection: Projection,
    heads: Vec<ChangeHash>,
    /// Every object inside an item (the item map included) -> the item's asset id. Built on
    /// the first update after a full projection rather than with it, so a document loaded for
    /// one edit and unloaded again never pays for it.
    owners: Option<HashMap<ObjKey, String>>,
    full_updates: u64,
    partial_updates: u64,
}

impl ProjectionCache {
    /// Project `doc` in full.
    pub fn new(doc: &Automerge) -> Self {
        let mut cache = Self {
            projection: Projection::default(),
            heads: Vec::new(),
            owners: None,
            full_updates: 0,
            partial_updates: 0,
        };
        cache.full(doc);
        cache
    }

    /// How many updates so far were (full, incremental).
    pub fn update_counts(&self) -> (u64, u64) {
        (self.full_updates, self.partial_updates)
    }

    /// Bring the projection up to date with `doc` (the same document, with more changes).
    pub fn update(&mut self, doc: &Automerge) -> &Projection {
        let heads = doc.get_heads();
        if heads == self.heads {
            return &self.projection;
        }
        match touched_items(&mut self.owners, doc, &self.heads) {
            Some(assets) => {
                self.reproject(doc, &assets);
                self.heads = heads;
                self.partial_updates += 1;
            }
            None => self.full(doc),
        }
        &self.projection
    }

    fn full(&mut self, doc: &Automerge) {
        self.projection = project(doc);
        self.heads = doc.get_heads();
        self.owners = None;
        self.full_updates += 1;
    }

    fn reproject(&mut self, doc: &Automerge, assets: &BTreeSet<String>) {
        let reader = Reader::new(doc, None);
        let Some((Value::Object(ObjType::Map), items)) = reader.get(&ROOT, ITEMS) else {
            return self.full(doc);
        };
        for asset in assets {
            let fresh = match reader.get(&items, asset.as_str()) {
                Some((Value::Object(ObjType::Map), obj)) => project_item(
                    &reader,
                    item_field(&items, asset).with_obj(obj),
                    asset.clone(),
                ),
                // Not a map any more: only the full projection reports that.
                _ => return self.full(doc),
            };
            let list = &mut self.projection.items;
            match list.binary_search_by(|i| i.asset_id.as_str().cmp(asset)) {
                Ok(at) => list[at] = fresh,
                Err(_) => return self.full(doc),
            }
        }
    }
}

/// The assets the changes since `since` touched, or None when only a full projection can
/// tell.
fn touched_items(
    owners: &mut Option<HashMap<ObjKey, String>>,
    doc: &Automerge,
    since: &[ChangeHash],
) -> Option<BTreeSet<String>> {
    let changes = doc.get_changes(since);
    if changes.is_empty() || changes.len() > MAX_INCREMENTAL_CHANGES {
        return None;
    }
    let owners = owners.get_or_insert_with(|| index(doc));
    let mut assets = BTreeSet::new();
    for change in changes {
        // Decoding re-validates what automerge already accepted; should it ever panic on
        // something odd, fall back to the full projection instead of failing the caller.
        let expanded =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| change.decode())).ok()?;
        // Operation ids are implicit in a change: its start op, then one per operation.
        let start = expanded.start_op.get();
        for (i, op) in expanded.operations.iter().enumerate() {
            let OpObject::Id(id) = &op.obj else {
                return None;
            };
            // Not inside an item: the root, the `items` map itself (an item added, replaced or
            // removed), or an object the index does not know.
            let asset = owners.get(&(id.counter(), id.actor().clone()))?.clone();
            // An object made inside an item belongs to that item, wherever it is nested:
            // later operations on it (in this change or another) are placed without
            // re-indexing the item.
            if matches!(op.action, OpType::Make(_)) {
                owners.insert((start + i as u64, expanded.actor_id.clone()), asset.clone());
            }
            assets.insert(asset);
        }
    }
    Some(assets)
}

/// Which item every object inside the `items` map belongs to, as the document is now. An
/// object never moves to another item, so an index taken after some changes serves as well as
/// one taken before them; objects it does not know send the update to a full projection.
fn index(doc: &Automerge) -> HashMap<ObjKey, String> {
    let mut owners = HashMap::new();
    let reader = Reader::new(doc, None);
    if let Some((Value::Object(ObjType::Map), items)) = reader.get(&ROOT, ITEMS) {
        for key in reader.keys(&items) {
            index_item(&mut owners, &reader, &items, &key);
        }
    }
    owners
}

/// Record the objects of one item (the item's map included) as belonging to `asset`.
fn index_item(
    owners: &mut HashMap<ObjKey, String>,
    reader: &Reader<'_>,
    items: &ObjId,
    asset: &str,
) {
    if let Some((Value::Object(_), obj)) = reader.get(items, asset) {
        index_object(owners, reader, &obj, asset, 0);
    }
}

fn index_object(
    owners: &mut HashMap<ObjKey, String>,
    reader: &Reader<'_>,
    obj: &ObjId,
    asset: &str,
    depth: usize,
) {
    if let Some(key) = obj_key(obj) {
        owners.insert(key, asset.to_owned());
    }
    if depth >= INDEX_DEPTH.min(MAX_DEPTH) {
        return;
    }
    let children: Vec<ObjId> = match reader.doc().object_type(obj) {
        Ok(ObjType::Map | ObjType::Table) => reader
            .keys(obj)
            .iter()
            .filter_map(|k| match reader.get(obj, k.as_str()) {
                Some((Value::Object(_), child)) => Some(child),
                _ => None,
            })
            .collect(),
        Ok(ObjType::List) => (0..reader.length(obj))
            .filter_map(|i| match reader.get(obj, i) {
                Some((Value::Object(_), child)) => Some(child),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    for child in children {
        index_object(owners, reader, &child, asset, depth + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{create_session_document, ItemInit, SessionInit};
    use automerge::transaction::Transactable;
    use automerge::ReadDoc;
    use uuid::Uuid;

    fn session(n: usize) -> (Automerge, Vec<String>) {
        let init = SessionInit {
            session_id: Uuid::new_v4(),
            building_id: Uuid::new_v4(),
            org_id: Uuid::new_v4(),
            rule_set_code: "AS1851".into(),
            rule_set_version: "2012.1.0".into(),
            frequency: "six_monthly".into(),
            name: "Six-monthly".into(),
            items: (0..n)
                .map(|_| ItemInit {
                    asset_id: Uuid::new_v4(),
                    rule_code: "AS1851-10-6M-EXT".into(),
                })
                .collect(),
        };
        let doc = create_session_document(&init, ActorId::random(), 0).unwrap();
        let (_, items) = doc.get(ROOT, ITEMS).unwrap().unwrap();
        let keys = doc.keys(&items).collect();
        (doc, keys)
    }

    fn item(doc: &Automerge, asset: &str) -> ObjId {
        let (_, items) = doc.get(ROOT, ITEMS).unwrap().unwrap();
        doc.get(&items, asset).unwrap().unwrap().1
    }

    #[test]
    fn an_edit_to_one_item_rereads_only_that_item() {
        let (mut doc, keys) = session(5);
        let mut cache = ProjectionCache::new(&doc);
        assert_eq!(cache.update_counts(), (1, 0));
        let it = item(&doc, &keys[2]);
        let mut tx = doc.transaction();
        tx.put(&it, "outcome", "fail").unwrap();
        let (_, readings) = tx.get(&it, "readings").unwrap().unwrap();
        tx.put(&readings, "pressureKpa", 700.0).unwrap();
        tx.commit();
        assert_eq!(cache.update(&doc), &project(&doc));
        assert_eq!(cache.update_counts(), (1, 1));
        // No new change: nothing is read.
        cache.update(&doc);
        assert_eq!(cache.update_counts(), (1, 1));
    }

    #[test]
    fn structural_changes_fall_back_to_a_full_projection() {
        let (mut doc, keys) = session(3);
        let mut cache = ProjectionCache::new(&doc);
        // An item removed.
        let mut tx = doc.transaction();
        let (_, items) = tx.get(ROOT, ITEMS).unwrap().unwrap();
        tx.delete(&items, keys[0].as_str()).unwrap();
        tx.commit();
        assert_eq!(cache.update(&doc), &project(&doc));
        // A root field.
        let mut tx = doc.transaction();
        tx.put(ROOT, "status", "completed").unwrap();
        tx.commit();
        assert_eq!(cache.update(&doc), &project(&doc));
        assert_eq!(cache.update_counts(), (3, 0));
        // A new object inside an item, then an edit inside it: the index, taken when the
        // first of them arrives, already places the new object, so neither re-reads it all.
        let it = item(&doc, &keys[1]);
        let mut tx = doc.transaction();
        let readings = tx.put_object(&it, "readings", ObjType::Map).unwrap();
        tx.put(&readings, "flow", 3.5).unwrap();
        tx.commit();
        assert_eq!(cache.update(&doc), &project(&doc));
        let mut tx = doc.transaction();
        tx.put(&readings, "flow", 4.0).unwrap();
        tx.commit();
        assert_eq!(cache.update(&doc), &project(&doc));
        assert_eq!(cache.update_counts(), (3, 2));
    }

    /// One random edit a tablet (or a broken client) could make.
    #[derive(Debug, Clone)]
    enum Edit {
        Outcome(usize, String),
        Reading(usize, f64),
        Notes(usize, String),
        Evidence(usize, String),
        NewReadings(usize),
        ReadingsAsString(usize),
        RemoveItem(usize),
        AddItem,
        Status(String),
        /// A map nested two levels inside an item's readings, made or written into.
        Nested(usize, f64),
        /// Another device's edits, made on a copy of the document taken a few rounds ago,
        /// merged in (operations on objects this replica made or saw at other times).
        Merge,
    }

    fn edit_strategy() -> impl proptest::strategy::Strategy<Value = Edit> {
        use proptest::prelude::*;
        prop_oneof![
            4 => (0..6usize, "pass|fail|not_tested|bogus").prop_map(|(i, o)| Edit::Outcome(i, o)),
            4 => (0..6usize, -10.0..1000.0f64).prop_map(|(i, v)| Edit::Reading(i, v)),
            2 => (0..6usize, "[a-z ]{1,8}").prop_map(|(i, t)| Edit::Notes(i, t)),
            2 => (0..6usize, "[a-f0-9]{8}").prop_map(|(i, t)| Edit::Evidence(i, t)),
            1 => (0..6usize).prop_map(Edit::NewReadings),
            1 => (0..6usize).prop_map(Edit::ReadingsAsString),
            1 => (0..6usize).prop_map(Edit::RemoveItem),
            1 => Just(Edit::AddItem),
            1 => "in_progress|completed".prop_map(Edit::Status),
            2 => (0..6usize, -10.0..1000.0f64).prop_map(|(i, v)| Edit::Nested(i, v)),
            1 => Just(Edit::Merge),
        ]
    }

    fn apply(doc: &mut Automerge, edit: &Edit) {
        let (_, items) = doc.get(ROOT, ITEMS).unwrap().unwrap();
        let keys: Vec<String> = doc.keys(&items).collect();
        let pick = |i: usize| keys.get(i % keys.len().max(1)).cloned();
        let mut tx = doc.transaction();
        let item = |tx: &automerge::transaction::Transaction<'_>, i: usize| {
            let key = pick(i)?;
            match tx.get(&items, key.as_str()).unwrap() {
                Some((Value::Object(ObjType::Map), obj)) => Some(obj),
                _ => None,
            }
        };
        match edit {
            Edit::Outcome(i, o) => {
                if let Some(it) = item(&tx, *i) {
                    tx.put(&it, "outcome", o.as_str()).unwrap();
                }
            }
            Edit::Reading(i, v) => {
                if let Some(it) = item(&tx, *i) {
                    if let Some((Value::Object(ObjType::Map), r)) = tx.get(&it, "readings").unwrap()
                    {
                        tx.put(&r, "pressureKpa", *v).unwrap();
                    }
                }
            }
            Edit::Notes(i, t) => {
                if let Some(it) = item(&tx, *i) {
                    if let Some((Value::Object(ObjType::Text), n)) = tx.get(&it, "notes").unwrap() {
                        tx.splice_text(&n, 0, 0, t).unwrap();
                    }
                }
            }
            Edit::Evidence(i, t) => {
                if let Some(it) = item(&tx, *i) {
                    if let Some((Value::Object(ObjType::List), l)) =
                        tx.get(&it, "evidence").unwrap()
                    {
                        let at = tx.length(&l);
                        tx.insert(&l, at, t.as_str()).unwrap();
                    }
                }
            }
            Edit::NewReadings(i) => {
                if let Some(it) = item(&tx, *i) {
                    let r = tx.put_object(&it, "readings", ObjType::Map).unwrap();
                    tx.put(&r, "flow", 1.5).unwrap();
                }
            }
            Edit::ReadingsAsString(i) => {
                if let Some(it) = item(&tx, *i) {
                    tx.put(&it, "readings", "oops").unwrap();
                }
            }
            Edit::RemoveItem(i) => {
                if let Some(key) = pick(*i) {
                    tx.delete(&items, key.as_str()).unwrap();
                }
            }
            Edit::AddItem => {
                let id = Uuid::new_v4().to_string();
                let it = tx.put_object(&items, id.as_str(), ObjType::Map).unwrap();
                tx.put(&it, "assetId", id.as_str()).unwrap();
                tx.put(&it, "ruleCode", "AS1851-10-6M-EXT").unwrap();
                tx.put(&it, "outcome", "not_tested").unwrap();
                tx.put_object(&it, "readings", ObjType::Map).unwrap();
                tx.put_object(&it, "evidence", ObjType::List).unwrap();
                tx.put_object(&it, "notes", ObjType::Text).unwrap();
            }
            Edit::Status(s) => {
                tx.put(ROOT, "status", s.as_str()).unwrap();
            }
            Edit::Nested(i, v) => {
                if let Some(it) = item(&tx, *i) {
                    if let Some((Value::Object(ObjType::Map), r)) = tx.get(&it, "readings").unwrap()
                    {
                        let outer = match tx.get(&r, "panel").unwrap() {
                            Some((Value::Object(ObjType::Map), o)) => o,
                            _ => tx.put_object(&r, "panel", ObjType::Map).unwrap(),
                        };
                        let inner = match tx.get(&outer, "zone").unwrap() {
                            Some((Value::Object(ObjType::Map), o)) => o,
                            _ => tx.put_object(&outer, "zone", ObjType::Map).unwrap(),
                        };
                        tx.put(&inner, "volts", *v).unwrap();
                    }
                }
            }
            Edit::Merge => {}
        }
        tx.commit();
    }

    /// Another device: edits the copy it holds, then the two are merged (both ways).
    fn merge_from(doc: &mut Automerge, other: &mut Automerge, salt: usize) {
        for (n, edit) in [
            Edit::Outcome(salt, "fail".into()),
            Edit::Nested(salt + 1, salt as f64),
            Edit::NewReadings(salt + 2),
            Edit::Reading(salt + 2, 2.5),
        ]
        .iter()
        .enumerate()
        {
            if !(salt + n).is_multiple_of(3) {
                apply(other, edit);
            }
        }
        doc.merge(other).unwrap();
        other.merge(doc).unwrap();
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Whatever the edits, and however many come between two updates, the incremental
        /// projection equals a full one.
        #[test]
        fn incremental_equals_full(
            rounds in proptest::collection::vec(proptest::collection::vec(edit_strategy(), 1..4), 1..25)
        ) {
            let (mut doc, _) = session(4);
            let mut other = doc.fork();
            let mut cache = ProjectionCache::new(&doc);
            for (r, round) in rounds.iter().enumerate() {
                for (e, edit) in round.iter().enumerate() {
                    match edit {
                        Edit::Merge => merge_from(&mut doc, &mut other, r + e),
                        edit => apply(&mut doc, edit),
                    }
                }
                proptest::prop_assert_eq!(cache.update(&doc), &project(&doc));
            }
        }
    }
}
