//! Editions and routine alternatives (issue 11, part 6 and the alternatives of part 1): a
//! building pins one edition per standard and gets that edition's routines and
//! classifications — in new sessions, the projection and the compliance report — whatever
//! editions the library gains later; an admin changes a pin (audited); per asset an office or
//! admin user chooses a routine alternative, and the report and new sessions follow it. Bad
//! input is refused with the field named and changes nothing.

use std::collections::BTreeSet;

use firemode_server::rules::{self, Classification, Library, RuleSetDef, RuleSetRef};
use firemode_tests::{assert_problem, backend_tests, Backend, Client, Org, Resp, TestServer};
use serde_json::{json, Value};
use uuid::Uuid;

backend_tests!(
    pinned_editions_choose_routines_and_classification,
    a_future_edition_does_not_change_a_pinned_building,
    pins_are_validated_admin_only_and_audited,
    routine_alternatives_follow_the_choice,
    alternatives_are_validated_and_change_nothing,
    a_2005_building_is_serviced_under_the_whole_2005_edition,
);

const CURRENT: &str =
    r#"[{"code": "AS1851", "version": "2012.1.0"}, {"code": "AS2293.2", "version": "2019.1.0"}]"#;
const OLDER: &str =
    r#"[{"code": "AS1851", "version": "2005.1.0"}, {"code": "AS2293.2", "version": "1995.1.0"}]"#;

