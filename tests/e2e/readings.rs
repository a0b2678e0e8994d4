//! AS 1851 results that mean what they say, end to end on both databases: every reading of the
//! shipped library recorded (REST and an unmodified automerge-repo JS tablet) and evaluated,
//! missing baselines as non-conformances, bad results refused without a trace, contradictions
//! refused (REST) or flagged (tablets), several conditions per item each its own defect, defects
//! reconfirmed, reopened, overridden, cancelled and hidden from inspectors who may not see their
//! sessions, and signed-off sessions that nobody can change until an admin reopens them.

use std::collections::BTreeMap;
use std::time::Duration;

use firemode_server::domain::readings::{
    CompareOp, Expectation, Expected, ReadingKind, ReadingSpec,
};
use firemode_server::rules;
use firemode_sync_core::automerge::sync;
use firemode_sync_core::automerge::transaction::Transactable;
use firemode_sync_core::automerge::{Automerge, ObjType, ReadDoc, ROOT};
use firemode_tests::clients::{js_clients_available, run_node_test, user_json};
use firemode_tests::fixtures::{building, session};
use firemode_tests::sync_client::SyncClient;
use firemode_tests::{assert_problem, backend_tests, Backend, Client, Org, Resp, TestServer, User};
use serde_json::{json, Value};
use uuid::Uuid;

backend_tests!(
    every_library_reading_is_recorded_and_evaluated,
    bad_results_are_refused_and_change_nothing,
    a_tablet_pass_with_a_fault_is_flagged_and_kept,
    sign_off_makes_a_session_read_only,
    defects_are_reconfirmed_reopened_and_overridden,
    a_nul_from_a_tablet_is_reported_and_projection_goes_on,
    a_finding_made_critical_shortens_its_deadline,
);

async fn record(srv: &TestServer, token: &str, session: &str, results: Value) -> Resp {
    Client::send(
        srv.client
            .request(
                reqwest::Method::POST,
                &format!("/v1/tests/sessions/{session}/results"),
                Some(token),
            )
            .header("idempotency-key", Uuid::new_v4().to_string())
            .json(&json!({ "results": results })),
    )
    .await
}

async fn results(srv: &TestServer, token: &str, session: &str) -> BTreeMap<String, Value> {
    let r = srv
        .client
        .get(
            &format!("/v1/tests/sessions/{session}/results"),
            Some(token),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["asset_id"].as_str().unwrap().to_owned(), i.clone()))
        .collect()
}

async fn patch_session(srv: &TestServer, sid: &str, token: &str, body: Value) -> Resp {
    srv.client
        .patch(&format!("/v1/tests/sessions/{sid}"), Some(token), &body)
        .await
}

async fn list_defects(srv: &TestServer, query: &str, token: &str) -> Vec<Value> {
    let r = srv
        .client
        .get(&format!("/v1/defects?{query}"), Some(token))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json["items"].as_array().unwrap().clone()
}

async fn patch_defect(srv: &TestServer, id: &str, body: Value, token: &str) -> Resp {
    srv.client
        .patch(&format!("/v1/defects/{id}"), Some(token), &body)
        .await
}

/// A tablet of `user` holding the document `doc_id`, synced.
async fn tablet(
    srv: &TestServer,
    user: &User,
    doc_id: &str,
) -> (SyncClient, Automerge, sync::State) {
    let mut c = SyncClient::joined(&srv.base, &user.token, &format!("{}:tablet", user.id)).await;
    let (mut d, mut st) = (Automerge::new(), sync::State::new());
    c.sync(doc_id, &mut d, &mut st, true).await.unwrap();
    (c, d, st)
}

/// The result row of `asset` once the projection shows `outcome` for it (10 s at most).
async fn projected(srv: &TestServer, token: &str, sid: &str, asset: Uuid, outcome: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let row = results(srv, token, sid).await[&asset.to_string()].clone();
        if row["outcome"] == outcome {
            return row;
        }
        assert!(std::time::Instant::now() < deadline, "not projected: {row}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn heads(srv: &TestServer, token: &str, session: &str) -> Value {
    let d = srv
        .client
        .get(
            &format!("/v1/tests/sessions/{session}/document"),
            Some(token),
        )
        .await;
    assert_eq!(d.status, 200, "{}", d.body);
    d.json["heads"].clone()
}

/// A value of the reading's kind that meets its expectation (reference-based expectations get
/// any number: the asset has no baseline or design value recorded).
fn value_within(spec: &ReadingSpec) -> Value {
    match (&spec.expect, spec.kind) {
        (Expectation::Compare { op, value }, _) => json!(match op {
            CompareOp::Lt => value - 1.0,
            CompareOp::Gt => value + 1.0,
            _ => *value,
        }),
        (Expectation::Range { min, .. }, _) => json!(min),
        (Expectation::Equals { value }, _) => match value {
            Expected::Bool(b) => json!(b),
            Expected::Number(x) => json!(x),
            Expected::Text(t) => json!(t),
        },
        (Expectation::OneOf { values }, _) => json!(values[0]),
        (_, ReadingKind::YesNo) => json!(true),
        (_, ReadingKind::Choice) => json!(spec.choices[0]),
        (_, ReadingKind::Text) => json!("checked"),
        (_, ReadingKind::Number) => json!(100),
    }
}

/// The verdict a reading planned by [`value_within`] gets on an asset with no references.
fn expected_verdict(spec: &ReadingSpec) -> &'static str {
    match &spec.expect {
        Expectation::Baseline { .. } => "no_baseline",
        Expectation::Design { .. } => "no_design_value",
        Expectation::None => "not_evaluated",
        _ => "within",
    }
}

