//! A minimal automerge-repo protocol client for tests: our wire codec over tokio-tungstenite,
//! with automerge's own sync state machine. (The real JS and samod clients are tested too;
//! this one can also misbehave on purpose.)

use std::time::Duration;

use firemode_sync_core::automerge::sync::{self, SyncDoc};
use firemode_sync_core::automerge::Automerge;
use firemode_sync_core::wire::{self, Message};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as Ws;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub struct SyncClient {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub peer_id: String,
    pub server_peer: Option<String>,
    /// Changes this client has sent in sync messages (to check resumption is cheap).
    pub changes_sent: usize,
}

/// What came from the server.
#[derive(Debug)]
pub enum Event {
    Msg(Message),
    Closed(Option<u16>),
    Timeout,
}

impl SyncClient {
    /// Open `ws://.../v1/sync` with a bearer header.
    pub async fn connect(
        base: &str,
        token: &str,
        peer_id: &str,
    ) -> Result<Self, tokio_tungstenite::tungstenite::Error> {
        let url = format!("{}/v1/sync", base.replacen("http", "ws", 1));
        let mut req = url.into_client_request()?;
        req.headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        let (ws, _) = tokio_tungstenite::connect_async(req).await?;
        Ok(Self {
            ws,
            peer_id: peer_id.to_owned(),
            server_peer: None,
            changes_sent: 0,
        })
    }

    /// Connect and join; panics unless the server answers `peer`.
    pub async fn joined(base: &str, token: &str, peer_id: &str) -> Self {
        let mut c = Self::connect(base, token, peer_id).await.expect("connect");
        c.send(&Message::Join {
            sender_id: peer_id.into(),
            peer_metadata: None,
            supported_protocol_versions: Some(vec!["1".into()]),
        })
        .await;
        match c.next(Duration::from_secs(5)).await {
            Event::Msg(Message::Peer {
                sender_id,
                selected_protocol_version,
                target_id,
                ..
            }) => {
                assert_eq!(selected_protocol_version, "1");
                assert_eq!(target_id, peer_id);
                c.server_peer = Some(sender_id);
            }
            other => panic!("expected peer, got {other:?}"),
        }
        c
    }

    pub async fn send(&mut self, msg: &Message) {
        self.send_raw(wire::encode(msg)).await;
    }

    pub async fn send_raw(&mut self, bytes: Vec<u8>) {
        let _ = self.ws.send(Ws::Binary(bytes.into())).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        let _ = self.ws.send(Ws::Text(text.to_owned().into())).await;
    }

    /// The next protocol message (pings are answered by tungstenite and skipped).
    pub async fn next(&mut self, wait: Duration) -> Event {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return Event::Timeout,
                Ok(None) => return Event::Closed(None),
                Ok(Some(Err(_))) => return Event::Closed(None),
                Ok(Some(Ok(Ws::Binary(b)))) => {
                    return Event::Msg(wire::decode(&b).expect("server frames decode"));
                }
                Ok(Some(Ok(Ws::Close(f)))) => return Event::Closed(f.map(|f| u16::from(f.code))),
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    /// Wait until the server closes the socket (answering pings meanwhile); the close code.
    pub async fn closed_within(&mut self, wait: Duration) -> Option<Option<u16>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Event::Closed(code) => return Some(code),
                Event::Timeout => return None,
                Event::Msg(_) => continue,
            }
        }
    }

    fn sync_msg(&self, doc_id: &str, data: Vec<u8>, request: bool) -> Message {
        let target_id = self.server_peer.clone().unwrap_or_default();
        if request {
            Message::Request {
                document_id: doc_id.into(),
                sender_id: self.peer_id.clone(),
                target_id,
                data,
            }
        } else {
            Message::Sync {
                document_id: doc_id.into(),
                sender_id: self.peer_id.clone(),
                target_id,
                data,
            }
        }
    }

    /// Send whatever automerge has for the server; `request` marks the first as a request.
    /// True if anything was sent.
    async fn send_pending(
        &mut self,
        doc_id: &str,
        doc: &mut Automerge,
        state: &mut sync::State,
        mut request: bool,
    ) -> bool {
        let mut sent = false;
        while let Some(m) = doc.generate_sync_message(state) {
            self.changes_sent += m.changes.len();
            let msg = self.sync_msg(doc_id, m.encode(), request);
            request = false;
            sent = true;
            self.send(&msg).await;
        }
        sent
    }

    /// Apply what the server sent for `doc_id`; Err when it refused or went away. `Ok(false)`
    /// for a timeout (the caller decides what that means), `Ok(true)` otherwise.
    fn receive(
        event: Event,
        doc_id: &str,
        doc: &mut Automerge,
        state: &mut sync::State,
    ) -> Result<bool, String> {
        match event {
            Event::Timeout => Ok(false),
            Event::Closed(code) => Err(format!("closed {code:?}")),
            Event::Msg(Message::Sync {
                document_id, data, ..
            }) if document_id == doc_id => {
                let m = sync::Message::decode(&data).map_err(|e| e.to_string())?;
                doc.receive_sync_message(state, m)
                    .map_err(|e| e.to_string())?;
                Ok(true)
            }
            Event::Msg(Message::DocUnavailable { .. }) => Err("doc-unavailable".into()),
            Event::Msg(Message::Error { message, .. }) => Err(format!("error: {message}")),
            Event::Msg(_) => Ok(true),
        }
    }

    /// Keep syncing one document, without asking for anything, until `done(doc)` holds: for
    /// changes the server pushes on its own (REST writes, conflict resolutions, other
    /// clients). Stale messages still in flight from earlier rounds are applied on the way, so
    /// "the first message after X" is never mistaken for "the change X caused". Err on a
    /// timeout (with what the document looked like), a close, or a protocol error.
    pub async fn sync_until(
        &mut self,
        doc_id: &str,
        doc: &mut Automerge,
        state: &mut sync::State,
        wait: Duration,
        mut done: impl FnMut(&Automerge) -> bool,
    ) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            self.send_pending(doc_id, doc, state, false).await;
            if done(doc) {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let event = self.next(left).await;
            if !Self::receive(event, doc_id, doc, state)? {
                return Err(format!(
                    "not there after {wait:?}: {}",
                    firemode_sync_core::to_json(doc, None)
                ));
            }
        }
    }

    /// Run the automerge sync protocol for one document until both sides announce the same
    /// heads (or, for a peer whose changes the server ignores, until it has been quiet for a
    /// while). Returns Err if the server answered otherwise (doc-unavailable, error, close).
    pub async fn sync(
        &mut self,
        doc_id: &str,
        doc: &mut Automerge,
        state: &mut sync::State,
        request: bool,
    ) -> Result<(), String> {
        // Generous: the suite runs on 2 shared cores, and a slow answer must not pass as "done".
        let patience = Duration::from_secs(3);
        let mut first = request;
        loop {
            if self.send_pending(doc_id, doc, state, first).await {
                first = false;
            }
            let ours = doc.get_heads();
            let in_sync = state.their_heads.as_ref() == Some(&ours) && !ours.is_empty();
            let wait = if in_sync {
                Duration::from_millis(150)
            } else {
                patience
            };
            let event = self.next(wait).await;
            if !Self::receive(event, doc_id, doc, state)? {
                return Ok(());
            }
        }
    }
}
