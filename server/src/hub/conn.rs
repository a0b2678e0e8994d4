//! One WebSocket connection speaking the automerge-repo protocol (server side).

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use firemode_sync_core::wire::{self, Message, PeerMetadata};
use firemode_sync_core::DocumentId;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::doc::DocCmd;
use super::{Access, CloseReason, ConnInfo, Hub};
use crate::auth::revocation::RevocationList;
use crate::auth::AuthUser;
use crate::domain::access::SessionAccess;
use crate::store::{Role, StoreError};

/// Close codes: 1000 normal, 1001 going away, 1002 protocol error, 1008 policy violation,
/// 1009 message too big (RFC 6455 7.4.1).
const CLOSE_NORMAL: u16 = 1000;
const CLOSE_GOING_AWAY: u16 = 1001;
const CLOSE_PROTOCOL: u16 = 1002;
const CLOSE_POLICY: u16 = 1008;
const CLOSE_TOO_BIG: u16 = 1009;
/// 1013 "try again later": the server could not store what the client sent.
const CLOSE_TRY_AGAIN: u16 = 1013;

/// Before the server closes a socket it sends a ping with this payload and waits (at most
/// CLOSE_BARRIER_TIMEOUT) for the matching pong. automerge-repo 2.5 answers a `sync` message a
/// few promise turns after it arrives; in Node (`ws`), a close frame read in the same network
/// read as that message makes the socket CLOSING first, the adapter's `send` then throws inside
/// `DocHandle.update`, and the client's handle for that document is broken for good ("Attempting
/// to change an outdated document"). A pong comes back only once the client has read every
/// frame before the ping, so the close frame can no longer arrive together with a sync message.
const CLOSE_BARRIER: &[u8] = b"firemode-close";
const CLOSE_BARRIER_TIMEOUT: Duration = Duration::from_secs(1);

/// Unavailable answers a connection may cause per minute before it is cut off (random-id floods).
const MAX_UNAVAILABLE_PER_MINUTE: u32 = 600;

/// A WebSocket frame as the hub sees it: the HTTP layer owns the socket and adapts its frames,
/// so the hub runs over any stream and sink of these (a test can hand it a channel).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Binary(Vec<u8>),
    Text(String),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    /// A close frame (code and reason), or the end of the stream.
    Close(Option<(u16, String)>),
    /// The client sent a message over the size limit (read side only).
    TooBig,
}

/// The access a user has to a session document (`crate::domain::access`, the same answer REST
/// gives); None means unavailable (no such session, another organisation, not assigned).
/// Every case looks the same to the client. A completed session is read-only for everyone.
pub(crate) async fn access_for(
    hub: &Hub,
    user: Uuid,
    org: Uuid,
    role: Role,
    doc: Uuid,
) -> Option<Access> {
    let session = match hub.inner.store.find_session(doc).await {
        Ok(s) => s,
        Err(StoreError::NotFound) => return None,
        Err(e) => {
            tracing::warn!(error = %e, "session lookup failed");
            return None;
        }
    };
    let caller = crate::domain::access::Caller {
        user_id: user,
        org_id: org,
        role,
    };
    match crate::domain::access::session_access(&caller, &session.facts()) {
        SessionAccess::None => None,
        SessionAccess::Read => Some(Access::ReadOnly),
        SessionAccess::Write => Some(Access::ReadWrite),
    }
}

struct Conn {
    hub: Hub,
    user: AuthUser,
    id: super::ConnId,
    out_tx: mpsc::Sender<Vec<u8>>,
    kill: CancellationToken,
    info: Option<Arc<ConnInfo>>,
    /// Document id as the client wrote it -> our decision.
    access: HashMap<String, Option<(Uuid, Access)>>,
    unavailable_window: (Instant, u32),
}

enum Flow {
    Continue,
    Close(u16, String),
}

