//! Reference values (baselines, design and manufacturer values) per asset: set, read, history,
//! clear; unchanged values write nothing; roles; organisation and building scoping; the CSV
//! import (dry run, errors by row and column, all or nothing); bad input refused with 422
//! naming the field and nothing changed; the store interface the projection calls.

use chrono::Utc;
use firemode_server::store::baselines::{AssetValues, NewReferenceValue};
use firemode_tests::fixtures::{building, Building};
use firemode_tests::{assert_problem, backend_tests, Backend, Client, Org, Resp, TestServer};
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

backend_tests!(
    set_read_history_and_clear,
    unchanged_values_write_no_history,
    roles_decide_who_sets_what,
    other_organisations_and_buildings_answer_404,
    csv_import_dry_run_then_real,
    csv_import_errors_by_row_and_column_change_nothing,
    bad_input_is_refused_with_the_field_and_changes_nothing,
    store_interface_for_the_projection,
    concurrent_writes_leave_one_current_value,
    deleting_a_building_takes_its_reference_values,
    readings_are_compared_with_stored_baselines,
);

/// A server, an organisation and a building of it with `n` extinguishers (EXT-0000, ...).
async fn setup(b: Backend, n: usize) -> Option<(TestServer, Org, Building)> {
    let srv = TestServer::start(b).await?;
    let org = srv.org("Acme").await;
    let bld = building(&srv, &org, n).await;
    Some((srv, org, bld))
}

fn asset_url(b: &Building, i: usize) -> String {
    format!(
        "/v1/buildings/{}/assets/{}/reference-values",
        b.id, b.assets[i]
    )
}

async fn put(srv: &TestServer, token: &str, path: &str, body: &Value) -> Resp {
    Client::send(
        srv.client
            .request(Method::PUT, path, Some(token))
            .json(body),
    )
    .await
}

async fn put_ok(srv: &TestServer, token: &str, path: &str, body: Value) -> Resp {
    let r = put(srv, token, path, &json!({ "values": body })).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r
}

async fn get_ok(srv: &TestServer, token: &str, path: &str) -> Resp {
    let r = srv.client.get(path, Some(token)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r
}

fn import_url(b: &Building, dry_run: bool) -> String {
    format!(
        "/v1/buildings/{}/reference-values/import{}",
        b.id,
        if dry_run { "?dry_run=true" } else { "" }
    )
}

async fn import(srv: &TestServer, token: &str, b: &Building, dry_run: bool, csv: &str) -> Resp {
    srv.client
        .post_raw(
            &import_url(b, dry_run),
            Some(token),
            "text/csv",
            csv.as_bytes().to_vec(),
        )
        .await
}

/// (kind, key, value, unit, source, note) of each current value, in the answer's order.
fn summary(values: &Value) -> Vec<(String, String, f64, String, String, Value)> {
    values
        .as_array()
        .expect("values")
        .iter()
        .map(|v| {
            (
                v["kind"].as_str().unwrap().to_owned(),
                v["key"].as_str().unwrap().to_owned(),
                v["value"].as_f64().unwrap(),
                v["unit"].as_str().unwrap().to_owned(),
                v["source"].as_str().unwrap().to_owned(),
                v["note"].clone(),
            )
        })
        .collect()
}

/// (asset identifier, key, value) of every current value of the building, sorted.
async fn building_values(
    srv: &TestServer,
    token: &str,
    b: &Building,
) -> Vec<(String, String, f64)> {
    let all = get_ok(
        srv,
        token,
        &format!("/v1/buildings/{}/reference-values", b.id),
    )
    .await;
    let mut listed: Vec<(String, String, f64)> = all.json["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["asset_identifier"].as_str().unwrap().to_owned(),
                v["key"].as_str().unwrap().to_owned(),
                v["value"].as_f64().unwrap(),
            )
        })
        .collect();
    listed.sort_by(|a, b| a.partial_cmp(b).unwrap());
    listed
}

/// Every row ever written for the building's assets (current and superseded), straight from
/// the store.
async fn row_count(srv: &TestServer, org: &Org, b: &Building) -> usize {
    let mut n = 0;
    for a in &b.assets {
        n += srv
            .store()
            .reference_history(org.id, *a)
            .await
            .unwrap()
            .len();
    }
    n
}

async fn audits(srv: &TestServer, token: &str, action: &str) -> Vec<Value> {
    let r = get_ok(srv, token, "/v1/users/me/audits?limit=500").await;
    r.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] == action)
        .cloned()
        .collect()
}

