//! The client's token handling against a scripted HTTP server: refresh once on an expired
//! token (one refresh for many concurrent callers), never on other 401s, forget tokens the
//! server refuses. (End-to-end tests against the real server live in the `tests` crate.)

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use chrono::{Duration, Utc};
use firemode_client::{Client, Error, Tokens};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

struct Request {
    method: String,
    path: String,
    bearer: Option<String>,
    body: String,
}

type Handler = dyn Fn(&Request) -> (u16, String) + Send + Sync;

/// A minimal HTTP/1.1 server: one request per connection, answers from `handler`.
async fn serve(handler: Arc<Handler>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut sock, _) = listener.accept().await.unwrap();
            let handler = handler.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let head_end = loop {
                    let n = sock.read(&mut chunk).await.unwrap();
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let header = |name: &str| {
                    head.lines().find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
                    })
                };
                let len: usize = header("content-length").map_or(0, |v| v.parse().unwrap());
                while buf.len() < head_end + len {
                    let n = sock.read(&mut chunk).await.unwrap();
                    buf.extend_from_slice(&chunk[..n]);
                }
                let mut first = head.lines().next().unwrap().split(' ');
                let req = Request {
                    method: first.next().unwrap().to_owned(),
                    path: first.next().unwrap().to_owned(),
                    bearer: header("authorization")
                        .and_then(|v| v.strip_prefix("Bearer ").map(str::to_owned)),
                    body: String::from_utf8_lossy(&buf[head_end..head_end + len]).to_string(),
                };
                let (status, body) = handler(&req);
                let ctype = if status < 300 {
                    "application/json"
                } else {
                    "application/problem+json"
                };
                let res = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                sock.write_all(res.as_bytes()).await.unwrap();
            });
        }
    });
    format!("http://{addr}")
}

fn problem(status: u16, detail: &str) -> (u16, String) {
    (
        status,
        format!(
            r#"{{"type":"about:blank","title":"x","status":{status},"detail":"{detail}","code":"unauthorized","request_id":"rid","retryable":false}}"#
        ),
    )
}

const USER: &str = r#"{"id":"01a21cbe-aa24-72d5-a4be-68bb9cfde442","org_id":"01a21cbe-aa20-7519-9daa-d564873f53b4",
  "email":"a@example.test","role":"office","full_name":"A","phone":null,"active":true,
  "created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z"}"#;

fn tokens(access: &str, refresh: &str) -> Tokens {
    Tokens {
        access_token: access.into(),
        refresh_token: refresh.into(),
        // Not expired by our clock: the server's "expired" detail alone must trigger refresh.
        access_expires_at: Utc::now() + Duration::minutes(10),
    }
}

/// `old` is expired on the server, `new` is valid; refresh token `r1` is good exactly once.
fn rotating_server(refreshes: Arc<AtomicUsize>) -> Arc<Handler> {
    Arc::new(
        move |req: &Request| match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/v1/users/me") => match req.bearer.as_deref() {
                Some("new") => (200, USER.to_owned()),
                Some("old") => problem(401, "the access token has expired"),
                Some("revoked") => problem(401, "the access token has been revoked"),
                _ => problem(401, "the access token is invalid"),
            },
            ("POST", "/v1/auth/refresh") => {
                if req.body.contains(r#""refresh_token":"r1""#)
                    && refreshes.fetch_add(1, Ordering::SeqCst) == 0
                {
                    (
                    200,
                    r#"{"access_token":"new","token_type":"Bearer","expires_in":900,"refresh_token":"r2"}"#.into(),
                )
                } else {
                    problem(401, "the refresh token is invalid or expired")
                }
            }
            _ => problem(404, "no such resource"),
        },
    )
}

#[tokio::test]
async fn expired_token_is_refreshed_once_for_many_concurrent_calls() {
    let refreshes = Arc::new(AtomicUsize::new(0));
    let base = serve(rotating_server(refreshes.clone())).await;
    let client = Client::new(&base).unwrap().with_tokens(tokens("old", "r1"));

    let calls: Vec<_> = (0..16)
        .map(|_| {
            let c = client.clone();
            tokio::spawn(async move { c.me().await })
        })
        .collect();
    for call in calls {
        let user = call.await.unwrap().unwrap();
        assert_eq!(user.email, "a@example.test");
    }
    assert_eq!(refreshes.load(Ordering::SeqCst), 1);
    let t = client.tokens().unwrap();
    assert_eq!(
        (t.access_token.as_str(), t.refresh_token.as_str()),
        ("new", "r2")
    );
}

#[tokio::test]
async fn other_401s_are_returned_without_refreshing() {
    let refreshes = Arc::new(AtomicUsize::new(0));
    let base = serve(rotating_server(refreshes.clone())).await;
    let client = Client::new(&base)
        .unwrap()
        .with_tokens(tokens("revoked", "r1"));
    let err = client.me().await.unwrap_err();
    let api = err.api().expect("an API error");
    assert_eq!((api.status, api.code.as_str()), (401, "unauthorized"));
    assert_eq!(api.request_id.as_deref(), Some("rid"));
    assert_eq!(refreshes.load(Ordering::SeqCst), 0);
    assert!(client.tokens().is_some());
}

#[tokio::test]
async fn a_refused_refresh_token_logs_the_client_out() {
    let refreshes = Arc::new(AtomicUsize::new(0));
    let base = serve(rotating_server(refreshes.clone())).await;
    let client = Client::new(&base)
        .unwrap()
        .with_tokens(tokens("old", "stolen"));
    let err = client.me().await.unwrap_err();
    assert_eq!(err.status(), Some(401));
    assert!(err.to_string().contains("refresh token"), "{err}");
    assert!(client.tokens().is_none());
    assert!(matches!(client.me().await, Err(Error::NotLoggedIn)));
}

#[tokio::test]
async fn transport_errors_name_the_url_and_the_cause() {
    // Bind then drop to get a port nobody listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = Client::new(&format!("http://127.0.0.1:{port}")).unwrap();
    let err = client.login("a@example.test", "pw").await.unwrap_err();
    assert!(matches!(err, Error::Transport { .. }));
    assert!(err.is_retryable());
    let text = err.to_string();
    assert!(
        text.contains("/v1/auth/login") && text.contains("refused"),
        "{text}"
    );
}
