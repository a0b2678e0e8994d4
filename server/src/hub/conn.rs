//! One WebSocket connection speaking the automerge-repo protocol (server side).

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use firemode_sync_core::wire::{self, Message, PeerMetadata};
use firemode_sync_core::DocumentId;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::doc::DocCmd;
use super::{Access, ConnInfo, Hub};
use crate::auth::{bearer, AuthUser};
use crate::http::error::ApiError;
use crate::state::AppState;
use crate::store::{Role, StoreError};

/// Close codes: 1000 normal, 1001 going away, 1002 protocol error, 1008 policy violation,
/// 1009 message too big (RFC 6455 7.4.1).
const CLOSE_NORMAL: u16 = 1000;
const CLOSE_GOING_AWAY: u16 = 1001;
const CLOSE_PROTOCOL: u16 = 1002;
const CLOSE_POLICY: u16 = 1008;
const CLOSE_TOO_BIG: u16 = 1009;

/// Whether a read failed because the message was over `sync_max_frame` (tungstenite reports
/// it as a capacity error, which axum wraps).
fn message_too_big(e: &axum::Error) -> bool {
    std::error::Error::source(e)
        .and_then(|inner| inner.downcast_ref::<tungstenite::Error>())
        .is_some_and(|t| matches!(t, tungstenite::Error::Capacity(_)))
}

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
/// Initial read buffer of a sync socket (it grows for larger messages).
const SOCKET_BUFFER: usize = 8 * 1024;

#[derive(Deserialize)]
pub struct SyncQuery {
    token: Option<String>,
}

/// `GET /v1/sync`: authenticate (header or `?token=`), then upgrade.
pub async fn upgrade(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<SyncQuery>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer)
        .map(str::to_owned)
        .or(q.token);
    let Some(token) = token else {
        return ApiError::Unauthorized(
            "missing token: use Authorization: Bearer or ?token=".into(),
        )
        .into_response();
    };
    let user = match state.authenticate(&token) {
        Ok(u) => u,
        Err(e) => return e.into_response(),
    };
    let ws = match ws {
        Ok(ws) => ws,
        Err(_) => {
            return ApiError::bad_request(
                "websocket_required",
                "this endpoint only speaks WebSocket",
            )
            .into_response()
        }
    };
    let max = state.hub.inner.config.max_frame;
    // tungstenite's default buffers are 128 KiB each way per socket, most of a connection's
    // memory with hundreds of tablets connected; sync messages are mostly a few hundred bytes,
    // and both buffers still grow for a large one.
    ws.max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(SOCKET_BUFFER)
        .write_buffer_size(0)
        .on_upgrade(move |socket| run(state, user, socket))
        .into_response()
}

/// The access a user has to a session document; None means unavailable (no such session,
/// another organisation, not assigned). Every case looks the same to the client.
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
    if session.row.org_id != org {
        return None;
    }
    match role {
        Role::Admin | Role::Office => Some(Access::ReadWrite),
        Role::Inspector if session.assigned_to.contains(&user) => Some(Access::ReadWrite),
        Role::Inspector => None,
        Role::Auditor => Some(Access::ReadOnly),
    }
}

struct Conn {
    state: AppState,
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

async fn run(state: AppState, user: AuthUser, socket: WebSocket) {
    let hub = state.hub.clone();
    let cfg = hub.inner.config.clone();
    let (mut sink, mut stream) = socket.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(cfg.outbound_queue);
    let kill = hub.inner.shutdown.child_token();
    let mut revoked = state.revocations.subscribe();
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
        state: state.clone(),
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
                // The kill token carries no cause (revoked access, a slow reader, sync data the
                // document refused, a newer socket of the same peer, ...); an error message
                // naming it, when there is one, was queued before this close.
                break if hub.inner.shutdown.is_cancelled() {
                    (CLOSE_GOING_AWAY, "server shutting down".into())
                } else if state.revocations.is_revoked(&conn.user.claims) {
                    (CLOSE_POLICY, "token revoked".into())
                } else {
                    (CLOSE_POLICY, "closed by the server; see the preceding error message, if any".into())
                };
            }
            _ = &mut expiry => break (CLOSE_POLICY, "token expired".into()),
            _ = &mut join_deadline, if conn.info.is_none() => {
                break (CLOSE_POLICY, "no join message in time".into());
            }
            ev = revoked.recv() => {
                // On any revocation (or a lagged channel), re-check this token.
                let _ = ev;
                if state.revocations.is_revoked(&conn.user.claims) {
                    break (CLOSE_POLICY, "token revoked".into());
                }
            }
            frame = out_rx.recv() => {
                let Some(frame) = frame else { break (CLOSE_NORMAL, String::new()) };
                if sink.send(WsMessage::Binary(frame.into())).await.is_err() {
                    peer_gone = true;
                    break (CLOSE_NORMAL, String::new());
                }
            }
            msg = stream.next() => {
                let msg = match msg {
                    Some(Ok(msg)) => msg,
                    Some(Err(e)) if message_too_big(&e) => {
                        break (CLOSE_TOO_BIG, format!("message larger than {} bytes", cfg.max_frame));
                    }
                    _ => {
                        peer_gone = true;
                        break (CLOSE_NORMAL, String::new());
                    }
                };
                match msg {
                    WsMessage::Binary(bytes) => match conn.on_frame(&bytes).await {
                        Flow::Continue => {}
                        Flow::Close(code, why) => break (code, why),
                    },
                    WsMessage::Text(_) => {
                        conn.send_error("expected binary CBOR frames");
                        break (CLOSE_PROTOCOL, "text frames are not part of the protocol".into());
                    }
                    WsMessage::Pong(_) => waiting_pong = None,
                    WsMessage::Ping(_) => {}
                    WsMessage::Close(_) => {
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
                if sink.send(WsMessage::Ping(Vec::new().into())).await.is_err() {
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
            if sink.send(WsMessage::Binary(frame.into())).await.is_err() {
                peer_gone = true;
                break;
            }
        }
    }
    if !peer_gone
        && sink
            .send(WsMessage::Ping(CLOSE_BARRIER.to_vec().into()))
            .await
            .is_ok()
    {
        let _ = tokio::time::timeout(CLOSE_BARRIER_TIMEOUT, async {
            while let Some(Ok(msg)) = stream.next().await {
                if matches!(&msg, WsMessage::Pong(p) if p.as_ref() == CLOSE_BARRIER) {
                    break;
                }
            }
        })
        .await;
    }
    let _ = sink
        .send(WsMessage::Close(Some(CloseFrame {
            code: close.0,
            reason: close.1.clone().into(),
        })))
        .await;
    tracing::debug!(conn = conn.id, code = close.0, reason = %close.1, "sync connection closed");
}

fn out_rx_try(rx: &mut mpsc::Receiver<Vec<u8>>) -> Result<Vec<u8>, ()> {
    rx.try_recv().map_err(|_| ())
}

impl Conn {
    fn hub(&self) -> &Hub {
        &self.state.hub
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
                    other.kill.cancel();
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
