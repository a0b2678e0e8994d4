//! One client connection speaking the automerge-repo network protocol v1: FireMode's wire codec
//! (`firemode_sync_core::wire`) over tokio-tungstenite, automerge's own sync state machine per
//! document. The same code talks to both servers.

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use firemode_sync_core::automerge::sync::{self, SyncDoc};
use firemode_sync_core::automerge::{Automerge, ChangeHash};
use firemode_sync_core::wire::{self, Message, PeerMetadata};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as Ws;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Where clients connect, and with which credentials.
#[derive(Clone)]
pub struct Endpoint {
    /// `ws://host:port/v1/sync` (FireMode) or `ws://host:port/` (reference server).
    pub ws_url: String,
    /// Bearer token (FireMode only).
    pub token: Option<String>,
}

/// What one frame from the server meant.
pub enum Incoming {
    /// A `sync` (or `request`) message for a document.
    Sync { document_id: String, data: Vec<u8> },
    /// The server cannot serve this document.
    Unavailable { document_id: String },
    /// Anything else (ephemeral, gossip): ignored by the benchmark.
    Other,
    /// The socket ended, or the server sent `error`.
    Closed(String),
}

pub struct Peer {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub peer_id: String,
    pub server_peer: String,
    pub frames_in: u64,
    pub frames_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

impl Peer {
    /// Open the socket (TCP_NODELAY), send `join`, wait for `peer`.
    pub async fn connect(ep: &Endpoint, peer_id: String, wait: Duration) -> Result<Self> {
        let mut req = ep.ws_url.as_str().into_client_request()?;
        if let Some(t) = &ep.token {
            req.headers_mut().insert(
                "authorization",
                format!("Bearer {t}")
                    .parse()
                    .context("token is not a header value")?,
            );
        }
        let (ws, _) = tokio::time::timeout(
            wait,
            tokio_tungstenite::connect_async_with_config(req, None, true),
        )
        .await
        .map_err(|_| anyhow!("connecting to {} timed out", ep.ws_url))?
        .with_context(|| format!("cannot connect to {}", ep.ws_url))?;
        let mut peer = Peer {
            ws,
            peer_id,
            server_peer: String::new(),
            frames_in: 0,
            frames_out: 0,
            bytes_in: 0,
            bytes_out: 0,
        };
        peer.send(&Message::Join {
            sender_id: peer.peer_id.clone(),
            peer_metadata: Some(PeerMetadata {
                storage_id: None,
                is_ephemeral: true,
            }),
            supported_protocol_versions: Some(vec![wire::PROTOCOL_V1.to_owned()]),
        })
        .await?;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let frame = tokio::time::timeout_at(deadline, peer.ws.next())
                .await
                .map_err(|_| anyhow!("no answer to join within {wait:?}"))?;
            match frame {
                Some(Ok(Ws::Binary(b))) => match wire::decode(&b) {
                    Ok(Message::Peer { sender_id, .. }) => {
                        peer.server_peer = sender_id;
                        return Ok(peer);
                    }
                    Ok(Message::Error { message, .. }) => bail!("join refused: {message}"),
                    Ok(other) => bail!("expected peer, got {}", other.type_name()),
                    Err(e) => bail!("undecodable frame after join: {e}"),
                },
                Some(Ok(Ws::Close(f))) => bail!("closed after join: {f:?}"),
                Some(Ok(_)) => continue,
                Some(Err(e)) => bail!("socket error after join: {e}"),
                None => bail!("closed after join"),
            }
        }
    }

    pub async fn send(&mut self, msg: &Message) -> Result<()> {
        let bytes = wire::encode(msg);
        self.frames_out += 1;
        self.bytes_out += bytes.len() as u64;
        self.ws
            .send(Ws::Binary(bytes.into()))
            .await
            .context("send failed")
    }

    /// Send `data` for `doc`: as `request` (first message for a document we do not have) or
    /// `sync`.
    pub async fn send_sync(&mut self, doc: &str, data: Vec<u8>, request: bool) -> Result<()> {
        let (document_id, sender_id, target_id) = (
            doc.to_owned(),
            self.peer_id.clone(),
            self.server_peer.clone(),
        );
        let msg = if request {
            Message::Request {
                document_id,
                sender_id,
                target_id,
                data,
            }
        } else {
            Message::Sync {
                document_id,
                sender_id,
                target_id,
                data,
            }
        };
        self.send(&msg).await
    }

