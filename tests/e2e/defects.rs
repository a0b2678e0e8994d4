//! Defects: opened automatically from failed items (through REST and through sync), kept in
//! step with re-projection, the one-step lifecycle, overdue notification deadlines.

use std::time::Duration;

use chrono::Utc;
use firemode_sync_core::automerge::sync;
use firemode_sync_core::automerge::Automerge;
use firemode_tests::fixtures::{building, put_item_fields, session, Building};
use firemode_tests::sync_client::SyncClient;
use firemode_tests::{assert_problem, backend_tests, Backend, Org, Resp, TestServer, User};
use serde_json::{json, Value};
use uuid::Uuid;

backend_tests!(
    failed_items_open_one_defect_and_pass_withdraws_it,
    sync_edits_open_defects,
    lifecycle_one_step_at_a_time,
    overdue_lists_past_deadline_without_a_delivered_notice,
    defects_are_scoped_and_role_checked,
);

async fn record(srv: &TestServer, token: &str, id: &str, results: Value) -> Resp {
    let r = firemode_tests::Client::send(
        srv.client
            .request(
                reqwest::Method::POST,
                &format!("/v1/tests/sessions/{id}/results"),
                Some(token),
            )
            .header("idempotency-key", Uuid::new_v4().to_string())
            .json(&json!({ "results": results })),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r
}

async fn defects_of(srv: &TestServer, token: &str, query: &str) -> Vec<Value> {
    let r = srv
        .client
        .get(&format!("/v1/defects?{query}"), Some(token))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json["items"].as_array().unwrap().clone()
}

async fn setup(b: Backend) -> Option<(TestServer, Org, User, Building, String)> {
    let srv = TestServer::start(b).await?;
    let org = srv.org("Acme").await;
    let inspector = srv.user(&org, "inspector").await;
    let bld = building(&srv, &org, 2).await;
    let s = session(&srv, &org.admin, &bld, &[inspector.id]).await;
    let id = s["id"].as_str().unwrap().to_owned();
    Some((srv, org, inspector, bld, id))
}

async fn failed_items_open_one_defect_and_pass_withdraws_it(b: Backend) {
    let Some((srv, org, inspector, bld, sid)) = setup(b).await else {
        return;
    };
    let t = &org.admin.token;
    record(&srv, &inspector.token, &sid, json!([{ "asset_id": bld.assets[0], "outcome": "fail", "observed_condition": "extinguisher_discharged_or_empty" }])).await;
    let d = defects_of(&srv, t, &format!("session_id={sid}")).await;
    assert_eq!(d.len(), 1, "{d:?}");
    // Non-critical by default: whether an empty extinguisher is critical depends on what else
    // covers the space (see the rule's rationale); an override raises it.
    assert_eq!(d[0]["severity"], "non_critical");
    assert_eq!(d[0]["source"], "automatic");
    assert_eq!(d[0]["status"], "open");
    assert_eq!(d[0]["asset_id"], bld.assets[0].to_string());
    assert_eq!(d[0]["building_id"], bld.id.to_string());
    assert_eq!(d[0]["rule_code"], "AS1851-10-6M-EXT");
    assert_eq!(d[0]["rule_version"], "2012.2.0");
    let discovered =
        chrono::DateTime::parse_from_rfc3339(d[0]["discovered_at"].as_str().unwrap()).unwrap();
    let notify = chrono::DateTime::parse_from_rfc3339(d[0]["notify_by"].as_str().unwrap()).unwrap();
    assert_eq!(
        notify - discovered,
        chrono::Duration::days(7),
        "non-critical: within a week"
    );
    let id = d[0]["id"].as_str().unwrap().to_owned();
    assert!(
        d[0]["title"].as_str().unwrap().starts_with(
            "EXT-0000 (Portable fire extinguisher, Level 0): extinguisher discharged or empty"
        ),
        "titles name the asset: {}",
        d[0]["title"]
    );
    assert_eq!(d[0]["asset"]["identifier"], "EXT-0000");
    assert_eq!(d[0]["asset"]["location"], "Level 0");
    // Re-recording the same condition changes nothing: one defect per asset and condition.
    record(&srv, &inspector.token, &sid, json!([{ "asset_id": bld.assets[0], "outcome": "fail", "observed_condition": "extinguisher_discharged_or_empty", "notes": "again" }])).await;
    assert_eq!(
        defects_of(&srv, t, &format!("session_id={sid}"))
            .await
            .len(),
        1
    );
    // Another condition instead is another defect; the one this session no longer finds, and
    // nobody acted on, is withdrawn.
    record(&srv, &inspector.token, &sid, json!([{ "asset_id": bld.assets[0], "outcome": "fail", "observed_condition": "pressure_gauge_below_green" }])).await;
    let open = defects_of(&srv, t, &format!("session_id={sid}&status=open")).await;
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0]["observed_condition"], "pressure_gauge_below_green");
    assert_eq!(open[0]["severity"], "non_critical");
    let first = srv.client.get(&format!("/v1/defects/{id}"), Some(t)).await;
    assert_eq!(first.json["status"], "withdrawn");
    // A fail without a condition is still a defect (non-critical).
    record(
        &srv,
        &inspector.token,
        &sid,
        json!([{ "asset_id": bld.assets[1], "outcome": "fail" }]),
    )
    .await;
    assert_eq!(
        defects_of(&srv, t, &format!("session_id={sid}&status=open"))
            .await
            .len(),
        2
    );
    // A later pass withdraws the open automatic defect.
    let gauge = open[0]["id"].as_str().unwrap().to_owned();
    record(
        &srv,
        &inspector.token,
        &sid,
        json!([{ "asset_id": bld.assets[0], "outcome": "pass", "observed_conditions": [] }]),
    )
    .await;
    let one = srv
        .client
        .get(&format!("/v1/defects/{gauge}"), Some(t))
        .await;
    assert_eq!(one.json["status"], "withdrawn", "{}", one.body);
    let history: Vec<&str> = one.json["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["to_status"].as_str().unwrap())
        .collect();
    assert_eq!(history, ["open", "withdrawn"]);
    // Failing again reopens it, linking the session that found it again.
    record(&srv, &inspector.token, &sid, json!([{ "asset_id": bld.assets[0], "outcome": "fail", "observed_condition": "pressure_gauge_below_green" }])).await;
    let one = srv
        .client
        .get(&format!("/v1/defects/{gauge}"), Some(t))
        .await;
    assert_eq!(one.json["status"], "open");
    assert_eq!(one.json["severity"], "non_critical");
    let last = one.json["history"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["from_status"], "withdrawn");
    assert!(last["note"].as_str().unwrap().contains(&sid), "{last}");
}

