//! Issue 13, backups: `firemode admin backup` of a running zero-setup server while it takes
//! writes, `admin restore` into an empty data folder, and a new server on the restored folder
//! that has everything acknowledged before the backup started (rows, documents, evidence,
//! readable names), nothing that was never acknowledged, and a consistent cut of the writes
//! made during the backup.
//!
//! `backup_under_sync_load` (both databases): the same while REST writes, evidence uploads and
//! a tablet's sync edits keep coming, on SQLite with `admin backup`/`admin restore`, on
//! PostgreSQL by the documented path (`pg_dump --format=custom` of the running database, then
//! the evidence folder; `pg_restore` into an empty database, the same secrets).

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use firemode_tests::fixtures;
use firemode_tests::sync_client::SyncClient;
use firemode_tests::{backend_tests, test_config, Backend, Client, TestDb, TestServer};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::evidence::{jpeg, sha_hex, Upload};

const BIN: &str = env!("CARGO_BIN_EXE_firemode-e2e-server");

backend_tests!(backup_under_sync_load);

fn admin(data_dir: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .arg("admin")
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--json")
        .args(args)
        .env_remove("DATABASE_URL")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    )
}

async fn get(c: &Client, token: &str, path: &str) -> Value {
    let r = c.get(path, Some(token)).await;
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    r.json
}

