//! `GET /v1/sync`: authenticate at the upgrade, then hand the socket to the sync hub. The hub
//! knows nothing of axum: it runs over a stream and sink of [`Frame`]s, adapted here.

use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::error::ApiError;
use crate::auth::bearer;
use crate::hub::conn::{self, Frame};
use crate::state::AppState;
use firemode_sync_core::wire;

/// Read buffer of a sync socket, and the most one read takes from the kernel. An idle socket
/// holds it for as long as it is open: at 8 KiB it was most of an idle socket's memory. Sync
/// messages are mostly a few hundred bytes; a larger one grows the buffer to its size (and is
/// read in chunks of this many bytes), so it costs a few more reads, not a failure.
const SOCKET_BUFFER: usize = 1024;

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
    let user = match state.authenticate(&token).await {
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
    let max = state.hub.max_frame();
    let hub = state.hub.clone();
    let revocations = state.revocations.clone();
    // tungstenite's default buffers are 128 KiB each way per socket, most of a connection's
    // memory with hundreds of tablets connected; sync messages are mostly a few hundred bytes,
    // and both buffers still grow for a large one.
    ws.max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(SOCKET_BUFFER)
        .write_buffer_size(0)
        .on_upgrade(move |socket| async move {
            // One line when a socket opens and one when it closes, with who and how much; the
            // token never (it is in the query string or a header, neither logged).
            let user_id = user.user_id;
            let stats = Arc::new(SocketStats::default());
            let started = std::time::Instant::now();
            tracing::info!(user_id = %user_id, "sync socket open");
            conn::run(hub, revocations, user, frames(socket, stats.clone())).await;
            let device = stats
                .device
                .lock()
                .map(|d| d.clone().unwrap_or_default())
                .unwrap_or_default();
            tracing::info!(
                user_id = %user_id,
                device = %device,
                messages_in = stats.received.load(Ordering::Relaxed),
                messages_out = stats.sent.load(Ordering::Relaxed),
                duration_ms = started.elapsed().as_millis() as u64,
                "sync socket closed"
            );
        })
        .into_response()
}

/// What one socket carried, for its closing log line.
#[derive(Default)]
struct SocketStats {
    received: AtomicU64,
    sent: AtomicU64,
    /// The device part of the peer id its `join` announced.
    device: Mutex<Option<String>>,
}

impl SocketStats {
    fn saw(&self, frame: &Frame) {
        let Frame::Binary(bytes) = frame else {
            return;
        };
        self.received.fetch_add(1, Ordering::Relaxed);
        let Ok(mut device) = self.device.lock() else {
            return;
        };
        if device.is_none() {
            if let Ok(msg @ wire::Message::Join { .. }) = wire::decode(bytes) {
                let peer = msg.sender_id();
                *device = Some(peer.split_once(':').map_or(peer, |(_, d)| d).to_owned());
            }
        }
    }
}

/// The axum socket as a stream and sink of hub frames.
fn frames(
    socket: WebSocket,
    stats: Arc<SocketStats>,
) -> impl futures_util::Stream<Item = Result<Frame, axum::Error>>
       + futures_util::Sink<Frame, Error = axum::Error>
       + Send
       + 'static {
    let sent = stats.clone();
    socket
        .map(move |m| {
            // Over the size limit: tungstenite reports a capacity error (wrapped by axum); the
            // hub answers it with close code 1009.
            let m = match m {
                Err(e) if message_too_big(&e) => return Ok(Frame::TooBig),
                other => other,
            };
            let frame = m.map(|m| match m {
                WsMessage::Binary(b) => Frame::Binary(b.into()),
                WsMessage::Text(t) => Frame::Text(t.as_str().to_owned()),
                WsMessage::Ping(p) => Frame::Ping(p.into()),
                WsMessage::Pong(p) => Frame::Pong(p.into()),
                WsMessage::Close(c) => {
                    Frame::Close(c.map(|c| (c.code, c.reason.as_str().to_owned())))
                }
            });
            if let Ok(f) = &frame {
                stats.saw(f);
            }
            frame
        })
        .with(move |f: Frame| {
            if matches!(f, Frame::Binary(_)) {
                sent.sent.fetch_add(1, Ordering::Relaxed);
            }
            async move {
                Ok::<_, axum::Error>(match f {
                    Frame::Binary(b) => WsMessage::Binary(b.into()),
                    Frame::Text(t) => WsMessage::Text(t.into()),
                    Frame::Ping(p) => WsMessage::Ping(p.into()),
                    Frame::Pong(p) => WsMessage::Pong(p.into()),
                    Frame::Close(c) => WsMessage::Close(c.map(|(code, reason)| CloseFrame {
                        code,
                        reason: reason.into(),
                    })),
                    // Read side only; never sent.
                    Frame::TooBig => WsMessage::Close(None),
                })
            }
        })
}

/// Whether a read failed because the message was over `sync_max_frame`.
fn message_too_big(e: &axum::Error) -> bool {
    std::error::Error::source(e)
        .and_then(|inner| inner.downcast_ref::<tungstenite::Error>())
        .is_some_and(|t| matches!(t, tungstenite::Error::Capacity(_)))
}