async fn sync_edits_open_defects(b: Backend) {
    let Some((srv, org, inspector, bld, sid)) = setup(b).await else {
        return;
    };
    let s = srv
        .client
        .get(&format!("/v1/tests/sessions/{sid}"), Some(&org.admin.token))
        .await;
    let doc_id = s.str("document_id").to_owned();
    let mut c = SyncClient::joined(
        &srv.base,
        &inspector.token,
        &format!("{}:tablet", inspector.id),
    )
    .await;
    let (mut d, mut st) = (Automerge::new(), sync::State::new());
    c.sync(&doc_id, &mut d, &mut st, true).await.unwrap();
    put_item_fields(
        &mut d,
        bld.assets[1],
        &[
            ("outcome", "fail"),
            ("observedCondition", "signage_missing"),
        ],
    );
    c.sync(&doc_id, &mut d, &mut st, false).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let found = defects_of(&srv, &org.admin.token, &format!("session_id={sid}")).await;
        if let Some(def) = found.first() {
            assert_eq!(def["severity"], "non_conformance");
            assert_eq!(def["asset_id"], bld.assets[1].to_string());
            let notify =
                chrono::DateTime::parse_from_rfc3339(def["notify_by"].as_str().unwrap()).unwrap();
            let discovered =
                chrono::DateTime::parse_from_rfc3339(def["discovered_at"].as_str().unwrap())
                    .unwrap();
            assert_eq!(notify - discovered, chrono::Duration::days(7));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no defect from the synced failure"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn lifecycle_one_step_at_a_time(b: Backend) {
    let Some((srv, org, _inspector, bld, _sid)) = setup(b).await else {
        return;
    };
    let t = Some(org.admin.token.as_str());
    let r = srv
        .client
        .post("/v1/defects", t, &json!({ "building_id": bld.id, "asset_id": bld.assets[0], "severity": "non_critical", "title": "Door closer weak" }))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json["source"], "manual");
    assert_eq!(r.json["next_status"], "acknowledged");
    let id = r.str("id").to_owned();
    let steps = [
        "acknowledged",
        "repair_scheduled",
        "repaired",
        "verified",
        "closed",
    ];
    let all = [
        "open",
        "acknowledged",
        "repair_scheduled",
        "repaired",
        "verified",
        "closed",
        "withdrawn",
        "bogus",
    ];
    let mut current = "open";
    for next in steps {
        // Every jump other than the next step is refused, naming the allowed one.
        for other in all.iter().filter(|s| **s != next) {
            let bad = srv
                .client
                .patch(&format!("/v1/defects/{id}"), t, &json!({ "status": other }))
                .await;
            assert_problem(&bad, 422, "invalid_transition");
            assert!(
                bad.json["detail"].as_str().unwrap().contains(next),
                "{}",
                bad.body
            );
        }
        let ok = srv
            .client
            .patch(
                &format!("/v1/defects/{id}"),
                t,
                &json!({ "status": next, "note": format!("to {next}") }),
            )
            .await;
        assert_eq!(ok.status, 200, "{current} -> {next}: {}", ok.body);
        assert_eq!(ok.json["status"], next);
        current = next;
    }
    let closed = srv
        .client
        .patch(
            &format!("/v1/defects/{id}"),
            t,
            &json!({ "status": "open" }),
        )
        .await;
    assert_problem(&closed, 422, "invalid_transition");
    let one = srv.client.get(&format!("/v1/defects/{id}"), t).await;
    let history = one.json["history"].as_array().unwrap();
    assert_eq!(history.len(), 6);
    for (e, step) in history.iter().skip(1).zip(steps) {
        assert_eq!(e["to_status"], step);
        assert_eq!(
            e["actor_id"],
            org.admin.id.to_string(),
            "each step stamped with who"
        );
        assert!(e["at"].is_string());
    }
    assert!(one.json["acknowledged_at"].is_string());
    let audits = srv.client.get("/v1/users/me/audits?limit=500", t).await;
    assert_eq!(audits.body.matches("defect.transition").count(), 5);
}

