//! Onboarding a site's history (issue 11, part 3): the asset CSV import with install and
//! manufacture dates, schedule anchors and each routine's last service; re-import as an upsert
//! by identifier with a dry-run preview; per-row errors; the service-history endpoint; the
//! compliance report and the schedule counting what was imported.

use chrono::{Months, NaiveDate, Utc};
use firemode_server::store::buildings::AssetRecord;
use firemode_server::store::schedule::HistoryRecord;
use firemode_server::store::StoreError;
use firemode_tests::fixtures::{self, Building};
use firemode_tests::{assert_problem, backend_tests, Backend, Client, Org, Resp, TestServer};
use serde_json::{json, Value};
use uuid::Uuid;

backend_tests!(
    imported_history_keeps_a_six_monthly_building_on_its_grid,
    reimport_updates_in_place_and_a_dry_run_changes_nothing,
    bad_rows_name_row_and_column_and_write_nothing,
    service_history_endpoint_counts_in_the_report,
    the_store_writes_an_import_all_or_nothing,
);

fn import_url(b: Uuid, dry_run: bool) -> String {
    let q = if dry_run { "?dry_run=true" } else { "" };
    format!("/v1/buildings/{b}/assets/import{q}")
}

async fn import(srv: &TestServer, token: &str, b: Uuid, csv: &str, dry_run: bool) -> Resp {
    srv.client
        .post_raw(
            &import_url(b, dry_run),
            Some(token),
            "text/csv",
            csv.as_bytes().to_vec(),
        )
        .await
}