/// Building names, in creation order (ids are time-ordered UUIDs).
async fn building_names(c: &Client, token: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(cur) => format!("/v1/buildings?limit=500&cursor={cur}"),
            None => "/v1/buildings?limit=500".to_owned(),
        };
        let page = get(c, token, &path).await;
        for b in page["items"].as_array().unwrap() {
            names.push(b["name"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(cur) => cursor = Some(cur.to_owned()),
            None => break,
        }
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_under_writes_restores_what_was_acknowledged() {
    let srv = TestServer::start(Backend::Sqlite).await.expect("sqlite");
    let org = srv.org("Backup Org").await;
    let token = org.admin.token.clone();
    let c = srv.client.clone();

    // Acknowledged before the backup: a building with an encrypted contact, assets, a session
    // with results, evidence.
    let r = c
        .post(
            "/v1/buildings",
            Some(&token),
            &json!({"name": "Contact Tower", "address": "2 Test St", "building_type": "office",
                    "contact": {"name": "Pat Manager", "phone": "+61 3 9000 0000"}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let contact_building = r.uuid("id");
    let building = fixtures::building(&srv, &org, 3).await;
    let session = fixtures::session(&srv, &org.admin, &building, &[]).await;
    let sid: Uuid = session["id"].as_str().unwrap().parse().unwrap();
    let r = Client::send(
        c.request(
            reqwest::Method::POST,
            &format!("/v1/tests/sessions/{sid}/results"),
            Some(&token),
        )
        .header("idempotency-key", Uuid::new_v4().to_string())
        .json(&json!({"results": [
            {"asset_id": building.assets[0], "outcome": "fail", "notes": "gauge in the red"},
            {"asset_id": building.assets[1], "outcome": "pass"}]})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let mut evidence = Vec::new();
    for seed in 0..4u8 {
        let file = jpeg(300_000 + usize::from(seed) * 1000, seed);
        let mut up = Upload::photo(sid, file.clone());
        up.asset_id = Some(building.assets[0].to_string());
        let r = up.send(&c, &token).await;
        assert_eq!(r.status, 201, "{}", r.body);
        evidence.push((r.uuid("evidence_id"), sha_hex(&file), file));
    }
    let doc_before = get(&c, &token, &format!("/v1/tests/sessions/{sid}/document")).await;
    let results_before = get(&c, &token, &format!("/v1/tests/sessions/{sid}/results")).await;
    let contact_before = get(&c, &token, &format!("/v1/buildings/{contact_building}")).await;
    let names_before = building_names(&c, &token).await;

    // Writes keep coming while the backup runs: numbered buildings, one after another, each
    // counted once acknowledged.
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (c, token, stop, written) = (c.clone(), token.clone(), stop.clone(), written.clone());
        tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) || n < 20 {
                let name = format!("During {n:05}");
                let r = c
                    .post(
                        "/v1/buildings",
                        Some(&token),
                        &json!({"name": name, "address": "3 Busy St", "building_type": "office"}),
                    )
                    .await;
                assert_eq!(r.status, 201, "{}", r.body);
                acknowledged.push(name);
                written.fetch_add(1, Ordering::Relaxed);
                n += 1;
            }
            acknowledged
        })
    };
    // Let some writes land first, so the backup starts in the middle of them.
    while written.load(Ordering::Relaxed) < 5 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let backup_dir = tempfile::tempdir().unwrap();
    let dest = backup_dir.path().join("backup-1");
    let data_dir = srv.state.config.data_dir.clone();
    let dest_arg = dest.clone();
    let (ok, out, err) = tokio::task::spawn_blocking(move || {
        admin(&data_dir, &["backup", dest_arg.to_str().unwrap()])
    })
    .await
    .unwrap();
    assert!(ok, "backup failed: {err}");
    stop.store(true, Ordering::Relaxed);
    let during = writer.await.unwrap();
    let manifest: Value = serde_json::from_str(&out).expect("--json manifest");
    assert_eq!(manifest["evidence_objects"], 4, "{out}");
    assert_eq!(manifest["secrets_file"], true, "{out}");

    // A second backup into the same folder is refused; so is a backup of a missing database.
    let (ok, _, err) = admin(
        &srv.state.config.data_dir,
        &["backup", dest.to_str().unwrap()],
    );
    assert!(!ok && err.contains("not empty"), "{err}");
    srv.stop().await;

    // Restore: refused into a non-empty folder, then into an empty one.
    let (ok, _, err) = admin(backup_dir.path(), &["restore", dest.to_str().unwrap()]);
    assert!(!ok && err.contains("not empty"), "{err}");
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let (ok, out, err) = admin(db.dir.path(), &["restore", dest.to_str().unwrap()]);
    assert!(ok, "restore failed: {err}\n{out}");
    let cfg = test_config(&db);
    let restored = TestServer::start_with(db, cfg).await;
    let admin_user = restored.login(&org.admin.email, &org.admin.password).await;
    let t = admin_user.token.as_str();
    let rc = restored.client.clone();

    // Everything acknowledged before the backup started, equal.
    assert_eq!(
        get(&rc, t, &format!("/v1/tests/sessions/{sid}/document")).await,
        doc_before
    );
    assert_eq!(
        get(&rc, t, &format!("/v1/tests/sessions/{sid}/results")).await,
        results_before
    );
    assert_eq!(
        get(&rc, t, &format!("/v1/buildings/{contact_building}")).await,
        contact_before,
        "names are readable: the PII keys came back with the data"
    );
    for (id, sha, bytes) in &evidence {
        let r = rc
            .raw()
            .get(format!("{}/v1/evidence/{id}/content", rc.base()))
            .bearer_auth(t)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(&r.bytes().await.unwrap()[..], &bytes[..], "evidence {id}");
        let v = get(&rc, t, &format!("/v1/evidence/{id}/verify")).await;
        assert_eq!(v["sha256"].as_str(), Some(sha.as_str()), "{v}");
    }

    // The writes made during the backup: a prefix of what was acknowledged (one instant),
    // and nothing that was not.
    let names_after = building_names(&rc, t).await;
    assert_eq!(&names_after[..names_before.len()], &names_before[..]);
    let cut = &names_after[names_before.len()..];
    assert!(
        cut.len() >= 5,
        "the writes before the backup started are in it"
    );
    assert!(
        cut.len() < during.len(),
        "writes after the backup are not in it"
    );
    assert_eq!(cut, &during[..cut.len()], "a consistent cut of the writes");

    // The restored server takes writes.
    let r = rc
        .post(
            "/v1/buildings",
            Some(t),
            &json!({"name": "After", "address": "4 New St", "building_type": "office"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
}

/// Copy a folder tree (evidence objects).
fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    let Ok(entries) = std::fs::read_dir(from) else {
        return;
    };
    for e in entries.flatten() {
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.stdin(Stdio::null()).output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What was acknowledged, in order, shared with the test while the writers run.
#[derive(Default)]
struct Acked {
    buildings: Vec<String>,
    evidence: Vec<(Uuid, String)>,
    heads: Vec<firemode_sync_core::automerge::ChangeHash>,
}

async fn backup_under_sync_load(b: Backend) {
    use firemode_sync_core::automerge::sync;
    use firemode_sync_core::automerge::transaction::Transactable;
    use firemode_sync_core::automerge::{Automerge, ReadDoc, ROOT};
    use std::sync::Mutex;

    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Busy Backup").await;
    let token = org.admin.token.clone();
    let c = srv.client.clone();
    let building = fixtures::building(&srv, &org, 3).await;
    let session = fixtures::session(&srv, &org.admin, &building, &[]).await;
    let sid: Uuid = session["id"].as_str().unwrap().parse().unwrap();
    let doc_id = session["document_id"].as_str().unwrap().to_owned();
    let asset = building.assets[0].to_string();

    let acked = Arc::new(Mutex::new(Acked::default()));
    let stop = Arc::new(AtomicBool::new(false));
    // REST: buildings, one after another.
    let rest = {
        let (c, token, stop, acked) = (c.clone(), token.clone(), stop.clone(), acked.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let name = format!("Busy {n:05}");
                let r = c
                    .post(
                        "/v1/buildings",
                        Some(&token),
                        &json!({"name": name, "address": "5 Busy St", "building_type": "office"}),
                    )
                    .await;
                assert_eq!(r.status, 201, "{}", r.body);
                acked.lock().unwrap().buildings.push(name);
                n += 1;
            }
        })
    };
    // Evidence uploads.
    let uploads = {
        let (c, token, stop, acked) = (c.clone(), token.clone(), stop.clone(), acked.clone());
        tokio::spawn(async move {
            let mut seed = 0u8;
            while !stop.load(Ordering::Relaxed) {
                seed = seed.wrapping_add(1);
                let file = jpeg(50_000 + usize::from(seed) * 100, seed);
                let r = Upload::photo(sid, file.clone()).send(&c, &token).await;
                assert_eq!(r.status, 201, "{}", r.body);
                acked
                    .lock()
                    .unwrap()
                    .evidence
                    .push((r.uuid("evidence_id"), sha_hex(&file)));
            }
        })
    };
    // A tablet: one edit after another, acknowledged when the server announces its heads.
    let tablet = {
        let (base, token, stop, acked) =
            (srv.base.clone(), token.clone(), stop.clone(), acked.clone());
        let (doc_id, asset) = (doc_id.clone(), asset.clone());
        let peer = format!("{}:backup-tablet", org.admin.id);
        tokio::spawn(async move {
            let mut client = SyncClient::joined(&base, &token, &peer).await;
            let (mut doc, mut state) = (Automerge::new(), sync::State::new());
            client
                .sync(&doc_id, &mut doc, &mut state, true)
                .await
                .unwrap();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let mut tx = doc.transaction();
                let (_, items) = tx.get(ROOT, "items").unwrap().unwrap();
                let (_, item) = tx.get(&items, asset.as_str()).unwrap().unwrap();
                tx.put(&item, "observedCondition", format!("edit {i}"))
                    .unwrap();
                tx.commit();
                client
                    .sync(&doc_id, &mut doc, &mut state, false)
                    .await
                    .unwrap();
                let heads = doc.get_heads();
                if state.their_heads.as_ref() == Some(&heads) {
                    acked.lock().unwrap().heads.extend(heads);
                }
                i += 1;
            }
        })
    };
    // All three under way, then the backup starts.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        {
            let a = acked.lock().unwrap();
            if a.buildings.len() >= 5 && a.evidence.len() >= 3 && a.heads.len() >= 3 {
                break;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the writers did not get going"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (before_buildings, before_evidence, before_heads) = {
        let a = acked.lock().unwrap();
        (a.buildings.clone(), a.evidence.clone(), a.heads.clone())
    };
    let backup = tempfile::tempdir().unwrap();
    let dest = backup.path().join("backup");
    let data_dir = srv.state.config.data_dir.clone();
    let raw_url = srv.db.raw_url();
    {
        let dest = dest.clone();
        tokio::task::spawn_blocking(move || match b {
            Backend::Sqlite => {
                let (ok, out, err) = admin(&data_dir, &["backup", dest.to_str().unwrap()]);
                assert!(ok, "backup failed: {err}\n{out}");
            }
            Backend::Postgres => {
                // docs/operations.md: the database first (one snapshot of the running
                // database), then the evidence.
                std::fs::create_dir_all(&dest).unwrap();
                run(Command::new("pg_dump")
                    .args(["--format=custom", "--no-owner", "--file"])
                    .arg(dest.join("firemode.dump"))
                    .arg(&raw_url));
                copy_tree(&data_dir.join("evidence"), &dest.join("evidence"));
            }
        })
        .await
        .unwrap();
    }
    // A little more load after the backup, then everything stops.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    rest.await.unwrap();
    uploads.await.unwrap();
    tablet.await.unwrap();
    let all_buildings = acked.lock().unwrap().buildings.clone();
    let secrets = (
        srv.state.config.jwt_secret.clone(),
        srv.state.config.pii_keys.clone(),
    );
    let _old = srv.stop().await;

    // Restore into a new, empty place and start a server on it.
    let db = TestDb::new(b).await.unwrap();
    match b {
        Backend::Sqlite => {
            let (ok, out, err) = admin(db.dir.path(), &["restore", dest.to_str().unwrap()]);
            assert!(ok, "restore failed: {err}\n{out}");
        }
        Backend::Postgres => {
            copy_tree(&dest.join("evidence"), &db.dir.path().join("evidence"));
            let url = db.raw_url();
            let dump = dest.join("firemode.dump");
            tokio::task::spawn_blocking(move || {
                run(Command::new("pg_restore")
                    .args(["--no-owner", "--exit-on-error", "--dbname"])
                    .arg(&url)
                    .arg(&dump));
            })
            .await
            .unwrap();
        }
    }
    let mut cfg = test_config(&db);
    if b == Backend::Postgres {
        (cfg.jwt_secret, cfg.pii_keys) = secrets;
    }
    let restored = TestServer::start_with(db, cfg).await;
    let t = restored
        .login(&org.admin.email, &org.admin.password)
        .await
        .token;
    let rc = restored.client.clone();

    // Rows: every building acknowledged before the backup started, and of the ones written
    // while it ran a prefix (one instant), nothing else.
    let names: Vec<String> = building_names(&rc, &t)
        .await
        .into_iter()
        .filter(|n| n.starts_with("Busy "))
        .collect();
    assert!(
        names.len() >= before_buildings.len(),
        "{} of the {} buildings acknowledged before the backup",
        names.len(),
        before_buildings.len()
    );
    assert_eq!(names, all_buildings[..names.len()], "a consistent cut");
    // Evidence: each acknowledged before, there byte for byte; every record restored has its
    // object (verify re-hashes it).
    let listed = get(
        &rc,
        &t,
        &format!("/v1/tests/sessions/{sid}/evidence?limit=500"),
    )
    .await;
    let listed: Vec<Uuid> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().parse().unwrap())
        .collect();
    for (id, _) in &before_evidence {
        assert!(
            listed.contains(id),
            "evidence {id} acknowledged before the backup is missing"
        );
    }
    for id in &listed {
        let v = get(&rc, &t, &format!("/v1/evidence/{id}/verify")).await;
        assert_eq!(v["verified"], true, "{id}: {v}");
        if let Some((_, sha)) = before_evidence.iter().find(|(e, _)| e == id) {
            assert_eq!(v["sha256"].as_str(), Some(sha.as_str()), "{v}");
        }
    }
    // The document: every change the tablet had acknowledged before the backup is in it, and
    // it loads whole (REST and a fresh tablet).
    let mut fresh = Automerge::new();
    let mut state = sync::State::new();
    let mut puller =
        SyncClient::joined(&restored.base, &t, &format!("{}:checker", org.admin.id)).await;
    puller
        .sync(&doc_id, &mut fresh, &mut state, true)
        .await
        .unwrap();
    for h in &before_heads {
        assert!(
            fresh.get_change_by_hash(h).is_some(),
            "acknowledged change {h} is not in the restored document"
        );
    }
    let doc = get(&rc, &t, &format!("/v1/tests/sessions/{sid}/document")).await;
    assert!(
        doc["document"]["items"][&asset]["observedCondition"]
            .as_str()
            .is_some_and(|v| v.starts_with("edit ")),
        "{doc}"
    );
    eprintln!(
        "backup under load ({b:?}): {} of {} buildings, {} evidence, {} tablet changes acknowledged before the backup; {} buildings and {} evidence restored",
        before_buildings.len(),
        all_buildings.len(),
        before_evidence.len(),
        before_heads.len(),
        names.len(),
        listed.len()
    );
}