/// Overdue: active, past `notify_by`, and no notice delivered (no endpoint here, so none is);
/// a status change alone does not count.
async fn overdue_lists_past_deadline_without_a_delivered_notice(b: Backend) {
    let Some((srv, org, _inspector, bld, _sid)) = setup(b).await else {
        return;
    };
    let t = Some(org.admin.token.as_str());
    let make = |severity: &str, days_ago: i64| {
        json!({ "building_id": bld.id, "severity": severity, "title": format!("{severity} {days_ago}d"),
                "discovered_at": (Utc::now() - chrono::Duration::days(days_ago)).to_rfc3339() })
    };
    let old_critical = srv
        .client
        .post("/v1/defects", t, &make("critical", 2))
        .await;
    let fresh_critical = srv
        .client
        .post("/v1/defects", t, &make("critical", 0))
        .await;
    let old_minor = srv
        .client
        .post("/v1/defects", t, &make("non_critical", 3))
        .await;
    let ancient_minor = srv
        .client
        .post("/v1/defects", t, &make("non_conformance", 10))
        .await;
    let acked = srv
        .client
        .post("/v1/defects", t, &make("critical", 5))
        .await;
    let acked_id = acked.str("id").to_owned();
    srv.client
        .patch(
            &format!("/v1/defects/{acked_id}"),
            t,
            &json!({ "status": "acknowledged" }),
        )
        .await;
    let overdue: Vec<String> = defects_of(&srv, &org.admin.token, "overdue=true")
        .await
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(overdue.contains(&old_critical.str("id").to_owned()));
    assert!(overdue.contains(&ancient_minor.str("id").to_owned()));
    assert!(!overdue.contains(&fresh_critical.str("id").to_owned()));
    assert!(
        !overdue.contains(&old_minor.str("id").to_owned()),
        "a week for non-critical"
    );
    assert!(
        overdue.contains(&acked_id),
        "acknowledging is not telling the owner: still overdue"
    );
    assert_eq!(overdue.len(), 3);
    let critical = defects_of(&srv, &org.admin.token, "severity=critical").await;
    assert_eq!(critical.len(), 3);
    assert_problem(
        &srv.client.get("/v1/defects?severity=bad", t).await,
        400,
        "invalid_query",
    );
    assert_problem(
        &srv.client.get("/v1/defects?overdue=maybe", t).await,
        400,
        "invalid_query",
    );
}