async fn set_read_history_and_clear(b: Backend) {
    let Some((srv, org, bld)) = setup(b, 2).await else {
        return;
    };
    let t = &org.admin.token;
    let url = asset_url(&bld, 0);

    let empty = get_ok(&srv, t, &url).await;
    assert_eq!(empty.json["values"], json!([]));
    assert_eq!(empty.json["asset_identifier"], "EXT-0000");

    let r = put_ok(
        &srv,
        t,
        &url,
        json!([
            { "kind": "design", "key": "design_flow", "value": 1000, "unit": "L/min",
              "source": "design_document", "note": "hydraulic design, sheet 4" },
            { "kind": "baseline", "key": "churn_pressure", "value": 700.5, "unit": "kPa",
              "source": "commissioning", "note": null },
        ]),
    )
    .await;
    assert_eq!(r.json["changed"], 2);
    assert_eq!(r.json["asset_id"], bld.assets[0].to_string());
    assert_eq!(r.json["building_id"], bld.id.to_string());
    let expected = vec![
        (
            "baseline".to_owned(),
            "churn_pressure".to_owned(),
            700.5,
            "kPa".to_owned(),
            "commissioning".to_owned(),
            Value::Null,
        ),
        (
            "design".to_owned(),
            "design_flow".to_owned(),
            1000.0,
            "L/min".to_owned(),
            "design_document".to_owned(),
            json!("hydraulic design, sheet 4"),
        ),
    ];
    assert_eq!(summary(&r.json["values"]), expected);
    let first = &r.json["values"][0];
    assert_eq!(first["set_by"], org.admin.id.to_string());
    assert!(first["set_at"].as_str().is_some());
    assert!(
        first.get("superseded_at").is_none(),
        "current values have no superseded_at: {first}"
    );

    let read = get_ok(&srv, t, &url).await;
    assert_eq!(summary(&read.json["values"]), expected);
    assert!(
        read.json.get("history").is_none(),
        "history only on request"
    );
    // The other asset has none.
    let other = get_ok(&srv, t, &asset_url(&bld, 1)).await;
    assert_eq!(other.json["values"], json!([]));

    // A new value supersedes the old one.
    let r = put_ok(
        &srv,
        t,
        &url,
        json!([{ "kind": "baseline", "key": "churn_pressure", "value": 710, "unit": "kPa",
                 "source": "first_service" }]),
    )
    .await;
    assert_eq!(r.json["changed"], 1);
    let h = get_ok(&srv, t, &format!("{url}?history=true")).await;
    assert_eq!(h.json["values"].as_array().unwrap().len(), 2);
    assert_eq!(h.json["values"][0]["value"], 710.0);
    assert_eq!(h.json["values"][0]["source"], "first_service");
    let history = h.json["history"].as_array().unwrap();
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0]["key"], "churn_pressure");
    assert_eq!(history[0]["value"], 700.5);
    assert_eq!(history[0]["source"], "commissioning");
    assert!(history[0]["superseded_at"].as_str().is_some());

    // A clear supersedes without a replacement.
    let clear = json!([{ "kind": "design", "key": "design_flow", "value": null,
                         "source": "design_document" }]);
    let r = put_ok(&srv, t, &url, clear.clone()).await;
    assert_eq!(r.json["changed"], 1);
    let keys: Vec<&str> = r.json["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["churn_pressure"]);
    let h = get_ok(&srv, t, &format!("{url}?history=true")).await;
    let history = h.json["history"].as_array().unwrap();
    assert_eq!(history.len(), 2, "both superseded rows are kept");
    let mut superseded: Vec<&str> = history.iter().map(|v| v["key"].as_str().unwrap()).collect();
    superseded.sort_unstable();
    assert_eq!(superseded, ["churn_pressure", "design_flow"]);
    // Newest first.
    let times: Vec<&str> = history
        .iter()
        .map(|v| v["set_at"].as_str().unwrap())
        .collect();
    let parsed: Vec<chrono::DateTime<chrono::FixedOffset>> = times
        .iter()
        .map(|s| chrono::DateTime::parse_from_rfc3339(s).unwrap())
        .collect();
    assert!(parsed[0] >= parsed[1], "{times:?}");
    // Clearing what is not set changes nothing.
    let r = put_ok(&srv, t, &url, clear).await;
    assert_eq!(r.json["changed"], 0);
    assert_eq!(row_count(&srv, &org, &bld).await, 3);

    // The building lists every asset's current values with the asset's identifier.
    put_ok(
        &srv,
        t,
        &asset_url(&bld, 1),
        json!([{ "kind": "design", "key": "rated_pressure", "value": 1200, "unit": "kPa",
                 "source": "manufacturer" }]),
    )
    .await;
    assert_eq!(
        building_values(&srv, t, &bld).await,
        [
            ("EXT-0000".to_owned(), "churn_pressure".to_owned(), 710.0),
            ("EXT-0001".to_owned(), "rated_pressure".to_owned(), 1200.0),
        ]
    );
    let all = get_ok(
        &srv,
        t,
        &format!("/v1/buildings/{}/reference-values", bld.id),
    )
    .await;
    assert_eq!(all.json["building_id"], bld.id.to_string());
    assert_eq!(all.json["values"][0]["set_by"], org.admin.id.to_string());

    // Every change is audited with its old and new value.
    let rows = audits(&srv, t, "reference_values.set").await;
    assert_eq!(rows.len(), 4, "one per PUT that changed something");
    let superseding = rows
        .iter()
        .find(|a| {
            a["details"]["changes"][0]["key"] == "churn_pressure"
                && !a["details"]["changes"][0]["old"].is_null()
        })
        .expect("the audit of the superseding PUT");
    let change = &superseding["details"]["changes"][0];
    assert_eq!(change["old"]["value"], 700.5);
    assert_eq!(change["old"]["source"], "commissioning");
    assert_eq!(change["new"]["value"], 710.0);
    assert_eq!(change["asset_identifier"], "EXT-0000");
    assert_eq!(superseding["target_id"], bld.assets[0].to_string());
    let clearing = rows
        .iter()
        .find(|a| {
            a["details"]["changes"][0]["key"] == "design_flow"
                && a["details"]["changes"][0]["new"].is_null()
        })
        .expect("the audit of the clear");
    assert_eq!(clearing["details"]["changes"][0]["old"]["value"], 1000.0);
}

async fn unchanged_values_write_no_history(b: Backend) {
    let Some((srv, org, bld)) = setup(b, 1).await else {
        return;
    };
    let t = &org.admin.token;
    let url = asset_url(&bld, 0);
    let value = json!({ "kind": "baseline", "key": "water_supply_pressure", "value": 350.25,
                        "unit": "kPa", "source": "commissioning", "note": "gauge PG-1" });
    let r = put_ok(&srv, t, &url, json!([value.clone()])).await;
    assert_eq!(r.json["changed"], 1);
    let set_at = r.json["values"][0]["set_at"].clone();
    let id = r.json["values"][0]["id"].clone();

    // The same value again (with spaces around the unit, trimmed) writes nothing.
    let mut same = value.clone();
    same["unit"] = json!("  kPa ");
    let r = put_ok(&srv, t, &url, json!([same])).await;
    assert_eq!(r.json["changed"], 0);
    assert_eq!(r.json["values"][0]["id"], id, "still the same row");
    assert_eq!(r.json["values"][0]["set_at"], set_at);
    assert_eq!(row_count(&srv, &org, &bld).await, 1);
    let h = get_ok(&srv, t, &format!("{url}?history=true")).await;
    assert_eq!(h.json["history"], json!([]));
    assert_eq!(
        audits(&srv, t, "reference_values.set").await.len(),
        1,
        "nothing changed, nothing audited"
    );

    // Any difference (the note, the source, the unit) is a change.
    for (field, new) in [
        ("note", json!("gauge PG-2")),
        ("source", json!("first_service")),
        ("unit", json!("kpa")),
    ] {
        let mut changed = value.clone();
        changed[field] = new;
        let r = put_ok(&srv, t, &url, json!([changed])).await;
        assert_eq!(r.json["changed"], 1, "{field}");
    }
    assert_eq!(row_count(&srv, &org, &bld).await, 4);
}

