//! Issue 13, browser clients and proxies: CORS for configured origins only, the client address
//! taken from `X-Forwarded-For` only behind a trusted proxy, host names in `listen`, and probes
//! kept out of the INFO log.

use std::net::IpAddr;

use firemode_tests::process::Proc;
use firemode_tests::{backend_tests, test_config, Backend, Client, Resp, TestDb, TestServer};
use serde_json::json;

backend_tests!(
    cors_for_listed_origins_only,
    forwarded_for_only_from_trusted_proxies
);

const APP: &str = "https://tablet.example.test";

fn cors_headers(r: &Resp) -> Vec<String> {
    r.headers
        .keys()
        .map(|k| k.as_str().to_owned())
        .filter(|k| k.starts_with("access-control-"))
        .collect()
}

async fn preflight(c: &Client, origin: &str) -> Resp {
    Client::send(
        c.request(reqwest::Method::OPTIONS, "/v1/auth/login", None)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "content-type, idempotency-key",
            ),
    )
    .await
}

async fn failed_login(c: &Client, origin: &str) -> Resp {
    Client::send(
        c.request(reqwest::Method::POST, "/v1/auth/login", None)
            .header("origin", origin)
            .json(&json!({ "email": "nobody@example.test", "password": "wrong-password-123" })),
    )
    .await
}

async fn cors_for_listed_origins_only(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let mut cfg = test_config(&db);
    cfg.cors_allowed_origins = vec![APP.to_owned(), "http://localhost:5173".to_owned()];
    let srv = TestServer::start_with(db, cfg).await;
    let c = &srv.client;

    // A listed origin: the preflight is answered, credentials stay off.
    let r = preflight(c, APP).await;
    assert_eq!(r.status, 204, "{:?}", r.headers);
    assert_eq!(
        r.header("access-control-allow-origin").as_deref(),
        Some(APP)
    );
    let methods = r.header("access-control-allow-methods").unwrap_or_default();
    assert!(
        methods.contains("POST") && methods.contains("PATCH"),
        "{methods}"
    );
    let allowed = r.header("access-control-allow-headers").unwrap_or_default();
    for h in ["authorization", "content-type", "idempotency-key"] {
        assert!(allowed.contains(h), "{h} in {allowed}");
    }
    assert!(r.header("access-control-max-age").is_some());
    assert_eq!(r.header("access-control-allow-credentials"), None);

    // The actual request: the answer is readable by the page, with Retry-After and the id.
    let r = failed_login(c, APP).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(
        r.header("access-control-allow-origin").as_deref(),
        Some(APP)
    );
    let exposed = r
        .header("access-control-expose-headers")
        .unwrap_or_default();
    assert!(
        exposed.contains("retry-after") && exposed.contains("x-request-id"),
        "{exposed}"
    );
    assert_eq!(r.header("access-control-allow-credentials"), None);
    assert!(r.header("vary").unwrap_or_default().contains("origin"));
    // Origins compare without letter case (browsers send them lower-case anyway).
    let r = failed_login(c, "HTTP://LOCALHOST:5173").await;
    assert_eq!(
        r.header("access-control-allow-origin").as_deref(),
        Some("http://localhost:5173")
    );

    // An unlisted origin, a look-alike, none at all: no CORS headers; the preflight is not
    // answered (405 like any OPTIONS).
    for origin in [
        "https://evil.example.test",
        "https://tablet.example.test.evil.example",
        "null",
    ] {
        let r = preflight(c, origin).await;
        assert_eq!(r.status, 405, "{origin}");
        assert_eq!(cors_headers(&r), Vec::<String>::new(), "{origin}");
        let r = failed_login(c, origin).await;
        assert_eq!(r.status, 401);
        assert_eq!(cors_headers(&r), Vec::<String>::new(), "{origin}");
    }
    let r = srv.client.get("/health", None).await;
    assert_eq!(cors_headers(&r), Vec::<String>::new());

    // A server with no origins configured sends no CORS headers to anyone.
    let plain = TestServer::start(b).await.expect("second server");
    let r = preflight(&plain.client, APP).await;
    assert_eq!(r.status, 405);
    assert_eq!(cors_headers(&r), Vec::<String>::new());
    let r = failed_login(&plain.client, APP).await;
    assert_eq!(cors_headers(&r), Vec::<String>::new());
    assert_eq!(r.header("vary"), None);
}

/// A client whose connections come from `ip` (any 127.x address reaches the server on Linux).
fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(Some(ip.parse::<IpAddr>().unwrap()))
        .build()
        .unwrap()
}

async fn login_via(srv: &TestServer, from: &str, forwarded: &str, email: &str, pw: &str) -> Resp {
    Client::send(
        client_from(from)
            .post(format!("{}/v1/auth/login", srv.base))
            .header("x-forwarded-for", forwarded)
            .json(&json!({ "email": email, "password": pw })),
    )
    .await
}