/// Serve one authenticated sync connection until it closes. `revocations` is the
/// authentication service's revocation list: a token revoked while the socket is open closes it.
pub async fn run<S, E>(
    hub: Hub,
    revocations: std::sync::Arc<RevocationList>,
    user: AuthUser,
    socket: S,
) where
    S: Stream<Item = Result<Frame, E>> + Sink<Frame> + Send + 'static,
{
    let cfg = hub.inner.config.clone();
    let (sink, stream) = socket.split();
    let mut sink = std::pin::pin!(sink);
    let mut stream = std::pin::pin!(stream);
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(cfg.outbound_queue);
    let kill = hub.inner.shutdown.child_token();
    let mut revoked = revocations.subscribe();
    let exp = user.claims.exp;
    let until_exp = Duration::from_millis(
        u64::try_from(exp * 1000 - chrono::Utc::now().timestamp_millis()).unwrap_or(0),
    );
    let expiry = tokio::time::sleep(until_exp);
    tokio::pin!(expiry);
    let mut ping = tokio::time::interval(cfg.ping_interval);
    ping.tick().await;
    let mut waiting_pong: Option<Instant> = None;
    // The client closed or vanished: nothing to flush, no close handshake to protect.
    let mut peer_gone = false;
    // A socket that never joins is closed: automerge-repo 2.5's adapter leaves such sockets
    // open (with no listeners) when a connect attempt outlasts its retry interval.
    let join_deadline = tokio::time::sleep(cfg.ping_interval * 2);
    tokio::pin!(join_deadline);
    let mut conn = Conn {
        id: hub.next_conn_id(),
        hub: hub.clone(),
        user,
        out_tx,
        kill: kill.clone(),
        info: None,
        access: HashMap::new(),
        unavailable_window: (Instant::now(), 0),
    };
    tracing::debug!(conn = conn.id, user = %conn.user.user_id, "sync connection open");

    let close: (u16, String) = loop {
        tokio::select! {
            _ = kill.cancelled() => {
                let reason = conn.info.as_ref().and_then(|i| i.close_reason());
                break match reason {
                    _ if hub.inner.shutdown.is_cancelled() => {
                        (CLOSE_GOING_AWAY, "server shutting down".into())
                    }
                    Some(CloseReason::Protocol(why)) => (CLOSE_PROTOCOL, why),
                    Some(CloseReason::Slow) => (CLOSE_POLICY, "connection too slow".into()),
                    Some(CloseReason::StorageFailed) => {
                        (CLOSE_TRY_AGAIN, "changes could not be stored; reconnect and resend".into())
                    }
                    Some(CloseReason::Unloaded) => (CLOSE_GOING_AWAY, "document unloaded".into()),
                    Some(CloseReason::AccessChanged) => (CLOSE_POLICY, "access changed".into()),
                    Some(CloseReason::Replaced) => {
                        (CLOSE_POLICY, "replaced by a newer connection of this peer".into())
                    }
                    None if revocations.is_revoked(&conn.user.claims) => {
                        (CLOSE_POLICY, "token revoked".into())
                    }
                    None => (CLOSE_POLICY, "closed by the server".into()),
                };
            }
            _ = &mut expiry => break (CLOSE_POLICY, "token expired".into()),
            _ = &mut join_deadline, if conn.info.is_none() => {
                break (CLOSE_POLICY, "no join message in time".into());
            }
            ev = revoked.recv() => {
                // On any revocation (or a lagged channel), re-check this token.
                let _ = ev;
                if revocations.is_revoked(&conn.user.claims) {
                    break (CLOSE_POLICY, "token revoked".into());
                }
            }
            frame = out_rx.recv() => {
                let Some(frame) = frame else { break (CLOSE_NORMAL, String::new()) };
                if sink.send(Frame::Binary(frame)).await.is_err() {
                    peer_gone = true;
                    break (CLOSE_NORMAL, String::new());
                }
            }
            msg = stream.next() => {
                let msg = match msg {
                    Some(Ok(msg)) => msg,
                    _ => {
                        peer_gone = true;
                        break (CLOSE_NORMAL, String::new());
                    }
                };
                match msg {
                    Frame::Binary(bytes) => match conn.on_frame(&bytes).await {
                        Flow::Continue => {}
                        Flow::Close(code, why) => break (code, why),
                    },
                    Frame::Text(_) => {
                        conn.send_error("expected binary CBOR frames");
                        break (CLOSE_PROTOCOL, "text frames are not part of the protocol".into());
                    }
                    Frame::Pong(_) => waiting_pong = None,
                    Frame::Ping(_) => {}
                    Frame::TooBig => {
                        break (CLOSE_TOO_BIG, format!("message larger than {} bytes", cfg.max_frame));
                    }
                    Frame::Close(_) => {
                        peer_gone = true;
                        break (CLOSE_NORMAL, String::new());
                    }
                }
            }
            _ = ping.tick() => {
                if let Some(since) = waiting_pong {
                    if since.elapsed() >= cfg.ping_interval {
                        break (CLOSE_POLICY, "missed pong".into());
                    }
                }
                if waiting_pong.is_none() {
                    waiting_pong = Some(Instant::now());
                }
                if sink.send(Frame::Ping(Vec::new())).await.is_err() {
                    peer_gone = true;
                    break (CLOSE_NORMAL, String::new());
                }
            }
        }
    };
    // Stop producing frames for this socket, flush what is queued (an error frame, say), wait
    // until the client has read it all (see CLOSE_BARRIER), then close.
    conn.detach_all().await;
    if !peer_gone {
        while let Ok(frame) = out_rx_try(&mut out_rx) {
            if sink.send(Frame::Binary(frame)).await.is_err() {
                peer_gone = true;
                break;
            }
        }
    }
    if !peer_gone && sink.send(Frame::Ping(CLOSE_BARRIER.to_vec())).await.is_ok() {
        let _ = tokio::time::timeout(CLOSE_BARRIER_TIMEOUT, async {
            while let Some(Ok(msg)) = stream.next().await {
                if matches!(&msg, Frame::Pong(p) if p.as_slice() == CLOSE_BARRIER) {
                    break;
                }
            }
        })
        .await;
    }
    let _ = sink.send(Frame::Close(Some(close.clone()))).await;
    tracing::debug!(conn = conn.id, code = close.0, reason = %close.1, "sync connection closed");
}