async fn roles_decide_who_sets_what(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let office = srv.user(&org, "office").await;
    let inspector = srv.user(&org, "inspector").await;
    let auditor = srv.user(&org, "auditor").await;
    let bld = building(&srv, &org, 1).await;
    let url = asset_url(&bld, 0);
    let value = |key: &str, source: &str, v: f64| json!({ "kind": "baseline", "key": key, "value": v, "unit": "kPa", "source": source });

    // Office sets any source.
    put_ok(
        &srv,
        &office.token,
        &url,
        json!([value("churn_pressure", "commissioning", 700.0)]),
    )
    .await;
    // An auditor reads and changes nothing.
    let r = get_ok(&srv, &auditor.token, &url).await;
    assert_eq!(r.json["values"].as_array().unwrap().len(), 1);
    get_ok(
        &srv,
        &auditor.token,
        &format!("/v1/buildings/{}/reference-values", bld.id),
    )
    .await;
    let r = put(
        &srv,
        &auditor.token,
        &url,
        &json!({ "values": [value("flow", "first_service", 1.0)] }),
    )
    .await;
    assert_problem(&r, 403, "forbidden");
    let csv = "asset_identifier,kind,key,value,source\nEXT-0000,baseline,flow,1,first_service\n";
    assert_problem(
        &import(&srv, &auditor.token, &bld, true, csv).await,
        403,
        "forbidden",
    );
    assert_problem(
        &import(&srv, &auditor.token, &bld, false, csv).await,
        403,
        "forbidden",
    );

    // An inspector sets first_service values...
    let r = put_ok(
        &srv,
        &inspector.token,
        &url,
        json!([value("static_pressure", "first_service", 420.0)]),
    )
    .await;
    assert_eq!(r.json["changed"], 1);
    // ...but no other source, not even next to a first_service one...
    let r = put(
        &srv,
        &inspector.token,
        &url,
        &json!({ "values": [value("flow", "first_service", 1.0), value("rated", "manufacturer", 2.0)] }),
    )
    .await;
    assert_problem(&r, 403, "forbidden");
    assert!(
        r.json["detail"].as_str().unwrap().contains("first_service"),
        "{}",
        r.body
    );
    // ...and never over (or clearing) a value of another source.
    let r = put(
        &srv,
        &inspector.token,
        &url,
        &json!({ "values": [value("churn_pressure", "first_service", 690.0)] }),
    )
    .await;
    assert_problem(&r, 403, "forbidden");
    let r = put(
        &srv,
        &inspector.token,
        &url,
        &json!({ "values": [{ "kind": "baseline", "key": "churn_pressure", "value": null,
                              "source": "first_service" }] }),
    )
    .await;
    assert_problem(&r, 403, "forbidden");
    // The same through the import.
    let over = "asset_identifier,kind,key,value,unit,source\nEXT-0000,baseline,churn_pressure,690,kPa,first_service\n";
    assert_problem(
        &import(&srv, &inspector.token, &bld, true, over).await,
        403,
        "forbidden",
    );
    let other =
        "asset_identifier,kind,key,value,unit,source\nEXT-0000,design,rated,9,kPa,manufacturer\n";
    assert_problem(
        &import(&srv, &inspector.token, &bld, false, other).await,
        403,
        "forbidden",
    );
    // Nothing of that was written.
    let r = get_ok(&srv, &office.token, &url).await;
    assert_eq!(
        summary(&r.json["values"])
            .into_iter()
            .map(|v| (v.1, v.2, v.4))
            .collect::<Vec<_>>(),
        [
            (
                "churn_pressure".to_owned(),
                700.0,
                "commissioning".to_owned()
            ),
            (
                "static_pressure".to_owned(),
                420.0,
                "first_service".to_owned()
            ),
        ]
    );
    assert_eq!(row_count(&srv, &org, &bld).await, 2);

    // An inspector may change or clear their own first-service values, also by import.
    let mine = "asset_identifier,kind,key,value,unit,source\nEXT-0000,baseline,static_pressure,425,kPa,first_service\n";
    let r = import(&srv, &inspector.token, &bld, false, mine).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json["changes"].as_array().unwrap().len(), 1);
    let r = put_ok(
        &srv,
        &inspector.token,
        &url,
        json!([{ "kind": "baseline", "key": "static_pressure", "value": null,
                 "source": "first_service" }]),
    )
    .await;
    assert_eq!(r.json["changed"], 1);
    // Office replaces a first-service value with commissioning data.
    put_ok(
        &srv,
        &office.token,
        &url,
        json!([value("static_pressure", "commissioning", 430.0)]),
    )
    .await;
    assert_eq!(row_count(&srv, &org, &bld).await, 4);
}