async fn new_building(srv: &TestServer, token: &str, name: &str) -> Uuid {
    let r = srv
        .client
        .post(
            "/v1/buildings",
            Some(token),
            &json!({ "name": name, "address": "1 Test St, Sydney NSW", "building_type": "office" }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.uuid("id")
}

/// Every asset of the building, by identifier.
async fn assets(srv: &TestServer, token: &str, b: Uuid) -> Vec<Value> {
    let r = srv
        .client
        .get(&format!("/v1/buildings/{b}/assets?limit=500"), Some(token))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let mut items = r.json["items"].as_array().unwrap().clone();
    items.sort_by_key(|a| a["identifier"].as_str().unwrap_or("").to_owned());
    items
}

async fn history(srv: &TestServer, token: &str, b: Uuid, asset: &str) -> Resp {
    srv.client
        .get(
            &format!("/v1/buildings/{b}/assets/{asset}/service-history"),
            Some(token),
        )
        .await
}

fn months_before(d: NaiveDate, m: u32) -> NaiveDate {
    d.checked_sub_months(Months::new(m)).unwrap()
}

fn months_after(d: NaiveDate, m: u32) -> NaiveDate {
    d.checked_add_months(Months::new(m)).unwrap()
}

/// The scenario: seven assets imported with their last services (yearly routine a
/// year ago, six-monthly six months ago), then serviced six-monthly today. Nothing is overdue,
/// in the report or the schedule, and the next due dates are on the grid the imported services
/// set: six-monthly a year and a half after the yearly service, yearly a year after it.
async fn imported_history_keeps_a_six_monthly_building_on_its_grid(be: Backend) {
    let Some(srv) = TestServer::start(be).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let t = org.admin.token.as_str();
    let b = new_building(&srv, t, "Onboarded House").await;
    let today = Utc::now().date_naive();
    let d0 = months_before(today, 12);
    let d1 = months_after(d0, 6);
    // (identifier, kind, six-monthly rule, yearly rule or none)
    let kinds = [
        (
            "EXT-1",
            "portable_extinguisher",
            "AS1851-10-6M-EXT",
            Some("AS1851-10-12M-EXT"),
        ),
        (
            "EXT-2",
            "portable_extinguisher",
            "AS1851-10-6M-EXT",
            Some("AS1851-10-12M-EXT"),
        ),
        (
            "HR-1",
            "fire_hose_reel",
            "AS1851-9-6M-HR",
            Some("AS1851-9-12M-HR"),
        ),
        ("FD-1", "fire_door", "AS1851-12-6M-FD", None),
        (
            "EL-1",
            "emergency_lighting",
            "AS2293-6M-EL",
            Some("AS2293-12M-EL"),
        ),
        (
            "EXIT-1",
            "exit_sign",
            "AS2293-6M-EXIT",
            Some("AS2293-12M-EXIT"),
        ),
        ("FB-1", "fire_blanket", "AS1851-11-6M-BLK", None),
    ];
    let mut csv = String::from(
        "identifier,asset_type,location,install_date,manufacture_date,rule_codes,last_services\n",
    );
    for (id, kind, six, yearly) in kinds {
        let (codes, last) = match yearly {
            Some(y) => (format!("{six};{y}"), format!("{six}={d1};{y}={d0}")),
            None => (six.to_owned(), format!("{six}={d1}")),
        };
        csv.push_str(&format!(
            "{id},{kind},Level 1,2019-03-01,2018-11-20,{codes},{last}\n"
        ));
    }
    let r = import(&srv, t, b, &csv, false).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json["imported"], 7);
    assert_eq!(
        r.json["history_added"], 12,
        "five assets with two, two with one"
    );
    let listed = assets(&srv, t, b).await;
    assert!(listed
        .iter()
        .all(|a| a["install_date"] == "2019-03-01" && a["manufacture_date"] == "2018-11-20"));
    let ext = listed.iter().find(|a| a["identifier"] == "EXT-1").unwrap();
    let h = history(&srv, t, b, ext["id"].as_str().unwrap()).await;
    assert_eq!(h.status, 200, "{}", h.body);
    let rows: Vec<(String, String, String, String)> = h.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let s = |k: &str| i[k].as_str().unwrap().to_owned();
            (s("rule_code"), s("serviced_on"), s("outcome"), s("source"))
        })
        .collect();
    assert_eq!(
        rows,
        [
            (
                "AS1851-10-6M-EXT".into(),
                d1.to_string(),
                "pass".into(),
                "import".into()
            ),
            (
                "AS1851-10-12M-EXT".into(),
                d0.to_string(),
                "pass".into(),
                "import".into()
            ),
        ],
        "newest first"
    );

    // Serviced six-monthly today: every asset passes.
    let fixture = Building {
        id: b,
        assets: listed
            .iter()
            .map(|a| a["id"].as_str().unwrap().parse().unwrap())
            .collect(),
    };
    let s = fixtures::session(&srv, &org.admin, &fixture, &[]).await;
    let sid = s["id"].as_str().unwrap();
    let results: Vec<Value> = fixture
        .assets
        .iter()
        .map(|a| json!({ "asset_id": a, "outcome": "pass" }))
        .collect();
    let rec = Client::send(
        srv.client
            .request(
                reqwest::Method::POST,
                &format!("/v1/tests/sessions/{sid}/results"),
                Some(t),
            )
            .header("idempotency-key", Uuid::new_v4().to_string())
            .json(&json!({ "results": results })),
    )
    .await;
    assert_eq!(rec.status, 200, "{}", rec.body);

    let report = srv
        .client
        .get(&format!("/v1/buildings/{b}/compliance"), Some(t))
        .await;
    assert_eq!(report.status, 200, "{}", report.body);
    assert_eq!(report.json["status"], "compliant", "{}", report.body);
    let items = report.json["items"].as_array().unwrap();
    assert_eq!(items.len(), 12, "one row per asset and routine");
    for i in items {
        assert_eq!(i["overdue"], false, "{i}");
        let code = i["rule_code"].as_str().unwrap();
        let next = i["next_due"].as_str().unwrap();
        if code.contains("-12M-") {
            assert_eq!(next, months_after(d0, 12).to_string(), "{i}");
            assert_eq!(i["anchor"], d0.to_string(), "{i}");
        } else {
            assert_eq!(next, months_after(d0, 18).to_string(), "{i}");
            assert_eq!(i["outcome"], "pass");
        }
    }

    let sched = srv
        .client
        .get(&format!("/v1/schedule?building_id={b}"), Some(t))
        .await;
    assert_eq!(sched.status, 200, "{}", sched.body);
    assert_eq!(sched.json["overdue"], 0, "{}", sched.body);
    let due = sched.json["items"].as_array().unwrap();
    assert!(!due.is_empty(), "the yearly routines are due now");
    for i in due {
        assert_eq!(i["overdue"], false, "{i}");
        assert_eq!(i["next_due"], months_after(d0, 12).to_string(), "{i}");
    }
}

