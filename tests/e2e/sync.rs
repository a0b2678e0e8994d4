//! The sync hub over a real socket with a protocol-level client: handshake, authorization per
//! document, durability before acknowledgement, REST writes reaching tablets, revocation and
//! robustness against bad input.

use std::time::Duration;

use firemode_sync_core::automerge::sync;
use firemode_sync_core::automerge::{Automerge, ReadDoc, ROOT};
use firemode_sync_core::wire::Message;
use firemode_tests::fixtures::{building, put_item_field, session, Building};
use firemode_tests::sync_client::{Event, SyncClient};
use firemode_tests::{backend_tests, Backend, Org, TestServer, User};
use serde_json::json;
use uuid::Uuid;

backend_tests!(
    handshake_and_identity,
    sync_edit_reaches_server_and_other_client,
    unavailable_is_identical_for_every_denial,
    auditor_writes_never_land,
    rest_results_reach_connected_tablets,
    revocation_and_unassignment_close_sockets,
    bad_frames_close_only_that_socket,
    ephemeral_messages_are_relayed_once,
);

struct World {
    srv: TestServer,
    org: Org,
    inspector: User,
    bld: Building,
    session: serde_json::Value,
}

async fn world(b: Backend) -> Option<World> {
    let srv = TestServer::start(b).await?;
    let org = srv.org("Acme").await;
    let inspector = srv.user(&org, "inspector").await;
    let bld = building(&srv, &org, 2).await;
    let session = session(&srv, &org.admin, &bld, &[inspector.id]).await;
    Some(World {
        srv,
        org,
        inspector,
        bld,
        session,
    })
}

fn peer(u: &User, device: &str) -> String {
    format!("{}:{device}", u.id)
}

fn doc_id(w: &World) -> String {
    w.session["document_id"].as_str().unwrap().to_owned()
}

/// Set an item's outcome in a local copy, as a tablet would.
async fn server_doc(w: &World) -> serde_json::Value {
    let id = w.session["id"].as_str().unwrap();
    let d = w
        .srv
        .client
        .get(
            &format!("/v1/tests/sessions/{id}/document"),
            Some(&w.org.admin.token),
        )
        .await;
    assert_eq!(d.status, 200, "{}", d.body);
    d.json["document"].clone()
}

async fn handshake_and_identity(b: Backend) {
    let Some(w) = world(b).await else { return };
    let c = SyncClient::joined(
        &w.srv.base,
        &w.inspector.token,
        &peer(&w.inspector, "tablet-1"),
    )
    .await;
    let server_peer = c.server_peer.clone().unwrap();
    drop(c);
    // The server's peer id (and storage id) are stable.
    let mut c = SyncClient::connect(&w.srv.base, &w.inspector.token, "x")
        .await
        .unwrap();
    c.send(&Message::Join {
        sender_id: peer(&w.inspector, "tablet-1"),
        peer_metadata: None,
        supported_protocol_versions: None,
    })
    .await;
    match c.next(Duration::from_secs(5)).await {
        Event::Msg(Message::Peer {
            sender_id,
            peer_metadata,
            ..
        }) => {
            assert_eq!(sender_id, server_peer);
            let meta = peer_metadata.expect("metadata");
            assert!(meta.storage_id.is_some() && !meta.is_ephemeral);
        }
        other => panic!("{other:?}"),
    }
    // A peer id that is not <my user id>:<device> is refused.
    for bad in [
        format!("{}:tablet", w.org.admin.id),
        "tablet".to_string(),
        format!("{}:", w.inspector.id),
    ] {
        let mut c = SyncClient::connect(&w.srv.base, &w.inspector.token, &bad)
            .await
            .unwrap();
        c.send(&Message::Join {
            sender_id: bad.clone(),
            peer_metadata: None,
            supported_protocol_versions: None,
        })
        .await;
        assert!(
            matches!(
                c.next(Duration::from_secs(5)).await,
                Event::Msg(Message::Error { .. })
            ),
            "{bad}"
        );
        assert!(
            c.closed_within(Duration::from_secs(5)).await.is_some(),
            "{bad} closes"
        );
    }
    // Unsupported protocol version.
    let mut c = SyncClient::connect(&w.srv.base, &w.inspector.token, "v")
        .await
        .unwrap();
    c.send(&Message::Join {
        sender_id: peer(&w.inspector, "t"),
        peer_metadata: None,
        supported_protocol_versions: Some(vec!["2".into()]),
    })
    .await;
    match c.next(Duration::from_secs(5)).await {
        Event::Msg(Message::Error { message, .. }) => {
            assert!(message.contains("unsupported protocol version"))
        }
        other => panic!("{other:?}"),
    }
    // A frame claiming another sender after the join is refused.
    let mut c =
        SyncClient::joined(&w.srv.base, &w.inspector.token, &peer(&w.inspector, "t2")).await;
    c.send(&Message::Request {
        document_id: doc_id(&w),
        sender_id: peer(&w.inspector, "other"),
        target_id: server_peer.clone(),
        data: vec![0x42],
    })
    .await;
    assert!(matches!(
        c.next(Duration::from_secs(5)).await,
        Event::Msg(Message::Error { .. })
    ));
    // No token, a bad token: 401 before any upgrade.
    assert!(SyncClient::connect(&w.srv.base, "garbage", "x")
        .await
        .is_err());
    // A second join from the same peer id replaces the earlier socket.
    let mut first =
        SyncClient::joined(&w.srv.base, &w.inspector.token, &peer(&w.inspector, "dup")).await;
    let _second =
        SyncClient::joined(&w.srv.base, &w.inspector.token, &peer(&w.inspector, "dup")).await;
    assert!(
        first.closed_within(Duration::from_secs(3)).await.is_some(),
        "the earlier socket is closed"
    );
}

