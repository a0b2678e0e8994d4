//! Issue 12, inputs: one rule for text on both databases (a NUL is refused where it arrives,
//! naming the field, and nothing changes), and references inside the caller's organisation.

use firemode_tests::fixtures;
use firemode_tests::{assert_problem, backend_tests, Backend, Client, Org, Resp, TestServer};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::evidence::{jpeg, Upload};

backend_tests!(
    nul_text_is_refused_everywhere,
    evidence_asset_must_be_the_sessions
);

/// Everything a NUL could have changed, as the admin sees it.
async fn snapshot(srv: &TestServer, org: &Org, building: Uuid, session: Uuid) -> Vec<Value> {
    let t = Some(org.admin.token.as_str());
    let mut out = Vec::new();
    for path in [
        "/v1/buildings".to_owned(),
        format!("/v1/buildings/{building}"),
        format!("/v1/buildings/{building}/assets"),
        format!("/v1/tests/sessions/{session}/results"),
        format!("/v1/tests/sessions/{session}/evidence"),
        "/v1/users".to_owned(),
        "/v1/users/me/audits".to_owned(),
        "/v1/defects".to_owned(),
    ] {
        let r = srv.client.get(&path, t).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        out.push(r.json);
    }
    out
}

/// 422 `invalid_text` whose detail names `field`.
fn assert_text_refused(r: &Resp, field: &str, what: &str) {
    assert_problem(r, 422, "invalid_text");
    let detail = r.json["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(field),
        "{what}: detail names {field}: {detail}"
    );
}