/// Re-importing the same identifiers updates those assets in place (ids kept, a session's
/// results still there); empty cells leave fields alone; a row without identifier creates; a
/// dry run previews create/update/unchanged and history and writes nothing.
async fn reimport_updates_in_place_and_a_dry_run_changes_nothing(be: Backend) {
    let Some(srv) = TestServer::start(be).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let office = srv.user(&org, "office").await;
    let t = office.token.as_str();
    let b = new_building(&srv, t, "Upsert Court").await;
    let first = "asset_type,location,identifier,install_date,rule_codes\n\
        portable_extinguisher,Lobby,EXT-1,2020-01-31,AS1851-10-6M-EXT\n\
        fire_hose_reel,Stair A,HR-1,,\n\
        fire_blanket,Kitchen,FB-1,2021-05-05,\n";
    let r = import(&srv, t, b, first, false).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let before = assets(&srv, t, b).await;
    let id_of = |list: &[Value], ident: &str| -> String {
        list.iter()
            .find(|a| a["identifier"] == ident)
            .unwrap_or_else(|| panic!("{ident} in {list:?}"))["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    // A session with a result for EXT-1.
    let fixture = Building {
        id: b,
        assets: vec![id_of(&before, "EXT-1").parse().unwrap()],
    };
    let s = fixtures::session(&srv, &org.admin, &fixture, &[]).await;
    let sid = s["id"].as_str().unwrap().to_owned();
    let rec = Client::send(
        srv.client
            .request(
                reqwest::Method::POST,
                &format!("/v1/tests/sessions/{sid}/results"),
                Some(t),
            )
            .header("idempotency-key", Uuid::new_v4().to_string())
            .json(&json!({ "results": [{ "asset_id": fixture.assets[0], "outcome": "pass" }] })),
    )
    .await;
    assert_eq!(rec.status, 200, "{}", rec.body);

    // EXT-1: new location and a last service; HR-1: only a last service (empty cells);
    // FB-1: the same values (unchanged); a row without identifier and a new identifier create.
    let second = "identifier,asset_type,location,install_date,rule_codes,last_services\n\
        EXT-1,,Level 2 lobby,,,AS1851-10-6M-EXT=2025-07-01\n\
        HR-1,,,,,AS1851-9-6M-HR=2025-06-30;AS1851-9-12M-HR=2025-01-10:fail\n\
        FB-1,fire_blanket,Kitchen,2021-05-05,,\n\
        ,exit_sign,Exit 1,,,\n\
        EL-1,emergency_lighting,Stair B,,,\n";
    let dry = import(&srv, t, b, second, true).await;
    assert_eq!(dry.status, 200, "{}", dry.body);
    assert_eq!(dry.json["dry_run"], true);
    assert_eq!(dry.json["valid"], true, "{}", dry.body);
    assert_eq!(
        (
            &dry.json["imported"],
            &dry.json["updated"],
            &dry.json["unchanged"],
            &dry.json["history_added"]
        ),
        (&json!(2), &json!(1), &json!(2), &json!(3)),
        "{}",
        dry.body
    );
    let plan = dry.json["items"].as_array().unwrap();
    let actions: Vec<(&str, &str)> = plan
        .iter()
        .map(|p| {
            (
                p["identifier"].as_str().unwrap_or("-"),
                p["action"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("EXT-1", "update"),
            ("HR-1", "unchanged"),
            ("FB-1", "unchanged"),
            ("-", "create"),
            ("EL-1", "create")
        ]
    );
    assert_eq!(
        plan[0]["changes"],
        json!([{ "field": "location", "old": "Lobby", "new": "Level 2 lobby" }])
    );
    assert_eq!(plan[0]["asset_id"], id_of(&before, "EXT-1").as_str());
    assert_eq!(plan[1]["history"].as_array().unwrap().len(), 2);
    assert_eq!(plan[1]["history"][1]["outcome"], "fail");
    assert!(plan[3]["asset_id"].is_null(), "no id for a dry-run create");
    // Nothing was written.
    assert_eq!(
        assets(&srv, t, b).await,
        before,
        "a dry run changes no asset"
    );
    let h = history(&srv, t, b, &id_of(&before, "HR-1")).await;
    assert_eq!(h.json["items"], json!([]), "nor any history");

    let r = import(&srv, t, b, second, false).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json["dry_run"], false);
    assert_eq!(r.json["history_added"], 3);
    assert_eq!(r.json["asset_ids"].as_array().unwrap().len(), 2);
    let after = assets(&srv, t, b).await;
    assert_eq!(after.len(), 5);
    for ident in ["EXT-1", "HR-1", "FB-1"] {
        assert_eq!(
            id_of(&after, ident),
            id_of(&before, ident),
            "{ident} kept its id"
        );
    }
    let ext = after.iter().find(|a| a["identifier"] == "EXT-1").unwrap();
    assert_eq!(ext["location"], "Level 2 lobby");
    assert_eq!(ext["install_date"], "2020-01-31", "an empty cell leaves it");
    assert_eq!(ext["rule_codes"], json!(["AS1851-10-6M-EXT"]));
    let results = srv
        .client
        .get(&format!("/v1/tests/sessions/{sid}/results"), Some(t))
        .await;
    assert_eq!(results.status, 200, "{}", results.body);
    // The session (made before the re-import, one item per asset then) keeps its items, on
    // the same asset ids, and EXT-1's result.
    let items = results.json["items"].as_array().unwrap();
    let mut on: Vec<&str> = items
        .iter()
        .map(|i| i["asset_id"].as_str().unwrap())
        .collect();
    on.sort_unstable();
    let mut kept: Vec<String> = ["EXT-1", "HR-1", "FB-1"]
        .iter()
        .map(|i| id_of(&before, i))
        .collect();
    kept.sort_unstable();
    assert_eq!(on, kept, "{}", results.body);
    let ext_item = items
        .iter()
        .find(|i| i["asset_id"] == id_of(&before, "EXT-1").as_str())
        .unwrap();
    assert_eq!(ext_item["outcome"], "pass");

    // The same file again: nothing changes, no history is added twice.
    let again = import(&srv, t, b, second, false).await;
    assert_eq!(again.status, 201, "{}", again.body);
    assert_eq!(again.json["history_added"], 0);
    assert_eq!(again.json["unchanged"], 4, "{}", again.body);
    assert_eq!(
        again.json["imported"], 1,
        "the row without identifier creates again"
    );
    let audits = srv
        .client
        .get("/v1/users/me/audits?limit=500", Some(t))
        .await;
    assert_eq!(audits.status, 200, "{}", audits.body);
    let imports: Vec<&Value> = audits.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] == "asset.import")
        .collect();
    assert_eq!(imports.len(), 3, "dry runs write no audit row");
    let second_import = imports
        .iter()
        .find(|a| a["details"]["history_added"] == 3)
        .expect("the second import's row");
    assert_eq!(
        second_import["details"]["updated_ids"],
        json!([id_of(&before, "EXT-1")])
    );
}

/// Bad rows are listed by row and column; one bad row writes nothing, on a dry run the same
/// errors come with 200 and `valid: false`.
async fn bad_rows_name_row_and_column_and_write_nothing(be: Backend) {
    let Some(srv) = TestServer::start(be).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let t = org.admin.token.as_str();
    let b = new_building(&srv, t, "Error Hall").await;
    let seed = "identifier,asset_type,location,install_date\nEXT-1,portable_extinguisher,Lobby,2022-02-01\n";
    assert_eq!(import(&srv, t, b, seed, false).await.status, 201);
    let tomorrow2 = Utc::now().date_naive() + chrono::Days::new(3);
    let bad = format!(
        "identifier,asset_type,location,install_date,manufacture_date,last_services\n\
         OK-1,fire_blanket,Good,,,AS1851-11-6M-BLK=2025-01-01\n\
         EXT-1,,,,,AS1851-10-6M-EXT=2021-12-31\n\
         FB-2,fire_blanket,Kitchen,,,AS1851-10-6M-EXT=2025-01-01\n\
         FB-3,fire_blanket,Kitchen,,,AS1851-11-6M-BLK={tomorrow2}\n\
         FB-4,fire_blanket,Kitchen,,,AS1851-11-6M-BLK=01/02/2025\n\
         NEW-1,,Somewhere,,,\n\
         FB-5,fire_blanket,Kitchen,2020-01-01,2021-01-01,NOPE-1=2024-01-01\n\
         OK-1,fire_blanket,Twice,,,\n"
    );
    let r = import(&srv, t, b, &bad, false).await;
    assert_problem(&r, 422, "invalid_csv");
    let errors = r.json["errors"].as_array().unwrap().clone();
    let at = |row: u64, field: &str, words: &str| {
        errors.iter().any(|e| {
            e["row"] == row
                && e["field"] == field
                && e["message"].as_str().is_some_and(|m| m.contains(words))
        })
    };
    assert!(
        at(3, "last_services", "before the asset was installed"),
        "{errors:?}"
    );
    assert!(
        at(4, "last_services", "is for portable_extinguisher"),
        "{errors:?}"
    );
    assert!(at(5, "last_services", "in the future"), "{errors:?}");
    assert!(at(6, "last_services", "not a date"), "{errors:?}");
    assert!(
        at(7, "asset_type", "required for a new asset"),
        "{errors:?}"
    );
    assert!(
        at(8, "manufacture_date", "after install_date"),
        "{errors:?}"
    );
    assert!(at(9, "identifier", "also appears on row 2"), "{errors:?}");
    assert!(!errors.iter().any(|e| e["row"] == 2), "{errors:?}");
    assert_eq!(assets(&srv, t, b).await.len(), 1, "nothing written");
    let ext = assets(&srv, t, b).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(history(&srv, t, b, &ext).await.json["items"], json!([]));

    let dry = import(&srv, t, b, &bad, true).await;
    assert_eq!(dry.status, 200, "{}", dry.body);
    assert_eq!(dry.json["valid"], false);
    assert_eq!(dry.json["errors"].as_array().unwrap().len(), errors.len());
    assert_eq!(
        dry.json["items"].as_array().unwrap().len(),
        1,
        "row 2 alone is valid"
    );

    // The file-level protections still hold: a NUL in a cell is refused, naming its column.
    let nul = "identifier,asset_type,location\nX-1,fire_blanket,Kit\u{0}chen\n";
    let r = import(&srv, t, b, nul, false).await;
    assert_problem(&r, 422, "invalid_csv");
    assert_eq!(r.json["errors"][0]["field"], "location");
}

/// `POST .../service-history` (office) records a service that the compliance report counts;
/// bad bodies are 422 naming the field; the same routine and day twice is 409; an inspector is
/// refused; another organisation's asset is 404.
async fn service_history_endpoint_counts_in_the_report(be: Backend) {
    let Some(srv) = TestServer::start(be).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let office = srv.user(&org, "office").await;
    let t = office.token.as_str();
    let bld = fixtures::building(&srv, &org, 1).await;
    let (b, a) = (bld.id, bld.assets[0]);
    let url = format!("/v1/buildings/{b}/assets/{a}/service-history");
    let before = srv
        .client
        .get(&format!("/v1/buildings/{b}/compliance"), Some(t))
        .await;
    assert_eq!(before.json["status"], "overdue", "never serviced");

    let day = Utc::now().date_naive() - chrono::Days::new(20);
    let body = json!({ "rule_code": "AS1851-10-6M-EXT", "serviced_on": day.to_string(),
                       "outcome": "pass", "note": "done by the previous contractor" });
    let r = srv.client.post(&url, Some(t), &body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json["source"], "office");
    assert_eq!(r.json["recorded_by"], office.id.to_string());
    let again = srv.client.post(&url, Some(t), &body).await;
    assert_problem(&again, 409, "service_exists");
    let list = srv.client.get(&url, Some(t)).await;
    assert_eq!(list.json["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        list.json["items"][0]["note"],
        "done by the previous contractor"
    );

    let report = srv
        .client
        .get(&format!("/v1/buildings/{b}/compliance"), Some(t))
        .await;
    let row = report.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["rule_code"] == "AS1851-10-6M-EXT")
        .unwrap()
        .clone();
    assert_eq!(
        row["last_service"].as_str().unwrap()[..10],
        day.to_string(),
        "{row}"
    );
    assert_eq!(row["overdue"], false, "{row}");
    assert_eq!(row["next_due"], months_after(day, 6).to_string(), "{row}");

    // Bad bodies name the field and write nothing.
    let future = (Utc::now().date_naive() + chrono::Days::new(5)).to_string();
    for (bad, field) in [
        (
            json!({ "rule_code": "AS1851-12-6M-FD", "serviced_on": "2025-01-01", "outcome": "pass" }),
            "rule_code",
        ),
        (
            json!({ "rule_code": "NOPE", "serviced_on": "2025-01-01", "outcome": "pass" }),
            "rule_code",
        ),
        (
            json!({ "rule_code": "AS1851-10-6M-EXT", "serviced_on": future, "outcome": "pass" }),
            "serviced_on",
        ),
        (
            json!({ "rule_code": "AS1851-10-6M-EXT", "serviced_on": "1/2/2025", "outcome": "pass" }),
            "serviced_on",
        ),
        (
            json!({ "rule_code": "AS1851-10-6M-EXT", "serviced_on": "2025-01-01", "outcome": "pass",
                 "note": "bell\u{7}" }),
            "note",
        ),
    ] {
        let r = srv.client.post(&url, Some(t), &bad).await;
        assert_problem(&r, 422, "invalid_field");
        assert_eq!(r.json["errors"][0]["field"], field, "{bad}: {}", r.body);
    }
    let r = srv
        .client
        .post(
            &url,
            Some(t),
            &json!({ "rule_code": "AS1851-10-6M-EXT", "serviced_on": "2025-01-01", "outcome": "maybe" }),
        )
        .await;
    assert!(matches!(r.status, 400 | 422), "{}", r.body);
    assert_eq!(
        srv.client.get(&url, Some(t)).await.json["items"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "nothing more written"
    );

    let inspector = srv.user(&org, "inspector").await;
    let r = srv.client.post(&url, Some(&inspector.token), &body).await;
    assert_problem(&r, 403, "forbidden");
    assert_eq!(
        srv.client.get(&url, Some(&inspector.token)).await.status,
        200
    );

    // Another organisation: its admin gets 404 for our asset, and our admin for theirs.
    let other: Org = srv.org("Other").await;
    let r = srv.client.get(&url, Some(&other.admin.token)).await;
    assert_problem(&r, 404, "not_found");
    let r = srv.client.post(&url, Some(&other.admin.token), &body).await;
    assert_problem(&r, 404, "not_found");
    let theirs = fixtures::building(&srv, &other, 1).await;
    let foreign = format!(
        "/v1/buildings/{}/assets/{}/service-history",
        theirs.id, theirs.assets[0]
    );
    assert_problem(
        &srv.client.post(&foreign, Some(t), &body).await,
        404,
        "not_found",
    );
    // Our building with their asset id is 404 too.
    let mixed = format!(
        "/v1/buildings/{b}/assets/{}/service-history",
        theirs.assets[0]
    );
    assert_problem(&srv.client.get(&mixed, Some(t)).await, 404, "not_found");
}

/// `import_assets` in one transaction: an id of another organisation's asset is refused
/// (NotFound) and nothing of the call is written; a history row the database refuses undoes
/// the assets written before it; a service recorded twice is added once.
async fn the_store_writes_an_import_all_or_nothing(be: Backend) {
    let Some(srv) = TestServer::start(be).await else {
        return;
    };
    let store = srv.store();
    let ours = srv.org("Ours").await;
    let theirs = srv.org("Theirs").await;
    let mine = fixtures::building(&srv, &ours, 1).await;
    let other = fixtures::building(&srv, &theirs, 1).await;
    let count = |org: Uuid, b: Uuid| {
        let store = store.clone();
        async move { store.building_assets(org, b).await.unwrap() }
    };
    let their_asset = count(theirs.id, other.id).await.remove(0);
    let now = Utc::now();
    let new = AssetRecord {
        id: Uuid::now_v7(),
        org_id: ours.id,
        building_id: mine.id,
        asset_type: "fire_blanket".into(),
        location: "Kitchen".into(),
        identifier: Some("FB-NEW".into()),
        install_date: None,
        rule_codes: sqlx::types::Json(vec![]),
        rule_alternatives: Default::default(),
        created_at: now,
        updated_at: now,
        schedule_anchor: None,
        manufacture_date: None,
    };
    let hijack = AssetRecord {
        org_id: ours.id,
        building_id: mine.id,
        location: "taken over".into(),
        identifier: Some("HIJACK-1".into()),
        ..their_asset.clone()
    };
    let r = store.import_assets(&[new.clone(), hijack], &[]).await;
    assert!(matches!(r, Err(StoreError::NotFound)), "{r:?}");
    assert_eq!(
        count(theirs.id, other.id).await[0].location,
        their_asset.location
    );
    assert_eq!(
        count(ours.id, mine.id).await.len(),
        1,
        "the new asset is not kept"
    );

    let service = |outcome: &str| HistoryRecord {
        id: Uuid::now_v7(),
        org_id: ours.id,
        building_id: mine.id,
        asset_id: new.id,
        rule_code: "AS1851-11-6M-BLK".into(),
        serviced_on: NaiveDate::from_ymd_opt(2025, 6, 1).unwrap(),
        outcome: outcome.into(),
        source: "import".into(),
        note: None,
        recorded_by: None,
        created_at: now,
    };
    let r = store
        .import_assets(std::slice::from_ref(&new), &[service("maybe")])
        .await;
    assert!(r.is_err(), "the database refuses the outcome");
    assert_eq!(
        count(ours.id, mine.id).await.len(),
        1,
        "the asset is undone"
    );

    let added = store
        .import_assets(std::slice::from_ref(&new), &[service("pass")])
        .await
        .unwrap();
    assert_eq!(added, 1);
    assert_eq!(count(ours.id, mine.id).await.len(), 2);
    let updated = AssetRecord {
        location: "Kitchen 2".into(),
        ..new.clone()
    };
    let added = store
        .import_assets(&[updated], &[service("pass")])
        .await
        .unwrap();
    assert_eq!(added, 0, "the same routine and day once");
    let now_mine = count(ours.id, mine.id).await;
    let kept = now_mine.iter().find(|a| a.id == new.id).unwrap();
    assert_eq!(kept.location, "Kitchen 2");
    assert_eq!(
        store
            .asset_service_history(ours.id, new.id)
            .await
            .unwrap()
            .len(),
        1
    );
}
