//! Arbitrary sync-message payloads applied to a session document the way the hub does: decode,
//! receive into the document with a fresh sync state, project. Errors are fine; panics are not.
#![no_main]

use firemode_sync_core::automerge::sync::{self, SyncDoc};
use firemode_sync_core::automerge::{ActorId, Automerge};
use firemode_sync_core::{create_session_document, project, SessionInit};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let init = SessionInit {
        session_id: Default::default(),
        building_id: Default::default(),
        org_id: Default::default(),
        rule_set_code: "AS1851".into(),
        rule_set_version: "2012.1.0".into(),
        frequency: "six_monthly".into(),
        name: "fuzz".into(),
        items: Vec::new(),
    };
    let mut doc: Automerge = create_session_document(&init, ActorId::from(&[1u8; 16][..]), 0).expect("seed document");
    let mut state = sync::State::new();
    if let Ok(msg) = sync::Message::decode(data) {
        let _ = doc.receive_sync_message(&mut state, msg);
        let _ = doc.generate_sync_message(&mut state);
        let _ = project(&doc);
    }
});
