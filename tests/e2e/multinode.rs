//! Several nodes, one truth: three FireMode nodes on one PostgreSQL database — one in this
//! process, two real binaries — with unmodified automerge-repo JS clients spread over them
//! (`clients/js/test/multinode.test.mjs`). Documents unload after a second idle and compact
//! every 25 changes, so snapshots written by one node meet changes committed by another.
//! Mid-run one binary is killed with SIGKILL and restarted; its clients move to another node.
//! Then: every node and every client hold identical documents with every edit; after every
//! node stops and a fresh one loads the documents from what was stored, still every edit, the
//! projected results agree with the documents, and no compacted change is missing from its
//! snapshot (`verify_documents`).
//!
//! Seeded: `FIREMODE_MULTINODE_SEED=<n>` replays a run.

use std::time::{Duration, Instant};

use firemode_server::config::DatabaseUrl;
use firemode_tests::clients::{
    building_with_assets, create_session, js_clients_available, server_document, sorted_heads,
    user_json, NodeTest, SIX_MONTHLY_KINDS,
};
use firemode_tests::process::Proc;
use firemode_tests::{test_config, Backend, TestDb, TestServer};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_firemode-e2e-server");
/// How long the clients edit (the kill comes at 40 %).
const EDIT_MS: u64 = 8_000;
const KILL_NODE: usize = 1;

