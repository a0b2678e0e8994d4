//! Test sessions through REST: creation builds the automerge document, access rules, results
//! written as automerge changes, projection with classification.

use std::time::Duration;

use firemode_sync_core::automerge::transaction::Transactable;
use firemode_sync_core::automerge::{sync, Automerge, ReadDoc, ROOT};
use firemode_tests::fixtures::{building, edit_item, put_item_field, put_item_fields, session};
use firemode_tests::sync_client::SyncClient;
use firemode_tests::{
    assert_problem, backend_tests, test_config, Backend, TestDb, TestServer, User,
};
use serde_json::{json, Value};
use uuid::Uuid;

backend_tests!(
    create_builds_the_document,
    created_projection_is_the_projection_writers,
    inspectors_see_only_assigned_sessions,
    results_become_changes_and_projection,
    projection_follows_each_edit_and_reload,
    session_updates_and_status,
    offline_created_session_registers,
    session_bad_inputs,
    other_organisations_get_404_on_sessions,
);

async fn create_builds_the_document(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let inspector = srv.user(&org, "inspector").await;
    let bld = building(&srv, &org, 3).await;
    let s = session(&srv, &org.admin, &bld, &[inspector.id]).await;
    let id: Uuid = s["id"].as_str().unwrap().parse().unwrap();
    let doc_id = s["document_id"].as_str().unwrap();
    assert_eq!(s["document_url"], format!("automerge:{doc_id}"));
    // The document id is the bs58check of the session UUID's 16 bytes.
    let parsed: firemode_sync_core::DocumentId = doc_id.parse().unwrap();
    assert_eq!(parsed.as_uuid(), id);
    assert_eq!(s["status"], "in_progress");
    assert_eq!(s["assigned_to"], json!([inspector.id]));
    let d = srv
        .client
        .get(
            &format!("/v1/tests/sessions/{id}/document"),
            Some(&org.admin.token),
        )
        .await;
    assert_eq!(d.status, 200, "{}", d.body);
    let doc = &d.json["document"];
    assert_eq!(doc["schema"], 2);
    assert_eq!(doc["sessionId"], id.to_string());
    assert_eq!(doc["buildingId"], bld.id.to_string());
    assert_eq!(doc["orgId"], org.id.to_string());
    assert_eq!(doc["ruleSet"]["code"], "AS1851");
    assert_eq!(doc["frequency"], "six_monthly");
    let items = doc["items"].as_object().unwrap();
    assert_eq!(items.len(), 3);
    for a in &bld.assets {
        let item = &items[&a.to_string()];
        assert_eq!(item["outcome"], "not_tested");
        assert_eq!(item["ruleCode"], "AS1851-10-6M-EXT");
        assert_eq!(item["notes"], "");
    }
    // Projection rows exist right away.
    let r = srv
        .client
        .get(
            &format!("/v1/tests/sessions/{id}/results"),
            Some(&org.admin.token),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json["items"].as_array().unwrap().len(), 3);
}