async fn new_building(srv: &TestServer, token: &str, name: &str, editions: Option<&str>) -> Resp {
    let mut body =
        json!({ "name": name, "address": "1 Edition St, Sydney NSW", "building_type": "Class 5" });
    if let Some(e) = editions {
        body["editions"] = serde_json::from_str(e).unwrap();
    }
    let r = srv.client.post("/v1/buildings", Some(token), &body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    r
}

async fn new_asset(srv: &TestServer, token: &str, building: Uuid, kind: &str, tag: &str) -> Uuid {
    let r = srv
        .client
        .post(
            &format!("/v1/buildings/{building}/assets"),
            Some(token),
            &json!({ "asset_type": kind, "location": "Level 1", "identifier": tag }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.uuid("id")
}

/// A session at `frequency`; returns its id and each asset's rule code.
async fn new_session(
    srv: &TestServer,
    token: &str,
    building: Uuid,
    frequency: &str,
) -> (String, Vec<(String, String)>) {
    let r = srv
        .client
        .post(
            "/v1/tests/sessions",
            Some(token),
            &json!({ "building_id": building, "name": format!("{frequency} service"), "frequency": frequency }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.str("id").to_owned();
    (id.clone(), items(srv, token, &id).await)
}

async fn items(srv: &TestServer, token: &str, session: &str) -> Vec<(String, String)> {
    let r = srv
        .client
        .get(
            &format!("/v1/tests/sessions/{session}/results"),
            Some(token),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let mut out: Vec<(String, String)> = r.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["asset_id"].as_str().unwrap().to_owned(),
                i["rule_code"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

/// Record one failed item with `condition` and return the item's classification.
async fn fail_with(
    srv: &TestServer,
    token: &str,
    session: &str,
    asset: Uuid,
    condition: &str,
) -> Value {
    let r = Client::send(
        srv.client
            .request(
                reqwest::Method::POST,
                &format!("/v1/tests/sessions/{session}/results"),
                Some(token),
            )
            .header("idempotency-key", Uuid::new_v4().to_string())
            .json(&json!({ "results": [
                { "asset_id": asset, "outcome": "fail", "observed_condition": condition }
            ] })),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = srv
        .client
        .get(
            &format!("/v1/tests/sessions/{session}/results"),
            Some(token),
        )
        .await;
    r.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["asset_id"] == asset.to_string())
        .unwrap()["classification"]
        .clone()
}

/// (asset identifier, rule code) of every row of the building's compliance report.
async fn report_rules(srv: &TestServer, token: &str, building: Uuid) -> BTreeSet<(String, String)> {
    let r = srv
        .client
        .get(&format!("/v1/buildings/{building}/compliance"), Some(token))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["identifier"].as_str().unwrap().to_owned(),
                i["rule_code"].as_str().unwrap_or("-").to_owned(),
            )
        })
        .collect()
}

fn set(items: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    items
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn codes(items: &[(String, String)]) -> Vec<&str> {
    let mut c: Vec<&str> = items.iter().map(|(_, c)| c.as_str()).collect();
    c.sort();
    c
}

async fn pinned_editions_choose_routines_and_classification(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let t = org.admin.token.as_str();
    // A building that names no edition is pinned to the default of each standard.
    let current = new_building(&srv, t, "Current", None).await;
    assert_eq!(
        current.json["editions"],
        serde_json::from_str::<Value>(CURRENT).unwrap()
    );
    assert_eq!(
        current.json["rule_set"],
        json!({ "code": "AS1851", "version": "2012.1.0" })
    );
    let older = new_building(&srv, t, "Older", Some(OLDER)).await;
    assert_eq!(
        older.json["editions"],
        serde_json::from_str::<Value>(OLDER).unwrap()
    );
    assert_eq!(
        older.json["rule_set"],
        json!({ "code": "AS1851", "version": "2005.1.0" })
    );
    let (cur, old) = (current.uuid("id"), older.uuid("id"));
    for building in [cur, old] {
        new_asset(&srv, t, building, "sprinkler_system", "SPR-1").await;
        new_asset(&srv, t, building, "diesel_fire_pumpset", "PMP-D").await;
        new_asset(&srv, t, building, "emergency_lighting", "EL-1").await;
    }

    // Sessions: the 2005 building has weekly routines, the 2012 one has none; monthly is the
    // other way round; the luminaires follow their AS/NZS 2293.2 edition.
    let (_, weekly_cur) = new_session(&srv, t, cur, "weekly").await;
    assert!(weekly_cur.is_empty(), "{weekly_cur:?}");
    let (weekly_id, weekly_old) = new_session(&srv, t, old, "weekly").await;
    assert_eq!(
        codes(&weekly_old),
        vec!["AS1851-2005-2-1W-SPR", "AS1851-2005-3-1W-DPMP"]
    );
    let (_, monthly_cur) = new_session(&srv, t, cur, "monthly").await;
    assert!(
        codes(&monthly_cur).contains(&"AS1851-2-1M-SPR"),
        "{monthly_cur:?}"
    );
    let (_, monthly_old) = new_session(&srv, t, old, "monthly").await;
    assert!(monthly_old.is_empty(), "{monthly_old:?}");
    let (six_cur_id, six_cur) = new_session(&srv, t, cur, "six_monthly").await;
    assert!(codes(&six_cur).contains(&"AS2293-6M-EL"), "{six_cur:?}");
    let (six_old_id, six_old) = new_session(&srv, t, old, "six_monthly").await;
    assert_eq!(
        codes(&six_old),
        vec!["AS1851-2005-2-6M-SPR", "AS2293-1995-6M-EL"]
    );

    // Classification by the pinned edition: the 2005 weekly sprinkler test knows a pump that
    // does not start (critical); the 2012 luminaire and the 1995 one classify a dark fitting
    // alike, but only the 1995 rule has the reading `operates_on_supply_failure`.
    let spr_old: Uuid = weekly_old
        .iter()
        .find(|(_, c)| c == "AS1851-2005-2-1W-SPR")
        .unwrap()
        .0
        .parse()
        .unwrap();
    assert_eq!(
        fail_with(&srv, t, &weekly_id, spr_old, "pump_fails_to_start").await,
        json!(Classification::CriticalDefect)
    );
    let el = |items: &[(String, String)], code: &str| -> Uuid {
        items
            .iter()
            .find(|(_, c)| c == code)
            .unwrap()
            .0
            .parse()
            .unwrap()
    };
    let reading = |asset: Uuid| {
        json!({ "results": [{ "asset_id": asset, "outcome": "fail",
                              "observed_condition": "luminaire_fails_to_illuminate",
                              "readings": { "operates_on_supply_failure": false } }] })
    };
    let post = |sid: &str, body: Value| {
        Client::send(
            srv.client
                .request(
                    reqwest::Method::POST,
                    &format!("/v1/tests/sessions/{sid}/results"),
                    Some(t),
                )
                .header("idempotency-key", Uuid::new_v4().to_string())
                .json(&body),
        )
    };
    let r = post(&six_old_id, reading(el(&six_old, "AS2293-1995-6M-EL"))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = post(&six_cur_id, reading(el(&six_cur, "AS2293-6M-EL"))).await;
    assert_problem(&r, 422, "unknown_reading");

    // The compliance report takes each building's editions: no 2005 rule in the 2012
    // building, no 2012 rule in the 2005 one, whose weekly routines are scheduled like the
    // others.
    let cur_rows = report_rules(&srv, t, cur).await;
    let old_rows = report_rules(&srv, t, old).await;
    assert!(cur_rows.contains(&("SPR-1".into(), "AS1851-2-1M-SPR".into())));
    assert!(cur_rows.contains(&("EL-1".into(), "AS2293-6M-EL".into())));
    assert!(
        cur_rows
            .iter()
            .all(|(_, c)| !c.contains("2005") && !c.contains("1995")),
        "{cur_rows:?}"
    );
    assert_eq!(
        old_rows,
        set(&[
            ("EL-1", "AS2293-1995-12M-EL"),
            ("EL-1", "AS2293-1995-6M-EL"),
            ("PMP-D", "AS1851-2005-3-12M-DPMP"),
            ("PMP-D", "AS1851-2005-3-1W-DPMP"),
            ("SPR-1", "AS1851-2005-2-12M-SPR"),
            ("SPR-1", "AS1851-2005-2-1W-SPR"),
            ("SPR-1", "AS1851-2005-2-5Y-SPR"),
            ("SPR-1", "AS1851-2005-2-6M-SPR"),
        ])
    );
    // An asset may list only rules of its building's editions.
    let client = &srv.client;
    let listed = |building: Uuid| {
        let body = json!({ "asset_type": "sprinkler_system", "location": "Riser",
                           "rule_codes": ["AS1851-2005-2-1W-SPR"] });
        let path = format!("/v1/buildings/{building}/assets");
        async move { client.post(&path, Some(t), &body).await }
    };
    assert_problem(&listed(cur).await, 422, "unknown_rule");
    assert_eq!(listed(old).await.status, 201);
}

/// The shipped library plus a future AS 1851 edition that reuses the six-monthly fire-door
/// code with a stricter classification, and adds a three-monthly door routine.
fn future_library() -> Library {
    let mut lib = rules::library().clone();
    let edition = RuleSetRef::new("AS1851", "2030.1.0");
    lib.rule_sets.push(RuleSetDef {
        code: edition.code.clone(),
        version: edition.version.clone(),
        title: "A future edition".into(),
        default: false,
    });
    let mut door = lib
        .rules
        .iter()
        .find(|r| r.code == "AS1851-12-6M-FD")
        .unwrap()
        .clone();
    door.version = "2030.1.0".into();
    door.rule_set = Some(edition.clone());
    door.classification_mappings
        .insert("door_fails_to_latch".into(), Classification::CriticalDefect);
    door.rationale.insert(
        "door_fails_to_latch".into(),
        "Critical in the future edition: an unlatched door is pushed open by fire pressure.".into(),
    );
    let mut quarterly = door.clone();
    quarterly.code = "AS1851-2030-12-3M-FD".into();
    quarterly.frequency = "three_monthly".into();
    lib.rules.push(door);
    lib.rules.push(quarterly);
    lib
}

async fn a_future_edition_does_not_change_a_pinned_building(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let t = org.admin.token.as_str();
    let pinned = new_building(&srv, t, "Pinned", None).await.uuid("id");
    let door = new_asset(&srv, t, pinned, "fire_door", "FD-1").await;
    let (before_id, before_items) = new_session(&srv, t, pinned, "six_monthly").await;
    assert_eq!(codes(&before_items), vec!["AS1851-12-6M-FD"]);
    let before_class = fail_with(&srv, t, &before_id, door, "door_fails_to_latch").await;
    assert_eq!(before_class, json!("non_critical_defect"));
    let report_before = report_rules(&srv, t, pinned).await;

    // The library gains a future edition (as an upgraded binary would seed it).
    let added = rules::seed(srv.store().as_ref(), &future_library())
        .await
        .unwrap();
    assert_eq!(added, 2);
    // The catalogue shows the newest version of the code ...
    let latest = srv.client.get("/v1/rules/AS1851-12-6M-FD", Some(t)).await;
    assert_eq!(latest.json["version"], "2030.1.0");
    assert_eq!(
        latest.json["rule_set"],
        json!({ "code": "AS1851", "version": "2030.1.0" })
    );
    // ... but the pinned building keeps its edition: same routines, same classification.
    let (after_id, after_items) = new_session(&srv, t, pinned, "six_monthly").await;
    assert_eq!(codes(&after_items), vec!["AS1851-12-6M-FD"]);
    assert_eq!(
        fail_with(&srv, t, &after_id, door, "door_fails_to_latch").await,
        before_class
    );
    let (_, quarterly) = new_session(&srv, t, pinned, "three_monthly").await;
    assert!(quarterly.is_empty(), "{quarterly:?}");
    assert_eq!(report_rules(&srv, t, pinned).await, report_before);
    // Classification and the catalogue asked for the building follow its pin too; without a
    // building they take the newest version.
    let classify = |building: Option<Uuid>| {
        let mut body =
            json!({ "rule_code": "AS1851-12-6M-FD", "observed_condition": "door_fails_to_latch" });
        if let Some(b) = building {
            body["building_id"] = json!(b);
        }
        let c = &srv.client;
        async move { c.post("/v1/classify", Some(t), &body).await }
    };
    let r = classify(Some(pinned)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json["classification"], "non_critical_defect",
        "{}",
        r.body
    );
    // The rule's own version within the 2012 edition (rules are revised within an edition).
    assert!(
        r.json["rule_version"]
            .as_str()
            .unwrap()
            .starts_with("2012."),
        "{}",
        r.body
    );
    let r = classify(None).await;
    assert_eq!(
        (&r.json["classification"], &r.json["rule_version"]),
        (&json!("critical_defect"), &json!("2030.1.0"))
    );
    let catalogue = |q: String| {
        let c = &srv.client;
        async move {
            let r = c.get(&format!("/v1/rules?limit=500&{q}"), Some(t)).await;
            assert_eq!(r.status, 200, "{}", r.body);
            r.json["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| {
                    (
                        i["code"].as_str().unwrap().to_owned(),
                        i["version"].as_str().unwrap().to_owned(),
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    let for_pinned = catalogue(format!("building_id={pinned}&equipment=fire_door")).await;
    assert!(
        for_pinned
            .iter()
            .any(|(c, v)| c == "AS1851-12-6M-FD" && v.starts_with("2012.")),
        "{for_pinned:?}"
    );
    assert!(
        !for_pinned.iter().any(|(c, _)| c == "AS1851-2030-12-3M-FD"),
        "{for_pinned:?}"
    );
    let newest = catalogue("equipment=fire_door".into()).await;
    assert!(
        newest.contains(&("AS1851-12-6M-FD".into(), "2030.1.0".into())),
        "{newest:?}"
    );
    // Another organisation's building is not found, and nothing is classified for it.
    let other = srv.org("Other").await;
    let r = srv
        .client
        .post(
            "/v1/classify",
            Some(&other.admin.token),
            &json!({ "rule_code": "AS1851-12-6M-FD", "observed_condition": "door_fails_to_latch",
                     "building_id": pinned }),
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.body);
    let r = srv
        .client
        .get(
            &format!("/v1/rules?building_id={pinned}"),
            Some(&other.admin.token),
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.body);

    // A building pinned to the future edition gets it.
    let future = new_building(&srv, t, "Future", None).await.uuid("id");
    let r = srv
        .client
        .patch(
            &format!("/v1/buildings/{future}"),
            Some(t),
            &json!({ "rule_set": { "code": "AS1851", "version": "2030.1.0" } }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let fdoor = new_asset(&srv, t, future, "fire_door", "FD-2").await;
    let (fid, fitems) = new_session(&srv, t, future, "six_monthly").await;
    assert_eq!(codes(&fitems), vec!["AS1851-12-6M-FD"]);
    assert_eq!(
        fail_with(&srv, t, &fid, fdoor, "door_fails_to_latch").await,
        json!("critical_defect")
    );
    let (_, fquarterly) = new_session(&srv, t, future, "three_monthly").await;
    assert_eq!(codes(&fquarterly), vec!["AS1851-2030-12-3M-FD"]);
    assert!(report_rules(&srv, t, future)
        .await
        .contains(&("FD-2".into(), "AS1851-2030-12-3M-FD".into())));
}

async fn pins_are_validated_admin_only_and_audited(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let office = srv.user(&org, "office").await;
    let auditor = srv.user(&org, "auditor").await;
    let t = org.admin.token.as_str();
    let id = new_building(&srv, &office.token, "Pins", None)
        .await
        .uuid("id");
    let url = format!("/v1/buildings/{id}");
    let before = srv.client.get(&url, Some(t)).await.json;

    let cases: Vec<(Value, u16, &str)> = vec![
        (
            json!({ "editions": [{ "code": "AS2293.2", "version": "2001.1.0" }] }),
            422,
            "unknown_rule_set",
        ),
        (
            json!({ "editions": [{ "code": "AS2293.2", "version": "1995.1.0" }, { "code": "AS2293.2", "version": "2019.1.0" }] }),
            422,
            "invalid_field",
        ),
        (
            json!({ "rule_set": { "code": "AS2293.2", "version": "1995.1.0" } }),
            422,
            "invalid_rule_set",
        ),
        (
            json!({ "rule_set": { "code": "AS1851", "version": "2005.1.0" },
                 "editions": [{ "code": "AS1851", "version": "2012.1.0" }] }),
            422,
            "invalid_field",
        ),
        (
            json!({ "editions": [{ "code": "AS2293.2" }] }),
            422,
            "invalid_body",
        ),
        (
            json!({ "editions": [{ "code": "AS2293.2\u{0}", "version": "1995.1.0" }] }),
            422,
            "invalid_text",
        ),
        (json!({ "editions": "AS2293.2" }), 422, "invalid_body"),
    ];
    for (body, status, code) in cases {
        let r = srv.client.patch(&url, Some(t), &body).await;
        assert_problem(&r, status, code);
    }
    // Office and auditor may not change a pin; office may resend the same pins.
    let change = json!({ "editions": [{ "code": "AS2293.2", "version": "1995.1.0" }] });
    assert_problem(
        &srv.client.patch(&url, Some(&office.token), &change).await,
        403,
        "forbidden",
    );
    assert_problem(
        &srv.client.patch(&url, Some(&auditor.token), &change).await,
        403,
        "forbidden",
    );
    let same =
        json!({ "name": "Pins 2", "editions": serde_json::from_str::<Value>(CURRENT).unwrap() });
    let r = srv.client.patch(&url, Some(&office.token), &same).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let after_refusals = srv.client.get(&url, Some(t)).await.json;
    assert_eq!(
        after_refusals["editions"], before["editions"],
        "nothing changed"
    );
    assert_eq!(after_refusals["rule_set"], before["rule_set"]);

    // A door's yearly alternative, chosen under AS 1851-2012, is dropped (and audited) when the
    // building moves to an edition without it, so the door is never left with neither routine.
    let door = srv
        .client
        .post(
            &format!("/v1/buildings/{id}/assets"),
            Some(t),
            &json!({ "asset_type": "fire_door", "location": "Stair 1", "identifier": "FD-1" }),
        )
        .await
        .uuid("id");
    let door_url = format!("/v1/buildings/{id}/assets/{door}");
    let r = srv
        .client
        .patch(
            &door_url,
            Some(t),
            &json!({ "alternatives": ["AS1851-12-12M-FD"] }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // A lighting pin change keeps it (the 2012 edition still has the alternative).
    let r = srv.client.patch(&url, Some(t), &change).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let kept = srv.client.get(&door_url, Some(t)).await;
    assert_eq!(kept.json["alternatives"], json!(["AS1851-12-12M-FD"]));
    let back = json!({ "editions": [{ "code": "AS2293.2", "version": "2019.1.0" }] });
    assert_eq!(srv.client.patch(&url, Some(t), &back).await.status, 200);
    let old = json!({ "rule_set": { "code": "AS1851", "version": "2005.1.0" } });
    assert_eq!(srv.client.patch(&url, Some(t), &old).await.status, 200);
    let dropped = srv.client.get(&door_url, Some(t)).await;
    assert_eq!(dropped.json["alternatives"], json!([]));
    let modern = json!({ "rule_set": { "code": "AS1851", "version": "2012.1.0" } });
    assert_eq!(srv.client.patch(&url, Some(t), &modern).await.status, 200);

    // The admin changes the lighting pin only; the AS 1851 pin stays.
    let r = srv.client.patch(&url, Some(t), &change).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json["editions"],
        json!([{ "code": "AS1851", "version": "2012.1.0" }, { "code": "AS2293.2", "version": "1995.1.0" }])
    );
    // Another organisation's building is 404 before anything else.
    let other = srv.org("Other").await;
    assert_problem(
        &srv.client
            .patch(&url, Some(&other.admin.token), &change)
            .await,
        404,
        "not_found",
    );

    let audits = srv
        .client
        .get("/v1/users/me/audits?limit=500", Some(t))
        .await;
    let update = audits.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| {
            a["action"] == "building.update"
                && a["details"]["new"]["editions"][1]["version"] == "1995.1.0"
        })
        .unwrap_or_else(|| panic!("no audited pin change in {}", audits.body));
    assert_eq!(update["target_id"], id.to_string());
    assert_eq!(
        update["details"]["old"]["editions"][1]["version"],
        "2019.1.0"
    );
    let moved = audits.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| {
            a["action"] == "building.update"
                && a["details"]["new"]["rule_set"]["version"] == "2005.1.0"
        })
        .unwrap();
    assert_eq!(
        moved["details"]["alternatives_dropped"],
        json!([{ "asset_id": door, "alternatives": ["AS1851-12-12M-FD"] }])
    );
}

async fn patch_alternatives(
    srv: &TestServer,
    token: &str,
    building: Uuid,
    asset: Uuid,
    codes: Value,
) -> Resp {
    srv.client
        .patch(
            &format!("/v1/buildings/{building}/assets/{asset}"),
            Some(token),
            &json!({ "alternatives": codes }),
        )
        .await
}

async fn routine_alternatives_follow_the_choice(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let office = srv.user(&org, "office").await;
    let t = office.token.as_str();
    let building = new_building(&srv, t, "Doors", None).await.uuid("id");
    let yearly_door = new_asset(&srv, t, building, "fire_door", "FD-Y").await;
    let plain_door = new_asset(&srv, t, building, "fire_door", "FD-6").await;
    let get = srv
        .client
        .get(
            &format!("/v1/buildings/{building}/assets/{yearly_door}"),
            Some(t),
        )
        .await;
    assert_eq!(get.json["alternatives"], json!([]));
    // By default the six-monthly routine applies and its yearly alternative does not.
    assert_eq!(
        report_rules(&srv, t, building).await,
        set(&[("FD-6", "AS1851-12-6M-FD"), ("FD-Y", "AS1851-12-6M-FD")])
    );

    let r = patch_alternatives(&srv, t, building, yearly_door, json!(["AS1851-12-12M-FD"])).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json["alternatives"], json!(["AS1851-12-12M-FD"]));
    let get = srv
        .client
        .get(
            &format!("/v1/buildings/{building}/assets/{yearly_door}"),
            Some(t),
        )
        .await;
    assert_eq!(get.json["alternatives"], json!(["AS1851-12-12M-FD"]));

    // The report and new sessions follow the choice: one routine per door, never both.
    assert_eq!(
        report_rules(&srv, t, building).await,
        set(&[("FD-6", "AS1851-12-6M-FD"), ("FD-Y", "AS1851-12-12M-FD")])
    );
    let (_, six) = new_session(&srv, t, building, "six_monthly").await;
    assert_eq!(
        six,
        vec![(plain_door.to_string(), "AS1851-12-6M-FD".to_string())]
    );
    let (_, yearly) = new_session(&srv, t, building, "yearly").await;
    assert_eq!(
        yearly,
        vec![(yearly_door.to_string(), "AS1851-12-12M-FD".to_string())]
    );

    // Back to the default routine.
    let r = patch_alternatives(&srv, t, building, yearly_door, json!([])).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        report_rules(&srv, t, building).await,
        set(&[("FD-6", "AS1851-12-6M-FD"), ("FD-Y", "AS1851-12-6M-FD")])
    );
    let (_, yearly) = new_session(&srv, t, building, "yearly").await;
    assert!(yearly.is_empty(), "{yearly:?}");

    // Each choice is audited with the routine it replaces.
    let audits = srv
        .client
        .get("/v1/users/me/audits?limit=500", Some(t))
        .await;
    assert_eq!(audits.status, 200, "{}", audits.body);
    let chosen = audits.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] == "asset.update" && a["target_id"] == yearly_door.to_string())
        .map(|a| a["details"]["new"]["alternatives"].clone())
        .collect::<Vec<_>>();
    assert!(
        chosen.contains(&json!({ "AS1851-12-6M-FD": "AS1851-12-12M-FD" }))
            && chosen.contains(&json!({})),
        "{chosen:?}"
    );
}

async fn alternatives_are_validated_and_change_nothing(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org: Org = srv.org("Acme").await;
    let inspector = srv.user(&org, "inspector").await;
    let auditor = srv.user(&org, "auditor").await;
    let t = org.admin.token.as_str();
    let building = new_building(&srv, t, "Checks", None).await.uuid("id");
    let door = new_asset(&srv, t, building, "fire_door", "FD-1").await;
    let r = patch_alternatives(&srv, t, building, door, json!(["AS1851-12-12M-FD"])).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let url = format!("/v1/buildings/{building}/assets/{door}");
    let before = srv.client.get(&url, Some(t)).await.json;

    let nul = "AS1851-12-12M-FD\u{0}";
    for (codes, code) in [
        (json!(["NO-SUCH-RULE"]), "invalid_alternative"),
        (json!(["AS1851-12-6M-FD"]), "invalid_alternative"), // not an alternative
        (json!(["AS1851-12-12M-SD"]), "invalid_alternative"), // a smoke door's
        (json!(["AS1851-10-12M-EXT"]), "invalid_alternative"),
        (json!([nul]), "invalid_text"),
        (json!(vec!["x"; 21]), "invalid_field"),
        (json!("AS1851-12-12M-FD"), "invalid_body"),
        (json!([1]), "invalid_body"),
    ] {
        let r = patch_alternatives(&srv, t, building, door, codes.clone()).await;
        assert_problem(&r, 422, code);
        if code == "invalid_alternative" {
            assert!(r.str("detail").contains("alternatives"), "{}", r.body);
        }
    }
    // A type change re-checks the choice: a fire door's alternative cannot stay on a smoke door.
    let r = srv
        .client
        .patch(&url, Some(t), &json!({ "asset_type": "smoke_door" }))
        .await;
    assert_problem(&r, 422, "invalid_alternative");
    // An alternative of another edition is not one of this building's.
    let older = new_building(&srv, t, "Older", Some(OLDER)).await.uuid("id");
    let old_door = new_asset(&srv, t, older, "fire_door", "FD-O").await;
    let r = patch_alternatives(&srv, t, older, old_door, json!(["AS1851-12-12M-FD"])).await;
    assert_problem(&r, 422, "invalid_alternative");
    // Roles: inspectors and auditors do not choose routines.
    for who in [&inspector, &auditor] {
        let r = patch_alternatives(&srv, &who.token, building, door, json!([])).await;
        assert_problem(&r, 403, "forbidden");
    }
    // Another organisation's asset is 404.
    let other = srv.org("Other").await;
    let r = patch_alternatives(&srv, &other.admin.token, building, door, json!([])).await;
    assert_problem(&r, 404, "not_found");
    let after = srv.client.get(&url, Some(t)).await.json;
    assert_eq!(after, before, "refused changes leave the asset as it was");
}

/// AS 1851-2005 covers every kind of the edition (issue 11): a building pinned to it gets
/// 2005 routines for detection and alarm, EWIS, hydrants, hose reels, extinguishers, blankets,
/// doors and passive items, smoke control and special hazards — in new sessions, the
/// projection's classification, the schedule and the compliance report — and the kinds the
/// edition does not cover (wheeled extinguishers, aerosol systems) have no routine there. A
/// 2012 building with the same assets is unaffected.
async fn a_2005_building_is_serviced_under_the_whole_2005_edition(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let t = org.admin.token.as_str();
    let cur = new_building(&srv, t, "Current", None).await.uuid("id");
    let old = new_building(&srv, t, "Older", Some(OLDER)).await.uuid("id");
    // Both contracts start today: every routine's grid is anchored there.
    let today = chrono::Utc::now().date_naive();
    for building in [cur, old] {
        let r = srv
            .client
            .patch(
                &format!("/v1/buildings/{building}"),
                Some(t),
                &json!({ "schedule_anchor": today }),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let kinds = [
        ("fire_detection_alarm", "FDA-1"),
        ("fire_indicator_panel", "FIP-1"),
        ("emergency_warning_system", "EWIS-1"),
        ("fire_hydrant_system", "HYD-1"),
        ("fire_hose_reel", "HR-1"),
        ("portable_extinguisher", "EXT-1"),
        ("fire_blanket", "BLK-1"),
        ("fire_door", "FD-1"),
        ("fire_damper", "FDMP-1"),
        ("gaseous_suppression_system", "GAS-1"),
        ("wheeled_extinguisher", "WEXT-1"),
        ("aerosol_suppression_system", "AER-1"),
    ];
    let mut assets = std::collections::BTreeMap::new();
    for building in [cur, old] {
        for (kind, tag) in kinds {
            let id = new_asset(&srv, t, building, kind, tag).await;
            assets.insert((building, tag), id);
        }
    }

    // New sessions take the pinned edition's routines.
    let (six_old_id, six_old) = new_session(&srv, t, old, "six_monthly").await;
    let by_tag = |building: Uuid, items: &[(String, String)]| -> BTreeSet<(String, String)> {
        items
            .iter()
            .map(|(a, c)| {
                let tag = kinds
                    .iter()
                    .find(|(_, tag)| assets[&(building, *tag)].to_string() == *a)
                    .unwrap()
                    .1;
                (tag.to_owned(), c.clone())
            })
            .collect()
    };
    assert_eq!(
        by_tag(old, &six_old),
        set(&[
            ("BLK-1", "AS1851-2005-11-6M-BLK"),
            ("EWIS-1", "AS1851-2005-6-6M-EWS"),
            ("EXT-1", "AS1851-2005-10-6M-EXT"),
            ("FD-1", "AS1851-2005-12-6M-FD"),
            ("FDA-1", "AS1851-2005-6-6M-FDA"),
            ("GAS-1", "AS1851-2005-7-6M-GAS"),
            ("HR-1", "AS1851-2005-9-6M-HR"),
            ("HYD-1", "AS1851-2005-4-6M-HYD"),
        ])
    );
    let (_, six_cur) = new_session(&srv, t, cur, "six_monthly").await;
    let cur_codes = codes(&six_cur);
    assert!(cur_codes.contains(&"AS1851-10-6M-WEXT"), "{cur_codes:?}");
    assert!(cur_codes.contains(&"AS1851-7-6M-AER"), "{cur_codes:?}");
    assert!(
        cur_codes.iter().all(|c| !c.contains("2005")),
        "{cur_codes:?}"
    );

    // The projection classifies with the 2005 rule: a fire door that does not self-close is
    // critical, a hose reel that leaks at the nozzle is not.
    assert_eq!(
        fail_with(
            &srv,
            t,
            &six_old_id,
            assets[&(old, "FD-1")],
            "door_fails_to_self_close"
        )
        .await,
        json!(Classification::CriticalDefect)
    );
    let items = items(&srv, t, &six_old_id).await;
    assert!(items
        .iter()
        .any(|(a, c)| *a == assets[&(old, "FD-1")].to_string() && c == "AS1851-2005-12-6M-FD"));

    // The compliance report: 2005 routines only, and the kinds 2005 does not cover are
    // counted as assets without rules. The 2012 building has none of these.
    let old_rows = report_rules(&srv, t, old).await;
    for expected in [
        ("FIP-1", "AS1851-2005-6-1M-FIP"),
        ("FIP-1", "AS1851-2005-6-12M-FIP"),
        ("FDA-1", "AS1851-2005-6-5Y-FDA"),
        ("HYD-1", "AS1851-2005-4-5Y-HYD"),
        ("EXT-1", "AS1851-2005-10-5Y-EXT"),
        ("FDMP-1", "AS1851-2005-13-12M-FDMP"),
        ("WEXT-1", "-"),
        ("AER-1", "-"),
    ] {
        assert!(
            old_rows.contains(&(expected.0.to_owned(), expected.1.to_owned())),
            "{expected:?} not in {old_rows:?}"
        );
    }
    assert!(
        old_rows
            .iter()
            .all(|(_, c)| c == "-" || c.starts_with("AS1851-2005-")),
        "{old_rows:?}"
    );
    let report = srv
        .client
        .get(&format!("/v1/buildings/{old}/compliance"), Some(t))
        .await;
    assert_eq!(
        report.json["summary"]["assets_without_rules"], 2,
        "{}",
        report.body
    );
    let cur_rows = report_rules(&srv, t, cur).await;
    assert!(
        cur_rows.iter().all(|(_, c)| !c.contains("2005")),
        "{cur_rows:?}"
    );
    assert!(cur_rows.contains(&("WEXT-1".into(), "AS1851-10-6M-WEXT".into())));

    // The schedule of the next year lists 2005 routines for the 2005 building only.
    let to = today + chrono::Days::new(366);
    let schedule = |building: Uuid| {
        let path = format!("/v1/schedule?building_id={building}&from={today}&to={to}&limit=500");
        let client = &srv.client;
        async move {
            let r = client.get(&path, Some(t)).await;
            assert_eq!(r.status, 200, "{}", r.body);
            r.json["items"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|i| i["rule_code"].as_str().map(str::to_owned))
                .collect::<BTreeSet<String>>()
        }
    };
    let old_due = schedule(old).await;
    assert!(old_due.contains("AS1851-2005-6-1M-FIP"), "{old_due:?}");
    assert!(old_due.contains("AS1851-2005-9-12M-HR"), "{old_due:?}");
    assert!(
        old_due.iter().all(|c| c.starts_with("AS1851-2005-")),
        "{old_due:?}"
    );
    let cur_due = schedule(cur).await;
    assert!(cur_due.contains("AS1851-6-1M-FIP"), "{cur_due:?}");
    assert!(cur_due.iter().all(|c| !c.contains("2005")), "{cur_due:?}");
}
