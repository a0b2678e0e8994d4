//! Issue 13, operating a server: process, pool and build metrics; mirrored hub counters that
//! overlapping scrapes do not over-count; sync sockets logged with who, which device and how
//! much, never the token.

use std::time::Duration;

use firemode_tests::fixtures;
use firemode_tests::sync_client::SyncClient;
use firemode_tests::{backend_tests, Backend, Client, TestServer};
use serde_json::json;
use uuid::Uuid;

backend_tests!(
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