async fn sync_edit_reaches_server_and_other_client(b: Backend) {
    let Some(w) = world(b).await else { return };
    let id = doc_id(&w);
    let mut a = SyncClient::joined(&w.srv.base, &w.inspector.token, &peer(&w.inspector, "a")).await;
    let mut b2 =
        SyncClient::joined(&w.srv.base, &w.org.admin.token, &peer(&w.org.admin, "b")).await;
    let (mut da, mut sa) = (Automerge::new(), sync::State::new());
    let (mut db, mut sb) = (Automerge::new(), sync::State::new());
    a.sync(&id, &mut da, &mut sa, true).await.unwrap();
    b2.sync(&id, &mut db, &mut sb, true).await.unwrap();
    let items = da.get(ROOT, "items").unwrap();
    assert!(items.is_some(), "the client received the server's document");
    put_item_field(&mut da, w.bld.assets[0], "outcome", "fail");
    a.sync(&id, &mut da, &mut sa, false).await.unwrap();
    // Acknowledged means stored: the server's copy (through REST) has it.
    assert_eq!(
        server_doc(&w).await["items"][w.bld.assets[0].to_string()]["outcome"],
        "fail"
    );
    // The other connection received it without asking.
    b2.sync(&id, &mut db, &mut sb, false).await.unwrap();
    assert_eq!(da.get_heads(), db.get_heads());
    // And it is attributed to the inspector's device.
    let rows = w
        .srv
        .store()
        .change_attributions(w.session["id"].as_str().unwrap().parse().unwrap())
        .await
        .unwrap();
    assert!(rows
        .iter()
        .any(|r| r.user_id == Some(w.inspector.id) && r.device_id.as_deref() == Some("a")));
    // The projection follows.
    w.srv
        .state
        .hub
        .settled(w.session["id"].as_str().unwrap().parse().unwrap())
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = w
        .srv
        .client
        .get(
            &format!(
                "/v1/tests/sessions/{}/results",
                w.session["id"].as_str().unwrap()
            ),
            Some(&w.org.admin.token),
        )
        .await;
    let item = r.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["asset_id"] == w.bld.assets[0].to_string())
        .unwrap()
        .clone();
    assert_eq!(item["outcome"], "fail", "{item}");
}