async fn nul_text_is_refused_everywhere(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Nul Org").await;
    let token = org.admin.token.clone();
    let t = Some(token.as_str());
    let building = fixtures::building(&srv, &org, 2).await;
    let session = fixtures::session(&srv, &org.admin, &building, &[]).await;
    let sid: Uuid = session["id"].as_str().unwrap().parse().unwrap();
    let asset = building.assets[0];
    let before = snapshot(&srv, &org, building.id, sid).await;

    // JSON bodies: top-level, nested, in arrays, in object keys; before authentication too.
    let r = srv
        .client
        .post(
            "/v1/auth/login",
            None,
            &json!({"email": "a\u{0}b@example.test", "password": "whatever-password"}),
        )
        .await;
    assert_text_refused(&r, "email", "login");
    let r = srv
        .client
        .post(
            "/v1/buildings",
            t,
            &json!({"name": "Tower\u{0}", "address": "1 Test St", "building_type": "office"}),
        )
        .await;
    assert_text_refused(&r, "name", "building name");
    let r = srv
        .client
        .post(
            "/v1/buildings",
            t,
            &json!({"name": "Tower", "address": "1 Test St", "building_type": "office",
                    "contact": {"name": "Pat\u{0}", "email": "pat@example.test"}}),
        )
        .await;
    assert_text_refused(&r, "contact.name", "contact name");
    let r = srv
        .client
        .patch(
            &format!("/v1/buildings/{}", building.id),
            t,
            &json!({"address": "\u{0}"}),
        )
        .await;
    assert_text_refused(&r, "address", "building patch");
    let results = |item: Value| {
        srv.client
            .request(
                reqwest::Method::POST,
                &format!("/v1/tests/sessions/{sid}/results"),
                t,
            )
            .header("idempotency-key", Uuid::new_v4().to_string())
            .json(&json!({ "results": [item] }))
    };
    let r = Client::send(results(
        json!({"asset_id": asset, "outcome": "pass", "notes": "ok\u{0}"}),
    ))
    .await;
    assert_text_refused(&r, "results[0].notes", "result notes");
    let r = Client::send(results(
        json!({"asset_id": asset, "outcome": "pass", "readings": {"mass\u{0}": 4.5}}),
    ))
    .await;
    assert_text_refused(&r, "results[0].readings.mass", "reading name");
    // A literal backslash-u in text is not a NUL.
    let r = Client::send(results(
        json!({"asset_id": asset, "outcome": "pass", "notes": "C:\\u0000 is fine"}),
    ))
    .await;
    assert_eq!(r.status, 200, "escaped backslash: {}", r.body);
    let after_ok = snapshot(&srv, &org, building.id, sid).await;

    // Query and path parameters: 400 naming the parameter.
    let r = srv.client.get("/v1/buildings?q=a%00b", t).await;
    assert_problem(&r, 400, "invalid_query");
    assert!(
        r.json["detail"].as_str().unwrap().contains("`q`"),
        "{}",
        r.body
    );
    let r = srv.client.get("/v1/rules/AS1851%00-X", t).await;
    assert_problem(&r, 400, "invalid_path");
    assert!(
        r.json["detail"].as_str().unwrap().contains("`code`"),
        "{}",
        r.body
    );
    let r = srv.client.get("/v1/defects?status=open&x%00=1", t).await;
    assert_problem(&r, 400, "invalid_query");

    // CSV cells: the row and column are named in `errors`, nothing is imported.
    let csv = "asset_type,location,identifier\n\
               portable_extinguisher,Level 9,EXT-NEW-1\n\
               portable_extinguisher,Lev\0el 9,EXT-NEW-2\n";
    let r = srv
        .client
        .post_raw(
            &format!("/v1/buildings/{}/assets/import", building.id),
            t,
            "text/csv",
            csv.as_bytes().to_vec(),
        )
        .await;
    assert_problem(&r, 422, "invalid_csv");
    assert_eq!(r.json["errors"][0]["row"], 3, "{}", r.body);
    assert_eq!(r.json["errors"][0]["field"], "location", "{}", r.body);
    assert!(
        r.json["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("NUL"),
        "{}",
        r.body
    );

    // Multipart fields and evidence metadata.
    let mut up = Upload::photo(sid, jpeg(2048, 1));
    up.metadata = Some(r#"{"caption": "gauge", "gps": {"note": "a\u0000b"}}"#.into());
    let r = up.send(&srv.client, &token).await;
    assert_text_refused(&r, "metadata.gps.note", "evidence metadata");
    let mut up = Upload::photo(sid, jpeg(2048, 2));
    up.asset_id = Some(format!("{asset}\0"));
    let r = up.send(&srv.client, &token).await;
    assert_text_refused(&r, "asset_id", "multipart field");

    let after = snapshot(&srv, &org, building.id, sid).await;
    assert_eq!(after, after_ok, "a refused input changed something");
    // The one accepted write above (the escaped backslash) is the only difference.
    assert_ne!(before, after_ok);
}

async fn evidence_asset_must_be_the_sessions(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Evidence Refs").await;
    let other = srv.org("Other Refs").await;
    let token = org.admin.token.clone();
    let building = fixtures::building(&srv, &org, 1).await;
    let second_building = fixtures::building(&srv, &org, 1).await;
    let foreign_building = fixtures::building(&srv, &other, 1).await;
    let session = fixtures::session(&srv, &org.admin, &building, &[]).await;
    let sid: Uuid = session["id"].as_str().unwrap().parse().unwrap();
    let list = || async {
        let r = srv
            .client
            .get(&format!("/v1/tests/sessions/{sid}/evidence"), Some(&token))
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.json["items"].as_array().unwrap().len()
    };

    for (what, asset) in [
        ("another organisation's asset", foreign_building.assets[0]),
        ("a random id", Uuid::new_v4()),
        ("another building's asset", second_building.assets[0]),
    ] {
        let mut up = Upload::photo(sid, jpeg(4096, 3));
        up.asset_id = Some(asset.to_string());
        let r = up.send(&srv.client, &token).await;
        assert_problem(&r, 422, "unknown_asset");
        assert!(
            r.json["detail"].as_str().unwrap().contains("asset_id"),
            "{what}: {}",
            r.body
        );
        assert_eq!(list().await, 0, "{what}: nothing recorded");
    }
    assert!(
        crate::evidence::files_under(&srv.db.dir.path().join("evidence")).is_empty(),
        "nothing stored"
    );

    let mut up = Upload::photo(sid, jpeg(4096, 3));
    up.asset_id = Some(building.assets[0].to_string());
    let r = up.send(&srv.client, &token).await;
    assert_eq!(r.status, 201, "the session's own asset: {}", r.body);
    assert_eq!(list().await, 1);
}