async fn other_organisations_and_buildings_answer_404(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let rival = srv.org("Rival").await;
    let t = &org.admin.token;
    let mine = building(&srv, &org, 1).await;
    let next_door = building(&srv, &org, 1).await;
    let theirs = building(&srv, &rival, 1).await;
    put_ok(
        &srv,
        &rival.admin.token,
        &asset_url(&theirs, 0),
        json!([{ "kind": "baseline", "key": "churn_pressure", "value": 1, "source": "other" }]),
    )
    .await;
    let body = json!({ "values": [{ "kind": "baseline", "key": "churn_pressure", "value": 2,
                                    "source": "commissioning" }] });
    let missing = Uuid::now_v7();
    let csv = "asset_identifier,kind,key,value,source\nEXT-0000,baseline,churn_pressure,3,other\n";
    let asset_paths = [
        // Another organisation's building and asset.
        format!(
            "/v1/buildings/{}/assets/{}/reference-values",
            theirs.id, theirs.assets[0]
        ),
        // My building, their asset.
        format!(
            "/v1/buildings/{}/assets/{}/reference-values",
            mine.id, theirs.assets[0]
        ),
        // My building, an asset of my other building.
        format!(
            "/v1/buildings/{}/assets/{}/reference-values",
            mine.id, next_door.assets[0]
        ),
        // Missing ids.
        format!(
            "/v1/buildings/{}/assets/{missing}/reference-values",
            mine.id
        ),
        format!(
            "/v1/buildings/{missing}/assets/{}/reference-values",
            mine.assets[0]
        ),
    ];
    for path in &asset_paths {
        assert_problem(&srv.client.get(path, Some(t)).await, 404, "not_found");
        assert_problem(
            &srv.client
                .get(&format!("{path}?history=true"), Some(t))
                .await,
            404,
            "not_found",
        );
        assert_problem(&put(&srv, t, path, &body).await, 404, "not_found");
    }
    for id in [theirs.id, missing] {
        let list = format!("/v1/buildings/{id}/reference-values");
        assert_problem(&srv.client.get(&list, Some(t)).await, 404, "not_found");
        let r = srv
            .client
            .post_raw(
                &format!("{list}/import?dry_run=true"),
                Some(t),
                "text/csv",
                csv.into(),
            )
            .await;
        assert_problem(&r, 404, "not_found");
        let r = srv
            .client
            .post_raw(&format!("{list}/import"), Some(t), "text/csv", csv.into())
            .await;
        assert_problem(&r, 404, "not_found");
    }
    // The import finds assets by identifier in its own building only: both buildings have an
    // EXT-0000, and the one written is this building's.
    let r = import(&srv, t, &mine, false, csv).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json["changes"][0]["asset_id"], mine.assets[0].to_string());
    assert_eq!(row_count(&srv, &org, &next_door).await, 0);
    // Nothing of the rival's changed; the rival sees only its own value.
    let r = get_ok(&srv, &rival.admin.token, &asset_url(&theirs, 0)).await;
    assert_eq!(r.json["values"].as_array().unwrap().len(), 1);
    assert_eq!(r.json["values"][0]["value"], 1.0);
    assert_eq!(row_count(&srv, &rival, &theirs).await, 1);
    // The store's reads are scoped too.
    let cross = srv
        .store()
        .current_reference_values(org.id, &[theirs.assets[0], mine.assets[0]])
        .await
        .unwrap();
    assert_eq!(cross.len(), 1);
    assert_eq!(cross[0].asset_id, mine.assets[0]);
    assert!(srv
        .store()
        .reference_history(org.id, theirs.assets[0])
        .await
        .unwrap()
        .is_empty());
    assert!(srv
        .store()
        .building_reference_values(org.id, theirs.id)
        .await
        .unwrap()
        .is_empty());
}

async fn csv_import_dry_run_then_real(b: Backend) {
    let Some((srv, org, bld)) = setup(b, 3).await else {
        return;
    };
    let t = &org.admin.token;
    put_ok(
        &srv,
        t,
        &asset_url(&bld, 0),
        json!([
            { "kind": "baseline", "key": "churn_pressure", "value": 700, "unit": "kPa", "source": "commissioning" },
            { "kind": "design", "key": "design_flow", "value": 900, "unit": "L/min", "source": "design_document" },
        ]),
    )
    .await;
    let before = get_ok(
        &srv,
        t,
        &format!("/v1/buildings/{}/reference-values", bld.id),
    )
    .await;

    // Columns in another order, a byte-order mark, CRLF, a quoted note with a comma.
    let csv = "\u{feff}key,asset_identifier,kind,value,source,unit,note\r\n\
        churn_pressure,EXT-0000,baseline,700,commissioning,kPa,\r\n\
        design_flow,EXT-0000,design,,design_document,,\r\n\
        churn_pressure,EXT-0001,baseline,712.5,commissioning,kPa,\"pump P1, test 3\"\r\n\
        rated_pressure,EXT-0002,design,1.2e3,manufacturer,kPa,\r\n";
    let dry = import(&srv, t, &bld, true, csv).await;
    assert_eq!(dry.status, 200, "{}", dry.body);
    assert_eq!(dry.json["dry_run"], true);
    assert_eq!(dry.json["valid"], true);
    assert_eq!(dry.json["rows"], 4);
    assert_eq!(dry.json["errors"], json!([]));
    let unchanged = dry.json["unchanged"].as_array().unwrap();
    assert_eq!(unchanged.len(), 1);
    assert_eq!(unchanged[0]["row"], 2);
    assert_eq!(unchanged[0]["asset_identifier"], "EXT-0000");
    let changes = dry.json["changes"].as_array().unwrap();
    let rows: Vec<u64> = changes.iter().map(|c| c["row"].as_u64().unwrap()).collect();
    assert_eq!(rows, [3, 4, 5]);
    assert_eq!(
        changes[0]["old"]["value"], 900.0,
        "a clear shows what it clears"
    );
    assert!(changes[0]["new"].is_null());
    assert!(changes[1]["old"].is_null());
    assert_eq!(changes[1]["new"]["value"], 712.5);
    assert_eq!(changes[1]["new"]["note"], "pump P1, test 3");
    assert_eq!(changes[2]["new"]["value"], 1200.0);
    assert_eq!(changes[2]["asset_id"], bld.assets[2].to_string());
    // The dry run changed nothing and audited nothing.
    let after_dry = get_ok(
        &srv,
        t,
        &format!("/v1/buildings/{}/reference-values", bld.id),
    )
    .await;
    assert_eq!(after_dry.json, before.json);
    assert_eq!(row_count(&srv, &org, &bld).await, 2);
    assert!(audits(&srv, t, "reference_values.import").await.is_empty());

    let real = import(&srv, t, &bld, false, csv).await;
    assert_eq!(real.status, 200, "{}", real.body);
    assert_eq!(real.json["dry_run"], false);
    assert_eq!(real.json["changes"], dry.json["changes"], "as previewed");
    assert_eq!(real.json["unchanged"], dry.json["unchanged"]);
    assert_eq!(
        building_values(&srv, t, &bld).await,
        [
            ("EXT-0000".to_owned(), "churn_pressure".to_owned(), 700.0),
            ("EXT-0001".to_owned(), "churn_pressure".to_owned(), 712.5),
            ("EXT-0002".to_owned(), "rated_pressure".to_owned(), 1200.0),
        ]
    );
    // 2 before, 2 inserted; the clear only superseded.
    assert_eq!(row_count(&srv, &org, &bld).await, 4);
    let audited = audits(&srv, t, "reference_values.import").await;
    assert_eq!(audited.len(), 1);
    assert_eq!(audited[0]["details"]["changed"], 3);
    assert_eq!(audited[0]["target_id"], bld.id.to_string());
    let cleared = audited[0]["details"]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["key"] == "design_flow")
        .expect("the clear is audited");
    assert_eq!(cleared["old"]["value"], 900.0);
    assert!(cleared["new"].is_null());

    // The same file again changes nothing.
    let again = import(&srv, t, &bld, false, csv).await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.json["changes"], json!([]), "{}", again.body);
    assert_eq!(
        again.json["unchanged"].as_array().unwrap().len(),
        4,
        "a clear of nothing too"
    );
    assert_eq!(row_count(&srv, &org, &bld).await, 4);
    assert_eq!(audits(&srv, t, "reference_values.import").await.len(), 1);
}