async fn forwarded_for_only_from_trusted_proxies(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let mut cfg = test_config(&db);
    // The proxy is 127.0.0.2; 10.9.0.0/16 is an inner proxy tier in front of it.
    cfg.trusted_proxies = vec!["127.0.0.2".parse().unwrap(), "10.9.0.0/16".parse().unwrap()];
    cfg.login_max_failures = 3;
    let srv = TestServer::start_with(db, cfg).await;
    let org = srv.org("Proxied").await;
    let email = org.admin.email.clone();
    let store = srv.store();
    let failures = |addr: &'static str| {
        let store = store.clone();
        let email = email.clone();
        async move {
            let (pair, _) = store.throttle_rows(&email, addr).await.unwrap();
            pair.map_or(0, |p| p.failures)
        }
    };

    // Through the trusted proxy: the forwarded client is counted, not the proxy. The chain is
    // read from the right, past trusted hops; the forged left-most entry is not believed.
    let r = login_via(
        &srv,
        "127.0.0.2",
        "6.6.6.6, 203.0.113.7, 10.9.1.1",
        &email,
        "nope-wrong-1",
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(failures("203.0.113.7").await, 1);
    assert_eq!(failures("127.0.0.2").await, 0);
    assert_eq!(failures("6.6.6.6").await, 0);
    assert_eq!(failures("10.9.1.1").await, 0);

    // Behind one proxy, one guessing client does not lock out another: 203.0.113.7 runs out
    // of attempts, 198.51.100.4 (same proxy) still logs in with the right password.
    for i in 0..4 {
        login_via(
            &srv,
            "127.0.0.2",
            "203.0.113.7",
            &email,
            &format!("nope-wrong-{i}x"),
        )
        .await;
    }
    let r = login_via(
        &srv,
        "127.0.0.2",
        "203.0.113.7",
        &email,
        &org.admin.password,
    )
    .await;
    assert_eq!(r.status, 429, "the guesser is throttled: {}", r.body);
    let r = login_via(
        &srv,
        "127.0.0.2",
        "198.51.100.4",
        &email,
        &org.admin.password,
    )
    .await;
    assert_eq!(r.status, 200, "the neighbour logs in: {}", r.body);

    // From an address that is not a trusted proxy the header is ignored: the peer is counted.
    let r = login_via(&srv, "127.0.0.3", "192.0.2.55", &email, "nope-wrong-9").await;
    assert_eq!(r.status, 401);
    assert_eq!(failures("127.0.0.3").await, 1);
    assert_eq!(failures("192.0.2.55").await, 0);
    // A garbage header from the trusted proxy: the proxy itself is the client.
    let r = login_via(&srv, "127.0.0.2", "not-an-address", &email, "nope-wrong-8").await;
    assert_eq!(r.status, 401);
    assert_eq!(failures("127.0.0.2").await, 1);

    // The request log line carries the address it used.
    let logs = firemode_tests::logs::captured();
    assert!(
        logs.lines()
            .any(|l| l.contains("\"request\"") && l.contains("198.51.100.4")),
        "the log line names the forwarded client"
    );
    assert!(
        !logs.contains("6.6.6.6"),
        "a forged hop is never taken as the client"
    );
}

/// `listen` takes a host name (resolved at start-up), and successful probes are not logged at
/// INFO while other requests are.
#[test]
fn host_name_in_listen_and_quiet_probes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let srv = Proc::spawn(
        env!("CARGO_BIN_EXE_firemode-e2e-server"),
        &["serve", "--data-dir", data.to_str().unwrap()],
        &[
            ("FIREMODE_LISTEN", "localhost:0"),
            ("FIREMODE_LOG_FORMAT", "json"),
        ],
    );
    assert!(srv.base.starts_with("http://127.0.0.1:"), "{}", srv.base);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = Client::new(&srv.base);
        assert_eq!(c.get("/health", None).await.status, 200);
        assert_eq!(c.get("/metrics", None).await.status, 200);
        assert_eq!(c.get("/ready", None).await.status, 200);
        assert_eq!(c.get("/v1/users/me", None).await.status, 401);
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !srv.output().contains("/v1/users/me") && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let (_, out) = srv.terminate();
    let requests: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("\"message\":\"request\""))
        .collect();
    assert!(
        requests.iter().any(|l| l.contains("/v1/users/me")),
        "other requests are logged at INFO: {out}"
    );
    for probe in ["\"/health\"", "\"/metrics\"", "\"/ready\""] {
        assert!(
            !requests.iter().any(|l| l.contains(probe)),
            "{probe} is logged at DEBUG only: {out}"
        );
    }
}