async fn defects_are_scoped_and_role_checked(b: Backend) {
    let Some((srv, org, inspector, bld, _sid)) = setup(b).await else {
        return;
    };
    let rival = srv.org("Rival").await;
    let auditor = srv.user(&org, "auditor").await;
    let t = Some(org.admin.token.as_str());
    let r = srv
        .client
        .post(
            "/v1/defects",
            t,
            &json!({ "building_id": bld.id, "severity": "critical", "title": "FIP fault" }),
        )
        .await;
    let id = r.str("id").to_owned();
    let rt = Some(rival.admin.token.as_str());
    assert_problem(
        &srv.client.get(&format!("/v1/defects/{id}"), rt).await,
        404,
        "not_found",
    );
    assert_problem(
        &srv.client
            .patch(
                &format!("/v1/defects/{id}"),
                rt,
                &json!({ "status": "acknowledged" }),
            )
            .await,
        404,
        "not_found",
    );
    // Another organisation's building in a body is a bad reference, named.
    let foreign = srv
        .client
        .post(
            "/v1/defects",
            rt,
            &json!({ "building_id": bld.id, "severity": "critical", "title": "x" }),
        )
        .await;
    assert_problem(&foreign, 422, "unknown_reference");
    assert!(foreign.json["detail"]
        .as_str()
        .unwrap()
        .starts_with("building_id"));
    assert_eq!(defects_of(&srv, &rival.admin.token, "").await.len(), 0);
    // Auditors read only; inspectors record defects but do not move them.
    assert_eq!(
        srv.client
            .get(&format!("/v1/defects/{id}"), Some(&auditor.token))
            .await
            .status,
        200
    );
    assert_problem(
        &srv.client
            .post(
                "/v1/defects",
                Some(&auditor.token),
                &json!({ "building_id": bld.id, "severity": "critical", "title": "x" }),
            )
            .await,
        403,
        "forbidden",
    );
    assert_problem(
        &srv.client
            .patch(
                &format!("/v1/defects/{id}"),
                Some(&inspector.token),
                &json!({ "status": "acknowledged" }),
            )
            .await,
        403,
        "forbidden",
    );
    // Whatever the body, an auditor is refused first.
    for body in [json!({}), json!({ "severity": "critical", "reason": "x" })] {
        assert_problem(
            &srv.client
                .patch(&format!("/v1/defects/{id}"), Some(&auditor.token), &body)
                .await,
            403,
            "forbidden",
        );
    }
    let mine = srv.client.post("/v1/defects", Some(&inspector.token), &json!({ "building_id": bld.id, "severity": "non_conformance", "title": "Block plan missing" })).await;
    assert_eq!(mine.status, 201, "{}", mine.body);
    // Bad input.
    let c = &srv.client;
    assert_problem(
        &c.post(
            "/v1/defects",
            t,
            &json!({ "building_id": bld.id, "severity": "catastrophic", "title": "x" }),
        )
        .await,
        422,
        "invalid_severity",
    );
    assert_problem(
        &c.post(
            "/v1/defects",
            t,
            &json!({ "building_id": bld.id, "severity": "critical", "title": "" }),
        )
        .await,
        422,
        "invalid_field",
    );
    assert_problem(
        &c.post(
            "/v1/defects",
            t,
            &json!({ "building_id": bld.id, "severity": "critical" }),
        )
        .await,
        422,
        "invalid_body",
    );
    assert_problem(
        &c.get("/v1/defects/not-a-uuid", t).await,
        400,
        "invalid_path",
    );
    assert_problem(
        &c.patch(
            &format!("/v1/defects/{}", Uuid::new_v4()),
            t,
            &json!({ "status": "acknowledged" }),
        )
        .await,
        404,
        "not_found",
    );
}
