//! The server announces heads that cover every change it stored from a client, even when the
//! client's next message (sent before the server answered) already claims those heads.
//!
//! automerge-repo clients take the heads the server announces as "saved on the server"
//! (`DocHandle` remote heads for the server's storage id). The hub handles the queued messages
//! of a document in one batch; when a client's change and its following heads-only message
//! land in the same batch, automerge's sync state records the heads as already sent and the
//! server used to stay silent: the client never learnt that its last change was stored (found
//! by `firemode-cli bench sync`, whose closed-loop clients waited forever for that answer).

use std::time::Duration;

use firemode_sync_core::automerge::sync::{self, SyncDoc};
use firemode_sync_core::automerge::transaction::Transactable;
use firemode_sync_core::automerge::{Automerge, ReadDoc, ROOT};
use firemode_sync_core::wire::Message;
use firemode_tests::fixtures::{building, session};
use firemode_tests::sync_client::{Event, SyncClient};
use firemode_tests::{backend_tests, Backend};
use uuid::Uuid;

backend_tests!(a_stored_change_is_always_acknowledged);

fn set_condition(doc: &mut Automerge, asset: Uuid, value: &str) {
    let mut tx = doc.transaction();
    let (_, items) = tx.get(ROOT, "items").unwrap().unwrap();
    let (_, item) = tx.get(&items, asset.to_string()).unwrap().unwrap();
    tx.put(&item, "observedCondition", value).unwrap();
    tx.commit();
}

async fn a_stored_change_is_always_acknowledged(b: Backend) {
    let Some(srv) = firemode_tests::TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let bld = building(&srv, &org, 1).await;
    let s = session(&srv, &org.admin, &bld, &[]).await;
    let id = s["document_id"].as_str().unwrap().to_owned();
    let peer_id = format!("{}:tablet", org.admin.id);
    let mut c = SyncClient::joined(&srv.base, &org.admin.token, &peer_id).await;
    let (mut doc, mut state) = (Automerge::new(), sync::State::new());
    c.sync(&id, &mut doc, &mut state, true).await.unwrap();

    for round in 0..5 {
        // Three frames back to back: a change X, a change C, then what a client sends when it
        // answers an unrelated server message before the server answered C: its heads (which
        // include C), no changes. X keeps the document actor busy committing while C and the
        // heads-only message queue up behind it, so those two are handled in one batch.
        set_condition(&mut doc, bld.assets[0], &format!("x{round}"));
        let m_x = doc
            .generate_sync_message(&mut state)
            .expect("a message with X");
        set_condition(&mut doc, bld.assets[0], &format!("c{round}"));
        let m_c = doc
            .generate_sync_message(&mut state)
            .expect("a message with C");
        state.last_sent_heads.clear();
        let m_heads = doc
            .generate_sync_message(&mut state)
            .expect("a heads-only message");
        assert!(m_heads.changes.is_empty());
        let ours = doc.get_heads();
        for m in [m_x, m_c, m_heads] {
            c.send(&Message::Sync {
                document_id: id.clone(),
                sender_id: peer_id.clone(),
                target_id: c.server_peer.clone().unwrap(),
                data: m.encode(),
            })
            .await;
        }
        // The server must answer with heads covering C (here: exactly ours).
        // A liveness bound, generous for a loaded CI machine (the answer normally takes milliseconds).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match c.next(left).await {
                Event::Msg(Message::Sync { data, .. }) => {
                    let m = sync::Message::decode(&data).unwrap();
                    doc.receive_sync_message(&mut state, m).unwrap();
                    if state.their_heads.as_ref() == Some(&ours) {
                        break;
                    }
                }
                Event::Msg(_) => {}
                other => panic!("round {round}: the server never announced heads covering the last change ({other:?}); it announced {:?}, we have {ours:?}", state.their_heads),
            }
        }
    }
    // Everything was stored, once.
    let rows = srv
        .store()
        .change_attributions(s["id"].as_str().unwrap().parse().unwrap())
        .await
        .unwrap();
    assert_eq!(rows.len(), 1 + 10, "the creation and two changes per round");
}
