//! History at past heads, conflicts from concurrent offline edits, schema violations, and
//! resolution reaching every connected client.

use std::time::Duration;

use firemode_sync_core::automerge::sync;
use firemode_sync_core::automerge::{Automerge, ReadDoc, ROOT};
use firemode_tests::fixtures::{building, conflict_authors, put_item_field, session};
use firemode_tests::sync_client::SyncClient;
use firemode_tests::{assert_problem, backend_tests, Backend, TestServer};
use serde_json::json;
use uuid::Uuid;

backend_tests!(
    concurrent_edits_conflict_and_resolve_everywhere,
    history_and_past_versions,
    conflict_routes_are_guarded
);

fn values_at(doc: &Automerge, asset: Uuid, field: &str) -> usize {
    let (_, items) = doc.get(ROOT, "items").unwrap().unwrap();
    let (_, item) = doc.get(&items, asset.to_string()).unwrap().unwrap();
    doc.get_all(&item, field).unwrap().len()
}

async fn concurrent_edits_conflict_and_resolve_everywhere(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let ivy = srv.user(&org, "inspector").await;
    let sam = srv.user(&org, "inspector").await;
    let bld = building(&srv, &org, 1).await;
    let s = session(&srv, &org.admin, &bld, &[ivy.id, sam.id]).await;
    let (sid, doc_id) = (
        s["id"].as_str().unwrap().to_owned(),
        s["document_id"].as_str().unwrap().to_owned(),
    );
    let asset = bld.assets[0];
    let mut a = SyncClient::joined(&srv.base, &ivy.token, &format!("{}:ivy-tablet", ivy.id)).await;
    let mut c = SyncClient::joined(&srv.base, &sam.token, &format!("{}:sam-tablet", sam.id)).await;
    let (mut da, mut sa) = (Automerge::new(), sync::State::new());
    let (mut dc, mut sc) = (Automerge::new(), sync::State::new());
    a.sync(&doc_id, &mut da, &mut sa, true).await.unwrap();
    c.sync(&doc_id, &mut dc, &mut sc, true).await.unwrap();
    // Both edit the same field while "offline" (nothing sent), then sync.
    put_item_field(&mut da, asset, "outcome", "pass");
    put_item_field(&mut dc, asset, "outcome", "fail");
    put_item_field(
        &mut dc,
        asset,
        "observedCondition",
        "definitely_not_a_condition",
    );
    a.sync(&doc_id, &mut da, &mut sa, false).await.unwrap();
    c.sync(&doc_id, &mut dc, &mut sc, false).await.unwrap();
    let both = dc.get_heads();
    a.sync_until(&doc_id, &mut da, &mut sa, Duration::from_secs(10), |d| {
        d.get_heads() == both
    })
    .await
    .unwrap();
    assert_eq!(da.get_heads(), dc.get_heads(), "both tablets converged");
    assert_eq!(
        values_at(&da, asset, "outcome"),
        2,
        "automerge kept both values"
    );

    let r = srv
        .client
        .get(
            &format!("/v1/tests/sessions/{sid}/conflicts"),
            Some(&org.admin.token),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let list = r.json["conflicts"].as_array().unwrap();
    let path = format!("/items/{asset}/outcome");
    let conflict = list
        .iter()
        .find(|c| c["path"] == path.as_str())
        .unwrap_or_else(|| panic!("{}", r.body));
    assert_eq!(conflict["kind"], "concurrent_edits");
    let values = conflict["values"].as_array().unwrap();
    assert_eq!(values.len(), 2);
    let seen = conflict_authors(&conflict["values"]);
    assert_eq!(
        seen,
        vec![
            ("fail".into(), sam.id.to_string(), "sam-tablet".into()),
            ("pass".into(), ivy.id.to_string(), "ivy-tablet".into())
        ]
    );
    assert_eq!(values.iter().filter(|v| v["winner"] == true).count(), 1);
    assert!(values
        .iter()
        .all(|v| v["author"]["received_at"].is_string()));
    // An observed condition the rule does not know is not a schema violation; an outcome
    // outside the enum is: write one and see it listed with its author.
    put_item_field(&mut dc, asset, "outcome", "exploded");
    c.sync(&doc_id, &mut dc, &mut sc, false).await.unwrap();
    let r = srv
        .client
        .get(
            &format!("/v1/tests/sessions/{sid}/conflicts"),
            Some(&org.admin.token),
        )
        .await;
    let bad = r.json["conflicts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["path"] == path.as_str())
        .unwrap()
        .clone();
    assert_eq!(bad["kind"], "schema_violation", "{bad}");
    assert_eq!(bad["values"][0]["value"], "exploded");
    assert_eq!(bad["values"][0]["author"]["user_id"], sam.id.to_string());

    // Back to a real conflict, then resolve it: the change reaches both tablets at once.
    // (A value other than both current ones: when a put repeats the value a key already shows,
    // automerge keeps the old value's op instead of writing a new one, so on a tablet where
    // "pass" won the first conflict a second "pass" would not conflict with "exploded".)
    put_item_field(&mut da, asset, "outcome", "not_accessible");
    put_item_field(&mut dc, asset, "outcome", "fail");
    a.sync(&doc_id, &mut da, &mut sa, false).await.unwrap();
    c.sync(&doc_id, &mut dc, &mut sc, false).await.unwrap();
    let both = dc.get_heads();
    a.sync_until(&doc_id, &mut da, &mut sa, Duration::from_secs(10), |d| {
        d.get_heads() == both
    })
    .await
    .unwrap();
    let res = srv
        .client
        .post(
            &format!("/v1/tests/sessions/{sid}/conflicts/resolve"),
            Some(&ivy.token),
            &json!({ "path": path, "value": "fail" }),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    // Neither tablet sends anything: the server pushes the resolution to both.
    for (client, doc, state) in [(&mut a, &mut da, &mut sa), (&mut c, &mut dc, &mut sc)] {
        client
            .sync_until(&doc_id, doc, state, Duration::from_secs(10), |d| {
                values_at(d, asset, "outcome") == 1
            })
            .await
            .unwrap_or_else(|e| panic!("the resolution did not reach the tablet: {e}"));
        let json = firemode_sync_core::to_json(doc, None);
        assert_eq!(json["items"][asset.to_string()]["outcome"], "fail");
    }
    let r = srv
        .client
        .get(
            &format!("/v1/tests/sessions/{sid}/conflicts"),
            Some(&org.admin.token),
        )
        .await;
    assert!(!r.body.contains(&path), "{}", r.body);
    let d = srv
        .client
        .get(
            &format!("/v1/tests/sessions/{sid}/document"),
            Some(&org.admin.token),
        )
        .await;
    assert_eq!(
        d.json["document"]["items"][asset.to_string()]["outcome"],
        "fail"
    );
    // Resolving where there is no conflict is refused.
    let again = srv
        .client
        .post(
            &format!("/v1/tests/sessions/{sid}/conflicts/resolve"),
            Some(&ivy.token),
            &json!({ "path": path, "value": "pass" }),
        )
        .await;
    assert_problem(&again, 422, "invalid_change");
}

async fn history_and_past_versions(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let r = srv
        .client
        .patch(
            &format!("/v1/users/{}", org.admin.id),
            Some(&org.admin.token),
            &json!({ "full_name": "Ada Admin" }),
        )
        .await;
    assert_eq!(r.status, 200);
    let ivy = srv.user(&org, "inspector").await;
    let bld = building(&srv, &org, 1).await;
    let s = session(&srv, &org.admin, &bld, &[ivy.id]).await;
    let (sid, doc_id) = (
        s["id"].as_str().unwrap().to_owned(),
        s["document_id"].as_str().unwrap().to_owned(),
    );
    let mut a = SyncClient::joined(&srv.base, &ivy.token, &format!("{}:tab", ivy.id)).await;
    let (mut d, mut st) = (Automerge::new(), sync::State::new());
    a.sync(&doc_id, &mut d, &mut st, true).await.unwrap();
    put_item_field(&mut d, bld.assets[0], "outcome", "fail");
    a.sync(&doc_id, &mut d, &mut st, false).await.unwrap();

    let h = srv
        .client
        .get(
            &format!("/v1/tests/sessions/{sid}/history"),
            Some(&org.admin.token),
        )
        .await;
    assert_eq!(h.status, 200, "{}", h.body);
    let changes = h.json["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 2);
    assert_eq!(changes[0]["author"]["user_id"], org.admin.id.to_string());
    assert_eq!(
        changes[0]["author"]["user_name"], "Ada Admin",
        "names decrypted for the admin"
    );
    assert_eq!(changes[0]["author"]["device_id"], "server");
    assert_eq!(changes[1]["author"]["user_id"], ivy.id.to_string());
    assert_eq!(changes[1]["author"]["device_id"], "tab");
    assert_eq!(changes[1]["deps"][0], changes[0]["hash"]);
    let touched: Vec<&str> = changes[1]["touched"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(
        touched,
        [format!("/items/{}/outcome", bld.assets[0]).as_str()]
    );
    // Inspectors see authors without names.
    let hi = srv
        .client
        .get(
            &format!("/v1/tests/sessions/{sid}/history"),
            Some(&ivy.token),
        )
        .await;
    assert!(hi.json["changes"][0]["author"]["user_name"].is_null());
    // The document as it was after the first change.
    let first = changes[0]["hash"].as_str().unwrap();
    let past = srv
        .client
        .get(
            &format!("/v1/tests/sessions/{sid}/document?at={first}"),
            Some(&org.admin.token),
        )
        .await;
    assert_eq!(past.status, 200, "{}", past.body);
    assert_eq!(
        past.json["document"]["items"][bld.assets[0].to_string()]["outcome"],
        "not_tested"
    );
    let now = srv
        .client
        .get(
            &format!("/v1/tests/sessions/{sid}/document"),
            Some(&org.admin.token),
        )
        .await;
    assert_eq!(
        now.json["document"]["items"][bld.assets[0].to_string()]["outcome"],
        "fail"
    );
    // bs58check heads (as in automerge URLs) work too.
    let head = now.json["heads"][0].as_str().unwrap();
    let same = srv
        .client
        .get(
            &format!("/v1/tests/sessions/{sid}/document?at={head}"),
            Some(&org.admin.token),
        )
        .await;
    assert_eq!(same.json["document"], now.json["document"]);
}

async fn conflict_routes_are_guarded(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let rival = srv.org("Rival").await;
    let auditor = srv.user(&org, "auditor").await;
    let bld = building(&srv, &org, 1).await;
    let s = session(&srv, &org.admin, &bld, &[]).await;
    let sid = s["id"].as_str().unwrap();
    let path = format!("/items/{}/outcome", bld.assets[0]);
    for route in ["history", "conflicts"] {
        assert_problem(
            &srv.client
                .get(
                    &format!("/v1/tests/sessions/{sid}/{route}"),
                    Some(&rival.admin.token),
                )
                .await,
            404,
            "not_found",
        );
        assert_eq!(
            srv.client
                .get(
                    &format!("/v1/tests/sessions/{sid}/{route}"),
                    Some(&auditor.token)
                )
                .await
                .status,
            200
        );
    }
    let body = json!({ "path": path, "value": "pass" });
    assert_problem(
        &srv.client
            .post(
                &format!("/v1/tests/sessions/{sid}/conflicts/resolve"),
                Some(&rival.admin.token),
                &body,
            )
            .await,
        404,
        "not_found",
    );
    assert_problem(
        &srv.client
            .post(
                &format!("/v1/tests/sessions/{sid}/conflicts/resolve"),
                Some(&auditor.token),
                &body,
            )
            .await,
        403,
        "forbidden",
    );
    let t = Some(org.admin.token.as_str());
    assert_problem(
        &srv.client
            .post(
                &format!("/v1/tests/sessions/{sid}/conflicts/resolve"),
                t,
                &json!({ "path": path, "value": "melted" }),
            )
            .await,
        422,
        "invalid_value",
    );
    assert_problem(
        &srv.client
            .post(
                &format!("/v1/tests/sessions/{sid}/conflicts/resolve"),
                t,
                &json!({ "path": path, "value": [1] }),
            )
            .await,
        422,
        "invalid_value",
    );
    assert_problem(
        &srv.client
            .post(
                &format!("/v1/tests/sessions/{sid}/conflicts/resolve"),
                t,
                &json!({ "path": path }),
            )
            .await,
        422,
        "invalid_body",
    );
}