fn out_rx_try(rx: &mut mpsc::Receiver<Vec<u8>>) -> Result<Vec<u8>, ()> {
    rx.try_recv().map_err(|_| ())
}

impl Conn {
    fn hub(&self) -> &Hub {
        &self.hub
    }

    fn send(&self, msg: &Message) {
        let _ = self.out_tx.try_send(wire::encode(msg));
    }

    fn send_error(&self, message: &str) {
        self.send(&Message::Error {
            sender_id: self.hub().peer_id().to_owned(),
            message: message.to_owned(),
            target_id: self.info.as_ref().map(|i| i.peer_id.clone()),
        });
    }

    fn fail(&self, code: u16, message: &str) -> Flow {
        self.send_error(message);
        Flow::Close(code, message.to_owned())
    }

    async fn on_frame(&mut self, bytes: &[u8]) -> Flow {
        let msg = match wire::decode(bytes) {
            Ok(m) => m,
            Err(e) => return self.fail(CLOSE_PROTOCOL, &format!("cannot decode message: {e}")),
        };
        if let Message::Join {
            sender_id,
            supported_protocol_versions,
            ..
        } = &msg
        {
            return self.on_join(sender_id, supported_protocol_versions.as_deref());
        }
        let Some(info) = self.info.clone() else {
            return self.fail(CLOSE_PROTOCOL, "send join first");
        };
        if msg.sender_id() != info.peer_id {
            return self.fail(CLOSE_POLICY, "senderId does not match the joined peer id");
        }
        match msg {
            Message::Request {
                document_id, data, ..
            }
            | Message::Sync {
                document_id, data, ..
            } => match self.authorize(&document_id).await {
                Some((doc, access)) => {
                    self.hub()
                        .send(
                            doc,
                            DocCmd::Sync {
                                conn: info,
                                access,
                                data,
                            },
                        )
                        .await;
                    Flow::Continue
                }
                None => self.unavailable(&document_id, &info),
            },
            Message::Ephemeral {
                document_id,
                count,
                session_id,
                data,
                ..
            } => {
                if let Some((doc, _)) = self.authorize(&document_id).await {
                    self.hub()
                        .send(
                            doc,
                            DocCmd::Ephemeral {
                                conn: info,
                                session_id,
                                count,
                                data,
                            },
                        )
                        .await;
                }
                Flow::Continue
            }
            Message::Leave { .. } => Flow::Close(CLOSE_NORMAL, "leave".into()),
            Message::Error { .. } => Flow::Close(CLOSE_NORMAL, "peer reported an error".into()),
            // Gossip and server-only messages: ignored.
            _ => Flow::Continue,
        }
    }