    /// Generate and send every sync message automerge has for this document.
    pub async fn flush(
        &mut self,
        doc_id: &str,
        doc: &Automerge,
        state: &mut sync::State,
        mut request: bool,
    ) -> Result<()> {
        while let Some(m) = doc.generate_sync_message(state) {
            self.send_sync(doc_id, m.encode(), request).await?;
            request = false;
        }
        Ok(())
    }

    /// The next protocol frame (pings are answered by tungstenite and skipped). Cancel-safe.
    pub async fn recv(&mut self) -> Incoming {
        loop {
            match self.ws.next().await {
                None => return Incoming::Closed("socket closed".into()),
                Some(Err(e)) => return Incoming::Closed(format!("socket error: {e}")),
                Some(Ok(Ws::Binary(b))) => {
                    self.frames_in += 1;
                    self.bytes_in += b.len() as u64;
                    return match wire::decode(&b) {
                        Ok(Message::Sync {
                            document_id, data, ..
                        })
                        | Ok(Message::Request {
                            document_id, data, ..
                        }) => Incoming::Sync { document_id, data },
                        Ok(Message::DocUnavailable { document_id, .. }) => {
                            Incoming::Unavailable { document_id }
                        }
                        Ok(Message::Error { message, .. }) => {
                            Incoming::Closed(format!("server error: {message}"))
                        }
                        Ok(_) => Incoming::Other,
                        Err(e) => Incoming::Closed(format!("undecodable frame: {e}")),
                    };
                }
                Some(Ok(Ws::Close(f))) => {
                    return Incoming::Closed(format!(
                        "closed by the server: {}",
                        f.map(|f| format!("{} {}", u16::from(f.code), f.reason))
                            .unwrap_or_default()
                    ))
                }
                Some(Ok(_)) => continue,
            }
        }
    }

    /// Stay connected and read (answering pings) until `until`; None if the socket ended.
    pub async fn hold_until(mut self, until: tokio::time::Instant) -> Option<Self> {
        loop {
            match tokio::time::timeout_at(until, self.recv()).await {
                Err(_) => return Some(self),
                Ok(Incoming::Closed(_)) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Close politely (best effort).
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.ws.close(None)).await;
    }
}

/// Apply a server sync message to `doc`.
pub fn receive(doc: &mut Automerge, state: &mut sync::State, data: &[u8]) -> Result<()> {
    let msg = sync::Message::decode(data).map_err(|e| anyhow!("bad sync message: {e}"))?;
    doc.receive_sync_message(state, msg)
        .map_err(|e| anyhow!("sync message rejected: {e}"))
}

/// True when the server's last announced heads are exactly ours (and not empty).
pub fn in_sync(doc: &Automerge, state: &sync::State) -> bool {
    let Some(theirs) = &state.their_heads else {
        return false;
    };
    let mut ours: Vec<ChangeHash> = doc.get_heads();
    if ours.is_empty() {
        return false;
    }
    let mut theirs = theirs.clone();
    ours.sort_unstable();
    theirs.sort_unstable();
    ours == theirs
}

/// Sync `doc` with the server until both sides have the same heads: used to fetch a document
/// (`request`, empty `doc`) or to push one (`sync`, seeded `doc`).
pub async fn sync_until_equal(
    peer: &mut Peer,
    doc_id: &str,
    doc: &mut Automerge,
    state: &mut sync::State,
    request: bool,
    wait: Duration,
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + wait;
    peer.flush(doc_id, doc, state, request).await?;
    while !in_sync(doc, state) {
        let inc = tokio::time::timeout_at(deadline, peer.recv())
            .await
            .map_err(|_| anyhow!("document {doc_id} not in sync after {wait:?}"))?;
        match inc {
            Incoming::Sync { document_id, data } if document_id == doc_id => {
                receive(doc, state, &data)?;
                peer.flush(doc_id, doc, state, false).await?;
            }
            Incoming::Unavailable { document_id } if document_id == doc_id => {
                bail!("the server answered doc-unavailable for {doc_id}")
            }
            Incoming::Closed(why) => bail!("{why}"),
            _ => {}
        }
    }
    Ok(())
}