async fn csv_import_errors_by_row_and_column_change_nothing(b: Backend) {
    let Some((srv, org, bld)) = setup(b, 2).await else {
        return;
    };
    let t = &org.admin.token;
    put_ok(
        &srv,
        t,
        &asset_url(&bld, 0),
        json!([{ "kind": "baseline", "key": "churn_pressure", "value": 700, "unit": "kPa",
                 "source": "commissioning" }]),
    )
    .await;
    let long_note = "n".repeat(2001);
    let csv = format!(
        "asset_identifier,kind,key,value,unit,source,note\n\
         EXT-0000,baseline,churn_pressure,705,kPa,commissioning,\n\
         EXT-9999,baseline,churn_pressure,1,kPa,commissioning,\n\
         EXT-0001,measured,churn_pressure,1,kPa,commissioning,\n\
         EXT-0001,baseline,churn_pressure,NaN,kPa,commissioning,\n\
         EXT-0001,baseline,Churn Pressure,1,kPa,commissioning,\n\
         EXT-0000,baseline,churn_pressure,706,kPa,commissioning,\n\
         EXT-0001,baseline,flow,1,kPa,guess,\n\
         EXT-0001,baseline,flow2,1,kPa,other,{long_note}\n\
         EXT-0001,baseline,flow3,1,k\u{0}Pa,other,\n\
         EXT-0001,baseline,flow4,12 kPa,kPa,other,\n\
         ,baseline,flow5,1,kPa,other,\n\
         EXT-0001,baseline,flow6,1,kPa\n"
    );
    let expected = [
        (3, Some("asset_identifier")),
        (4, Some("kind")),
        (5, Some("value")),
        (6, Some("key")),
        (7, Some("key")),
        (8, Some("source")),
        (9, Some("note")),
        (10, Some("unit")),
        (11, Some("value")),
        (12, Some("asset_identifier")),
        (13, None),
    ];
    let found = |errors: &Value| -> Vec<(u64, Option<String>)> {
        errors
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{e}");
                (
                    e["row"].as_u64().unwrap(),
                    e["field"].as_str().map(str::to_owned),
                )
            })
            .collect()
    };
    let want: Vec<(u64, Option<String>)> = expected
        .iter()
        .map(|(r, f)| (*r, f.map(str::to_owned)))
        .collect();

    let dry = import(&srv, t, &bld, true, &csv).await;
    assert_eq!(dry.status, 200, "{}", dry.body);
    assert_eq!(dry.json["valid"], false);
    assert_eq!(found(&dry.json["errors"]), want, "{}", dry.body);
    assert_eq!(
        dry.json["changes"].as_array().unwrap().len(),
        1,
        "row 2 would change"
    );

    let real = import(&srv, t, &bld, false, &csv).await;
    assert_problem(&real, 422, "invalid_csv");
    assert_eq!(found(&real.json["errors"]), want, "{}", real.body);
    // All or nothing: row 2 was valid, and was not written either.
    let r = get_ok(&srv, t, &asset_url(&bld, 0)).await;
    assert_eq!(r.json["values"][0]["value"], 700.0);
    assert_eq!(row_count(&srv, &org, &bld).await, 1);
    assert!(audits(&srv, t, "reference_values.import").await.is_empty());

    // The header is checked first: a required column missing, an unknown one.
    let r = import(
        &srv,
        t,
        &bld,
        true,
        "asset_identifier,kind,key,source,colour\nEXT-0000,baseline,k,other,red\n",
    )
    .await;
    assert_problem(&r, 422, "invalid_csv");
    let header: Vec<(u64, Option<String>)> = found(&r.json["errors"]);
    assert!(header.contains(&(1, Some("value".into()))), "{}", r.body);
    assert!(header.contains(&(1, Some("colour".into()))), "{}", r.body);
    // Shared limits of the CSV uploads: the content type, an empty file, no rows.
    let r = srv
        .client
        .post_raw(
            &import_url(&bld, false),
            Some(t),
            "application/json",
            b"{}".to_vec(),
        )
        .await;
    assert_problem(&r, 415, "unsupported_media_type");
    assert_problem(&import(&srv, t, &bld, false, "").await, 422, "invalid_csv");
    assert_problem(
        &import(
            &srv,
            t,
            &bld,
            false,
            "asset_identifier,kind,key,value,source\n",
        )
        .await,
        422,
        "invalid_csv",
    );
    assert_eq!(row_count(&srv, &org, &bld).await, 1);
}