/// One asset per rule of the shipped library (each listing its rule, in a building pinned to
/// the rule's edition), and for each building and frequency a session of those assets assigned
/// to `inspector`, made by `office`. Returns the sessions
/// (id, document_url, frequency) and each asset's rule code.
async fn library_sessions(
    srv: &TestServer,
    office: &User,
    inspector: &User,
    label: &str,
) -> (Vec<Value>, BTreeMap<Uuid, String>) {
    let c = &srv.client;
    let mut asset_rule = BTreeMap::new();
    let mut sessions = Vec::new();
    // One building per pair of editions (a building pins one edition per standard): every
    // rule's asset goes to the building pinned to the rule's edition.
    for (pins, editions) in [
        (
            "current",
            json!([{ "code": "AS1851", "version": "2012.1.0" }, { "code": "AS2293.2", "version": "2019.1.0" }]),
        ),
        (
            "older",
            json!([{ "code": "AS1851", "version": "2005.1.0" }, { "code": "AS2293.2", "version": "1995.1.0" }]),
        ),
    ] {
        let pinned: Vec<(String, String)> = editions
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["code"].as_str().unwrap().to_owned(),
                    e["version"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let in_building: Vec<&rules::RuleDef> = rules::library()
            .rules
            .iter()
            .filter(|r| {
                let rs = r.rule_set.as_ref().unwrap();
                pinned.contains(&(rs.code.clone(), rs.version.clone()))
            })
            .collect();
        let b = c
            .post(
                "/v1/buildings",
                Some(&office.token),
                &json!({ "name": format!("Library Tower {label} {pins}"), "address": "1 Rule St, Hobart TAS",
                         "building_type": "Class 9b", "editions": editions }),
            )
            .await;
        assert_eq!(b.status, 201, "{}", b.body);
        let building = b.uuid("id");
        for (n, rule) in in_building.iter().enumerate() {
            let a = c
                .post(
                    &format!("/v1/buildings/{building}/assets"),
                    Some(&office.token),
                    &json!({ "asset_type": rule.equipment, "location": format!("Plant room {n}"),
                             "identifier": format!("R-{n:03}"), "rule_codes": [rule.code] }),
                )
                .await;
            assert_eq!(a.status, 201, "{}: {}", rule.code, a.body);
            asset_rule.insert(a.uuid("id"), rule.code.clone());
        }
        let mut frequencies: Vec<&str> = in_building.iter().map(|r| r.frequency.as_str()).collect();
        frequencies.sort();
        frequencies.dedup();
        for f in frequencies {
            let s = c
                .post(
                    "/v1/tests/sessions",
                    Some(&office.token),
                    &json!({ "building_id": building, "name": format!("{label} {pins} {f}"), "frequency": f,
                             "assigned_to": [inspector.id] }),
                )
                .await;
            assert_eq!(s.status, 201, "{}", s.body);
            sessions.push(s.json);
        }
    }
    (sessions, asset_rule)
}

/// For each asset of a session: a pass with every reading of its rule, each of its kind.
async fn plan(srv: &TestServer, token: &str, session: &Value) -> BTreeMap<String, Value> {
    let r = results(srv, token, session["id"].as_str().unwrap()).await;
    r.iter()
        .map(|(asset, row)| {
            let code = row["rule_code"].as_str().unwrap();
            let rule = rules::library()
                .rules
                .iter()
                .find(|r| r.code == code)
                .unwrap();
            let readings: serde_json::Map<String, Value> = rule
                .readings
                .iter()
                .map(|s| (s.name.clone(), value_within(s)))
                .collect();
            (
                asset.clone(),
                json!({ "outcome": "pass", "observed_conditions": [], "readings": readings }),
            )
        })
        .collect()
}

/// Every reading of every rule has the verdict its planned value earns; missing baselines and
/// design values became non-conformance findings. Returns how many readings were checked.
async fn check_verdicts(srv: &TestServer, org: &Org, sessions: &[Value]) -> usize {
    let mut checked = 0;
    for s in sessions {
        let sid = s["id"].as_str().unwrap();
        for (asset, row) in results(srv, &org.admin.token, sid).await {
            let code = row["rule_code"].as_str().unwrap();
            let rule = rules::library()
                .rules
                .iter()
                .find(|r| r.code == code)
                .unwrap();
            let assessed = &row["assessment"]["readings"];
            for spec in &rule.readings {
                assert_eq!(
                    assessed[&spec.name]["verdict"],
                    expected_verdict(spec),
                    "{code} {}: {row}",
                    spec.name
                );
                checked += 1;
            }
            assert_eq!(row["problems"], json!([]), "{code} {asset}: {row}");
            let needs_baseline = rule
                .readings
                .iter()
                .any(|r| matches!(r.expect, Expectation::Baseline { .. }));
            let findings: Vec<&str> = row["assessment"]["findings"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|f| f["condition"].as_str())
                .collect();
            assert_eq!(
                findings.contains(&"baseline_data_missing"),
                needs_baseline,
                "{code}: {row}"
            );
            if findings.is_empty() {
                assert_eq!(row["classification"], "compliant", "{code}: {row}");
            } else {
                assert_eq!(row["classification"], "non_conformance", "{code}: {row}");
            }
        }
    }
    checked
}

async fn every_library_reading_is_recorded_and_evaluated(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let office = srv.user(&org, "office").await;
    let inspector = srv.user(&org, "inspector").await;
    let total: usize = rules::library()
        .rules
        .iter()
        .map(|r| r.readings.len())
        .sum();
    assert!(total >= 150, "{total}");

    // Through REST.
    let (sessions, assets) = library_sessions(&srv, &office, &inspector, "REST").await;
    let in_sessions: usize = {
        let mut n = 0;
        for s in &sessions {
            let p = plan(&srv, &inspector.token, s).await;
            n += p.len();
            let body: Vec<Value> = p
                .iter()
                .map(|(asset, r)| {
                    json!({ "asset_id": asset, "outcome": r["outcome"],
                            "observed_conditions": r["observed_conditions"],
                            "readings": r["readings"] })
                })
                .collect();
            let r = record(
                &srv,
                &inspector.token,
                s["id"].as_str().unwrap(),
                json!(body),
            )
            .await;
            assert_eq!(r.status, 200, "{}", r.body);
        }
        n
    };
    assert_eq!(
        in_sessions,
        assets.len(),
        "every rule's asset is in its frequency's session"
    );
    assert_eq!(check_verdicts(&srv, &org, &sessions).await, total);
    // Each missing baseline is a non-conformance defect of its asset.
    let defects = srv
        .client
        .get("/v1/defects?limit=500", Some(&org.admin.token))
        .await;
    let missing: Vec<&Value> = defects.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["observed_condition"] == "baseline_data_missing")
        .collect();
    let rules_with_baselines = rules::library()
        .rules
        .iter()
        .filter(|r| {
            r.readings
                .iter()
                .any(|s| matches!(s.expect, Expectation::Baseline { .. }))
        })
        .count();
    assert_eq!(missing.len(), rules_with_baselines);
    assert!(missing
        .iter()
        .all(|d| d["severity"] == "non_conformance" && d["status"] == "open"));

    // Through an unmodified automerge-repo JS tablet.
    if !js_clients_available() {
        return;
    }
    let (sessions, _) = library_sessions(&srv, &office, &inspector, "tablet").await;
    let mut planned = Vec::new();
    for s in &sessions {
        let p = plan(&srv, &inspector.token, s).await;
        planned.push(json!({ "id": s["id"], "document_url": s["document_url"], "plan": p }));
    }
    let fixture = json!({
        "base_url": srv.base,
        "users": { "inspector": user_json(&inspector), "office": user_json(&office) },
        "sessions": planned,
    });
    let run = run_node_test("readings.test.mjs", &fixture, Duration::from_secs(180)).await;
    assert!(run.success, "JS readings test failed:\n{}", run.output);
    assert_eq!(check_verdicts(&srv, &org, &sessions).await, total);
}