/// A `firemode serve` binary on the shared database.
fn spawn_node(env: &[(String, String)], listen: &str, dir: &std::path::Path) -> Proc {
    let env_ref: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let data = dir.to_str().expect("utf-8 path").to_owned();
    Proc::spawn(
        BIN,
        &["serve", "--listen", listen, "--data-dir", &data],
        &env_ref,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_real_clients_and_a_kill_converge_without_losing_an_edit() {
    if !js_clients_available() {
        return;
    }
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let mut cfg = test_config(&db);
    cfg.sync_idle_unload = Duration::from_secs(1);
    cfg.sync_compact_after = 25;
    cfg.sync_sweep_interval = Duration::from_millis(500);
    let DatabaseUrl::Postgres(url) = &cfg.database_url else {
        unreachable!("PostgreSQL test database")
    };
    let env: Vec<(String, String)> = vec![
        ("FIREMODE_LOG_FORMAT".into(), "json".into()),
        ("DATABASE_URL".into(), url.expose().clone()),
        (
            "FIREMODE_JWT_SECRET".into(),
            cfg.jwt_secret
                .as_ref()
                .expect("jwt secret")
                .expose()
                .clone(),
        ),
        (
            "FIREMODE_PII_KEYS".into(),
            cfg.pii_keys.as_ref().expect("pii keys").expose().clone(),
        ),
        ("FIREMODE_SYNC_IDLE_UNLOAD_SECS".into(), "1".into()),
        ("FIREMODE_SYNC_COMPACT_AFTER".into(), "25".into()),
        ("FIREMODE_SYNC_SWEEP_MS".into(), "500".into()),
    ];
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let srv = TestServer::start_with(db, cfg.clone()).await;
    let mut node1 = Some(spawn_node(&env, "127.0.0.1:0", dirs[0].path()));
    let node2 = spawn_node(&env, "127.0.0.1:0", dirs[1].path());
    let node1_addr = node1
        .as_ref()
        .unwrap()
        .base
        .trim_start_matches("http://")
        .to_owned();

    let org = srv.org("Three Nodes Fire").await;
    let office = srv.user(&org, "office").await;
    let inspector1 = srv.user(&org, "inspector").await;
    let inspector2 = srv.user(&org, "inspector").await;
    let (building, assets) = building_with_assets(&srv, &office, &SIX_MONTHLY_KINDS).await;
    let assigned = [inspector1.id, inspector2.id];
    let mut sessions = Vec::new();
    for n in 0..3 {
        let s = create_session(&srv, &office, building, &format!("Floor {n}"), &assigned).await;
        sessions.push(json!({ "id": s["id"], "document_url": s["document_url"] }));
    }
    let seed: u32 = std::env::var("FIREMODE_MULTINODE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("multi-node seed {seed} (FIREMODE_MULTINODE_SEED replays it)");
    let nodes = [
        srv.base.clone(),
        node1.as_ref().unwrap().base.clone(),
        node2.base.clone(),
    ];
    let fixture = json!({
        "nodes": nodes,
        "kill_node": KILL_NODE,
        "seed": seed,
        "duration_ms": EDIT_MS,
        // What the edit count is asserted against below, with a margin.
        "min_edits": 150,
        "assets": assets,
        "sessions": sessions,
        "users": {
            "office": user_json(&office),
            "inspector1": user_json(&inspector1),
            "inspector2": user_json(&inspector2),
        },
        // Two clients per node; pauses from bursts (10 ms) to paced (300 ms).
        "clients": [
            { "user": "inspector1", "device": "tablet-1a", "node": 0, "pause_ms": 10 },
            { "user": "inspector2", "device": "tablet-2a", "node": 0, "pause_ms": 150 },
            { "user": "inspector1", "device": "tablet-1b", "node": 1, "pause_ms": 40 },
            { "user": "office", "device": "office-pc", "node": 1, "pause_ms": 300 },
            { "user": "inspector2", "device": "tablet-2b", "node": 2, "pause_ms": 20 },
            { "user": "office", "device": "office-laptop", "node": 2, "pause_ms": 80 },
        ],
    });
    let mut js = NodeTest::spawn("multinode.test.mjs", &fixture);

    // The kill, when the JS side asks: SIGKILL, then the node comes back on its address.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !js.control("kill-request").exists() && !js.finished() {
        assert!(
            Instant::now() < deadline,
            "the JS side never asked for the kill"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let node1_back = if js.control("kill-request").exists() {
        node1.take().expect("running").kill9();
        std::fs::write(js.control("kill-done"), b"").expect("signal");
        tokio::time::sleep(Duration::from_millis(500)).await;
        spawn_node(&env, &node1_addr, dirs[0].path())
    } else {
        node1.take().expect("running")
    };

    let run = js.wait(Duration::from_secs(120)).await;
    eprintln!("{}", run.output);
    assert!(
        run.success,
        "JS multi-node test failed (seed {seed}):\n{}",
        run.output
    );
    let out = run.result["multinode"].clone();
    let total = out["total"].as_u64().expect("edit count");
    assert!(total >= 100, "too few edits to mean much: {total}");

    // Every node serves what the clients converged on.
    for base in [&srv.base, &node1_back.base, &node2.base] {
        check(base, &office.token, &out, "live nodes").await;
    }

    // Everything unloads, every node stops; a fresh node loads each document from the store.
    let (status, logs) = node2.terminate();
    assert!(status.success(), "node 2: {status}\n{logs}");
    let (status, logs) = node1_back.terminate();
    assert!(status.success(), "node 1: {status}\n{logs}");
    let db = srv.stop().await;
    let srv = TestServer::start_with(db, cfg).await;
    check(&srv.base, &office.token, &out, "a fresh node").await;
    for (id, _) in out["sessions"].as_object().expect("sessions") {
        results_match_document(&srv, &office.token, id).await;
    }
    let report = firemode_server::hub::verify::verify_documents(srv.store().as_ref())
        .await
        .expect("verify");
    assert!(
        report.compacted_changes > 0,
        "nothing was compacted: the run proves less"
    );
    assert!(
        report.lost.is_empty(),
        "compacted changes missing from snapshots: {:?}",
        report.lost
    );
    srv.stop().await;
}

/// The node serves the converged documents, with every edit in its item's notes.
async fn check(base: &str, token: &str, out: &Value, when: &str) {
    for (id, expected) in out["sessions"].as_object().expect("sessions") {
        let got = server_document(base, token, id).await;
        assert_eq!(
            sorted_heads(&got["heads"]),
            sorted_heads(&expected["heads"]),
            "{when} ({base}): heads of {id}"
        );
        assert_eq!(
            got["document"], expected["document"],
            "{when} ({base}): {id}"
        );
    }
    for e in out["edits"].as_array().expect("edits") {
        let session = e["session"].as_str().unwrap();
        let doc = &out["sessions"][session]["document"];
        let notes = doc["items"][e["asset"].as_str().unwrap()]["notes"]
            .as_str()
            .unwrap_or_default();
        let tag = format!("[{}]", e["id"].as_str().unwrap());
        assert!(notes.contains(&tag), "{when}: edit {tag} is missing");
    }
}

/// The projected results (REST) say what the document says, item by item.
async fn results_match_document(srv: &TestServer, token: &str, id: &str) {
    let doc = server_document(&srv.base, token, id).await;
    let results = srv
        .client
        .get(&format!("/v1/tests/sessions/{id}/results"), Some(token))
        .await;
    assert_eq!(results.status, 200, "{}", results.body);
    let items = results.json["items"].as_array().expect("items");
    let expected = doc["document"]["items"].as_object().expect("items");
    assert_eq!(items.len(), expected.len());
    for row in items {
        let asset = row["asset_id"].as_str().expect("asset id");
        let item = &expected[asset];
        assert_eq!(
            row["outcome"], item["outcome"],
            "session {id}, asset {asset}: projection and document disagree"
        );
        assert_eq!(row["notes"], item["notes"], "session {id}, asset {asset}");
    }
}