async fn unavailable_is_identical_for_every_denial(b: Backend) {
    let Some(w) = world(b).await else { return };
    let rival = w.srv.org("Rival").await;
    let outsider = w.srv.user(&w.org, "inspector").await;
    let mut answers = Vec::new();
    let random = firemode_sync_core::DocumentId::from_uuid(Uuid::new_v4()).to_string();
    let cases: Vec<(&User, String)> = vec![
        (&rival.admin, doc_id(&w)),
        (&outsider, doc_id(&w)),
        (&w.inspector, random),
        (&w.inspector, "not-a-document-id".into()),
        (&w.inspector, Uuid::new_v4().to_string()),
    ];
    for (u, doc) in cases {
        let mut c = SyncClient::joined(&w.srv.base, &u.token, &peer(u, "t")).await;
        let (mut d, mut s) = (Automerge::new(), sync::State::new());
        let res = c.sync(&doc, &mut d, &mut s, true).await;
        assert_eq!(res, Err("doc-unavailable".into()), "{doc}");
        // Only one answer, and the socket stays open.
        c.send(&Message::Request {
            document_id: doc.clone(),
            sender_id: c.peer_id.clone(),
            target_id: c.server_peer.clone().unwrap(),
            data: vec![0x42, 0, 0, 0, 0, 0],
        })
        .await;
        match c.next(Duration::from_secs(5)).await {
            Event::Msg(Message::DocUnavailable {
                document_id,
                sender_id,
                target_id,
            }) => {
                assert_eq!(document_id, doc);
                answers.push((sender_id, target_id == c.peer_id));
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(
        answers.windows(2).all(|p| p[0] == p[1]),
        "every denial looks the same"
    );
}

async fn auditor_writes_never_land(b: Backend) {
    let Some(w) = world(b).await else { return };
    let auditor = w.srv.user(&w.org, "auditor").await;
    let id = doc_id(&w);
    let mut c = SyncClient::joined(&w.srv.base, &auditor.token, &peer(&auditor, "laptop")).await;
    let (mut d, mut s) = (Automerge::new(), sync::State::new());
    c.sync(&id, &mut d, &mut s, true).await.unwrap();
    assert!(d.get(ROOT, "items").unwrap().is_some(), "auditors read");
    put_item_field(&mut d, w.bld.assets[0], "outcome", "pass");
    let _ = c.sync(&id, &mut d, &mut s, false).await;
    assert_eq!(
        server_doc(&w).await["items"][w.bld.assets[0].to_string()]["outcome"],
        "not_tested"
    );
    let rows = w
        .srv
        .store()
        .change_attributions(w.session["id"].as_str().unwrap().parse().unwrap())
        .await
        .unwrap();
    assert!(
        rows.iter().all(|r| r.user_id != Some(auditor.id)),
        "nothing of the auditor was stored"
    );
}

async fn rest_results_reach_connected_tablets(b: Backend) {
    let Some(w) = world(b).await else { return };
    let id = doc_id(&w);
    let mut c =
        SyncClient::joined(&w.srv.base, &w.inspector.token, &peer(&w.inspector, "tab")).await;
    let (mut d, mut s) = (Automerge::new(), sync::State::new());
    c.sync(&id, &mut d, &mut s, true).await.unwrap();
    let sid = w.session["id"].as_str().unwrap();
    let r = firemode_tests::Client::send(
        w.srv
            .client
            .request(reqwest::Method::POST, &format!("/v1/tests/sessions/{sid}/results"), Some(&w.org.admin.token))
            .header("idempotency-key", "k1")
            .json(&json!({ "results": [{ "asset_id": w.bld.assets[1], "outcome": "not_accessible", "notes": "Locked plant room" }] })),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // Without asking, the tablet receives the change.
    let asset = w.bld.assets[1].to_string();
    c.sync_until(&id, &mut d, &mut s, Duration::from_secs(10), |d| {
        firemode_sync_core::to_json(d, None)["items"][&asset]["outcome"] == "not_accessible"
    })
    .await
    .unwrap_or_else(|e| panic!("the REST change was not pushed: {e}"));
    let json = firemode_sync_core::to_json(&d, None);
    assert_eq!(
        json["items"][w.bld.assets[1].to_string()]["outcome"],
        "not_accessible"
    );
    assert_eq!(
        json["items"][w.bld.assets[1].to_string()]["notes"],
        "Locked plant room"
    );
}

async fn revocation_and_unassignment_close_sockets(b: Backend) {
    let Some(w) = world(b).await else { return };
    let id = doc_id(&w);
    // Unassignment closes the inspector's socket on that document.
    let mut c = SyncClient::joined(&w.srv.base, &w.inspector.token, &peer(&w.inspector, "u")).await;
    let (mut d, mut s) = (Automerge::new(), sync::State::new());
    c.sync(&id, &mut d, &mut s, true).await.unwrap();
    let sid = w.session["id"].as_str().unwrap();
    let p = w
        .srv
        .client
        .patch(
            &format!("/v1/tests/sessions/{sid}"),
            Some(&w.org.admin.token),
            &json!({ "assigned_to": [] }),
        )
        .await;
    assert_eq!(p.status, 200);
    assert!(
        c.closed_within(Duration::from_secs(1)).await.is_some(),
        "unassigned: closed within a second"
    );
    // Logout closes the sockets opened with that token.
    let office = w.srv.user(&w.org, "office").await;
    let mut c = SyncClient::joined(&w.srv.base, &office.token, &peer(&office, "o")).await;
    let out = w
        .srv
        .client
        .post("/v1/auth/logout", Some(&office.token), &json!({}))
        .await;
    assert_eq!(out.status, 204);
    assert_eq!(
        c.closed_within(Duration::from_secs(1)).await,
        Some(Some(1008))
    );
    // Admin revocation closes every socket of the user.
    let office2 = w.srv.user(&w.org, "office").await;
    let mut c1 = SyncClient::joined(&w.srv.base, &office2.token, &peer(&office2, "1")).await;
    let mut c2 = SyncClient::joined(&w.srv.base, &office2.token, &peer(&office2, "2")).await;
    let r = w
        .srv
        .client
        .post(
            &format!("/v1/users/{}/revoke-tokens", office2.id),
            Some(&w.org.admin.token),
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 204);
    assert!(c1.closed_within(Duration::from_secs(1)).await.is_some());
    assert!(c2.closed_within(Duration::from_secs(1)).await.is_some());
}

async fn bad_frames_close_only_that_socket(b: Backend) {
    let Some(w) = world(b).await else { return };
    let id = doc_id(&w);
    let mut good =
        SyncClient::joined(&w.srv.base, &w.inspector.token, &peer(&w.inspector, "good")).await;
    let (mut d, mut s) = (Automerge::new(), sync::State::new());
    good.sync(&id, &mut d, &mut s, true).await.unwrap();
    let heads_before = server_doc(&w).await;

    // Broken CBOR.
    let mut c =
        SyncClient::joined(&w.srv.base, &w.inspector.token, &peer(&w.inspector, "cbor")).await;
    c.send_raw(vec![0xff, 0x00, 0x13]).await;
    assert!(matches!(
        c.next(Duration::from_secs(5)).await,
        Event::Msg(Message::Error { .. })
    ));
    assert!(c.closed_within(Duration::from_secs(5)).await.is_some());
    // Unknown message type.
    let mut c =
        SyncClient::joined(&w.srv.base, &w.inspector.token, &peer(&w.inspector, "unk")).await;
    let mut buf = Vec::new();
    ciborium_encode(&mut buf, "launch-missiles", &c.peer_id);
    c.send_raw(buf).await;
    assert!(matches!(
        c.next(Duration::from_secs(5)).await,
        Event::Msg(Message::Error { .. })
    ));
    // Text frames.
    let mut c =
        SyncClient::joined(&w.srv.base, &w.inspector.token, &peer(&w.inspector, "txt")).await;
    c.send_text("{\"type\":\"join\"}").await;
    assert!(c.closed_within(Duration::from_secs(5)).await.is_some());
    // Messages before join.
    let mut c = SyncClient::connect(&w.srv.base, &w.inspector.token, "x")
        .await
        .unwrap();
    c.send(&Message::Request {
        document_id: id.clone(),
        sender_id: peer(&w.inspector, "x"),
        target_id: "s".into(),
        data: vec![1],
    })
    .await;
    assert!(matches!(
        c.next(Duration::from_secs(5)).await,
        Event::Msg(Message::Error { .. })
    ));
    // Corrupt automerge data for a document the client may write.
    let mut c = SyncClient::joined(
        &w.srv.base,
        &w.inspector.token,
        &peer(&w.inspector, "corrupt"),
    )
    .await;
    let server = c.server_peer.clone().unwrap();
    c.send(&Message::Sync {
        document_id: id.clone(),
        sender_id: c.peer_id.clone(),
        target_id: server.clone(),
        data: vec![0x42, 0xde, 0xad, 0xbe, 0xef],
    })
    .await;
    assert!(matches!(
        c.next(Duration::from_secs(5)).await,
        Event::Msg(Message::Error { .. })
    ));
    assert!(c.closed_within(Duration::from_secs(5)).await.is_some());
    // A frame over the size limit (16 MiB by default).
    let mut c =
        SyncClient::joined(&w.srv.base, &w.inspector.token, &peer(&w.inspector, "big")).await;
    c.send(&Message::Sync {
        document_id: id.clone(),
        sender_id: c.peer_id.clone(),
        target_id: server.clone(),
        data: vec![7u8; 17 * 1024 * 1024],
    })
    .await;
    assert!(
        c.closed_within(Duration::from_secs(10)).await.is_some(),
        "giant frame closes the socket"
    );
    // A flood of requests for random ids: each answered, then the socket is cut off.
    let mut c = SyncClient::joined(
        &w.srv.base,
        &w.inspector.token,
        &peer(&w.inspector, "flood"),
    )
    .await;
    for _ in 0..700 {
        let doc = firemode_sync_core::DocumentId::from_uuid(Uuid::new_v4()).to_string();
        c.send(&Message::Request {
            document_id: doc,
            sender_id: c.peer_id.clone(),
            target_id: server.clone(),
            data: vec![0x42, 0, 0, 0, 0, 0],
        })
        .await;
    }
    let (mut unavailable, mut errors) = (0, 0);
    loop {
        // Generous: on two busy cores 700 lookups can take a while; the socket must end closed.
        match c.next(Duration::from_secs(60)).await {
            Event::Msg(Message::DocUnavailable { .. }) => unavailable += 1,
            Event::Msg(Message::Error { .. }) => errors += 1,
            Event::Closed(_) => break,
            Event::Timeout => panic!("the flooding socket was neither answered nor closed"),
            Event::Msg(other) => panic!("{other:?}"),
        }
    }
    assert_eq!(
        unavailable, 600,
        "every request answered up to the per-minute cap"
    );
    assert_eq!(errors, 1, "then one error and the socket closes");
    // Through all of it: nothing stored, the good client still syncs, the server is healthy.
    assert_eq!(server_doc(&w).await, heads_before);
    put_item_field(&mut d, w.bld.assets[0], "outcome", "pass");
    good.sync(&id, &mut d, &mut s, false).await.unwrap();
    assert_eq!(
        server_doc(&w).await["items"][w.bld.assets[0].to_string()]["outcome"],
        "pass"
    );
    assert_eq!(w.srv.client.get("/health", None).await.status, 200);
}

/// A CBOR map {type, senderId} with an unknown type.
fn ciborium_encode(buf: &mut Vec<u8>, ty: &str, sender: &str) {
    // Map of 2: text keys.
    buf.push(0xa2);
    for (k, v) in [("type", ty), ("senderId", sender)] {
        for s in [k, v] {
            assert!(s.len() < 24 || s.len() < 256);
            if s.len() < 24 {
                buf.push(0x60 | s.len() as u8);
            } else {
                buf.push(0x78);
                buf.push(s.len() as u8);
            }
            buf.extend_from_slice(s.as_bytes());
        }
    }
}

async fn ephemeral_messages_are_relayed_once(b: Backend) {
    let Some(w) = world(b).await else { return };
    let id = doc_id(&w);
    let mut a =
        SyncClient::joined(&w.srv.base, &w.inspector.token, &peer(&w.inspector, "ea")).await;
    let mut b2 =
        SyncClient::joined(&w.srv.base, &w.org.admin.token, &peer(&w.org.admin, "eb")).await;
    let (mut da, mut sa) = (Automerge::new(), sync::State::new());
    let (mut db, mut sb) = (Automerge::new(), sync::State::new());
    a.sync(&id, &mut da, &mut sa, true).await.unwrap();
    b2.sync(&id, &mut db, &mut sb, true).await.unwrap();
    let server = a.server_peer.clone().unwrap();
    for _ in 0..2 {
        a.send(&Message::Ephemeral {
            document_id: id.clone(),
            sender_id: a.peer_id.clone(),
            target_id: server.clone(),
            count: 1,
            session_id: "s1".into(),
            data: vec![1, 2, 3],
        })
        .await;
    }
    match b2.next(Duration::from_secs(5)).await {
        Event::Msg(Message::Ephemeral {
            data, sender_id, ..
        }) => {
            assert_eq!(data, vec![1, 2, 3]);
            assert_eq!(sender_id, a.peer_id);
        }
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(b2.next(Duration::from_millis(500)).await, Event::Timeout),
        "the duplicate is dropped"
    );
}