async fn bad_results_are_refused_and_change_nothing(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let inspector = srv.user(&org, "inspector").await;
    let bld = building(&srv, &org, 2).await;
    let s = session(&srv, &org.admin, &bld, &[inspector.id]).await;
    let sid = s["id"].as_str().unwrap();
    let t = inspector.token.as_str();
    let a = bld.assets[0];
    // Typed values in their accepted spellings are stored canonically.
    let ok = record(
        &srv,
        t,
        sid,
        json!([{ "asset_id": a, "outcome": "pass",
                 "readings": { "pressure_gauge": "In_Green", "service_tag_stamped": "yes", "gross_mass_loss": 4 } }]),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let row = &results(&srv, t, sid).await[&a.to_string()];
    assert_eq!(
        row["readings"],
        json!({ "pressure_gauge": "in_green", "service_tag_stamped": true, "gross_mass_loss": 4.0 })
    );
    assert_eq!(row["assessment"]["suggested_outcome"], "pass");
    assert_eq!(row["assessment"]["overrides_suggestion"], false);
    let before = heads(&srv, t, sid).await;
    let before_rows = results(&srv, t, sid).await;

    let cases: Vec<(Value, &str, &str)> = vec![
        (
            json!({ "asset_id": a, "outcome": "pass", "readings": { "colour": 1 } }),
            "unknown_reading",
            "results[0].readings.colour",
        ),
        (
            json!({ "asset_id": a, "outcome": "pass", "readings": { "gross_mass_loss": "ten" } }),
            "invalid_reading",
            "results[0].readings.gross_mass_loss",
        ),
        (
            json!({ "asset_id": a, "outcome": "pass", "readings": { "gross_mass_loss": 1e13 } }),
            "invalid_reading",
            "results[0].readings.gross_mass_loss",
        ),
        (
            json!({ "asset_id": a, "outcome": "pass", "readings": { "service_tag_stamped": 3 } }),
            "invalid_reading",
            "results[0].readings.service_tag_stamped",
        ),
        (
            json!({ "asset_id": a, "outcome": "pass", "readings": { "pressure_gauge": "purple" } }),
            "invalid_reading",
            "results[0].readings.pressure_gauge",
        ),
        (
            json!({ "asset_id": a, "outcome": "pass", "readings": { "pressure_gauge": "x".repeat(100_000) } }),
            "invalid_reading",
            "results[0].readings.pressure_gauge",
        ),
        (
            json!({ "asset_id": a, "outcome": "pass", "readings": { "gross_mass_loss": null } }),
            "invalid_reading",
            "results[0].readings.gross_mass_loss",
        ),
        (
            json!({ "asset_id": a, "outcome": "pass", "readings": { "gross_mass_loss": [1] } }),
            "invalid_reading",
            "results[0].readings.gross_mass_loss",
        ),
        (
            json!({ "asset_id": a, "outcome": "fail", "observed_conditions": ["on_fire"] }),
            "unknown_condition",
            "results[0].observed_conditions[0]",
        ),
        (
            json!({ "asset_id": a, "outcome": "pass", "observed_conditions": ["extinguisher_missing"] }),
            "contradictory_result",
            "results[0].outcome and results[0].observed_conditions",
        ),
        (
            json!({ "asset_id": a, "outcome": "fail", "observed_condition": "serviceable" }),
            "contradictory_result",
            "results[0].outcome and results[0].observed_conditions",
        ),
        (
            json!({ "asset_id": a, "outcome": "fail", "observed_condition": "extinguisher_missing",
                    "observed_conditions": ["signage_missing"] }),
            "invalid_field",
            "results[0].observed_conditions",
        ),
        (
            json!({ "asset_id": a, "outcome": "pass", "evidence": [Uuid::new_v4()] }),
            "unknown_evidence",
            "results[0].evidence[0]",
        ),
        (
            json!({ "asset_id": a, "outcome": "pass", "notes": "n".repeat(10_001) }),
            "invalid_field",
            "results[0].notes",
        ),
    ];
    for (result, code, field) in cases {
        // The bad result second, after a good one: nothing of the request may be applied.
        let body = json!([{ "asset_id": bld.assets[1], "outcome": "pass" }, result]);
        let r = record(&srv, t, sid, body).await;
        assert_problem(&r, 422, code);
        let detail = r.json["detail"].as_str().unwrap();
        let field = field.replace("results[0]", "results[1]");
        assert!(detail.starts_with(&field), "{field}: {detail}");
    }
    let twice = record(
        &srv,
        t,
        sid,
        json!([{ "asset_id": a, "outcome": "pass" }, { "asset_id": a, "outcome": "fail" }]),
    )
    .await;
    assert_problem(&twice, 422, "invalid_body");
    assert_eq!(
        heads(&srv, t, sid).await,
        before,
        "refused results changed the document"
    );
    assert_eq!(results(&srv, t, sid).await, before_rows);

    // A pass contradicting the conditions the item already holds is refused too.
    let held = record(
        &srv,
        t,
        sid,
        json!([{ "asset_id": bld.assets[1], "outcome": "fail", "observed_conditions": ["signage_missing"] }]),
    )
    .await;
    assert_eq!(held.status, 200, "{}", held.body);
    let before = heads(&srv, t, sid).await;
    let before_rows = results(&srv, t, sid).await;
    let r = record(
        &srv,
        t,
        sid,
        json!([{ "asset_id": bld.assets[1], "outcome": "pass" }]),
    )
    .await;
    assert_problem(&r, 422, "contradictory_result");
    assert!(r.json["detail"]
        .as_str()
        .unwrap()
        .contains("signage_missing"));
    let nan = srv
        .client
        .post_raw(
            &format!("/v1/tests/sessions/{sid}/results"),
            Some(t),
            "application/json",
            format!("{{\"results\":[{{\"asset_id\":\"{a}\",\"outcome\":\"pass\",\"readings\":{{\"gross_mass_loss\":NaN}}}}]}}")
                .into_bytes(),
        )
        .await;
    assert!(nan.status == 400 || nan.status == 422, "{}", nan.body);

    assert_eq!(
        heads(&srv, t, sid).await,
        before,
        "refused results changed the document"
    );
    assert_eq!(results(&srv, t, sid).await, before_rows);
}

async fn a_tablet_pass_with_a_fault_is_flagged_and_kept(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let inspector = srv.user(&org, "inspector").await;
    let bld = building(&srv, &org, 1).await;
    let s = session(&srv, &org.admin, &bld, &[inspector.id]).await;
    let sid = s["id"].as_str().unwrap().to_owned();
    let doc_id = s["document_id"].as_str().unwrap().to_owned();
    let a = bld.assets[0];
    let (mut c, mut d, mut st) = tablet(&srv, &inspector, &doc_id).await;
    // A schema 2 tablet: two conditions in the list, a pass, and a number for a choice reading.
    {
        let mut tx = d.transaction();
        let (_, items) = tx.get(ROOT, "items").unwrap().unwrap();
        let (_, item) = tx.get(&items, a.to_string()).unwrap().unwrap();
        tx.put(&item, "outcome", "pass").unwrap();
        let list = tx
            .put_object(&item, "observedConditions", ObjType::List)
            .unwrap();
        tx.insert(&list, 0, "extinguisher_missing").unwrap();
        tx.insert(&list, 1, "signage_missing").unwrap();
        let (_, readings) = tx.get(&item, "readings").unwrap().unwrap();
        tx.put(&readings, "pressure_gauge", 7_i64).unwrap();
        tx.commit();
    }
    c.sync(&doc_id, &mut d, &mut st, false).await.unwrap();
    let t = org.admin.token.as_str();
    let row = projected(&srv, t, &sid, a, "pass").await;
    assert!(row["assessment"]["contradiction"]
        .as_str()
        .unwrap()
        .contains("extinguisher_missing"));
    let paths: Vec<&str> = row["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    assert!(
        paths.contains(&format!("/items/{a}/outcome").as_str()),
        "{row}"
    );
    assert!(
        paths.contains(&format!("/items/{a}/readings/pressure_gauge").as_str()),
        "{row}"
    );
    // The recorded faults are kept: each condition is its own defect.
    let defects = srv
        .client
        .get(&format!("/v1/defects?session_id={sid}"), Some(t))
        .await;
    let mut conditions: Vec<&str> = defects.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["observed_condition"].as_str().unwrap())
        .collect();
    conditions.sort();
    assert_eq!(conditions, ["extinguisher_missing", "signage_missing"]);
    // And the contradiction is listed among the session's conflicts, with who wrote it.
    let conflicts = srv
        .client
        .get(&format!("/v1/tests/sessions/{sid}/conflicts"), Some(t))
        .await;
    assert_eq!(conflicts.status, 200, "{}", conflicts.body);
    let flagged = conflicts.json["conflicts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["path"] == format!("/items/{a}/outcome"))
        .unwrap_or_else(|| panic!("{}", conflicts.body))
        .clone();
    assert_eq!(flagged["kind"], "schema_violation");
    assert!(flagged["problem"].as_str().unwrap().contains("contradicts"));
    assert_eq!(
        flagged["values"][0]["author"]["user_id"],
        inspector.id.to_string()
    );
}

async fn sign_off_makes_a_session_read_only(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let inspector = srv.user(&org, "inspector").await;
    let office = srv.user(&org, "office").await;
    let bld = building(&srv, &org, 1).await;
    let s = session(&srv, &org.admin, &bld, &[inspector.id]).await;
    let sid = s["id"].as_str().unwrap().to_owned();
    let doc_id = s["document_id"].as_str().unwrap().to_owned();
    let a = bld.assets[0];
    let c = &srv.client;
    // A tablet is connected before, and stays connected through, the sign-off.
    let (mut tab, mut d, mut st) = tablet(&srv, &inspector, &doc_id).await;
    let r = record(
        &srv,
        &inspector.token,
        &sid,
        json!([{ "asset_id": a, "outcome": "pass" }]),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);

    // No licence number, no sign-off.
    let cleared = c
        .patch(
            &format!("/v1/users/{}", inspector.id),
            Some(&org.admin.token),
            &json!({ "licence_number": null }),
        )
        .await;
    assert_eq!(cleared.status, 200, "{}", cleared.body);
    assert_problem(
        &patch_session(
            &srv,
            &sid,
            &inspector.token,
            json!({ "status": "completed" }),
        )
        .await,
        422,
        "licence_required",
    );
    let set = c
        .patch(
            &format!("/v1/users/{}", inspector.id),
            Some(&org.admin.token),
            &json!({ "licence_number": "FPAS-2041" }),
        )
        .await;
    assert_eq!(set.json["licence_number"], "FPAS-2041");
    let done = patch_session(
        &srv,
        &sid,
        &inspector.token,
        json!({ "status": "completed" }),
    )
    .await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(done.json["status"], "completed");
    assert_eq!(done.json["signed_off"]["user_id"], inspector.id.to_string());
    assert_eq!(done.json["signed_off"]["licence"], "FPAS-2041");
    let doc = c
        .get(
            &format!("/v1/tests/sessions/{sid}/document"),
            Some(&org.admin.token),
        )
        .await;
    assert_eq!(doc.json["document"]["status"], "completed");
    assert_eq!(doc.json["document"]["signedOff"]["licence"], "FPAS-2041");
    assert_eq!(
        doc.json["document"]["signedOff"]["userId"],
        inspector.id.to_string()
    );
    let signed_heads = doc.json["heads"].clone();
    // The tablet that stayed connected through the sign-off edits: nothing of it is stored
    // (its socket was made read-only, or closed to reconnect read-only).
    firemode_tests::fixtures::put_item_field(&mut d, a, "outcome", "not_accessible");
    let _ = tab.sync(&doc_id, &mut d, &mut st, false).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(heads(&srv, &org.admin.token, &sid).await, signed_heads);

    // Read-only over REST, for everyone.
    for token in [&inspector.token, &office.token, &org.admin.token] {
        let r = record(
            &srv,
            token,
            &sid,
            json!([{ "asset_id": a, "outcome": "fail" }]),
        )
        .await;
        assert_problem(&r, 409, "session_completed");
        assert_problem(
            &patch_session(&srv, &sid, token, json!({ "name": "Renamed" })).await,
            409,
            "session_completed",
        );
    }
    // Read-only over sync: the tablet (reconnected read-only) still receives the document but
    // its edits are not stored.
    let (mut tab, mut d, mut st) = tablet(&srv, &inspector, &doc_id).await;
    assert_eq!(firemode_sync_core::to_json(&d, None)["status"], "completed");
    firemode_tests::fixtures::put_item_field(&mut d, a, "outcome", "fail");
    let _ = tab.sync(&doc_id, &mut d, &mut st, false).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(heads(&srv, &org.admin.token, &sid).await, signed_heads);
    assert_eq!(
        results(&srv, &org.admin.token, &sid).await[&a.to_string()]["outcome"],
        "pass"
    );

    // Only an admin reopens it, with a reason; audited.
    let reopen = json!({ "status": "in_progress", "reason": "tag numbers were swapped" });
    assert_problem(
        &patch_session(&srv, &sid, &office.token, reopen.clone()).await,
        403,
        "forbidden",
    );
    assert_problem(
        &patch_session(&srv, &sid, &inspector.token, reopen.clone()).await,
        403,
        "forbidden",
    );
    assert_problem(
        &patch_session(
            &srv,
            &sid,
            &org.admin.token,
            json!({ "status": "in_progress" }),
        )
        .await,
        422,
        "reason_required",
    );
    let opened = patch_session(&srv, &sid, &org.admin.token, reopen).await;
    assert_eq!(opened.status, 200, "{}", opened.body);
    assert_eq!(opened.json["status"], "in_progress");
    assert!(opened.json["signed_off"].is_null());
    let audits = c
        .get("/v1/users/me/audits?limit=500", Some(&org.admin.token))
        .await;
    let entry = audits.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "session.reopen")
        .cloned()
        .unwrap();
    assert_eq!(entry["details"]["reason"], "tag numbers were swapped");
    assert_eq!(entry["details"]["signed_off"]["licence"], "FPAS-2041");
    let doc = c
        .get(
            &format!("/v1/tests/sessions/{sid}/document"),
            Some(&org.admin.token),
        )
        .await;
    assert!(
        doc.json["document"].get("signedOff").is_none(),
        "{}",
        doc.body
    );
    let r = record(
        &srv,
        &inspector.token,
        &sid,
        json!([{ "asset_id": a, "outcome": "not_accessible" }]),
    )
    .await;
    assert_eq!(r.status, 200, "writable again: {}", r.body);
}