/// A session is created with its projection in its own transaction (the hub does not load the
/// document then): the rows are there the moment it answers, current (no change above their
/// watermark), equal to what the projection writer writes for the same document, the answer
/// equals a later read, and a tablet that opens the document gets every item.
async fn created_projection_is_the_projection_writers(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let mut cfg = test_config(&db);
    cfg.sync_idle_unload = Duration::from_millis(300);
    let srv = TestServer::start_with(db, cfg).await;
    let org = srv.org("Acme").await;
    let inspector = srv.user(&org, "inspector").await;
    let office = srv.user(&org, "office").await;
    let (bld, assets) = firemode_tests::clients::building_with_assets(
        &srv,
        &office,
        &firemode_tests::clients::SIX_MONTHLY_KINDS,
    )
    .await;
    let s = firemode_tests::clients::create_session(
        &srv,
        &office,
        bld,
        "Round",
        &[inspector.id, office.id],
    )
    .await;
    let id = s["id"].as_str().unwrap().to_owned();
    let sid: Uuid = id.parse().unwrap();
    assert_eq!(srv.state.hub.loaded_documents(), 0);
    assert!(srv.store().projection_is_current(sid).await.unwrap());
    // The answer is the registry's, to the microsecond.
    let read = srv
        .client
        .get(&format!("/v1/tests/sessions/{id}"), Some(&office.token))
        .await;
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(read.json, s);
    let t = &office.token;
    let created = rows(&srv, t, &id).await;
    assert_eq!(created.len(), assets.len());

    // A tablet opens it: every item, as the server's document has them.
    let mut c = SyncClient::joined(
        &srv.base,
        &inspector.token,
        &format!("{}:tablet", inspector.id),
    )
    .await;
    let doc_id = s["document_id"].as_str().unwrap().to_owned();
    let (mut d, mut st) = (Automerge::new(), sync::State::new());
    c.sync(&doc_id, &mut d, &mut st, true).await.unwrap();
    let on_tablet = firemode_sync_core::to_json(&d, None);
    let server = srv
        .client
        .get(&format!("/v1/tests/sessions/{id}/document"), Some(t))
        .await;
    assert_eq!(on_tablet, server.json["document"]);
    let items = on_tablet["items"].as_object().unwrap();
    assert_eq!(items.len(), assets.len());
    for a in &assets {
        assert_eq!(
            items[&a.to_string()]["outcome"],
            "not_tested",
            "{on_tablet}"
        );
        assert!(items[&a.to_string()]["ruleCode"].is_string());
    }

    // The tablet edits one item: the projection writer, loading the document for the first
    // time, rewrites every row; the others are exactly what creation stored.
    let written = rows_written(&srv).await;
    put_item_field(&mut d, assets[0], "notes", "seen");
    c.sync(&doc_id, &mut d, &mut st, false).await.unwrap();
    let after = rows(&srv, t, &id).await;
    assert_eq!(rows_written(&srv).await - written, assets.len() as u64);
    assert_eq!(after[&assets[0].to_string()]["notes"], "seen");
    for a in &assets[1..] {
        assert_eq!(after[&a.to_string()], created[&a.to_string()]);
    }
    // The edited item: its new notes (written as a plain string, which the projection
    // reports as a schema problem), the rest as created.
    let (mut edited, mut first) = (
        after[&assets[0].to_string()].clone(),
        created[&assets[0].to_string()].clone(),
    );
    assert_eq!(edited["notes"], "seen");
    for row in [&mut edited, &mut first] {
        let o = row.as_object_mut().unwrap();
        o.remove("notes");
        o.remove("problems");
    }
    assert_eq!(edited, first);
}

async fn inspectors_see_only_assigned_sessions(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let mine = srv.user(&org, "inspector").await;
    let other = srv.user(&org, "inspector").await;
    let auditor = srv.user(&org, "auditor").await;
    let bld = building(&srv, &org, 1).await;
    let s = session(&srv, &org.admin, &bld, &[mine.id]).await;
    let id = s["id"].as_str().unwrap();
    assert_eq!(
        srv.client
            .get(&format!("/v1/tests/sessions/{id}"), Some(&mine.token))
            .await
            .status,
        200
    );
    assert_problem(
        &srv.client
            .get(&format!("/v1/tests/sessions/{id}"), Some(&other.token))
            .await,
        404,
        "not_found",
    );
    assert_problem(
        &srv.client
            .get(
                &format!("/v1/tests/sessions/{id}/document"),
                Some(&other.token),
            )
            .await,
        404,
        "not_found",
    );
    assert_eq!(
        srv.client
            .get(&format!("/v1/tests/sessions/{id}"), Some(&auditor.token))
            .await
            .status,
        200
    );
    let list = srv
        .client
        .get("/v1/tests/sessions", Some(&other.token))
        .await;
    assert_eq!(list.json["items"].as_array().unwrap().len(), 0);
    let list = srv
        .client
        .get("/v1/tests/sessions?assigned_to=me", Some(&mine.token))
        .await;
    assert_eq!(list.json["items"].as_array().unwrap().len(), 1);
    // Auditors and inspectors cannot create sessions; auditors cannot record results.
    let c = srv
        .client
        .post(
            "/v1/tests/sessions",
            Some(&auditor.token),
            &json!({ "building_id": bld.id, "name": "x", "frequency": "six_monthly" }),
        )
        .await;
    assert_problem(&c, 403, "forbidden");
    let c = srv
        .client
        .post(
            "/v1/tests/sessions",
            Some(&mine.token),
            &json!({ "building_id": bld.id, "name": "x", "frequency": "six_monthly" }),
        )
        .await;
    assert_problem(&c, 403, "forbidden");
    let r = record(
        &srv,
        &auditor.token,
        id,
        json!([{ "asset_id": bld.assets[0], "outcome": "pass" }]),
    )
    .await;
    assert_problem(&r, 403, "forbidden");
}

