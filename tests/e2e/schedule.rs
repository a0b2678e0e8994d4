//! The schedule through the API: anchors set on buildings and assets, working-day windows that
//! skip a state's public holidays (built in and added), shorter routines folded into longer
//! ones due with them, paging, service history counted, a session made from what is due, and
//! a routine serviced outside its tolerance window raising a non-conformance at sign-off.

use chrono::{Days, Months, NaiveDate, Utc};
use firemode_server::store::schedule::HistoryRecord;
use firemode_tests::fixtures::{session, Building};
use firemode_tests::{
    assert_problem, backend_tests, test_config, Backend, Client, Org, Resp, TestDb, TestServer,
};
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

backend_tests!(
    anchors_folding_and_holidays,
    history_counts_and_a_session_is_made_from_what_is_due,
    schedule_pages_and_bad_inputs,
    every_change_reaches_the_next_schedule_and_status,
    random_changes_match_a_fresh_node,
    a_burst_of_requests_after_a_change_loads_once,
);

const EXT_6M: &str = "AS1851-10-6M-EXT";
const EXT_12M: &str = "AS1851-10-12M-EXT";
const FD_6M: &str = "AS1851-12-6M-FD";
const FD_12M: &str = "AS1851-12-12M-FD";
const SPR_1M: &str = "AS1851-2-1M-SPR";

