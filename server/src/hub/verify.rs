//! `firemode admin verify-documents`: every change row whose bytes a compaction dropped must be
//! in its document's snapshot. Reports what is not; never repairs (a missing change cannot be
//! invented, and an operator should see the evidence as it is).

use automerge::{Automerge, ChangeHash, LoadOptions, OnPartialLoad};
use uuid::Uuid;

use crate::store::{Store, StoreResult};

/// A change whose stored bytes are gone and that its document's snapshot does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostChange {
    pub session_id: Uuid,
    pub change_hash: String,
}

/// What a verification found.
#[derive(Debug, Default)]
pub struct Verification {
    pub sessions: usize,
    pub compacted_changes: usize,
    pub lost: Vec<LostChange>,
    /// Sessions whose snapshot does not load at all.
    pub unreadable_snapshots: Vec<Uuid>,
}

/// Check every session's compacted changes against its snapshot.
pub async fn verify_documents(store: &dyn Store) -> StoreResult<Verification> {
    let mut report = Verification::default();
    let mut after = None;
    loop {
        let ids = store.session_ids(after, 500).await?;
        let Some(last) = ids.last().copied() else {
            break;
        };
        for id in ids {
            report.sessions += 1;
            let (snapshot, hashes) = store.compacted_changes(id).await?;
            if hashes.is_empty() {
                continue;
            }
            report.compacted_changes += hashes.len();
            let doc = match snapshot.as_deref().map(|b| {
                Automerge::load_with_options(
                    b,
                    LoadOptions::new().on_partial_load(OnPartialLoad::Ignore),
                )
            }) {
                Some(Ok(d)) => d,
                Some(Err(_)) => {
                    report.unreadable_snapshots.push(id);
                    Automerge::new()
                }
                None => Automerge::new(),
            };
            for h in hashes {
                let present = <[u8; 32]>::try_from(h.as_slice())
                    .ok()
                    .is_some_and(|b| doc.get_change_meta_by_hash(&ChangeHash(b)).is_some());
                if !present {
                    report.lost.push(LostChange {
                        session_id: id,
                        change_hash: hex::encode(&h),
                    });
                }
            }
        }
        after = Some(last);
    }
    Ok(report)
}
