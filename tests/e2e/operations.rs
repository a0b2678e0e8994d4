//! Issue 13, operating a server: process, pool and build metrics; mirrored hub counters that
//! overlapping scrapes do not over-count; sync sockets logged with who, which device and how
//! much, never the token.

use std::time::Duration;

use firemode_tests::fixtures;
use firemode_tests::sync_client::SyncClient;
use firemode_tests::{backend_tests, test_config, Backend, Client, TestDb, TestServer};
use serde_json::json;
use uuid::Uuid;

backend_tests!(
    metrics_on_their_own_listener_and_behind_a_token,
    metrics_cover_process_pools_and_build,
    overlapping_scrapes_do_not_over_count,
    sync_sockets_are_logged_with_counts
);

/// The value of the first sample line starting with `series` (name and labels).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

async fn metrics(srv: &TestServer) -> String {
    let r = srv.client.get("/metrics", None).await;
    assert_eq!(r.status, 200);
    r.body
}

async fn metrics_cover_process_pools_and_build(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    srv.org("Metrics").await;
    let text = metrics(&srv).await;
    let backend = match b {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    let build = format!(
        "firemode_build_info{{version=\"{}\",profile=",
        env!("CARGO_PKG_VERSION")
    );
    let line = text.lines().find(|l| l.starts_with(&build)).expect(&text);
    assert!(
        line.contains(&format!("backend=\"{backend}\"")) && line.ends_with(" 1"),
        "{line}"
    );
    let rss = sample(&text, "process_resident_memory_bytes ").expect("rss");
    assert!(rss > 1_000_000.0 && rss < 8e9, "{rss}");
    assert!(sample(&text, "process_open_fds ").expect("fds") >= 3.0);
    assert!(sample(&text, "process_max_fds ").expect("max fds") >= 64.0);
    assert!(sample(&text, "process_cpu_seconds_total ").expect("cpu") > 0.0);
    let start = sample(&text, "process_start_time_seconds ").expect("start");
    let now = chrono::Utc::now().timestamp() as f64;
    assert!(
        start <= now + 1.0 && start > now - 24.0 * 3600.0,
        "{start} vs {now}"
    );
    for pool in ["writer", "reader"] {
        let max = sample(
            &text,
            &format!("firemode_db_pool_max_connections{{pool=\"{pool}\"}}"),
        )
        .expect(&text);
        assert!(max >= 1.0);
        let idle = sample(
            &text,
            &format!("firemode_db_pool_connections{{pool=\"{pool}\",state=\"idle\"}}"),
        )
        .expect(&text);
        let in_use = sample(
            &text,
            &format!("firemode_db_pool_connections{{pool=\"{pool}\",state=\"in_use\"}}"),
        )
        .expect(&text);
        assert!(
            idle >= 0.0 && in_use >= 0.0 && idle + in_use <= max,
            "{pool}"
        );
    }
}

async fn overlapping_scrapes_do_not_over_count(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Scrapes").await;
    let building = fixtures::building(&srv, &org, 2).await;
    let session = fixtures::session(&srv, &org.admin, &building, &[]).await;
    let sid = session["id"].as_str().unwrap().to_owned();
    for round in 0..5 {
        // Results land between waves of concurrent scrapes.
        let r = Client::send(
            srv.client
                .request(
                    reqwest::Method::POST,
                    &format!("/v1/tests/sessions/{sid}/results"),
                    Some(&org.admin.token),
                )
                .header("idempotency-key", Uuid::new_v4().to_string())
                .json(&json!({"results": [{"asset_id": building.assets[round % 2],
                    "outcome": if round % 2 == 0 { "pass" } else { "fail" }}]})),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let scrapes: Vec<_> = (0..16).map(|_| metrics(&srv)).collect();
        futures_util::future::join_all(scrapes).await;
    }
    let text = metrics(&srv).await;
    let stored = sample(&text, "firemode_sync_changes_stored_total ").expect(&text);
    assert_eq!(
        stored,
        srv.state.hub.changes_stored() as f64,
        "scrapes agree with the hub"
    );
    let rows = sample(&text, "firemode_projection_rows_written_total ").expect(&text);
    assert_eq!(rows, srv.state.hub.projection_rows_written() as f64);
}

async fn sync_sockets_are_logged_with_counts(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Sockets").await;
    let device = format!("tablet-{}", Uuid::new_v4().simple());
    let peer = format!("{}:{device}", org.admin.id);
    let client = SyncClient::joined(&srv.base, &org.admin.token, &peer).await;
    drop(client);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let line = loop {
        let logs = firemode_tests::logs::captured();
        if let Some(l) = logs
            .lines()
            .find(|l| l.contains("sync socket closed") && l.contains(&device))
        {
            break l.to_owned();
        }
        assert!(tokio::time::Instant::now() < deadline, "no closing line");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    let f = &v["fields"];
    assert_eq!(f["user_id"], org.admin.id.to_string(), "{line}");
    assert_eq!(f["device"], device.as_str(), "{line}");
    assert_eq!(f["messages_in"], 1, "the join: {line}");
    assert_eq!(f["messages_out"], 1, "the peer answer: {line}");
    assert!(f["duration_ms"].is_u64(), "{line}");
    let logs = firemode_tests::logs::captured();
    assert!(
        logs.lines()
            .any(|l| l.contains("sync socket open") && l.contains(&org.admin.id.to_string())),
        "an opening line"
    );
    assert!(!logs.contains(&org.admin.token), "no token in the logs");
}

/// `metrics_listen`: `/metrics` is served on its own address and no longer on the API port,
/// which serves nothing else there; `metrics_token`: without the bearer token, 401. In process
/// (both databases) and through the real binary's start-up (SQLite).
async fn metrics_on_their_own_listener_and_behind_a_token(b: Backend) {
    use firemode_server::config::Secret;
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let token = format!("scrape-{}", Uuid::new_v4().simple());
    let mut cfg = test_config(&db);
    cfg.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    cfg.metrics_token = Some(Secret::new(token.clone()));
    let srv = TestServer::start_with(db, cfg).await;
    srv.org("Scraped").await;
    // The API port: 404 with or without the token, everything else as before.
    for t in [None, Some(token.as_str())] {
        let r = srv.client.get("/metrics", t).await;
        assert_eq!(r.status, 404, "{}", r.body);
        assert_eq!(r.json["code"], "not_found", "{}", r.body);
    }
    assert_eq!(srv.client.get("/health", None).await.status, 200);
    // The metrics listener (bound here as the binary binds `metrics_listen`).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let m = Client::new(&format!("http://{}", listener.local_addr().unwrap()));
    tokio::spawn(firemode_server::serve_metrics(listener, srv.state.clone()));
    for t in [
        None,
        Some("wrong-token-wrong-token"),
        Some(&token[..token.len() - 1]),
    ] {
        let r = m.get("/metrics", t).await;
        assert_eq!(r.status, 401, "{t:?}: {}", r.body);
        assert!(!r.body.contains("firemode_"), "{}", r.body);
    }
    let r = m.get("/metrics", Some(&token)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("# TYPE firemode_"), "{}", r.body);
    // Nothing but metrics there.
    for path in ["/health", "/v1/users/me", "/openapi.json"] {
        assert_eq!(m.get(path, Some(&token)).await.status, 404, "{path}");
    }
    // A token alone (no separate listener): the API port's /metrics needs it.
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let mut cfg = test_config(&db);
    cfg.metrics_token = Some(Secret::new(token.clone()));
    let srv2 = TestServer::start_with(db, cfg).await;
    assert_eq!(srv2.client.get("/metrics", None).await.status, 401);
    assert_eq!(srv2.client.get("/metrics", Some(&token)).await.status, 200);
    srv2.stop().await;
    srv.stop().await;

    // The binary binds `metrics_listen` at start-up and logs where.
    if b != Backend::Sqlite {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_owned();
    let p = firemode_tests::process::Proc::spawn(
        env!("CARGO_BIN_EXE_firemode-e2e-server"),
        &["serve", "--listen", "127.0.0.1:0", "--data-dir", &data],
        &[
            ("FIREMODE_LOG_FORMAT", "json"),
            ("FIREMODE_METRICS_LISTEN", "127.0.0.1:0"),
        ],
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let addr = loop {
        let out = p.output();
        if let Some(line) = out.lines().find(|l| l.contains("\"metrics listening\"")) {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            break v["address"].as_str().unwrap().to_owned();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no metrics listener: {out}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let r = Client::new(&format!("http://{addr}"))
        .get("/metrics", None)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("firemode_"), "{}", r.body);
    assert_eq!(Client::new(&p.base).get("/metrics", None).await.status, 404);
    let (status, _) = p.terminate();
    assert!(status.success());
}