async fn create_building(srv: &TestServer, t: &str, extra: Value) -> Uuid {
    let mut body = json!({ "name": "Harbour House", "address": "1 Quay St, Sydney NSW",
                           "building_type": "Class 5 office" });
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let r = srv.client.post("/v1/buildings", Some(t), &body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.json["id"].as_str().unwrap().parse().unwrap()
}

async fn create_asset(srv: &TestServer, t: &str, b: Uuid, body: Value) -> Uuid {
    let r = srv
        .client
        .post(&format!("/v1/buildings/{b}/assets"), Some(t), &body)
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.json["id"].as_str().unwrap().parse().unwrap()
}

async fn patch(srv: &TestServer, t: &str, path: &str, body: Value) -> Resp {
    Client::send(srv.client.request(Method::PATCH, path, Some(t)).json(&body)).await
}

async fn schedule(srv: &TestServer, t: &str, q: &str) -> Value {
    let r = srv.client.get(&format!("/v1/schedule?{q}"), Some(t)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json
}

/// (rule code, scheduled date, includes) of every item of one asset.
fn of_asset(s: &Value, asset: Uuid) -> Vec<(String, String, Vec<String>)> {
    s["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["asset_id"] == asset.to_string())
        .map(|i| {
            (
                i["rule_code"].as_str().unwrap().to_owned(),
                i["next_due"].as_str().unwrap_or("").to_owned(),
                i["includes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| c.as_str().unwrap().to_owned())
                    .collect(),
            )
        })
        .collect()
}

fn d(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

async fn anchors_folding_and_holidays(be: Backend) {
    let Some(srv) = TestServer::start(be).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let t = org.admin.token.as_str();
    let today = Utc::now().date_naive();
    let building_anchor = today - Days::new(10);
    let asset_anchor = today - Days::new(40);
    let b = create_building(
        &srv,
        t,
        json!({ "schedule_anchor": building_anchor, "state": "NSW" }),
    )
    .await;
    let r = srv.client.get(&format!("/v1/buildings/{b}"), Some(t)).await;
    assert_eq!(r.json["state"], "NSW");
    assert_eq!(r.json["schedule_anchor"], building_anchor.to_string());

    // A fire door on the building's anchor: six-monthly and yearly routines.
    let door = create_asset(
        &srv,
        t,
        b,
        json!({ "asset_type": "fire_door", "location": "Level 3 stair", "identifier": "FD-301",
                "rule_codes": [FD_6M, FD_12M] }),
    )
    .await;
    // An extinguisher on its own anchor.
    let ext = create_asset(
        &srv,
        t,
        b,
        json!({ "asset_type": "portable_extinguisher", "location": "Level 3 lobby",
                "identifier": "EXT-301", "rule_codes": [EXT_6M, EXT_12M],
                "schedule_anchor": asset_anchor, "manufacture_date": "2019-03-01" }),
    )
    .await;
    let r = srv
        .client
        .get(&format!("/v1/buildings/{b}/assets/{ext}"), Some(t))
        .await;
    assert_eq!(r.json["schedule_anchor"], asset_anchor.to_string());
    assert_eq!(r.json["manufacture_date"], "2019-03-01");

    let to = today + Days::new(366);
    let s = schedule(&srv, t, &format!("building_id={b}&from={today}&to={to}")).await;
    let six = |a: NaiveDate| a.checked_add_months(Months::new(6)).unwrap().to_string();
    let twelve = |a: NaiveDate| a.checked_add_months(Months::new(12)).unwrap().to_string();
    // The yearly service includes the six-monthly one due with it; the first six-monthly is
    // on its own.
    assert_eq!(
        of_asset(&s, door),
        vec![
            (FD_6M.into(), six(building_anchor), vec![]),
            (
                FD_12M.into(),
                twelve(building_anchor),
                vec![FD_6M.to_string()]
            ),
        ],
        "{s}"
    );
    assert_eq!(
        of_asset(&s, ext),
        vec![
            (EXT_6M.into(), six(asset_anchor), vec![]),
            (
                EXT_12M.into(),
                twelve(asset_anchor),
                vec![EXT_6M.to_string()]
            ),
        ],
        "{s}"
    );
    let item = s["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["asset_id"] == ext.to_string())
        .unwrap();
    assert_eq!(item["anchor_source"], "asset");
    assert_eq!(item["anchor"], asset_anchor.to_string());
    let door_item = s["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["asset_id"] == door.to_string())
        .unwrap();
    assert_eq!(door_item["anchor_source"], "building");
    // Six-monthly tolerance is ±1 month.
    let due = d(door_item["next_due"].as_str().unwrap());
    assert_eq!(
        door_item["due_by"],
        due.checked_add_months(Months::new(1)).unwrap().to_string()
    );
    assert_eq!(
        door_item["window_opens"],
        due.checked_sub_months(Months::new(1)).unwrap().to_string()
    );
    // The compliance report shows the same anchors.
    let r = srv
        .client
        .get(&format!("/v1/buildings/{b}/compliance"), Some(t))
        .await;
    let rows = r.json["items"].as_array().unwrap();
    assert!(rows
        .iter()
        .filter(|r| r["asset_id"] == door.to_string())
        .all(|r| r["anchor_source"] == "building" && !r["overdue"].as_bool().unwrap()));

    // Monthly: ±5 working days. A sprinkler system due on Christmas Day 2026 (a Friday).
    let spr = create_asset(
        &srv,
        t,
        b,
        json!({ "asset_type": "sprinkler_system", "location": "Valve room", "identifier": "SPR-1",
                "rule_codes": [SPR_1M], "schedule_anchor": "2026-11-25" }),
    )
    .await;
    let christmas_due_by = |s: &Value| {
        s["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["asset_id"] == spr.to_string() && i["next_due"] == "2026-12-25")
            .unwrap_or_else(|| panic!("no item due 2026-12-25 in {s}"))["due_by"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let q = format!("building_id={b}&from=2026-12-01&to=2027-01-31");
    // NSW: Boxing Day's Monday substitute (28th) and New Year's Day (Friday 1st) skipped.
    assert_eq!(christmas_due_by(&schedule(&srv, t, &q).await), "2027-01-05");
    // Without a state only weekends are skipped.
    let r = patch(
        &srv,
        t,
        &format!("/v1/buildings/{b}"),
        json!({ "state": null }),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(christmas_due_by(&schedule(&srv, t, &q).await), "2027-01-01");
    // A holiday the organisation adds for the state counts too.
    let r = patch(
        &srv,
        t,
        &format!("/v1/buildings/{b}"),
        json!({ "state": "NSW" }),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = Client::send(
        srv.client
            .request(Method::PUT, "/v1/holidays/NSW/2027", Some(t))
            .json(&json!({ "holidays": [{ "date": "2027-01-04", "name": "Site shutdown" }] })),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json["holidays"]
        .as_array()
        .unwrap()
        .iter()
        .any(|h| h["date"] == "2027-01-04" && h["source"] == "organisation"));
    assert!(r.json["holidays"]
        .as_array()
        .unwrap()
        .iter()
        .any(|h| h["date"] == "2027-01-26" && h["source"] == "built_in"));
    assert_eq!(christmas_due_by(&schedule(&srv, t, &q).await), "2027-01-06");
    // Another organisation's holidays are its own.
    let other = srv.org("Other").await;
    let r = srv
        .client
        .get("/v1/holidays?state=NSW&year=2027", Some(&other.admin.token))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json["holidays"]
        .as_array()
        .unwrap()
        .iter()
        .all(|h| h["source"] == "built_in"));
    // Monthly services in January come after Christmas, on the 25th.
    let s = schedule(&srv, t, &q).await;
    let dates: Vec<String> = of_asset(&s, spr).into_iter().map(|i| i.1).collect();
    assert!(dates.contains(&"2027-01-25".to_string()), "{dates:?}");
}

async fn add_history(srv: &TestServer, org: &Org, b: Uuid, asset: Uuid, code: &str, on: NaiveDate) {
    let added = srv
        .store()
        .add_service_history(&[HistoryRecord {
            id: Uuid::now_v7(),
            org_id: org.id,
            building_id: b,
            asset_id: asset,
            rule_code: code.into(),
            serviced_on: on,
            outcome: "pass".into(),
            source: "import".into(),
            note: None,
            recorded_by: None,
            created_at: Utc::now(),
        }])
        .await
        .expect("history");
    assert_eq!(added, 1);
}

async fn history_counts_and_a_session_is_made_from_what_is_due(be: Backend) {
    let Some(srv) = TestServer::start(be).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let t = org.admin.token.as_str();
    let today = Utc::now().date_naive();
    let b = create_building(&srv, t, json!({})).await;
    let ext = |i: usize| {
        json!({ "asset_type": "portable_extinguisher", "location": format!("Level {i}"),
                "identifier": format!("EXT-{i}"), "rule_codes": [EXT_6M] })
    };
    let mut assets = Vec::new();
    for i in 0..3 {
        assets.push(create_asset(&srv, t, b, ext(i)).await);
    }
    // EXT-0: last serviced six months ago less four days: due in four days, on time today.
    let on_time = today.checked_sub_months(Months::new(6)).unwrap() + Days::new(4);
    add_history(&srv, &org, b, assets[0], EXT_6M, on_time).await;
    // EXT-1: first and last serviced 15 months ago: overdue, and a service today is outside
    // tolerance (its grid's dates are 3 months ago and 3 months ahead, ±1 month).
    let lapsed = today.checked_sub_months(Months::new(15)).unwrap();
    add_history(&srv, &org, b, assets[1], EXT_6M, lapsed).await;
    // EXT-2: serviced last month: not due for five months.
    let recent = today.checked_sub_months(Months::new(1)).unwrap();
    add_history(&srv, &org, b, assets[2], EXT_6M, recent).await;

    let r = srv
        .client
        .get(&format!("/v1/buildings/{b}/compliance"), Some(t))
        .await;
    let row = |i: usize| {
        r.json["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|row| row["asset_id"] == assets[i].to_string())
            .unwrap()
            .clone()
    };
    assert_eq!(row(0)["overdue"], false);
    assert_eq!(row(0)["anchor_source"], "first_service");
    assert_eq!(row(0)["last_session_id"], Value::Null, "imported");
    assert_eq!(row(1)["overdue"], true);
    assert_eq!(row(2)["overdue"], false);
    assert_eq!(
        row(2)["next_due"],
        recent
            .checked_add_months(Months::new(6))
            .unwrap()
            .to_string()
    );

    // A session from what is due in the next 30 days: EXT-0 and the overdue EXT-1.
    let inspector = srv.user(&org, "inspector").await;
    let r = srv
        .client
        .post(
            "/v1/schedule/sessions",
            Some(t),
            &json!({ "building_id": b, "assigned_to": [inspector.id] }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json["frequency"], "six_monthly");
    let session: Uuid = r.json["id"].as_str().unwrap().parse().unwrap();
    let results = srv
        .client
        .get(&format!("/v1/tests/sessions/{session}/results"), Some(t))
        .await;
    assert_eq!(results.status, 200, "{}", results.body);
    let mut items: Vec<String> = results.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["asset_id"].as_str().unwrap().to_owned())
        .collect();
    items.sort();
    let mut expected = vec![assets[0].to_string(), assets[1].to_string()];
    expected.sort();
    assert_eq!(items, expected);
    // The inspector does both today and the office signs off.
    let r = Client::send(
        srv.client
            .request(
                Method::POST,
                &format!("/v1/tests/sessions/{session}/results"),
                Some(&inspector.token),
            )
            .header("idempotency-key", Uuid::new_v4().to_string())
            .json(&json!({ "results": [
                { "asset_id": assets[0], "outcome": "pass" },
                { "asset_id": assets[1], "outcome": "pass" },
            ] })),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = patch(
        &srv,
        t,
        &format!("/v1/tests/sessions/{session}"),
        json!({ "status": "completed" }),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // EXT-1's service today missed the window of its scheduled dates: one non-conformance,
    // to be reported within a week; EXT-0's was on time.
    let r = srv
        .client
        .get(&format!("/v1/defects?building_id={b}"), Some(t))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let found: Vec<&Value> = r.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["observed_condition"] == "service_outside_tolerance")
        .collect();
    assert_eq!(found.len(), 1, "{}", r.body);
    let nc = found[0];
    assert_eq!(nc["asset_id"], assets[1].to_string());
    assert_eq!(nc["severity"], "non_conformance");
    assert_eq!(nc["status"], "open");
    assert_eq!(nc["rule_code"], EXT_6M);
    assert!(nc["title"]
        .as_str()
        .unwrap()
        .contains("outside its tolerance window"));
    let discovered: chrono::DateTime<Utc> = nc["discovered_at"].as_str().unwrap().parse().unwrap();
    let notify_by: chrono::DateTime<Utc> = nc["notify_by"].as_str().unwrap().parse().unwrap();
    assert_eq!((notify_by - discovered).num_days(), 7);
    // EXT-1 is on its grid again, anchored on its first service.
    let r = srv
        .client
        .get(&format!("/v1/buildings/{b}/compliance"), Some(t))
        .await;
    let ext1 = r.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["asset_id"] == assets[1].to_string())
        .unwrap();
    assert_eq!(ext1["outside_tolerance"], true);
    assert_eq!(ext1["anchor"], lapsed.to_string());
    assert_eq!(ext1["overdue"], false);
    assert_eq!(ext1["last_session_id"], session.to_string());

    // Nothing is due now in this building: 422, and no session is made.
    let r = srv
        .client
        .post(
            "/v1/schedule/sessions",
            Some(t),
            &json!({ "building_id": b }),
        )
        .await;
    assert_problem(&r, 422, "nothing_due");
    // An inspector cannot plan; another organisation's building is not found.
    let r = srv
        .client
        .post(
            "/v1/schedule/sessions",
            Some(&inspector.token),
            &json!({ "building_id": b }),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    let other = srv.org("Other").await;
    let r = srv
        .client
        .post(
            "/v1/schedule/sessions",
            Some(&other.admin.token),
            &json!({ "building_id": b }),
        )
        .await;
    assert_problem(&r, 404, "not_found");
}

async fn schedule_pages_and_bad_inputs(be: Backend) {
    let Some(srv) = TestServer::start(be).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let t = org.admin.token.as_str();
    let today = Utc::now().date_naive();
    let b = create_building(&srv, t, json!({ "schedule_anchor": today - Days::new(3) })).await;
    for i in 0..5 {
        create_asset(
            &srv,
            t,
            b,
            json!({ "asset_type": "portable_extinguisher", "location": "L1",
                    "identifier": format!("EXT-{i}"), "rule_codes": [EXT_6M] }),
        )
        .await;
    }
    // Five assets, six-monthly over a year: ten items, in pages of three.
    let q = format!("building_id={b}&from={today}&to={}", today + Days::new(366));
    let mut seen = Vec::new();
    let mut offset = 0;
    loop {
        let s = schedule(&srv, t, &format!("{q}&limit=3&offset={offset}")).await;
        assert_eq!(s["total"], 10, "{s}");
        assert_eq!(s["overdue"], 0);
        for i in s["items"].as_array().unwrap() {
            seen.push(format!("{}:{}", i["identifier"], i["next_due"]));
        }
        match s["next_offset"].as_u64() {
            Some(n) => offset = n as usize,
            None => break,
        }
    }
    assert_eq!(seen.len(), 10);
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 10, "no item twice across pages: {seen:?}");
    let s = schedule(&srv, t, &q).await;
    let months: u64 = s["by_month"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["due"].as_u64().unwrap())
        .sum();
    assert_eq!(months, 10);

    for bad in [
        "limit=0",
        "limit=10001",
        "from=2026-01-01&to=2025-01-01",
        "offset=-1",
    ] {
        let r = srv
            .client
            .get(&format!("/v1/schedule?{bad}"), Some(t))
            .await;
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
    }
    for (path, status) in [
        ("/v1/holidays?state=XX&year=2027", 400),
        ("/v1/holidays?state=NSW&year=1700", 400),
        ("/v1/holidays", 400),
    ] {
        let r = srv.client.get(path, Some(t)).await;
        assert_eq!(r.status, status, "{path}: {}", r.body);
    }
    let put = |path: &'static str, body: Value| {
        let srv = &srv;
        async move { Client::send(srv.client.request(Method::PUT, path, Some(t)).json(&body)).await }
    };
    let r = put("/v1/holidays/XX/2027", json!({ "holidays": [] })).await;
    assert_problem(&r, 400, "invalid_state");
    let r = put(
        "/v1/holidays/VIC/2027",
        json!({ "holidays": [{ "date": "2028-01-02", "name": "Wrong year" }] }),
    )
    .await;
    assert_problem(&r, 422, "invalid_field");
    let r = put(
        "/v1/holidays/VIC/2027",
        json!({ "holidays": [{ "date": "2027-03-08", "name": "Labour Day" },
                             { "date": "2027-03-08", "name": "Again" }] }),
    )
    .await;
    assert_problem(&r, 422, "invalid_field");
    let r = put(
        "/v1/holidays/VIC/2027",
        json!({ "holidays": [{ "date": "2027-03-08", "name": "  " }] }),
    )
    .await;
    assert_problem(&r, 422, "invalid_field");
    // Nothing was stored by the refused requests.
    let r = srv
        .client
        .get("/v1/holidays?state=VIC&year=2027", Some(t))
        .await;
    assert!(r.json["holidays"]
        .as_array()
        .unwrap()
        .iter()
        .all(|h| h["source"] == "built_in"));
    // Bad anchors and states on buildings and assets change nothing.
    let far = (today + Days::new(400)).to_string();
    for body in [
        json!({ "schedule_anchor": far }),
        json!({ "state": "Victoria" }),
        json!({ "schedule_anchor": "1850-01-01" }),
    ] {
        let r = patch(&srv, t, &format!("/v1/buildings/{b}"), body.clone()).await;
        assert!(r.status == 422 || r.status == 400, "{body}: {}", r.body);
    }
    let r = srv.client.get(&format!("/v1/buildings/{b}"), Some(t)).await;
    assert_eq!(
        r.json["schedule_anchor"],
        (today - Days::new(3)).to_string()
    );
    let r = srv
        .client
        .post(
            &format!("/v1/buildings/{b}/assets"),
            Some(t),
            &json!({ "asset_type": "portable_extinguisher", "location": "L1",
                     "install_date": "2020-01-01", "manufacture_date": "2021-01-01" }),
        )
        .await;
    assert_problem(&r, 422, "invalid_field");
    assert!(r.body.contains("manufacture_date"), "{}", r.body);
    let r = srv
        .client
        .post(
            &format!("/v1/buildings/{b}/assets"),
            Some(t),
            &json!({ "asset_type": "portable_extinguisher", "location": "L1",
                     "schedule_anchor": far }),
        )
        .await;
    assert_problem(&r, 422, "invalid_field");
}

/// The schedule over a year from today: the organisation's, or one building's.
async fn year(srv: &TestServer, t: &str, b: Option<Uuid>) -> Value {
    let today = Utc::now().date_naive();
    let mut q = format!("from={today}&to={}&limit=10000", today + Days::new(365));
    if let Some(b) = b {
        q.push_str(&format!("&building_id={b}"));
    }
    schedule(srv, t, &q).await
}

/// One line per item: what a change could move.
fn lines(s: &Value, building: Option<Uuid>) -> Vec<String> {
    s["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| building.is_none_or(|b| i["building_id"] == b.to_string()))
        .map(|i| {
            format!(
                "{} {} {} {} {} {} {} {}",
                i["identifier"],
                i["rule_code"],
                i["next_due"],
                i["window_opens"],
                i["due_by"],
                i["overdue"],
                i["anchor"],
                i["last_service"]
            )
        })
        .collect()
}

/// The organisation's schedule and building `b`'s, checked to agree on `b` (one is computed
/// from each routine's first and last service, the other from the latest services).
async fn both(srv: &TestServer, t: &str, b: Uuid) -> (Value, Value) {
    let org = year(srv, t, None).await;
    let one = year(srv, t, Some(b)).await;
    assert_eq!(lines(&org, Some(b)), lines(&one, None));
    (org, one)
}

fn item<'a>(s: &'a Value, identifier: &str) -> &'a Value {
    s["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["identifier"] == identifier)
        .unwrap_or_else(|| panic!("{identifier} in {s}"))
}

/// The status `GET /v1/buildings` and `GET /v1/buildings/{id}` give building `b`, checked to
/// agree with each other and with the building's compliance report.
async fn building_status(srv: &TestServer, t: &str, b: Uuid) -> Value {
    let list = srv.client.get("/v1/buildings?limit=500", Some(t)).await;
    assert_eq!(list.status, 200, "{}", list.body);
    let listed = list.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == b.to_string())
        .expect("listed")["status"]
        .clone();
    let one = srv.client.get(&format!("/v1/buildings/{b}"), Some(t)).await;
    assert_eq!(one.status, 200, "{}", one.body);
    assert_eq!(listed, one.json["status"]);
    let report = srv
        .client
        .get(&format!("/v1/buildings/{b}/compliance"), Some(t))
        .await;
    assert_eq!(report.status, 200, "{}", report.body);
    assert_eq!(listed["overall"], report.json["status"]);
    assert_eq!(listed["overdue"], report.json["summary"]["overdue"]);
    assert_eq!(
        listed["open_critical_defects"],
        report.json["summary"]["open_defects"]["critical"]
    );
    listed
}

/// Schedules are cached per organisation until something they are computed from changes:
/// each kind of change shows in the very next answer — of the organisation's schedule, of the
/// building's, and in the buildings' status — and an unchanged answer is the same twice.
async fn every_change_reaches_the_next_schedule_and_status(be: Backend) {
    let Some(srv) = TestServer::start(be).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let t = org.admin.token.as_str();
    let today = Utc::now().date_naive();
    let b = create_building(&srv, t, json!({ "state": "NSW" })).await;
    let ext = |i: usize| {
        json!({ "asset_type": "portable_extinguisher", "location": format!("Level {i}"),
                "identifier": format!("EXT-{i}"), "rule_codes": [EXT_6M] })
    };
    let ext0 = create_asset(&srv, t, b, ext(0)).await;
    let ext1 = create_asset(&srv, t, b, ext(1)).await;

    // Nothing to count from: both due now.
    let (s, _) = both(&srv, t, b).await;
    assert_eq!(s["overdue"], 2, "{s}");
    assert_eq!(year(&srv, t, None).await, s, "the same answer twice");
    let st = building_status(&srv, t, b).await;
    assert_eq!(
        st,
        json!({ "overall": "overdue", "overdue": 2, "open_critical_defects": 0 })
    );

    // A result recorded in a session (projected): EXT-0 serviced today.
    let session_id = session(
        &srv,
        &org.admin,
        &Building {
            id: b,
            assets: vec![ext0, ext1],
        },
        &[],
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = Client::send(
        srv.client
            .request(
                Method::POST,
                &format!("/v1/tests/sessions/{session_id}/results"),
                Some(t),
            )
            .header("idempotency-key", Uuid::new_v4().to_string())
            .json(&json!({ "results": [{ "asset_id": ext0, "outcome": "pass" }] })),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let (s, _) = both(&srv, t, b).await;
    assert_eq!(s["overdue"], 1, "{s}");
    let e0 = item(&s, "EXT-0");
    assert_eq!(e0["overdue"], false);
    assert_eq!(
        e0["next_due"],
        today
            .checked_add_months(Months::new(6))
            .unwrap()
            .to_string()
    );
    assert_eq!(building_status(&srv, t, b).await["overdue"], 1);
    // The same item made not accessible: no longer a service, EXT-0 is due now again (the
    // routine's span is computed again from the items); then passed once more.
    for (outcome, overdue) in [("not_accessible", 2), ("pass", 1)] {
        let r = Client::send(
            srv.client
                .request(
                    Method::POST,
                    &format!("/v1/tests/sessions/{session_id}/results"),
                    Some(t),
                )
                .header("idempotency-key", Uuid::new_v4().to_string())
                .json(&json!({ "results": [{ "asset_id": ext0, "outcome": outcome }] })),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let (s, _) = both(&srv, t, b).await;
        assert_eq!(s["overdue"], overdue, "{outcome}: {s}");
        assert_eq!(building_status(&srv, t, b).await["overdue"], overdue);
    }

    // Imported history: EXT-1 serviced a month ago.
    let month_ago = today.checked_sub_months(Months::new(1)).unwrap();
    add_history(&srv, &org, b, ext1, EXT_6M, month_ago).await;
    let (s, _) = both(&srv, t, b).await;
    assert_eq!(s["overdue"], 0, "{s}");
    assert_eq!(
        item(&s, "EXT-1")["next_due"],
        month_ago
            .checked_add_months(Months::new(6))
            .unwrap()
            .to_string()
    );
    assert_eq!(
        building_status(&srv, t, b).await,
        json!({ "overall": "compliant", "overdue": 0, "open_critical_defects": 0 })
    );

    // An office entry through the API: EXT-1 serviced today.
    serviced_today(&srv, t, b, ext1).await;
    let (s, _) = both(&srv, t, b).await;
    assert_eq!(
        item(&s, "EXT-1")["last_service"].as_str().unwrap()[..10],
        today.to_string()
    );

    // The building's anchor: every grid moves onto it.
    let anchor = today - Days::new(20);
    let r = patch(
        &srv,
        t,
        &format!("/v1/buildings/{b}"),
        json!({ "schedule_anchor": anchor }),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let (s, _) = both(&srv, t, b).await;
    for i in s["items"].as_array().unwrap() {
        assert_eq!(i["anchor"], anchor.to_string(), "{i}");
        assert_eq!(i["anchor_source"], "building");
    }
    assert_eq!(
        item(&s, "EXT-0")["next_due"],
        anchor
            .checked_add_months(Months::new(6))
            .unwrap()
            .to_string()
    );

    // A holiday: a monthly routine's window (±5 working days) closes a working day later.
    let spr = create_asset(
        &srv,
        t,
        b,
        json!({ "asset_type": "sprinkler_system", "location": "Valve room",
                "identifier": "SPR-1", "rule_codes": [SPR_1M] }),
    )
    .await;
    let (s, _) = both(&srv, t, b).await;
    let first = |s: &Value| {
        s["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["asset_id"] == spr.to_string())
            .expect("SPR-1 listed, the asset just added")
            .clone()
    };
    let before = first(&s);
    let due: NaiveDate = before["next_due"].as_str().unwrap().parse().unwrap();
    let due_by: NaiveDate = before["due_by"].as_str().unwrap().parse().unwrap();
    // The first working day after the due date that is no holiday yet.
    let mut day = due + Days::new(1);
    loop {
        let builtin = srv
            .client
            .get(
                &format!(
                    "/v1/holidays?state=NSW&year={}",
                    chrono::Datelike::year(&day)
                ),
                Some(t),
            )
            .await;
        let taken = builtin.json["holidays"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["date"] == day.to_string());
        let weekend = matches!(
            chrono::Datelike::weekday(&day),
            chrono::Weekday::Sat | chrono::Weekday::Sun
        );
        if !taken && !weekend {
            break;
        }
        day = day + Days::new(1);
    }
    assert!(day <= due_by);
    let r = Client::send(
        srv.client
            .request(
                Method::PUT,
                &format!("/v1/holidays/NSW/{}", chrono::Datelike::year(&day)),
                Some(t),
            )
            .json(&json!({ "holidays": [{ "date": day, "name": "Site shutdown" }] })),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let (s, _) = both(&srv, t, b).await;
    let after = first(&s);
    assert_eq!(after["next_due"], before["next_due"]);
    let moved: NaiveDate = after["due_by"].as_str().unwrap().parse().unwrap();
    assert!(moved > due_by, "{due_by} -> {moved}");

    // A critical defect: the status shows it (defects are read live).
    let r = srv
        .client
        .post(
            "/v1/defects",
            Some(t),
            &json!({ "building_id": b, "asset_id": ext0, "severity": "critical",
                     "title": "Extinguisher missing" }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let st = building_status(&srv, t, b).await;
    assert_eq!(st["overall"], "critical_defect");
    assert_eq!(st["open_critical_defects"], 1);

    // A second building: listed, then archived (it holds a session) and gone.
    let b2 = create_building(&srv, t, json!({})).await;
    let other = create_asset(&srv, t, b2, ext(9)).await;
    let s = year(&srv, t, None).await;
    assert!(lines(&s, Some(b2)).len() == 1, "{s}");
    session(
        &srv,
        &org.admin,
        &Building {
            id: b2,
            assets: vec![other],
        },
        &[],
    )
    .await;
    let r = Client::send(srv.client.request(
        Method::DELETE,
        &format!("/v1/buildings/{b2}"),
        Some(t),
    ))
    .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let s = year(&srv, t, None).await;
    assert!(lines(&s, Some(b2)).is_empty(), "{s}");
    assert_eq!(
        lines(&s, Some(b)),
        lines(&year(&srv, t, Some(b)).await, None)
    );
}

/// Two nodes on one PostgreSQL, each with its own cache: a change made through either is in
/// the other's next answer (the versions they both read are raised in the change's
/// transaction), whether it is organisation-wide or in one building, and a building's change
/// leaves the other buildings' lines as they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_never_serve_a_stale_schedule() {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let cfg = test_config(&db);
    let second = db.shared();
    let a = TestServer::start_with(db, cfg.clone()).await;
    let n2 = TestServer::start_with(second, cfg).await;
    let org = a.org("Acme").await;
    let t = org.admin.token.as_str();
    let today = Utc::now().date_naive();
    let b = create_building(&a, t, json!({})).await;
    let ext0 = create_asset(
        &a,
        t,
        b,
        json!({ "asset_type": "portable_extinguisher", "location": "Lobby",
                "identifier": "EXT-0", "rule_codes": [EXT_6M] }),
    )
    .await;
    // Both nodes compute and keep it.
    for node in [&a, &n2] {
        let s = year(node, t, None).await;
        assert_eq!(s["overdue"], 1);
        assert_eq!(building_status(node, t, b).await["overdue"], 1);
    }
    // Serviced, through the second node: the first one sees it.
    serviced_today(&n2, t, b, ext0).await;
    let s = year(&a, t, None).await;
    assert_eq!(s["overdue"], 0, "{s}");
    assert_eq!(year(&a, t, Some(b)).await["overdue"], 0);
    assert_eq!(building_status(&a, t, b).await["overall"], "compliant");
    // An asset added through the first: the second lists it.
    create_asset(
        &a,
        t,
        b,
        json!({ "asset_type": "portable_extinguisher", "location": "Roof",
                "identifier": "EXT-1", "rule_codes": [EXT_6M] }),
    )
    .await;
    let s = year(&n2, t, None).await;
    assert_eq!(s["overdue"], 1, "{s}");
    item(&s, "EXT-1");
    assert_eq!(building_status(&n2, t, b).await["overdue"], 1);
    // The anchor, through the second: the first moves every grid.
    let anchor = today - Days::new(20);
    let r = patch(
        &n2,
        t,
        &format!("/v1/buildings/{b}"),
        json!({ "schedule_anchor": anchor }),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let s = year(&a, t, None).await;
    for i in s["items"].as_array().unwrap() {
        assert_eq!(i["anchor"], anchor.to_string(), "{i}");
    }

    // Per building: a second building, cached by both nodes with the first.
    let b2 = create_building(&a, t, json!({ "name": "Second House" })).await;
    let ext2 = create_asset(
        &a,
        t,
        b2,
        json!({ "asset_type": "portable_extinguisher", "location": "Foyer",
                "identifier": "EXT-2", "rule_codes": [EXT_6M] }),
    )
    .await;
    let s = year(&a, t, None).await;
    assert_eq!(s, year(&n2, t, None).await);
    assert_eq!(item(&s, "EXT-2")["overdue"], true);
    let first_lines = lines(&s, Some(b));
    // A service in the second building, through the second node: the first node's next
    // answer has it, and the first building's lines as they were.
    serviced_today(&n2, t, b2, ext2).await;
    let s = year(&a, t, None).await;
    assert_eq!(item(&s, "EXT-2")["overdue"], false, "{s}");
    assert_eq!(lines(&s, Some(b)), first_lines);
    assert_eq!(s, year(&n2, t, None).await);
    assert_eq!(year(&a, t, Some(b2)).await["overdue"], 0);
    // An asset of the first building edited through the first node: the second node's next
    // answer shows it.
    let r = patch(
        &a,
        t,
        &format!("/v1/buildings/{b}/assets/{ext0}"),
        json!({ "location": "Basement" }),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let s = year(&n2, t, None).await;
    assert_eq!(item(&s, "EXT-0")["location"], "Basement", "{s}");
    assert_eq!(s, year(&a, t, None).await);
    // The second building deleted through the second node: gone from the first's answer.
    let r = Client::send(n2.client.request(
        Method::DELETE,
        &format!("/v1/buildings/{b2}"),
        Some(t),
    ))
    .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let s = year(&a, t, None).await;
    assert!(lines(&s, Some(b2)).is_empty(), "{s}");
    assert_eq!(lines(&s, Some(b)), lines(&year(&a, t, Some(b)).await, None));
}

/// A building of the model test: its assets and the session results are recorded in.
struct ModelBuilding {
    id: Uuid,
    assets: Vec<Uuid>,
    session: Option<String>,
    archived: bool,
}

/// An asset body of kind `k` (0 extinguisher, 1 fire door, 2 sprinkler) named `tag`.
fn model_asset(k: usize, tag: &str) -> Value {
    match k % 3 {
        0 => json!({ "asset_type": "portable_extinguisher", "location": "Level 1",
                     "identifier": tag, "rule_codes": [EXT_6M, EXT_12M] }),
        1 => json!({ "asset_type": "fire_door", "location": "Stair A",
                     "identifier": tag, "rule_codes": [FD_6M] }),
        _ => json!({ "asset_type": "sprinkler_system", "location": "Valve room",
                     "identifier": tag, "rule_codes": [SPR_1M] }),
    }
}

/// The schedule of `srv` checked against a node started now on the same database (nothing
/// cached: computed from scratch), and each building's lines against its own schedule.
async fn check_against_fresh(
    srv: &TestServer,
    fresh_db: &TestDb,
    cfg: &firemode_server::config::Config,
    t: &str,
    buildings: &[ModelBuilding],
    what: &str,
) {
    let warm = year(srv, t, None).await;
    let fresh = TestServer::start_with(fresh_db.shared(), cfg.clone()).await;
    let cold = year(&fresh, t, None).await;
    fresh.stop().await;
    assert_eq!(warm, cold, "after {what}");
    for b in buildings.iter().filter(|b| !b.archived) {
        assert_eq!(
            lines(&warm, Some(b.id)),
            lines(&year(srv, t, Some(b.id)).await, None),
            "building {} after {what}",
            b.id
        );
    }
}

/// A model test over random sequences of changes (results recorded in sessions, office
/// services, assets added and edited, buildings renamed, re-anchored, added and archived,
/// holidays): after each step the organisation's schedule from the node that keeps its cache
/// equals a fresh node's on the same database, and each building's part of it equals the
/// building's own schedule. `FIREMODE_SCHEDULE_SEED` replays a sequence.
async fn random_changes_match_a_fresh_node(be: Backend) {
    let Some(db) = TestDb::new(be).await else {
        return;
    };
    let cfg = test_config(&db);
    let fresh_db = db.shared();
    let srv = TestServer::start_with(db, cfg.clone()).await;
    let org = srv.org("Acme").await;
    let t = org.admin.token.as_str();
    let today = Utc::now().date_naive();
    let seed: u64 = std::env::var("FIREMODE_SCHEDULE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("random_changes_match_a_fresh_node: FIREMODE_SCHEDULE_SEED={seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut buildings: Vec<ModelBuilding> = Vec::new();
    let mut tags = 0usize;
    let mut tag = || {
        tags += 1;
        format!("T-{tags:03}")
    };
    for (i, (name, st)) in [
        ("Alpha House", "NSW"),
        ("Bravo House", "VIC"),
        ("Charlie House", "QLD"),
    ]
    .iter()
    .enumerate()
    {
        let id = create_building(&srv, t, json!({ "name": name, "state": st })).await;
        let mut assets = Vec::new();
        for k in 0..3 + i {
            assets.push(create_asset(&srv, t, id, model_asset(k, &tag())).await);
        }
        buildings.push(ModelBuilding {
            id,
            assets,
            session: None,
            archived: false,
        });
    }
    check_against_fresh(&srv, &fresh_db, &cfg, t, &buildings, "setup").await;
    for step in 0..10 {
        let mut done = Vec::new();
        for _ in 0..rng.gen_range(1..=2) {
            let open: Vec<usize> = (0..buildings.len())
                .filter(|i| !buildings[*i].archived)
                .collect();
            let bi = open[rng.gen_range(0..open.len())];
            let b = buildings[bi].id;
            let asset = buildings[bi].assets[rng.gen_range(0..buildings[bi].assets.len())];
            match rng.gen_range(0..9) {
                0 | 1 => {
                    // A result recorded in the building's session (made the first time).
                    if buildings[bi].session.is_none() {
                        let s = session(
                            &srv,
                            &org.admin,
                            &Building {
                                id: b,
                                assets: buildings[bi].assets.clone(),
                            },
                            &[],
                        )
                        .await;
                        buildings[bi].session = Some(s["id"].as_str().unwrap().to_owned());
                    }
                    // Any asset of the building: one without a six-monthly routine is refused
                    // (422) and changes nothing.
                    let mb = &buildings[bi];
                    let outcome = ["pass", "not_accessible"][rng.gen_range(0..2)];
                    let r = Client::send(
                        srv.client
                            .request(
                                Method::POST,
                                &format!(
                                    "/v1/tests/sessions/{}/results",
                                    mb.session.as_ref().unwrap()
                                ),
                                Some(t),
                            )
                            .header("idempotency-key", Uuid::new_v4().to_string())
                            .json(
                                &json!({ "results": [{ "asset_id": asset, "outcome": outcome }] }),
                            ),
                    )
                    .await;
                    assert!(
                        r.status == 200 || r.status == 422,
                        "result: {} {}",
                        r.status,
                        r.body
                    );
                    done.push(format!("result {outcome} in {b}"));
                }
                2 => {
                    // An office service some days ago (each kind's six-monthly routine or the
                    // sprinkler's monthly one).
                    let on = today - Days::new(rng.gen_range(1..400));
                    let a = srv
                        .client
                        .get(&format!("/v1/buildings/{b}/assets/{asset}"), Some(t))
                        .await;
                    let code = match a.json["asset_type"].as_str().unwrap() {
                        "portable_extinguisher" => EXT_6M,
                        "fire_door" => FD_6M,
                        _ => SPR_1M,
                    };
                    let r = srv
                        .client
                        .post(
                            &format!("/v1/buildings/{b}/assets/{asset}/service-history"),
                            Some(t),
                            &json!({ "rule_code": code, "serviced_on": on.to_string(),
                                     "outcome": "pass" }),
                        )
                        .await;
                    assert!(r.status == 201 || r.status == 409, "{}", r.body);
                    done.push(format!("service {code} on {on} in {b}"));
                }
                3 => {
                    let k = rng.gen_range(0..3);
                    let id = create_asset(&srv, t, b, model_asset(k, &tag())).await;
                    buildings[bi].assets.push(id);
                    done.push(format!("asset added to {b}"));
                }
                4 => {
                    let body = match rng.gen_range(0..3) {
                        0 => json!({ "location": format!("Moved {step}") }),
                        1 => json!({ "identifier": tag() }),
                        _ => json!({ "schedule_anchor": today - Days::new(rng.gen_range(0..300)) }),
                    };
                    let r = patch(
                        &srv,
                        t,
                        &format!("/v1/buildings/{b}/assets/{asset}"),
                        body.clone(),
                    )
                    .await;
                    assert_eq!(r.status, 200, "{}", r.body);
                    done.push(format!("asset edited in {b}: {body}"));
                }
                5 => {
                    let body = match rng.gen_range(0..2) {
                        0 => {
                            json!({ "name": format!("{} House", ["Delta", "Echo", "Able", "Zulu"][rng.gen_range(0..4)]) })
                        }
                        _ => json!({ "schedule_anchor": today - Days::new(rng.gen_range(0..200)) }),
                    };
                    let r = patch(&srv, t, &format!("/v1/buildings/{b}"), body.clone()).await;
                    assert_eq!(r.status, 200, "{}", r.body);
                    done.push(format!("building {b} edited: {body}"));
                }
                6 => {
                    // A holiday on a working day soon: every NSW building's windows.
                    let mut day = today + Days::new(rng.gen_range(1..60));
                    while matches!(
                        chrono::Datelike::weekday(&day),
                        chrono::Weekday::Sat | chrono::Weekday::Sun
                    ) {
                        day = day + Days::new(1);
                    }
                    let r = Client::send(
                        srv.client
                            .request(
                                Method::PUT,
                                &format!("/v1/holidays/NSW/{}", chrono::Datelike::year(&day)),
                                Some(t),
                            )
                            .json(
                                &json!({ "holidays": [{ "date": day, "name": "Site shutdown" }] }),
                            ),
                    )
                    .await;
                    assert_eq!(r.status, 200, "{}", r.body);
                    done.push(format!("holiday {day}"));
                }
                7 => {
                    let id = create_building(
                        &srv,
                        t,
                        json!({ "name": format!("New House {step}"), "state": "NSW" }),
                    )
                    .await;
                    let a = create_asset(&srv, t, id, model_asset(step, &tag())).await;
                    buildings.push(ModelBuilding {
                        id,
                        assets: vec![a],
                        session: None,
                        archived: false,
                    });
                    done.push(format!("building {id} added"));
                }
                _ => {
                    // Deleted (archived when it holds a session); one building stays open.
                    if open.len() < 2 {
                        continue;
                    }
                    let r = Client::send(srv.client.request(
                        Method::DELETE,
                        &format!("/v1/buildings/{b}"),
                        Some(t),
                    ))
                    .await;
                    assert_eq!(r.status, 204, "{}", r.body);
                    buildings[bi].archived = true;
                    done.push(format!("building {b} deleted"));
                }
            }
        }
        let what = format!("step {step} ({}), seed {seed}", done.join("; "));
        check_against_fresh(&srv, &fresh_db, &cfg, t, &buildings, &what).await;
    }
}

/// `firemode_schedule_loads_total` by `what`, from `/metrics`.
async fn loads(srv: &TestServer) -> std::collections::HashMap<String, u64> {
    let r = srv.client.get("/metrics", None).await;
    assert_eq!(r.status, 200);
    r.body
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("firemode_schedule_loads_total{what=\"")?;
            let (what, n) = rest.split_once("\"} ")?;
            Some((what.to_owned(), n.trim().parse().ok()?))
        })
        .collect()
}

fn delta(
    before: &std::collections::HashMap<String, u64>,
    after: &std::collections::HashMap<String, u64>,
    what: &str,
) -> u64 {
    after.get(what).copied().unwrap_or(0) - before.get(what).copied().unwrap_or(0)
}

/// Single flight: twenty requests sent together right after a change wait for one load and
/// one computation — of the changed building only after a change in one building, of every
/// building after an organisation-wide change — and get the same answer; the same for a
/// building's report.
async fn a_burst_of_requests_after_a_change_loads_once(be: Backend) {
    let Some(srv) = TestServer::start(be).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let t = org.admin.token.as_str();
    let mut bs = Vec::new();
    for (i, name) in ["Alpha House", "Bravo House", "Charlie House"]
        .iter()
        .enumerate()
    {
        let b = create_building(&srv, t, json!({ "name": name, "state": "NSW" })).await;
        let a = create_asset(&srv, t, b, model_asset(0, &format!("EXT-{i}"))).await;
        bs.push((b, a));
    }
    let first = year(&srv, t, None).await;
    assert_eq!(first["overdue"], 6, "{first}");
    let burst = |n: usize| futures_util::future::join_all((0..n).map(|_| year(&srv, t, None)));

    // A service in one building: that building alone is loaded again, once.
    let (b0, a0) = bs[0];
    serviced_today(&srv, t, b0, a0).await;
    let before = loads(&srv).await;
    let answers = burst(20).await;
    let after = loads(&srv).await;
    assert!(answers.iter().all(|a| *a == answers[0]));
    assert_eq!(answers[0]["overdue"], 5, "{}", answers[0]);
    assert_eq!(delta(&before, &after, "building"), 1, "{after:?}");
    assert_eq!(delta(&before, &after, "lines"), 1, "{after:?}");
    assert_eq!(delta(&before, &after, "merge"), 1, "{after:?}");
    assert_eq!(delta(&before, &after, "organisation"), 0, "{after:?}");

    // As served: nothing loaded or computed.
    let before = after;
    burst(5).await;
    let after = loads(&srv).await;
    assert_eq!(before, after);

    // An organisation-wide change (a holiday): every building once, one merge.
    let r = Client::send(
        srv.client
            .request(Method::PUT, "/v1/holidays/NSW/2100", Some(t))
            .json(&json!({ "holidays": [{ "date": "2100-03-01", "name": "Far off" }] })),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let before = loads(&srv).await;
    let answers = burst(20).await;
    let after = loads(&srv).await;
    assert!(answers.iter().all(|a| *a == answers[0]));
    assert_eq!(delta(&before, &after, "building"), 3, "{after:?}");
    assert_eq!(delta(&before, &after, "lines"), 3, "{after:?}");
    assert_eq!(delta(&before, &after, "merge"), 1, "{after:?}");

    // A building's report after an edit of one of its assets: loaded once for twenty.
    let (b1, a1) = bs[1];
    let r = patch(
        &srv,
        t,
        &format!("/v1/buildings/{b1}/assets/{a1}"),
        json!({ "location": "Roof" }),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let before = loads(&srv).await;
    let path = format!("/v1/buildings/{b1}/compliance");
    let reports =
        futures_util::future::join_all((0..20).map(|_| srv.client.get(&path, Some(t)))).await;
    let after = loads(&srv).await;
    for r in &reports {
        assert_eq!(r.status, 200, "{}", r.body);
    }
    assert_eq!(delta(&before, &after, "report"), 1, "{after:?}");
}

/// An office entry through `node`'s API: the six-monthly extinguisher routine of `asset` in
/// `building`, done today and passed.
async fn serviced_today(node: &TestServer, token: &str, building: Uuid, asset: Uuid) {
    let today = Utc::now().date_naive();
    let r = node
        .client
        .post(
            &format!("/v1/buildings/{building}/assets/{asset}/service-history"),
            Some(token),
            &json!({ "rule_code": EXT_6M, "serviced_on": today.to_string(), "outcome": "pass" }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
}