async fn bad_input_is_refused_with_the_field_and_changes_nothing(b: Backend) {
    let Some((srv, org, bld)) = setup(b, 1).await else {
        return;
    };
    let t = &org.admin.token;
    let url = asset_url(&bld, 0);
    let good = json!({ "kind": "baseline", "key": "churn_pressure", "value": 700,
                       "unit": "kPa", "source": "commissioning", "note": "ok" });
    put_ok(&srv, t, &url, json!([good.clone()])).await;
    let before = get_ok(&srv, t, &format!("{url}?history=true")).await;

    let with = |field: &str, v: Value| {
        let mut e = good.clone();
        e[field] = v;
        e
    };
    let without = |field: &str| {
        let mut e = good.clone();
        e.as_object_mut().unwrap().remove(field);
        e
    };
    let second = with("key", json!("flow"));
    // One field of one value changed (or left out): the problem names exactly that field.
    let one_field: Vec<(&str, Option<Value>)> = vec![
        ("kind", Some(json!("measured"))),
        ("kind", Some(json!(1))),
        ("kind", None),
        ("source", Some(json!("guess"))),
        ("source", Some(json!(null))),
        ("key", Some(json!("Churn Pressure"))),
        ("key", Some(json!(""))),
        ("key", Some(json!("k".repeat(101)))),
        ("value", Some(json!("700"))),
        ("value", Some(json!("NaN"))),
        ("value", Some(json!([1]))),
        ("value", None),
        ("unit", Some(json!("u".repeat(51)))),
        ("unit", Some(json!("kPa\n"))),
        ("unit", Some(json!(5))),
        ("note", Some(json!("n".repeat(2001)))),
        ("note", Some(json!("bell\u{7}"))),
        ("colour", Some(json!("red"))),
    ];
    let mut cases: Vec<(Value, String)> = one_field
        .into_iter()
        .map(|(field, v)| {
            let entry = match v {
                Some(v) => with(field, v),
                None => without(field),
            };
            (json!({ "values": [entry] }), format!("values[0].{field}"))
        })
        .collect();
    let whole: Vec<(Value, &str)> = vec![
        (
            json!({ "values": [second.clone(), with("kind", json!("x"))] }),
            "values[1].kind",
        ),
        (
            json!({ "values": [good.clone(), with("value", json!(1))] }),
            "values[1].key",
        ),
        (json!({ "values": [] }), "values"),
        (json!({ "values": vec![second.clone(); 201] }), "values"),
        (json!({ "values": good.clone() }), "values"),
        (json!({}), "values"),
        (json!({ "values": [second.clone()], "extra": 1 }), "extra"),
        (json!({ "values": ["churn_pressure"] }), "values[0]"),
        (json!([good.clone()]), "body"),
    ];
    cases.extend(whole.into_iter().map(|(b, f)| (b, f.to_owned())));
    for (body, field) in &cases {
        let r = put(&srv, t, &url, body).await;
        assert_problem(&r, 422, "invalid_field");
        let detail = r.json["detail"].as_str().unwrap();
        assert!(
            detail.starts_with(&format!("{field}:")),
            "{field}: the detail names the field: {detail}"
        );
        assert_eq!(r.json["errors"][0]["field"], field.as_str(), "{}", r.body);
    }
    // NUL in any text is refused before the handler (the server's text rule), naming the field.
    for field in ["kind", "key", "unit", "source", "note"] {
        let body = json!({ "values": [second.clone(), with(field, json!("a\u{0}b"))] });
        let r = put(&srv, t, &url, &body).await;
        assert_problem(&r, 422, "invalid_text");
        let detail = r.json["detail"].as_str().unwrap();
        assert!(
            detail.starts_with(&format!("values[1].{field}:")),
            "{detail}"
        );
    }
    // Several problems are all listed.
    let r = put(
        &srv,
        t,
        &url,
        &json!({ "values": [{ "kind": "x", "key": "Y", "value": "z", "source": "w", "unit": 1 }] }),
    )
    .await;
    assert_problem(&r, 422, "invalid_field");
    let mut fields: Vec<&str> = r.json["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        ["values[0].unit", "values[0].value"],
        "shape problems first: {}",
        r.body
    );
    // Malformed JSON is a 400, the wrong content type a 415.
    let raw = srv
        .client
        .request(Method::PUT, &url, Some(t))
        .header("content-type", "application/json")
        .body("{\"values\": [");
    assert_problem(&Client::send(raw).await, 400, "malformed_json");
    let raw = srv
        .client
        .request(Method::PUT, &url, Some(t))
        .header("content-type", "text/plain")
        .body("{}");
    assert_problem(&Client::send(raw).await, 415, "unsupported_media_type");

    // Nothing changed: the same current value and history, one row.
    let after = get_ok(&srv, t, &format!("{url}?history=true")).await;
    assert_eq!(after.json, before.json);
    assert_eq!(row_count(&srv, &org, &bld).await, 1);
    assert_eq!(audits(&srv, t, "reference_values.set").await.len(), 1);
}

