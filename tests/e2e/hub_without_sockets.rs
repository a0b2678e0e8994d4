//! The sync hub without sockets: a connection is any stream and sink of frames, so a test
//! can drive the real hub (real store, real document actors) through an in-memory channel —
//! join, fetch, edit, acknowledgement, and an honest close for garbage sync data.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use firemode_server::hub::conn::{self, Frame};
use firemode_sync_core::automerge::sync::{self, SyncDoc};
use firemode_sync_core::automerge::transaction::Transactable;
use firemode_sync_core::automerge::{Automerge, ReadDoc, ROOT};
use firemode_sync_core::wire::{self, Message};
use firemode_tests::clients::{building_with_assets, create_session, SIX_MONTHLY_KINDS};
use firemode_tests::{backend_tests, Backend, TestServer};
use tokio::sync::mpsc;

backend_tests!(a_connection_over_a_channel_syncs_and_closes_honestly);

/// The hub's end of an in-memory connection.
struct Duplex {
    from_client: mpsc::UnboundedReceiver<Frame>,
    to_client: mpsc::UnboundedSender<Frame>,
}

#[derive(Debug)]
struct Gone;

impl futures_util::Stream for Duplex {
    type Item = Result<Frame, Gone>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.from_client.poll_recv(cx).map(|f| f.map(Ok))
    }
}

impl futures_util::Sink<Frame> for Duplex {
    type Error = Gone;
    fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Gone>> {
        Poll::Ready(Ok(()))
    }
    fn start_send(self: Pin<&mut Self>, item: Frame) -> Result<(), Gone> {
        self.to_client.send(item).map_err(|_| Gone)
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Gone>> {
        Poll::Ready(Ok(()))
    }
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Gone>> {
        Poll::Ready(Ok(()))
    }
}

/// The client's end.
struct Client {
    tx: mpsc::UnboundedSender<Frame>,
    rx: mpsc::UnboundedReceiver<Frame>,
    peer: String,
}

impl Client {
    fn send(&self, m: &Message) {
        self.tx
            .send(Frame::Binary(wire::encode(m)))
            .expect("hub is listening");
    }

    /// The next protocol message (answering pings), or the close frame.
    async fn next(&mut self) -> Result<Message, Option<(u16, String)>> {
        loop {
            let f = tokio::time::timeout(Duration::from_secs(10), self.rx.recv())
                .await
                .expect("the hub answers within 10 s");
            match f {
                Some(Frame::Binary(b)) => return Ok(wire::decode(&b).expect("our frames decode")),
                Some(Frame::Ping(p)) => {
                    let _ = self.tx.send(Frame::Pong(p));
                }
                Some(Frame::Close(c)) => return Err(c),
                None => return Err(None),
                Some(_) => {}
            }
        }
    }
}

async fn a_connection_over_a_channel_syncs_and_closes_honestly(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("No Sockets").await;
    let office = srv.user(&org, "office").await;
    let (building, assets) = building_with_assets(&srv, &office, &SIX_MONTHLY_KINDS[..1]).await;
    let s = create_session(&srv, &office, building, "Round", &[]).await;
    let doc_id = s["document_id"].as_str().unwrap().to_owned();
    let session = s["id"].as_str().unwrap().to_owned();
    let asset = assets[0].to_string();

    let user = srv.state.authenticate(&office.token).await.expect("token");
    let (to_hub, from_client) = mpsc::unbounded_channel();
    let (to_client, from_hub) = mpsc::unbounded_channel();
    let hub = srv.state.hub.clone();
    let revocations = srv.state.revocations.clone();
    let task = tokio::spawn(conn::run(
        hub,
        revocations,
        user,
        Duplex {
            from_client,
            to_client,
        },
    ));
    let mut c = Client {
        tx: to_hub,
        rx: from_hub,
        peer: format!("{}:bench-tablet", office.id),
    };
    c.send(&Message::Join {
        sender_id: c.peer.clone(),
        peer_metadata: None,
        supported_protocol_versions: Some(vec!["1".into()]),
    });
    let Ok(Message::Peer {
        sender_id: server, ..
    }) = c.next().await
    else {
        panic!("the hub answers join with peer");
    };

    // Fetch the document, edit it, and wait for the server's heads to cover the edit.
    let (mut doc, mut state) = (Automerge::new(), sync::State::new());
    let mut edited = false;
    for _ in 0..50 {
        if let Some(m) = doc.generate_sync_message(&mut state) {
            c.send(&Message::Sync {
                document_id: doc_id.clone(),
                sender_id: c.peer.clone(),
                target_id: server.clone(),
                data: m.encode(),
            });
        }
        let msg = c.next().await.expect("a message, not a close");
        let Message::Sync { data, .. } = msg else {
            panic!("expected sync, got {msg:?}");
        };
        doc.receive_sync_message(&mut state, sync::Message::decode(&data).unwrap())
            .unwrap();
        if !edited && doc.get(ROOT, "items").unwrap().is_some() {
            let mut tx = doc.transaction();
            let (_, items) = tx.get(ROOT, "items").unwrap().unwrap();
            let (_, item) = tx.get(&items, asset.as_str()).unwrap().unwrap();
            tx.put(&item, "outcome", "pass").unwrap();
            tx.commit();
            edited = true;
        }
        if edited && state.their_heads.as_deref() == Some(&doc.get_heads()[..]) {
            break;
        }
    }
    assert!(edited);
    assert_eq!(
        state.their_heads.as_deref(),
        Some(&doc.get_heads()[..]),
        "the hub acknowledged the edit"
    );
    let stored = srv
        .store()
        .change_attributions(session.parse().unwrap())
        .await
        .unwrap();
    assert!(
        stored
            .iter()
            .any(|r| r.device_id.as_deref() == Some("bench-tablet")),
        "the edit is stored with its device"
    );

    // Garbage sync data for one's own document: an error message, then a protocol close that
    // says what was wrong.
    c.send(&Message::Sync {
        document_id: doc_id.clone(),
        sender_id: c.peer.clone(),
        target_id: server.clone(),
        data: vec![0x42, 0x00, 0x01],
    });
    let mut closed = None;
    while closed.is_none() {
        match c.next().await {
            Ok(Message::Error { message, .. }) => {
                assert!(message.contains("sync message"), "{message}")
            }
            Ok(_) => {}
            Err(close) => closed = Some(close),
        }
    }
    let (code, reason) = closed.unwrap().expect("a close frame");
    assert_eq!(code, 1002, "{reason}");
    assert!(reason.contains("sync message"), "{reason}");
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the connection task ends")
        .unwrap();
    srv.stop().await;
}
