//! What the `sync_message` fuzz target does, on stable and in every test run: genuine sync
//! messages, then corrupted copies of them (bit flips, truncations, splices), go through the
//! hub's path — decode, receive into a session document, generate a reply, project. Errors are
//! expected; a panic fails.

use firemode_sync_core::automerge::sync::{self, SyncDoc};
use firemode_sync_core::automerge::transaction::Transactable;
use firemode_sync_core::automerge::{ActorId, Automerge, ReadDoc, ROOT};
use firemode_sync_core::{create_session_document, project, ItemInit, SessionInit};
use proptest::prelude::*;
use uuid::Uuid;

fn session() -> Automerge {
    let init = SessionInit {
        session_id: Uuid::from_u128(1),
        building_id: Uuid::from_u128(2),
        org_id: Uuid::from_u128(3),
        rule_set_code: "AS1851".into(),
        rule_set_version: "2012.1.0".into(),
        frequency: "six_monthly".into(),
        name: "replay".into(),
        items: vec![ItemInit {
            asset_id: Uuid::from_u128(4),
            rule_code: "AS1851-10-6M-EXT".into(),
        }],
    };
    create_session_document(&init, ActorId::from(&[1u8; 16][..]), 0).unwrap()
}

/// Sync messages a tablet with edits would send to a server that has only the base document.
fn genuine_messages() -> Vec<Vec<u8>> {
    let server = session();
    let mut tablet = server.fork().with_actor(ActorId::from(&[2u8; 16][..]));
    {
        let mut tx = tablet.transaction();
        let (_, items) = tx.get(ROOT, "items").unwrap().unwrap();
        let (_, item) = tx
            .get(&items, Uuid::from_u128(4).to_string())
            .unwrap()
            .unwrap();
        tx.put(&item, "outcome", "fail").unwrap();
        tx.put(&item, "observedCondition", "extinguisher_missing")
            .unwrap();
        tx.commit();
    }
    let (mut s_server, mut s_tablet) = (sync::State::new(), sync::State::new());
    let mut server = server;
    let mut out = Vec::new();
    for _ in 0..6 {
        if let Some(m) = tablet.generate_sync_message(&mut s_tablet) {
            let bytes = m.encode();
            out.push(bytes.clone());
            server
                .receive_sync_message(&mut s_server, sync::Message::decode(&bytes).unwrap())
                .unwrap();
        }
        if let Some(m) = server.generate_sync_message(&mut s_server) {
            tablet.receive_sync_message(&mut s_tablet, m).unwrap();
        }
    }
    assert!(out.len() >= 2, "the exchange produced messages");
    out
}

fn apply(data: &[u8]) {
    let mut doc = session();
    let mut state = sync::State::new();
    if let Ok(msg) = sync::Message::decode(data) {
        let _ = doc.receive_sync_message(&mut state, msg);
        let _ = doc.generate_sync_message(&mut state);
        let _ = project(&doc);
    }
}

#[test]
fn genuine_messages_apply() {
    for m in genuine_messages() {
        apply(&m);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn corrupted_messages_never_panic(pick in 0usize..8, flips in prop::collection::vec((any::<usize>(), any::<u8>()), 0..8), cut in any::<usize>(), tail in prop::collection::vec(any::<u8>(), 0..32)) {
        let msgs = genuine_messages();
        let mut m = msgs[pick % msgs.len()].clone();
        for (at, x) in flips {
            let i = at % m.len();
            m[i] ^= x;
        }
        m.truncate(cut % (m.len() + 1));
        m.extend(tail);
        apply(&m);
    }
}