async fn record(
    srv: &TestServer,
    token: &str,
    id: &str,
    results: serde_json::Value,
) -> firemode_tests::Resp {
    firemode_tests::Client::send(
        srv.client
            .request(
                reqwest::Method::POST,
                &format!("/v1/tests/sessions/{id}/results"),
                Some(token),
            )
            .header("idempotency-key", Uuid::new_v4().to_string())
            .json(&json!({ "results": results })),
    )
    .await
}

/// The projected rows of a session, by asset id.
async fn rows(
    srv: &TestServer,
    token: &str,
    id: &str,
) -> std::collections::BTreeMap<String, Value> {
    let r = srv
        .client
        .get(&format!("/v1/tests/sessions/{id}/results"), Some(token))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["asset_id"].as_str().unwrap().to_owned(), i.clone()))
        .collect()
}

/// `firemode_projection_rows_written_total` from `/metrics`.
async fn rows_written(srv: &TestServer) -> u64 {
    let m = srv.client.get("/metrics", None).await;
    m.body
        .lines()
        .find_map(|l| l.strip_prefix("firemode_projection_rows_written_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no projection counter in /metrics: {}", m.body))
}

async fn automatic_defects(srv: &TestServer, by: &User, id: &str) -> Vec<(String, String)> {
    let r = srv
        .client
        .get(&format!("/v1/defects?session_id={id}"), Some(&by.token))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let mut out: Vec<(String, String)> = r.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["asset_id"].as_str().unwrap().to_owned(),
                d["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

/// Projection writes only what an edit changed: rows of untouched items keep what earlier edits
/// (tablet or REST) wrote, a removed item's row goes, defects follow the changed items, and the
/// first projection after the document was unloaded and reloaded writes the whole session.
async fn projection_follows_each_edit_and_reload(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let mut cfg = test_config(&db);
    cfg.sync_idle_unload = Duration::from_millis(300);
    let srv = TestServer::start_with(db, cfg).await;
    let org = srv.org("Acme").await;
    let inspector = srv.user(&org, "inspector").await;
    let bld = building(&srv, &org, 3).await;
    let s = session(&srv, &org.admin, &bld, &[inspector.id]).await;
    let (id, doc_id) = (
        s["id"].as_str().unwrap().to_owned(),
        s["document_id"].as_str().unwrap().to_owned(),
    );
    let [a0, a1, a2] = [0, 1, 2].map(|i| bld.assets[i]);
    let t = &org.admin.token;
    let before = rows(&srv, t, &id).await;
    assert_eq!(before.len(), 3);
    assert!(
        before.values().all(|r| r["outcome"] == "not_tested"),
        "{before:?}"
    );

    let mut c = SyncClient::joined(
        &srv.base,
        &inspector.token,
        &format!("{}:tablet", inspector.id),
    )
    .await;
    let (mut d, mut st) = (Automerge::new(), sync::State::new());
    c.sync(&doc_id, &mut d, &mut st, true).await.unwrap();
    // The session was created with its projection (the hub did not load the document then):
    // the first projection after the tablet's connection loaded it writes every row.
    let written = rows_written(&srv).await;
    put_item_field(&mut d, a2, "notes", "first look");
    c.sync(&doc_id, &mut d, &mut st, false).await.unwrap();
    let r = rows(&srv, t, &id).await;
    assert_eq!(rows_written(&srv).await - written, 3);
    assert_eq!(r[&a2.to_string()]["notes"], "first look");
    let written = rows_written(&srv).await;
    put_item_fields(
        &mut d,
        a0,
        &[
            ("outcome", "fail"),
            ("observedCondition", "extinguisher_discharged_or_empty"),
        ],
    );
    c.sync(&doc_id, &mut d, &mut st, false).await.unwrap();
    let r = rows(&srv, t, &id).await;
    // One item changed: one row written.
    assert_eq!(rows_written(&srv).await - written, 1);
    assert_eq!(r[&a0.to_string()]["outcome"], "fail");
    assert_eq!(r[&a0.to_string()]["classification"], "non_critical_defect");
    assert_eq!(r[&a1.to_string()]["outcome"], "not_tested");
    assert_eq!(
        automatic_defects(&srv, &org.admin, &id).await,
        vec![(a0.to_string(), "open".into())]
    );

    // A REST result for another item, then the tablet passes the first and writes a note on the
    // third: the REST-written row stays as it was.
    let rest = record(
        &srv,
        &inspector.token,
        &id,
        json!([{ "asset_id": a1, "outcome": "pass", "notes": "gauge ok" }]),
    )
    .await;
    assert_eq!(rest.status, 200, "{}", rest.body);
    c.sync_until(&doc_id, &mut d, &mut st, Duration::from_secs(10), |d| {
        firemode_sync_core::to_json(d, None)["items"][a1.to_string()]["notes"] == "gauge ok"
    })
    .await
    .unwrap();
    rows(&srv, t, &id).await;
    let written = rows_written(&srv).await;
    // The tablet passes the item and clears its fault in one edit (a pass that keeps a
    // defect condition contradicts itself: see `a_tablet_pass_with_a_fault_is_flagged`).
    edit_item(&mut d, a0, &[("outcome", "pass")], &["observedCondition"]);
    put_item_field(&mut d, a2, "notes", "behind the door");
    c.sync(&doc_id, &mut d, &mut st, false).await.unwrap();
    let r = rows(&srv, t, &id).await;
    assert_eq!(rows_written(&srv).await - written, 2);
    assert_eq!(r[&a0.to_string()]["outcome"], "pass");
    assert_eq!(r[&a1.to_string()]["outcome"], "pass");
    assert_eq!(r[&a1.to_string()]["notes"], "gauge ok");
    assert_eq!(r[&a1.to_string()]["classification"], "compliant");
    assert_eq!(r[&a2.to_string()]["notes"], "behind the door");
    assert_eq!(r[&a2.to_string()]["outcome"], "not_tested");
    assert_eq!(
        automatic_defects(&srv, &org.admin, &id).await,
        vec![(a0.to_string(), "withdrawn".into())]
    );

    // An item the document no longer has loses its row.
    {
        let mut tx = d.transaction();
        let (_, items) = tx.get(ROOT, "items").unwrap().unwrap();
        tx.delete(&items, a2.to_string()).unwrap();
        tx.commit();
    }
    c.sync(&doc_id, &mut d, &mut st, false).await.unwrap();
    let r = rows(&srv, t, &id).await;
    assert_eq!(r.keys().cloned().collect::<Vec<_>>(), {
        let mut k = vec![a0.to_string(), a1.to_string()];
        k.sort();
        k
    });

    // The organisation publishes a new version of the rule: the next projection re-classifies
    // every row by it, edited or not.
    let rule = json!({
        "code": "AS1851-10-6M-EXT", "version": "2012.9.0",
        "name": "Portable extinguisher six-monthly inspection (site variant)",
        "description": "Our own words.", "standard": "AS 1851-2012", "section": "10",
        "clause": "Section 10", "equipment": "portable_extinguisher", "frequency": "six_monthly",
        "readings": [],
        "classification_mappings": { "serviceable": "compliant", "extinguisher_discharged_or_empty": "critical_defect" }
    });
    let posted = srv.client.post("/v1/rules", Some(t), &rule).await;
    assert_eq!(posted.status, 201, "{}", posted.body);
    put_item_field(&mut d, a0, "notes", "rechecked");
    c.sync(&doc_id, &mut d, &mut st, false).await.unwrap();
    let r = rows(&srv, t, &id).await;
    assert_eq!(r[&a1.to_string()]["rule_version"], "2012.9.0", "{r:?}");
    assert_eq!(r[&a1.to_string()]["classification"], "compliant");

    // Another writer (another node) rewrote the session from what it had: this node's next
    // projection sees other heads stored and writes every row, not just the changed one.
    srv.store()
        .write_projection(
            id.parse().unwrap(),
            firemode_server::store::sessions::ItemsWrite::All(&[]),
            0,
            "another-node",
            &json!([]),
        )
        .await
        .unwrap();
    let written = rows_written(&srv).await;
    put_item_field(&mut d, a0, "notes", "rechecked twice");
    c.sync(&doc_id, &mut d, &mut st, false).await.unwrap();
    let r = rows(&srv, t, &id).await;
    assert_eq!(r.len(), 2, "{r:?}");
    assert_eq!(r[&a1.to_string()]["notes"], "gauge ok");
    assert_eq!(rows_written(&srv).await - written, 2);

    // Unloaded and reloaded: the next change rewrites the session, and every row is right.
    drop(c);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while srv.state.hub.loaded_documents() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "idle document not unloaded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let written = rows_written(&srv).await;
    let again = record(&srv, &inspector.token, &id, json!([{ "asset_id": a0, "outcome": "fail", "observed_condition": "extinguisher_discharged_or_empty" }])).await;
    assert_eq!(again.status, 200, "{}", again.body);
    let r = rows(&srv, t, &id).await;
    // Every row, not only the changed one. (Sometimes twice: a release the unload left queued
    // can reach the projection worker after the reload's first write and drop what it cached,
    // so the next projection rewrites the rows again — redundant work, the same rows.)
    let rewritten = rows_written(&srv).await - written;
    assert!(
        rewritten == 2 || rewritten == 4,
        "a full rewrite after the reload: {rewritten} rows written"
    );
    assert_eq!(r.len(), 2, "{r:?}");
    assert_eq!(r[&a0.to_string()]["outcome"], "fail");
    assert_eq!(r[&a1.to_string()]["notes"], "gauge ok");
    let defects = automatic_defects(&srv, &org.admin, &id).await;
    assert_eq!(defects, vec![(a0.to_string(), "open".into())]);
}

async fn results_become_changes_and_projection(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let inspector = srv.user(&org, "inspector").await;
    let bld = building(&srv, &org, 2).await;
    let s = session(&srv, &org.admin, &bld, &[inspector.id]).await;
    let id = s["id"].as_str().unwrap();
    let r = record(
        &srv,
        &inspector.token,
        id,
        json!([
            { "asset_id": bld.assets[0], "outcome": "fail", "observed_condition": "extinguisher_discharged_or_empty",
              "readings": { "gross_mass_loss": 0.0 }, "notes": "Found empty behind door" },
            { "asset_id": bld.assets[1], "outcome": "pass" }
        ]),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json["applied"], 2);
    assert!(!r.json["heads"].as_array().unwrap().is_empty());
    let rows = srv
        .client
        .get(
            &format!("/v1/tests/sessions/{id}/results"),
            Some(&org.admin.token),
        )
        .await;
    let items = rows.json["items"].as_array().unwrap();
    let failed = items
        .iter()
        .find(|i| i["asset_id"] == bld.assets[0].to_string())
        .unwrap();
    assert_eq!(failed["outcome"], "fail");
    assert_eq!(failed["classification"], "non_critical_defect", "{failed}");
    assert_eq!(failed["rule_version"], "2012.2.0");
    assert_eq!(failed["notes"], "Found empty behind door");
    assert_eq!(failed["readings"]["gross_mass_loss"], 0.0);
    assert_eq!(failed["recorded_by"], inspector.id.to_string());
    let passed = items
        .iter()
        .find(|i| i["asset_id"] == bld.assets[1].to_string())
        .unwrap();
    assert_eq!(passed["classification"], "compliant");
    // The document holds it too, written by the server's actor.
    let d = srv
        .client
        .get(
            &format!("/v1/tests/sessions/{id}/document"),
            Some(&org.admin.token),
        )
        .await;
    assert_eq!(
        d.json["document"]["items"][bld.assets[0].to_string()]["observedConditions"],
        json!(["extinguisher_discharged_or_empty"])
    );
    // Unknown condition: 422 listing the known ones; nothing changes.
    let bad = record(
        &srv,
        &inspector.token,
        id,
        json!([{ "asset_id": bld.assets[1], "outcome": "fail", "observed_condition": "on_fire" }]),
    )
    .await;
    assert_problem(&bad, 422, "unknown_condition");
    assert!(bad.json["detail"].as_str().unwrap().contains("serviceable"));
    let bad = record(
        &srv,
        &inspector.token,
        id,
        json!([{ "asset_id": Uuid::new_v4(), "outcome": "pass" }]),
    )
    .await;
    assert_problem(&bad, 422, "unknown_asset");
    let bad = record(
        &srv,
        &inspector.token,
        id,
        json!([{ "asset_id": bld.assets[1], "outcome": "exploded" }]),
    )
    .await;
    assert_problem(&bad, 422, "invalid_body");
    let after = srv
        .client
        .get(
            &format!("/v1/tests/sessions/{id}/document"),
            Some(&org.admin.token),
        )
        .await;
    assert_eq!(
        after.json["heads"], d.json["heads"],
        "rejected writes changed nothing"
    );
}

async fn session_updates_and_status(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let inspector = srv.user(&org, "inspector").await;
    let bld = building(&srv, &org, 1).await;
    let s = session(&srv, &org.admin, &bld, &[inspector.id]).await;
    let id = s["id"].as_str().unwrap();
    let p = srv
        .client
        .patch(
            &format!("/v1/tests/sessions/{id}"),
            Some(&inspector.token),
            &json!({ "status": "completed" }),
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert_eq!(p.json["status"], "completed");
    let d = srv
        .client
        .get(
            &format!("/v1/tests/sessions/{id}/document"),
            Some(&org.admin.token),
        )
        .await;
    assert_eq!(
        d.json["document"]["status"], "completed",
        "status is in the document too"
    );
    // Completed: read-only, even for renaming; only an admin reopens it, with a reason.
    let p = srv
        .client
        .patch(
            &format!("/v1/tests/sessions/{id}"),
            Some(&inspector.token),
            &json!({ "name": "mine now" }),
        )
        .await;
    assert_problem(&p, 409, "session_completed");
    let p = srv
        .client
        .patch(
            &format!("/v1/tests/sessions/{id}"),
            Some(&org.admin.token),
            &json!({ "status": "in_progress", "reason": "tag numbers were swapped" }),
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert_eq!(p.json["status"], "in_progress");
    let p = srv
        .client
        .patch(
            &format!("/v1/tests/sessions/{id}"),
            Some(&inspector.token),
            &json!({ "name": "mine now" }),
        )
        .await;
    assert_problem(&p, 403, "forbidden");
    let p = srv
        .client
        .patch(
            &format!("/v1/tests/sessions/{id}"),
            Some(&org.admin.token),
            &json!({ "name": "Renamed" }),
        )
        .await;
    assert_eq!(p.json["name"], "Renamed");
    assert_eq!(p.json["status"], "in_progress");
    let p = srv
        .client
        .patch(
            &format!("/v1/tests/sessions/{id}"),
            Some(&org.admin.token),
            &json!({ "status": "archived" }),
        )
        .await;
    assert_problem(&p, 422, "invalid_status");
    // Filter by status.
    let l = srv
        .client
        .get(
            "/v1/tests/sessions?status=completed",
            Some(&org.admin.token),
        )
        .await;
    assert_eq!(l.json["items"].as_array().unwrap().len(), 0);
    let l = srv
        .client
        .get(
            &format!(
                "/v1/tests/sessions?status=in_progress&building_id={}",
                bld.id
            ),
            Some(&org.admin.token),
        )
        .await;
    assert_eq!(l.json["items"].as_array().unwrap().len(), 1);
    // Unassign: the inspector loses access.
    let p = srv
        .client
        .patch(
            &format!("/v1/tests/sessions/{id}"),
            Some(&org.admin.token),
            &json!({ "assigned_to": [] }),
        )
        .await;
    assert_eq!(p.status, 200);
    assert_problem(
        &srv.client
            .get(&format!("/v1/tests/sessions/{id}"), Some(&inspector.token))
            .await,
        404,
        "not_found",
    );
}

async fn offline_created_session_registers(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let inspector = srv.user(&org, "inspector").await;
    let bld = building(&srv, &org, 1).await;
    let tablet_id = Uuid::new_v4();
    let doc = firemode_sync_core::DocumentId::from_uuid(tablet_id);
    let r = srv
        .client
        .post(
            "/v1/tests/sessions",
            Some(&inspector.token),
            &json!({ "building_id": bld.id, "name": "Made offline", "frequency": "six_monthly", "document_id": doc.url() }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json["id"], tablet_id.to_string());
    assert_eq!(
        r.json["assigned_to"],
        json!([inspector.id]),
        "the registering inspector is assigned"
    );
    let d = srv
        .client
        .get(
            &format!("/v1/tests/sessions/{tablet_id}/document"),
            Some(&inspector.token),
        )
        .await;
    assert_eq!(
        d.json["document"],
        json!({}),
        "the server created no content"
    );
    let again = srv
        .client
        .post(
            "/v1/tests/sessions",
            Some(&inspector.token),
            &json!({ "building_id": bld.id, "name": "dup", "frequency": "six_monthly", "document_id": doc.to_string() }),
        )
        .await;
    assert_problem(&again, 409, "already_exists");
}

async fn session_bad_inputs(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let bld = building(&srv, &org, 1).await;
    let t = Some(org.admin.token.as_str());
    let c = &srv.client;
    let cases = [
        (
            json!({ "building_id": bld.id, "name": "x", "frequency": "fortnightly" }),
            422,
            "unknown_frequency",
        ),
        (
            json!({ "building_id": bld.id, "name": "", "frequency": "six_monthly" }),
            422,
            "invalid_field",
        ),
        (
            json!({ "building_id": "nope", "name": "x", "frequency": "six_monthly" }),
            422,
            "invalid_body",
        ),
        (
            json!({ "building_id": bld.id, "name": "x" }),
            422,
            "invalid_body",
        ),
        (
            json!({ "building_id": bld.id, "name": "x", "frequency": "six_monthly", "assigned_to": [Uuid::new_v4()] }),
            422,
            "unknown_user",
        ),
        (
            json!({ "building_id": bld.id, "name": "x", "frequency": "six_monthly", "document_id": "not-an-id" }),
            422,
            "invalid_document_id",
        ),
        (
            json!({ "building_id": Uuid::new_v4(), "name": "x", "frequency": "six_monthly" }),
            404,
            "not_found",
        ),
    ];
    for (body, status, code) in cases {
        assert_problem(&c.post("/v1/tests/sessions", t, &body).await, status, code);
    }
    assert_problem(
        &c.post_raw("/v1/tests/sessions", t, "application/json", b"{".to_vec())
            .await,
        400,
        "malformed_json",
    );
    assert_problem(
        &c.get("/v1/tests/sessions/xyz", t).await,
        400,
        "invalid_path",
    );
    assert_problem(
        &c.get("/v1/tests/sessions?status=bogus", t).await,
        400,
        "invalid_query",
    );
    let s = session(&srv, &org.admin, &bld, &[]).await;
    let id = s["id"].as_str().unwrap();
    assert_problem(
        &c.get(&format!("/v1/tests/sessions/{id}/document?at=zzzz"), t)
            .await,
        400,
        "invalid_heads",
    );
    let unknown = "0".repeat(64);
    assert_problem(
        &c.get(&format!("/v1/tests/sessions/{id}/document?at={unknown}"), t)
            .await,
        400,
        "unknown_heads",
    );
    // Only the first session exists.
    let l = c.get("/v1/tests/sessions", t).await;
    assert_eq!(l.json["items"].as_array().unwrap().len(), 1);
}

async fn other_organisations_get_404_on_sessions(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let other = srv.org("Rival").await;
    let bld = building(&srv, &org, 1).await;
    let s = session(&srv, &org.admin, &bld, &[]).await;
    let id = s["id"].as_str().unwrap();
    let t = Some(other.admin.token.as_str());
    let c = &srv.client;
    assert_problem(
        &c.get(&format!("/v1/tests/sessions/{id}"), t).await,
        404,
        "not_found",
    );
    assert_problem(
        &c.patch(
            &format!("/v1/tests/sessions/{id}"),
            t,
            &json!({ "name": "mine" }),
        )
        .await,
        404,
        "not_found",
    );
    assert_problem(
        &c.get(&format!("/v1/tests/sessions/{id}/document"), t).await,
        404,
        "not_found",
    );
    assert_problem(
        &c.get(&format!("/v1/tests/sessions/{id}/results"), t).await,
        404,
        "not_found",
    );
    let r = record(
        &srv,
        &other.admin.token,
        id,
        json!([{ "asset_id": bld.assets[0], "outcome": "pass" }]),
    )
    .await;
    assert_problem(&r, 404, "not_found");
    let create = c
        .post(
            "/v1/tests/sessions",
            t,
            &json!({ "building_id": bld.id, "name": "x", "frequency": "six_monthly" }),
        )
        .await;
    assert_problem(&create, 404, "not_found");
    assert_eq!(
        c.get("/v1/tests/sessions", t).await.json["items"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
}