async fn store_interface_for_the_projection(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Acme").await;
    // More assets than one IN list holds: the read is chunked, not one query per asset.
    let bld = building(&srv, &org, 620).await;
    let store = srv.store();
    let at = Utc::now();
    let value = |key: &str, v: Option<f64>| NewReferenceValue {
        kind: "baseline".into(),
        key: key.into(),
        value: v,
        unit: "kPa".into(),
        source: "commissioning".into(),
        note: None,
    };
    let batch: Vec<AssetValues> = bld
        .assets
        .iter()
        .enumerate()
        .map(|(i, a)| AssetValues {
            asset_id: *a,
            values: vec![value("churn_pressure", Some(i as f64))],
        })
        .collect();
    let changes = store
        .apply_reference_values(org.id, bld.id, &batch, org.admin.id, at, None)
        .await
        .unwrap();
    assert_eq!(changes.len(), 620);
    let current = store
        .current_reference_values(org.id, &bld.assets)
        .await
        .unwrap();
    assert_eq!(current.len(), 620);
    assert!(
        current.windows(2).all(|w| w[0].asset_id < w[1].asset_id),
        "by asset"
    );
    for r in &current {
        let i = bld.assets.iter().position(|a| *a == r.asset_id).unwrap();
        assert_eq!(r.value, i as f64);
        assert_eq!(r.set_by, Some(org.admin.id));
        assert_eq!(r.building_id, bld.id);
        assert_eq!(r.org_id, org.id);
    }
    assert_eq!(
        store
            .building_reference_values(org.id, bld.id)
            .await
            .unwrap()
            .len(),
        620
    );
    assert!(store
        .current_reference_values(org.id, &[])
        .await
        .unwrap()
        .is_empty());

    // set_reference_values: the rows now current for the keys touched.
    let a = bld.assets[7];
    let later = at + chrono::Duration::seconds(5);
    let now = store
        .set_reference_values(
            org.id,
            bld.id,
            a,
            &[value("churn_pressure", Some(7.0)), value("flow", Some(3.5))],
            org.admin.id,
            later,
        )
        .await
        .unwrap();
    assert_eq!(now.len(), 2);
    let churn = now.iter().find(|r| r.key == "churn_pressure").unwrap();
    assert_eq!(churn.value, 7.0);
    assert_eq!(
        churn.set_at.timestamp_millis(),
        at.timestamp_millis(),
        "unchanged: still the first row"
    );
    let history = store.reference_history(org.id, a).await.unwrap();
    assert_eq!(history.len(), 2, "the unchanged value wrote nothing");
    // A change and a clear, later still.
    let latest = later + chrono::Duration::seconds(5);
    let now = store
        .set_reference_values(
            org.id,
            bld.id,
            a,
            &[value("churn_pressure", Some(8.0)), value("flow", None)],
            org.admin.id,
            latest,
        )
        .await
        .unwrap();
    assert_eq!(now.len(), 1, "a cleared key has no current row");
    assert_eq!(now[0].value, 8.0);
    let history = store.reference_history(org.id, a).await.unwrap();
    assert_eq!(history.len(), 3);
    assert_eq!(history[0].value, 8.0, "newest first");
    assert!(history[0].superseded_at.is_none());
    assert!(history.iter().skip(1).all(|r| r.superseded_at.is_some()));
    assert!(history.windows(2).all(|w| w[0].set_at >= w[1].set_at));
    // An asset of another building: NotFound, nothing written.
    let other = building(&srv, &org, 1).await;
    let e = store
        .set_reference_values(
            org.id,
            bld.id,
            other.assets[0],
            &[value("flow", Some(1.0))],
            org.admin.id,
            latest,
        )
        .await;
    assert!(
        matches!(e, Err(firemode_server::store::StoreError::NotFound)),
        "{e:?}"
    );
    // All or nothing across assets: a batch with a foreign asset writes nothing.
    let mixed = [
        AssetValues {
            asset_id: bld.assets[0],
            values: vec![value("flow", Some(1.0))],
        },
        AssetValues {
            asset_id: other.assets[0],
            values: vec![value("flow", Some(1.0))],
        },
    ];
    assert!(store
        .apply_reference_values(org.id, bld.id, &mixed, org.admin.id, latest, None)
        .await
        .is_err());
    assert_eq!(
        store
            .reference_history(org.id, bld.assets[0])
            .await
            .unwrap()
            .len(),
        1
    );
    // An inspector's guard: a value of another source is not superseded.
    let mut first_service = value("churn_pressure", Some(9.0));
    first_service.source = "first_service".into();
    let e = store
        .apply_reference_values(
            org.id,
            bld.id,
            &[AssetValues {
                asset_id: a,
                values: vec![first_service],
            }],
            org.admin.id,
            latest,
            Some("first_service"),
        )
        .await;
    assert!(
        matches!(
            e,
            Err(firemode_server::store::StoreError::Conflict(
                "reference_source"
            ))
        ),
        "{e:?}"
    );
    assert_eq!(store.reference_history(org.id, a).await.unwrap().len(), 3);
}

async fn concurrent_writes_leave_one_current_value(b: Backend) {
    let Some((srv, org, bld)) = setup(b, 1).await else {
        return;
    };
    let url = asset_url(&bld, 0);
    // Twelve writers at once on one key that has no value yet, then on one that has: each
    // either wins (200) or is told another write came first (409, nothing written).
    for round in 0..2 {
        let writes = (0..12).map(|i| {
            let (srv, url, t) = (&srv, &url, &org.admin.token);
            async move {
                let v = json!({ "values": [{ "kind": "baseline", "key": "churn_pressure",
                    "value": round * 100 + i, "unit": "kPa", "source": "commissioning" }] });
                put(srv, t, url, &v).await
            }
        });
        let answers = futures_util::future::join_all(writes).await;
        for r in &answers {
            assert!(r.status == 200 || r.status == 409, "{}", r.body);
            if r.status == 409 {
                assert_problem(r, 409, "concurrent_update");
            }
        }
        assert!(answers.iter().any(|r| r.status == 200));
    }
    let history = srv
        .store()
        .reference_history(org.id, bld.assets[0])
        .await
        .unwrap();
    let current: Vec<_> = history
        .iter()
        .filter(|r| r.superseded_at.is_none())
        .collect();
    assert_eq!(current.len(), 1, "one current value: {history:?}");
    assert!(
        history
            .iter()
            .all(|r| r.superseded_at.is_none_or(|s| s >= r.set_at)),
        "times never run backwards: {history:?}"
    );
    assert_eq!(
        current[0].id, history[0].id,
        "the newest row is the current one"
    );
    let audited = audits(&srv, &org.admin.token, "reference_values.set").await;
    assert_eq!(audited.len(), history.len(), "one row per successful write");
}