    fn on_join(&mut self, sender_id: &str, versions: Option<&[String]>) -> Flow {
        if let Some(v) = versions {
            if !v.iter().any(|v| v == wire::PROTOCOL_V1) {
                return self.fail(CLOSE_PROTOCOL, "unsupported protocol version");
            }
        }
        let Some((user, device)) = sender_id.split_once(':') else {
            return self.fail(CLOSE_POLICY, "peer id must be <user id>:<device id>");
        };
        if Uuid::from_str(user).ok() != Some(self.user.user_id)
            || device.is_empty()
            || device.len() > 200
        {
            return self.fail(CLOSE_POLICY, "peer id must be <your user id>:<device id>");
        }
        if let Some(existing) = &self.info {
            if existing.peer_id != sender_id {
                return self.fail(CLOSE_POLICY, "a connection cannot change its peer id");
            }
        } else {
            // A second join from the same peer replaces the earlier socket.
            for other in self.hub().inner.conns.iter() {
                if other.peer_id == sender_id && other.id != self.id {
                    other.close(CloseReason::Replaced);
                }
            }
            let info = Arc::new(ConnInfo {
                id: self.id,
                user_id: self.user.user_id,
                org_id: self.user.org_id,
                role: self.user.role,
                peer_id: sender_id.to_owned(),
                device_id: device.to_owned(),
                out: self.out_tx.clone(),
                kill: self.kill.clone(),
                close_reason: Default::default(),
            });
            self.hub().inner.conns.insert(self.id, info.clone());
            self.info = Some(info);
        }
        self.send(&Message::Peer {
            sender_id: self.hub().peer_id().to_owned(),
            peer_metadata: Some(PeerMetadata {
                storage_id: Some(self.hub().inner.storage_id.clone()),
                is_ephemeral: false,
            }),
            selected_protocol_version: wire::PROTOCOL_V1.to_owned(),
            target_id: sender_id.to_owned(),
        });
        Flow::Continue
    }

    async fn authorize(&mut self, document_id: &str) -> Option<(Uuid, Access)> {
        if let Some(known) = self.access.get(document_id) {
            return *known;
        }
        let decision = match DocumentId::from_str(document_id) {
            Ok(doc) => {
                let doc = doc.as_uuid();
                access_for(
                    self.hub(),
                    self.user.user_id,
                    self.user.org_id,
                    self.user.role,
                    doc,
                )
                .await
                .map(|a| (doc, a))
            }
            Err(_) => None,
        };
        // Only remember grants: a session registered later must become available.
        if decision.is_some() && self.access.len() < 10_000 {
            self.access.insert(document_id.to_owned(), decision);
        }
        decision
    }

    fn unavailable(&mut self, document_id: &str, info: &ConnInfo) -> Flow {
        let (since, n) = &mut self.unavailable_window;
        if since.elapsed() > Duration::from_secs(60) {
            *since = Instant::now();
            *n = 0;
        }
        *n += 1;
        if *n > MAX_UNAVAILABLE_PER_MINUTE {
            return self.fail(CLOSE_POLICY, "too many requests for unavailable documents");
        }
        self.send(&Message::DocUnavailable {
            document_id: document_id.to_owned(),
            sender_id: self.hub().peer_id().to_owned(),
            target_id: info.peer_id.clone(),
        });
        Flow::Continue
    }

    async fn detach_all(&mut self) {
        self.hub().inner.conns.remove(&self.id);
        let docs: Vec<Uuid> = self
            .access
            .values()
            .filter_map(|a| a.map(|(d, _)| d))
            .collect();
        for d in docs {
            self.hub().send_if_loaded(d, DocCmd::Detach(self.id)).await;
        }
    }
}
