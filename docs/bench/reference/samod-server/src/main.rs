//! The Rust reference sync server for the side-by-side benchmarks: a `samod` repo (the Rust
//! automerge-repo) playing the role of `@automerge/automerge-repo-sync-server`. It accepts every
//! WebSocket peer at `ws://127.0.0.1:PORT/` (the URL shape of the JS references), keeps what
//! peers send in samod's file-system storage under DATA_DIR (the on-disk layout of
//! automerge-repo-storage-nodefs), answers what they ask for, and announces nothing unasked
//! (samod's share policy: read-write for everyone, announcements off). No authentication: it is
//! a benchmark peer on loopback, not a server to expose.
//!
//!   PORT=18081 DATA_DIR=/tmp/samod-data samod-reference-server
//!
//! A plain `GET /` answers 200 with a line of text, so that scripts can wait for it to listen.
//! SIGTERM or SIGINT stops the repo (samod finishes its storage writes) and exits.

use std::net::SocketAddr;

use axum::extract::ws::{rejection::WebSocketUpgradeRejection, WebSocketUpgrade};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use samod::storage::TokioFilesystemStorage;
use samod::{AcceptorHandle, PeerId, Repo, ShareConfig, Url};

#[tokio::main]
async fn main() {
    let port: u16 = match std::env::var("PORT") {
        Ok(p) => p
            .parse()
            .unwrap_or_else(|_| fail(&format!("PORT={p} is not a port number"))),
        Err(_) => 3030,
    };
    let dir = std::env::var("DATA_DIR").unwrap_or_else(|_| ".amrg".to_owned());
    if let Err(e) = std::fs::create_dir_all(&dir) {
        fail(&format!("cannot create DATA_DIR {dir}: {e}"));
    }

    let repo = Repo::build_tokio()
        .with_storage(TokioFilesystemStorage::new(&dir))
        .with_peer_id(PeerId::from("samod-reference"))
        // A relay: every peer may read and write what it asks for; nothing is offered unasked.
        .with_share_policy(ShareConfig::read_write().with_announce(false))
        .load()
        .await;
    let url = Url::parse(&format!("ws://127.0.0.1:{port}/")).expect("a valid URL");
    let acceptor = repo
        .make_acceptor(url)
        .unwrap_or_else(|_| fail("the repo stopped before it could accept connections"));

    let app = Router::new().route("/", get(root)).with_state(acceptor);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .unwrap_or_else(|e| fail(&format!("cannot listen on {addr}: {e}")));
    eprintln!("listening on {port} (samod {})", SAMOD_VERSION);

    let serve = axum::serve(listener, app);
    tokio::select! {
        r = serve => if let Err(e) = r { eprintln!("server error: {e}") },
        () = stop_signal() => {},
    }
    // Open sockets end with the repo; its pending storage writes finish first.
    repo.stop().await;
}

/// The samod version this server is built with (Cargo.toml pins the minor version).
const SAMOD_VERSION: &str = "0.16";

/// `GET /`: a WebSocket upgrade becomes a samod connection; anything else gets a line of text.
async fn root(
    State(acceptor): State<AcceptorHandle>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    match ws {
        Ok(ws) => ws
            .on_upgrade(move |socket| async move {
                // The peer id is whatever the peer claims in its `join`: no authentication.
                if acceptor.accept_axum(socket, None).is_err() {
                    eprintln!("connection refused: the repo is stopping");
                }
            })
            .into_response(),
        Err(_) => (
            [("content-type", "text/plain")],
            format!("reference sync server (samod {SAMOD_VERSION})\n"),
        )
            .into_response(),
    }
}

async fn stop_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .unwrap_or_else(|e| fail(&format!("cannot watch SIGTERM: {e}")));
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("samod-reference-server: {msg}");
    std::process::exit(2)
}