async fn deleting_a_building_takes_its_reference_values(b: Backend) {
    let Some((srv, org, bld)) = setup(b, 1).await else {
        return;
    };
    let t = &org.admin.token;
    let url = asset_url(&bld, 0);
    put_ok(
        &srv,
        t,
        &url,
        json!([{ "kind": "baseline", "key": "churn_pressure", "value": 1, "source": "other" }]),
    )
    .await;
    put_ok(
        &srv,
        t,
        &url,
        json!([{ "kind": "baseline", "key": "churn_pressure", "value": 2, "source": "other" }]),
    )
    .await;
    let r = srv
        .client
        .delete(&format!("/v1/buildings/{}", bld.id), Some(t))
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert_problem(&srv.client.get(&url, Some(t)).await, 404, "not_found");
    assert_eq!(row_count(&srv, &org, &bld).await, 0);
}

async fn readings_are_compared_with_stored_baselines(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let t = &org.admin.token;
    let c = &srv.client;
    let r = c
        .post(
            "/v1/buildings",
            Some(t),
            &json!({ "name": "Sprinkler House", "address": "2 Valve St, Perth WA",
                     "building_type": "Class 5" }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let building = r.uuid("id");
    let mut assets = Vec::new();
    for n in 0..2 {
        let r = c
            .post(
                &format!("/v1/buildings/{building}/assets"),
                Some(t),
                &json!({ "asset_type": "sprinkler_system", "location": format!("Valve room {n}"),
                         "identifier": format!("SPR-{n}"), "rule_codes": ["AS1851-2-1M-SPR"] }),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        assets.push(r.uuid("id"));
    }
    // Baselines for the first installation only.
    let csv = "asset_identifier,kind,key,value,unit,source\n\
        SPR-0,baseline,water_supply_pressure,500,kPa,commissioning\n\
        SPR-0,baseline,installation_pressure,700,kPa,commissioning\n";
    let r = c
        .post_raw(
            &format!("/v1/buildings/{building}/reference-values/import"),
            Some(t),
            "text/csv",
            csv.into(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let s = c
        .post(
            "/v1/tests/sessions",
            Some(t),
            &json!({ "building_id": building, "name": "March monthly", "frequency": "monthly" }),
        )
        .await;
    assert_eq!(s.status, 201, "{}", s.body);
    let sid = s.str("id").to_owned();
    let readings = json!({ "water_supply_pressure": 480, "installation_pressure": 700 });
    let body: Vec<Value> = assets
        .iter()
        .map(|a| json!({ "asset_id": a, "outcome": "pass", "readings": readings }))
        .collect();
    let r = Client::send(
        c.request(
            Method::POST,
            &format!("/v1/tests/sessions/{sid}/results"),
            Some(t),
        )
        .header("idempotency-key", Uuid::new_v4().to_string())
        .json(&json!({ "results": body })),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let res = get_ok(&srv, t, &format!("/v1/tests/sessions/{sid}/results")).await;
    let row = |a: Uuid| {
        res.json["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["asset_id"] == a.to_string())
            .cloned()
            .expect("the asset's result")
    };
    let findings = |row: &Value| -> Vec<String> {
        row["assessment"]["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|f| f["condition"].as_str().map(str::to_owned))
            .collect()
    };
    // Compared with the stored baselines (480 kPa is within 10 % below 500).
    let with = row(assets[0]);
    for reading in ["water_supply_pressure", "installation_pressure"] {
        assert_eq!(
            with["assessment"]["readings"][reading]["verdict"], "within",
            "{reading}: {with}"
        );
    }
    assert!(
        !findings(&with).contains(&"baseline_data_missing".to_owned()),
        "{with}"
    );
    // Without baselines: not evaluated against anything, and the missing data is a finding.
    let without = row(assets[1]);
    assert_eq!(
        without["assessment"]["readings"]["water_supply_pressure"]["verdict"], "no_baseline",
        "{without}"
    );
    assert!(
        findings(&without).contains(&"baseline_data_missing".to_owned()),
        "{without}"
    );
    let missing = get_ok(
        &srv,
        t,
        &format!("/v1/defects?session_id={sid}&asset_id={}", assets[1]),
    )
    .await;
    let missing = missing.json["items"][0].clone();
    assert_eq!(
        missing["observed_condition"], "baseline_data_missing",
        "{missing}"
    );
    assert_eq!(missing["severity"], "non_conformance");

    // Recording the baselines re-evaluates the open session at once: the readings are now
    // compared (one outside: 400 kPa is more than 10 % below 500), the missing-data finding is
    // gone and its defect withdrawn, and the outcome now overrides what the readings suggest.
    let r = put_ok(
        &srv,
        t,
        &format!("/v1/buildings/{building}/assets/{}/reference-values", assets[1]),
        json!([
            { "kind": "baseline", "key": "water_supply_pressure", "value": 600, "unit": "kPa", "source": "first_service" },
            { "kind": "baseline", "key": "installation_pressure", "value": 700, "unit": "kPa", "source": "first_service" }
        ]),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let res = get_ok(&srv, t, &format!("/v1/tests/sessions/{sid}/results")).await;
    let now = res.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["asset_id"] == assets[1].to_string())
        .cloned()
        .unwrap();
    assert_eq!(
        now["assessment"]["readings"]["water_supply_pressure"]["verdict"], "outside",
        "{now}"
    );
    assert_eq!(
        now["assessment"]["readings"]["water_supply_pressure"]["reference"],
        600.0
    );
    assert_eq!(
        now["assessment"]["readings"]["installation_pressure"]["verdict"],
        "within"
    );
    assert_eq!(now["assessment"]["suggested_outcome"], "fail");
    assert_eq!(now["assessment"]["overrides_suggestion"], true);
    assert!(
        !findings(&now).contains(&"baseline_data_missing".to_owned()),
        "{now}"
    );
    let gone = get_ok(
        &srv,
        t,
        &format!("/v1/defects/{}", missing["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(gone.json["status"], "withdrawn", "{}", gone.body);
}