async fn defects_are_reconfirmed_reopened_and_overridden(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let inspector = srv.user(&org, "inspector").await;
    let stranger = srv.user(&org, "inspector").await;
    let office = srv.user(&org, "office").await;
    let bld = building(&srv, &org, 1).await;
    let a = bld.assets[0];
    let s1 = session(&srv, &org.admin, &bld, &[inspector.id]).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let s2 = session(&srv, &org.admin, &bld, &[inspector.id]).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let c = &srv.client;
    let t = office.token.as_str();
    let by_condition = |items: &[Value], cond: &str| -> Value {
        items
            .iter()
            .find(|d| d["observed_condition"] == cond)
            .cloned()
            .unwrap_or_else(|| panic!("no {cond} in {items:?}"))
    };
    let fail =
        |conds: Value| json!([{ "asset_id": a, "outcome": "fail", "observed_conditions": conds }]);

    // Two conditions on one item: two defects.
    let r = record(
        &srv,
        &inspector.token,
        &s1,
        fail(json!(["extinguisher_missing", "signage_missing"])),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let found = list_defects(&srv, &format!("session_id={s1}"), t).await;
    assert_eq!(found.len(), 2, "{found:?}");
    let missing = by_condition(&found, "extinguisher_missing");
    let signage = by_condition(&found, "signage_missing");
    assert_eq!(missing["severity"], "non_critical");
    assert_eq!(signage["severity"], "non_conformance");
    let (missing_id, signage_id) = (
        missing["id"].as_str().unwrap().to_owned(),
        signage["id"].as_str().unwrap().to_owned(),
    );

    // Found again by the next visit: reconfirmed, not duplicated.
    let r = record(
        &srv,
        &inspector.token,
        &s2,
        fail(json!(["extinguisher_missing"])),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let again = list_defects(&srv, &format!("session_id={s2}"), t).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0]["id"], missing_id.as_str());
    assert_eq!(
        list_defects(&srv, &format!("asset_id={a}&status=open"), t)
            .await
            .len(),
        2
    );
    let one = c.get(&format!("/v1/defects/{missing_id}"), Some(t)).await;
    let seen: Vec<&str> = one.json["sightings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["session_id"].as_str().unwrap())
        .collect();
    assert_eq!(seen, [s1.as_str(), s2.as_str()]);
    assert!(one.json["history"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["note"].as_str().is_some_and(|n| n.contains(&s2))));

    // Severity override: a reason is required; findings no longer change it.
    assert_problem(
        &patch_defect(&srv, &missing_id, json!({ "severity": "critical" }), t).await,
        422,
        "reason_required",
    );
    let raised = patch_defect(
        &srv,
        &missing_id,
        json!({ "severity": "critical", "reason": "the only extinguisher in the kitchen" }),
        &inspector.token,
    )
    .await;
    assert_eq!(raised.status, 200, "{}", raised.body);
    assert_eq!(raised.json["severity"], "critical");
    assert_eq!(raised.json["severity_overridden"], true);
    assert_eq!(
        raised.json["severity_reason"],
        "the only extinguisher in the kitchen"
    );
    let notify =
        chrono::DateTime::parse_from_rfc3339(raised.json["notify_by"].as_str().unwrap()).unwrap();
    assert!(notify <= chrono::Utc::now() + chrono::Duration::hours(24));
    let r = record(
        &srv,
        &inspector.token,
        &s2,
        fail(json!(["extinguisher_missing"])),
    )
    .await;
    assert_eq!(r.status, 200);
    let r = record(
        &srv,
        &inspector.token,
        &s2,
        json!([{ "asset_id": a, "outcome": "fail", "observed_conditions": ["extinguisher_missing"], "notes": "still gone" }]),
    )
    .await;
    assert_eq!(r.status, 200);
    let one = c.get(&format!("/v1/defects/{missing_id}"), Some(t)).await;
    assert_eq!(one.json["severity"], "critical", "the override stands");

    // Closed, then found again: reopened, linking the visit.
    for step in [
        "acknowledged",
        "repair_scheduled",
        "repaired",
        "verified",
        "closed",
    ] {
        let r = patch_defect(&srv, &signage_id, json!({ "status": step }), t).await;
        assert_eq!(r.status, 200, "{step}: {}", r.body);
    }
    let r = record(
        &srv,
        &inspector.token,
        &s2,
        fail(json!(["extinguisher_missing", "signage_missing"])),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let reopened = c.get(&format!("/v1/defects/{signage_id}"), Some(t)).await;
    assert_eq!(reopened.json["status"], "open");
    let last = reopened.json["history"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["from_status"], "closed");
    assert!(last["note"].as_str().unwrap().contains(&s2), "{last}");

    // Cancelled (with a reason) leaves identity: the next finding opens a new defect.
    assert_problem(
        &patch_defect(&srv, &signage_id, json!({ "status": "cancelled" }), t).await,
        422,
        "invalid_transition",
    );
    let cancelled = patch_defect(
        &srv,
        &signage_id,
        json!({ "status": "cancelled", "reason": "sign was behind the door" }),
        t,
    )
    .await;
    assert_eq!(cancelled.json["status"], "cancelled", "{}", cancelled.body);
    let s3 = session(&srv, &org.admin, &bld, &[inspector.id]).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = record(
        &srv,
        &inspector.token,
        &s3,
        fail(json!(["signage_missing"])),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let fresh = by_condition(
        &list_defects(&srv, &format!("session_id={s3}&status=open"), t).await,
        "signage_missing",
    );
    assert_ne!(fresh["id"], signage_id.as_str());
    // A duplicate names the defect it duplicates; reopening it would clash with the open one.
    let dup = patch_defect(
        &srv,
        &signage_id,
        json!({ "status": "open", "reason": "cancelled by mistake" }),
        t,
    )
    .await;
    assert_problem(&dup, 409, "defect_exists");
    let manual = c
        .post(
            "/v1/defects",
            Some(t),
            &json!({ "building_id": bld.id, "asset_id": a, "severity": "non_critical", "title": "No sign",
                     "rule_code": "AS1851-10-6M-EXT", "observed_condition": "signage_missing" }),
        )
        .await;
    assert_problem(&manual, 409, "defect_exists");
    let manual = c
        .post(
            "/v1/defects",
            Some(t),
            &json!({ "building_id": bld.id, "severity": "non_critical", "title": "Sign missing near lift" }),
        )
        .await;
    let manual_id = manual.str("id").to_owned();
    assert_problem(
        &patch_defect(
            &srv,
            &manual_id,
            json!({ "status": "duplicate", "reason": "same sign" }),
            t,
        )
        .await,
        422,
        "invalid_field",
    );
    let marked = patch_defect(
        &srv,
        &manual_id,
        json!({ "status": "duplicate", "reason": "same sign", "duplicate_of": fresh["id"] }),
        t,
    )
    .await;
    assert_eq!(marked.json["status"], "duplicate", "{}", marked.body);
    assert_eq!(marked.json["duplicate_of"], fresh["id"]);

    // Inspectors see the defects of their own sessions (and those tied to none) only.
    let theirs = list_defects(&srv, "", &stranger.token).await;
    assert!(
        theirs.iter().all(|d| d["session_id"].is_null()),
        "{theirs:?}"
    );
    assert_problem(
        &c.get(
            &format!("/v1/defects?session_id={s1}"),
            Some(&stranger.token),
        )
        .await,
        404,
        "not_found",
    );
    assert_problem(
        &c.get(&format!("/v1/defects/{missing_id}"), Some(&stranger.token))
            .await,
        404,
        "not_found",
    );
    assert!(list_defects(&srv, "", &inspector.token)
        .await
        .iter()
        .any(|d| d["id"] == missing_id.as_str()));
    // The report counts active defects only, by their (overridden) severity.
    let report = c
        .get(&format!("/v1/buildings/{}/compliance", bld.id), Some(t))
        .await;
    assert_eq!(report.status, 200, "{}", report.body);
    assert_eq!(
        report.json["summary"]["open_defects"],
        json!({ "critical": 1, "non_critical": 0, "non_conformance": 1 })
    );
    assert_eq!(report.json["status"], "critical_defect");
    let listed = report.json["defects"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(listed[0]["id"], missing_id.as_str(), "most severe first");
    assert_eq!(listed[0]["severity_overridden"], true);
    assert_eq!(
        listed[0]["severity_reason"],
        "the only extinguisher in the kitchen"
    );
    assert_eq!(listed[0]["identifier"], "EXT-0000");
}

/// PostgreSQL text cannot hold NUL. A tablet that writes one (REST refuses it at the door) must
/// not stop its session from projecting: the value is stored with U+FFFD and reported, and the
/// session's later results and defects keep coming; `/ready` and `/metrics` count failures.
async fn a_nul_from_a_tablet_is_reported_and_projection_goes_on(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let inspector = srv.user(&org, "inspector").await;
    let bld = building(&srv, &org, 2).await;
    let s = session(&srv, &org.admin, &bld, &[inspector.id]).await;
    let sid = s["id"].as_str().unwrap().to_owned();
    let doc_id = s["document_id"].as_str().unwrap().to_owned();
    let (a0, a1) = (bld.assets[0], bld.assets[1]);
    let (mut c, mut d, mut st) = tablet(&srv, &inspector, &doc_id).await;
    {
        let mut tx = d.transaction();
        let (_, items) = tx.get(ROOT, "items").unwrap().unwrap();
        let (_, item) = tx.get(&items, a0.to_string()).unwrap().unwrap();
        tx.put(&item, "outcome", "fail").unwrap();
        let list = tx
            .put_object(&item, "observedConditions", ObjType::List)
            .unwrap();
        tx.insert(&list, 0, "signage\0missing").unwrap();
        let (_, readings) = tx.get(&item, "readings").unwrap().unwrap();
        tx.put(&readings, "odd\0name", 1.0).unwrap();
        let (_, notes) = tx.get(&item, "notes").unwrap().unwrap();
        tx.splice_text(&notes, 0, 0, "behind\0the door").unwrap();
        tx.commit();
    }
    c.sync(&doc_id, &mut d, &mut st, false).await.unwrap();
    let t = org.admin.token.as_str();
    let row = projected(&srv, t, &sid, a0, "fail").await;
    assert_eq!(row["notes"], "behind\u{FFFD}the door");
    assert!(
        row["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["message"].as_str().unwrap().contains("NUL")),
        "{row}"
    );
    // The session keeps projecting: a later edit of another item arrives, and opens its defect.
    firemode_tests::fixtures::edit_item(&mut d, a1, &[("outcome", "fail")], &[]);
    c.sync(&doc_id, &mut d, &mut st, false).await.unwrap();
    projected(&srv, t, &sid, a1, "fail").await;
    let defects = srv
        .client
        .get(
            &format!("/v1/defects?session_id={sid}&asset_id={a1}"),
            Some(t),
        )
        .await;
    assert_eq!(
        defects.json["items"].as_array().unwrap().len(),
        1,
        "{}",
        defects.body
    );
    let ready = srv.client.get("/ready", None).await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert_eq!(ready.json["projection_failures"], 0, "{}", ready.body);
    let metrics = srv.client.get("/metrics", None).await;
    assert!(
        metrics
            .body
            .contains("firemode_projection_failures_total 0"),
        "{}",
        metrics.body
    );
}

/// The organisation decides a missing extinguisher is critical on its sites (a private rule
/// version): the next finding raises the open defect and its notification deadline becomes 24
/// hours from when it was found, never later than it was.
async fn a_finding_made_critical_shortens_its_deadline(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let inspector = srv.user(&org, "inspector").await;
    let bld = building(&srv, &org, 1).await;
    let a = bld.assets[0];
    let sid = session(&srv, &org.admin, &bld, &[inspector.id]).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let t = org.admin.token.as_str();
    let fail = |notes: &str| json!([{ "asset_id": a, "outcome": "fail", "observed_conditions": ["extinguisher_missing"], "notes": notes }]);
    assert_eq!(
        record(&srv, &inspector.token, &sid, fail("gone"))
            .await
            .status,
        200
    );
    let d = list_defects(&srv, &format!("session_id={sid}"), t).await[0].clone();
    assert_eq!(d["severity"], "non_critical");
    let found = chrono::DateTime::parse_from_rfc3339(d["discovered_at"].as_str().unwrap()).unwrap();
    let rule = json!({
        "code": "AS1851-10-6M-EXT", "version": "2012.2.1",
        "name": "Portable extinguisher six-monthly (one per space on our sites)",
        "description": "Our own words.", "standard": "AS 1851-2012", "section": "10",
        "clause": "Section 10", "equipment": "portable_extinguisher", "frequency": "six_monthly",
        "readings": [],
        "classification_mappings": { "serviceable": "compliant", "extinguisher_missing": "critical_defect" },
        "rationale": { "extinguisher_missing": "Every space on these sites has exactly one extinguisher." }
    });
    let posted = srv.client.post("/v1/rules", Some(t), &rule).await;
    assert_eq!(posted.status, 201, "{}", posted.body);
    assert_eq!(
        posted.json["rationale"]["extinguisher_missing"],
        rule["rationale"]["extinguisher_missing"]
    );
    assert_eq!(
        record(&srv, &inspector.token, &sid, fail("still gone"))
            .await
            .status,
        200
    );
    let d = srv
        .client
        .get(
            &format!("/v1/defects/{}", d["id"].as_str().unwrap()),
            Some(t),
        )
        .await;
    assert_eq!(d.json["severity"], "critical", "{}", d.body);
    let notify =
        chrono::DateTime::parse_from_rfc3339(d.json["notify_by"].as_str().unwrap()).unwrap();
    assert!(notify - found <= chrono::Duration::hours(25), "{}", d.body);
}
