//! The compliance report: figures for a crafted building (sessions and results through REST,
//! recorded dates then moved with SQL so due, overdue and tolerance cases are fixed), status
//! precedence, CSV and PDF output, roles, organisation isolation and bad inputs.

use chrono::{DateTime, Utc};
use firemode_server::store::buildings::AssetPatch;
use firemode_tests::fixtures::{building, session, Building};
use firemode_tests::{assert_problem, backend_tests, Backend, Client, Org, Resp, TestServer};
use serde_json::{json, Value};
use uuid::Uuid;

const EXT_6M: &str = "AS1851-10-6M-EXT";

backend_tests!(
    report_numbers_for_a_crafted_building,
    overall_status_precedence,
    csv_has_the_same_rows,
    pdf_is_a_real_multi_page_report,
    every_role_reads_and_other_organisations_get_404,
    compliance_bad_inputs,
    schedule_lists_what_is_due_across_buildings,
);

/// Run `$body` with `$pool` connected to the test server's database, on either backend.
macro_rules! with_db {
    ($srv:expr, |$pool:ident| $body:expr) => {{
        let url = $srv.db.raw_url();
        match $srv.db.backend() {
            Backend::Sqlite => {
                let $pool = sqlx::SqlitePool::connect(&url).await.expect("sqlite");
                $body;
                $pool.close().await;
            }
            Backend::Postgres => {
                let $pool = sqlx::PgPool::connect(&url).await.expect("postgres");
                $body;
                $pool.close().await;
            }
        }
    }};
}

/// Move the recorded time of one projected item (the projection is settled when `record`
/// returns, and nothing writes to these sessions afterwards).
async fn set_recorded_at(srv: &TestServer, session: Uuid, asset: Uuid, at: &str) {
    with_db!(srv, |pool| {
        let done = sqlx::query(
            "UPDATE session_items SET recorded_at = $1 WHERE session_id = $2 AND asset_id = $3",
        )
        .bind(at)
        .bind(session)
        .bind(asset.to_string())
        .execute(&pool)
        .await
        .expect("update recorded_at");
        assert_eq!(done.rows_affected(), 1, "item {asset} of {session}");
    });
}

/// Withdraw every defect of the building: failed items open automatic defects, and these tests
/// count only the defects they insert themselves.
async fn withdraw_defects(srv: &TestServer, building: Uuid) {
    with_db!(srv, |pool| {
        sqlx::query("UPDATE defects SET status = 'withdrawn' WHERE building_id = $1")
            .bind(building)
            .execute(&pool)
            .await
            .expect("withdraw defects");
    });
}

async fn insert_defect(
    srv: &TestServer,
    org: &Org,
    building: Uuid,
    asset: Option<Uuid>,
    severity: &str,
    status: &str,
) {
    let now = Utc::now();
    with_db!(srv, |pool| {
        sqlx::query(
            "INSERT INTO defects (id, org_id, building_id, asset_id, severity, status, source, title, \
             description, evidence, discovered_at, notify_by, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 'manual', $7, '', $8, $9, $9, $9, $9)",
        )
        .bind(Uuid::now_v7())
        .bind(org.id)
        .bind(building)
        .bind(asset)
        .bind(severity)
        .bind(status)
        .bind(format!("{severity} defect"))
        .bind(sqlx::types::Json(json!([])))
        .bind(now)
        .execute(&pool)
        .await
        .expect("insert defect");
    });
}

async fn record(srv: &TestServer, token: &str, session: Uuid, results: Value) {
    let r = Client::send(
        srv.client
            .request(
                reqwest::Method::POST,
                &format!("/v1/tests/sessions/{session}/results"),
                Some(token),
            )
            .header("idempotency-key", Uuid::new_v4().to_string())
            .json(&json!({ "results": results })),
    )
    .await;
    assert_eq!(r.status, 200, "record results: {}", r.body);
}

async fn new_session(srv: &TestServer, org: &Org, b: &Building) -> Uuid {
    session(srv, &org.admin, b, &[]).await["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// Limit an asset to the six-monthly extinguisher rule.
async fn six_monthly_only(srv: &TestServer, org: &Org, b: &Building, asset: Uuid) {
    let patch = AssetPatch {
        rule_codes: Some(vec![EXT_6M.into()]),
        ..Default::default()
    };
    srv.store()
        .update_asset(org.id, b.id, asset, &patch)
        .await
        .expect("update asset");
}

async fn report(srv: &TestServer, token: &str, b: Uuid, query: &str) -> Resp {
    srv.client
        .get(&format!("/v1/buildings/{b}/compliance{query}"), Some(token))
        .await
}

fn row<'a>(r: &'a Value, identifier: &str, rule: &str) -> &'a Value {
    r["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["identifier"] == identifier && i["rule_code"] == rule)
        .unwrap_or_else(|| panic!("no row {identifier} {rule} in {r}"))
}

fn day(v: &Value) -> String {
    let t: DateTime<Utc> = v
        .as_str()
        .unwrap_or_else(|| panic!("not a time: {v}"))
        .parse()
        .unwrap();
    t.date_naive().to_string()
}

/// EXT-0000..2 are six-monthly only, EXT-0003 has every extinguisher rule:
/// - EXT-0000: serviced 2024-01-10 and 2024-07-15 (on time, 5 days after its scheduled date),
///   passed: the schedule stays on the 10th.
/// - EXT-0001: 2024-01-10 then 2024-08-20 (41 days late, past the ±1 month six-monthly
///   tolerance), failed: outside tolerance; the grid stays on the 10th.
/// - EXT-0002: last serviced 2023-12-01 (not tested in the second session): overdue.
/// - EXT-0003: not accessible, so never serviced, under three rules: overdue.
async fn crafted(srv: &TestServer, org: &Org) -> Building {
    let b = building(srv, org, 4).await;
    for a in &b.assets[..3] {
        six_monthly_only(srv, org, &b, *a).await;
    }
    let first = new_session(srv, org, &b).await;
    let [a0, a1, a2, a3] = [b.assets[0], b.assets[1], b.assets[2], b.assets[3]];
    record(
        srv,
        &org.admin.token,
        first,
        json!([
            { "asset_id": a0, "outcome": "pass" }, { "asset_id": a1, "outcome": "pass" },
            { "asset_id": a2, "outcome": "pass" }, { "asset_id": a3, "outcome": "not_accessible" },
        ]),
    )
    .await;
    let second = new_session(srv, org, &b).await;
    record(
        srv,
        &org.admin.token,
        second,
        json!([
            { "asset_id": a0, "outcome": "pass" },
            { "asset_id": a1, "outcome": "fail", "observed_condition": "extinguisher_discharged_or_empty" },
        ]),
    )
    .await;
    set_recorded_at(srv, first, a0, "2024-01-10T01:00:00.000Z").await;
    set_recorded_at(srv, first, a1, "2024-01-10T01:30:00.000Z").await;
    set_recorded_at(srv, first, a2, "2023-12-01T02:00:00.000Z").await;
    set_recorded_at(srv, second, a0, "2024-07-15T03:00:00.000Z").await;
    set_recorded_at(srv, second, a1, "2024-08-20T04:00:00.000Z").await;
    withdraw_defects(srv, b.id).await;
    b
}

async fn report_numbers_for_a_crafted_building(be: Backend) {
    let Some(srv) = TestServer::start(be).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let b = crafted(&srv, &org).await;
    let r = report(&srv, &org.admin.token, b.id, "?as_of=2024-09-01").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let j = &r.json;
    assert_eq!(j["as_of"], "2024-09-01");
    assert_eq!(j["building"]["id"], b.id.to_string());
    assert_eq!(j["building"]["name"], "Test Tower");
    assert_eq!(j["items"].as_array().unwrap().len(), 6);

    let ok = row(j, "EXT-0000", EXT_6M);
    assert_eq!(day(&ok["last_service"]), "2024-07-15");
    assert_eq!(day(&ok["previous_service"]), "2024-01-10");
    assert_eq!(ok["interval_days"], 187);
    assert_eq!(ok["outcome"], "pass");
    assert_eq!(ok["classification"], "compliant");
    assert_eq!(ok["scheduled_for"], "2024-07-10");
    assert_eq!(ok["next_due"], "2025-01-10");
    assert_eq!(ok["due_by"], "2025-02-10");
    assert_eq!(ok["outside_tolerance"], false);
    assert_eq!(ok["overdue"], false);
    assert_eq!(ok["status"], "compliant");
    assert_eq!(ok["asset_type"], "portable_extinguisher");

    let late = row(j, "EXT-0001", EXT_6M);
    assert_eq!(day(&late["last_service"]), "2024-08-20");
    assert_eq!(late["interval_days"], 223);
    assert_eq!(late["outside_tolerance"], true);
    assert_eq!(late["outcome"], "fail");
    assert_eq!(late["classification"], "non_critical_defect");
    // The grid stays on the 10th: next is its date after the late service.
    assert_eq!(late["next_due"], "2025-01-10");
    assert_eq!(late["anchor"], "2024-01-10");
    assert_eq!(late["anchor_source"], "first_service");
    assert_eq!(late["overdue"], false);

    let lapsed = row(j, "EXT-0002", EXT_6M);
    assert_eq!(day(&lapsed["last_service"]), "2023-12-01");
    assert_eq!(lapsed["previous_service"], Value::Null);
    assert_eq!(lapsed["next_due"], "2024-06-01");
    assert_eq!(lapsed["overdue"], true);
    assert_eq!(lapsed["status"], "overdue");

    for rule in [EXT_6M, "AS1851-10-12M-EXT", "AS1851-10-5Y-EXT"] {
        let never = row(j, "EXT-0003", rule);
        assert_eq!(
            never["last_service"],
            Value::Null,
            "not accessible is not a service"
        );
        assert_eq!(never["next_due"], Value::Null);
        assert_eq!(never["overdue"], true);
    }
    let s = &j["summary"];
    assert_eq!(s["assets"], 4);
    assert_eq!(s["checks"], 6);
    assert_eq!(s["serviced"], 3);
    assert_eq!(s["never_serviced"], 3);
    assert_eq!(s["overdue"], 4);
    assert_eq!(s["outside_tolerance"], 1);
    assert_eq!(s["failed"], 1);
    assert_eq!(
        s["open_defects"],
        json!({ "critical": 0, "non_critical": 0, "non_conformance": 0 })
    );
    assert_eq!(
        s["rows_by_status"],
        json!({ "compliant": 2, "defects_open": 0, "overdue": 4, "critical_defect": 0 })
    );
    assert_eq!(j["status"], "overdue");

    // As of an earlier day the later services do not exist yet and EXT-0000/1 are not late.
    let r = report(&srv, &org.admin.token, b.id, "?as_of=2024-07-01").await;
    let early = row(&r.json, "EXT-0001", EXT_6M);
    assert_eq!(day(&early["last_service"]), "2024-01-10");
    assert_eq!(early["outcome"], "pass");
    assert_eq!(early["outside_tolerance"], false);
    assert_eq!(early["next_due"], "2024-07-10");
    assert_eq!(early["overdue"], false);
    assert_eq!(r.json["summary"]["serviced"], 3);
    assert_eq!(r.json["summary"]["failed"], 0);
    // Without as_of the report is for today: everything above is long overdue by now.
    let today = report(&srv, &org.admin.token, b.id, "").await;
    assert_eq!(today.json["as_of"], Utc::now().date_naive().to_string());
    assert_eq!(today.json["summary"]["overdue"], 6);
}

async fn overall_status_precedence(be: Backend) {
    let Some(srv) = TestServer::start(be).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let b = building(&srv, &org, 2).await;
    for a in &b.assets {
        six_monthly_only(&srv, &org, &b, *a).await;
    }
    let s = new_session(&srv, &org, &b).await;
    record(&srv, &org.admin.token, s, json!([{ "asset_id": b.assets[0], "outcome": "pass" }, { "asset_id": b.assets[1], "outcome": "pass" }])).await;
    set_recorded_at(&srv, s, b.assets[0], "2024-03-01T00:00:00Z").await;
    set_recorded_at(&srv, s, b.assets[1], "2024-03-01T00:00:00Z").await;
    let t = &org.admin.token;
    let status = |r: Resp| r.json["status"].clone();
    let in_time = "?as_of=2024-06-01";
    let late = "?as_of=2024-12-01";
    assert_eq!(status(report(&srv, t, b.id, in_time).await), "compliant");
    // Closed and withdrawn defects do not count.
    insert_defect(&srv, &org, b.id, Some(b.assets[0]), "critical", "closed").await;
    insert_defect(&srv, &org, b.id, Some(b.assets[0]), "critical", "withdrawn").await;
    assert_eq!(status(report(&srv, t, b.id, in_time).await), "compliant");
    insert_defect(
        &srv,
        &org,
        b.id,
        Some(b.assets[0]),
        "non_conformance",
        "open",
    )
    .await;
    insert_defect(&srv, &org, b.id, None, "non_critical", "repair_scheduled").await;
    assert_eq!(status(report(&srv, t, b.id, in_time).await), "defects_open");
    // Overdue outranks open non-critical defects.
    assert_eq!(status(report(&srv, t, b.id, late).await), "overdue");
    // A critical defect, even acknowledged, outranks everything.
    insert_defect(
        &srv,
        &org,
        b.id,
        Some(b.assets[1]),
        "critical",
        "acknowledged",
    )
    .await;
    assert_eq!(status(report(&srv, t, b.id, late).await), "critical_defect");
    let r = report(&srv, t, b.id, in_time).await;
    assert_eq!(r.json["status"], "critical_defect");
    assert_eq!(
        r.json["summary"]["open_defects"],
        json!({ "critical": 1, "non_critical": 1, "non_conformance": 1 })
    );
    let first = row(&r.json, "EXT-0000", EXT_6M);
    assert_eq!(
        first["open_defects"],
        json!({ "critical": 0, "non_critical": 0, "non_conformance": 1 })
    );
    assert_eq!(first["status"], "defects_open");
    assert_eq!(
        row(&r.json, "EXT-0001", EXT_6M)["status"],
        "critical_defect"
    );
}

async fn csv_has_the_same_rows(be: Backend) {
    let Some(srv) = TestServer::start(be).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let b = crafted(&srv, &org).await;
    insert_defect(&srv, &org, b.id, Some(b.assets[1]), "critical", "open").await;
    let json = report(&srv, &org.admin.token, b.id, "?as_of=2024-09-01").await;
    let r = report(&srv, &org.admin.token, b.id, "?as_of=2024-09-01&format=csv").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("text/csv; charset=utf-8")
    );
    assert_eq!(
        r.header("content-disposition").as_deref(),
        Some("attachment; filename=\"compliance-test-tower-2024-09-01.csv\"")
    );
    let lines: Vec<&str> = r.body.split("\r\n").filter(|l| !l.is_empty()).collect();
    let header = fields(lines[0]);
    assert_eq!(
        header,
        [
            "asset_id",
            "identifier",
            "asset_type",
            "location",
            "rule_code",
            "rule_name",
            "frequency",
            "last_service",
            "serviced_under",
            "last_session_id",
            "outcome",
            "classification",
            "suggested_outcome",
            "overrides_suggestion",
            "previous_service",
            "interval_days",
            "outside_tolerance",
            "next_due",
            "due_by",
            "overdue",
            "open_critical",
            "open_non_critical",
            "open_non_conformance",
            "open_defects",
            "status",
        ]
    );
    let items = json.json["items"].as_array().unwrap();
    assert_eq!(lines.len() - 1, items.len());
    // Same rows, same order: every row's fields match the JSON report's.
    for (line, item) in lines[1..].iter().zip(items) {
        let f = fields(line);
        assert_eq!(f.len(), header.len(), "{line}");
        let col = |name: &str| f[header.iter().position(|h| h == name).unwrap()].clone();
        let text = |v: &Value| {
            v.as_str().map(str::to_owned).unwrap_or_else(|| {
                if v.is_null() {
                    String::new()
                } else {
                    v.to_string()
                }
            })
        };
        for name in [
            "asset_id",
            "identifier",
            "rule_code",
            "outcome",
            "next_due",
            "due_by",
            "interval_days",
            "outside_tolerance",
            "suggested_outcome",
            "overrides_suggestion",
            "overdue",
            "status",
        ] {
            assert_eq!(col(name), text(&item[name]), "{name} in {line}");
        }
        assert_eq!(
            col("open_critical"),
            item["open_defects"]["critical"].to_string()
        );
    }
    let late = lines.iter().find(|l| l.contains("EXT-0001")).unwrap();
    assert!(late.contains(",2024-08-20T04:00:00Z,"), "{late}");
    assert!(late.ends_with(",1,0,0,1,critical_defect"), "{late}");
    assert!(lines.iter().any(|l| l.contains("EXT-0003")
        && l.contains("AS1851-10-5Y-EXT,")
        && l.ends_with(",overdue")));
}

/// The fields of one CSV line (RFC 4180 quoting; our lines hold no line breaks).
fn fields(line: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                out.last_mut().unwrap().push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(String::new()),
            (c, _) => out.last_mut().unwrap().push(c),
        }
    }
    out
}

async fn pdf_is_a_real_multi_page_report(be: Backend) {
    let Some(srv) = TestServer::start(be).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let b = crafted(&srv, &org).await;
    let r = pdf(&srv, &org.admin.token, b.id, "?as_of=2024-09-01&format=pdf").await;
    assert_eq!(r.0, 200);
    assert_eq!(r.1.as_deref(), Some("application/pdf"));
    assert_eq!(
        r.2.as_deref(),
        Some("attachment; filename=\"compliance-test-tower-2024-09-01.pdf\"")
    );
    let doc = lopdf::Document::load_mem(&r.3).expect("a PDF lopdf can parse");
    assert_eq!(doc.get_pages().len(), 1);
    let text = doc.extract_text(&[1]).unwrap();
    for expected in [
        "Yearly condition report",
        "Test Tower",
        "1 Test St, Melbourne VIC",
        "EXT-0001",
        "AS1851-10-6M-EXT",
        "2024-08-20",
        "Overall status: Overdue",
        "Page 1 of 1",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from page 1:\n{text}"
        );
    }

    // A long list breaks into pages, each with the table header and its page number.
    let big = building(&srv, &org, 70).await;
    let r = pdf(&srv, &org.admin.token, big.id, "?format=pdf").await;
    assert_eq!(r.0, 200);
    let doc = lopdf::Document::load_mem(&r.3).expect("a PDF lopdf can parse");
    // 70 assets x 3 extinguisher rules = 210 rows: 22 on the first page, 39 on each other.
    let pages = doc.get_pages().len() as u32;
    assert_eq!(pages, 1 + (210 - 22_u32).div_ceil(39));
    let last = doc.extract_text(&[pages]).unwrap();
    assert!(last.contains("EXT-0069"), "{last}");
    assert!(last.contains(&format!("Page {pages} of {pages}")), "{last}");
    assert!(
        last.contains("Next due") && last.contains("Test Tower"),
        "{last}"
    );
    let second = doc.extract_text(&[2]).unwrap();
    assert!(
        !second.contains("EXT-0069") && second.contains("EXT-0007"),
        "{second}"
    );
}

async fn pdf(
    srv: &TestServer,
    token: &str,
    b: Uuid,
    query: &str,
) -> (u16, Option<String>, Option<String>, Vec<u8>) {
    let res = srv
        .client
        .request(
            reqwest::Method::GET,
            &format!("/v1/buildings/{b}/compliance{query}"),
            Some(token),
        )
        .send()
        .await
        .unwrap();
    let h = |n: &str| {
        res.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (status, ct, cd) = (
        res.status().as_u16(),
        h("content-type"),
        h("content-disposition"),
    );
    (status, ct, cd, res.bytes().await.unwrap().to_vec())
}

async fn every_role_reads_and_other_organisations_get_404(be: Backend) {
    let Some(srv) = TestServer::start(be).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let b = building(&srv, &org, 2).await;
    for role in ["office", "auditor", "inspector"] {
        let u = srv.user(&org, role).await;
        let r = report(&srv, &u.token, b.id, "").await;
        assert_eq!(r.status, 200, "{role}: {}", r.body);
        assert_eq!(r.json["summary"]["assets"], 2);
    }
    let rival = srv.org("Rival").await;
    for q in ["", "?format=csv", "?format=pdf", "?as_of=2024-01-01"] {
        assert_problem(
            &report(&srv, &rival.admin.token, b.id, q).await,
            404,
            "not_found",
        );
    }
    assert_problem(
        &report(&srv, &org.admin.token, Uuid::new_v4(), "").await,
        404,
        "not_found",
    );
    assert_problem(
        &srv.client
            .get(&format!("/v1/buildings/{}/compliance", b.id), None)
            .await,
        401,
        "unauthorized",
    );
}

async fn compliance_bad_inputs(be: Backend) {
    let Some(srv) = TestServer::start(be).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let b = building(&srv, &org, 1).await;
    let t = &org.admin.token;
    assert_problem(
        &srv.client
            .get("/v1/buildings/not-a-uuid/compliance", Some(t))
            .await,
        400,
        "invalid_path",
    );
    for q in [
        "?format=xml",
        "?format=",
        "?as_of=2024-13-01",
        "?as_of=yesterday",
        "?as_of=2024-1-5x",
        "?colour=red",
    ] {
        let r = report(&srv, t, b.id, q).await;
        assert_problem(&r, 400, "invalid_query");
    }
    let r = report(&srv, t, b.id, "?format=xml").await;
    assert!(
        r.json["detail"].as_str().unwrap().contains("csv"),
        "the detail lists the formats: {}",
        r.body
    );
    let post = srv
        .client
        .post(
            &format!("/v1/buildings/{}/compliance", b.id),
            Some(t),
            &json!({}),
        )
        .await;
    assert_problem(&post, 405, "method_not_allowed");
}

/// `GET /v1/schedule`: routines whose scheduled date falls in the range, and everything
/// overdue now, across the organisation's buildings (or one); nothing of another organisation.
async fn schedule_lists_what_is_due_across_buildings(be: Backend) {
    let Some(srv) = TestServer::start(be).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let t = org.admin.token.as_str();
    let b = building(&srv, &org, 2).await;
    for a in &b.assets {
        six_monthly_only(&srv, &org, &b, *a).await;
    }
    // EXT-0000 serviced today: next due in six months. EXT-0001 never serviced, no install
    // date: due now, overdue.
    let s = new_session(&srv, &org, &b).await;
    record(
        &srv,
        t,
        s,
        json!([{ "asset_id": b.assets[0], "outcome": "pass" }]),
    )
    .await;
    let other = srv.org("Other").await;
    let theirs = building(&srv, &other, 1).await;
    let today = Utc::now().date_naive();
    let get = |q: String| {
        let srv = &srv;
        async move {
            let r = srv.client.get(&format!("/v1/schedule?{q}"), Some(t)).await;
            assert_eq!(r.status, 200, "{}", r.body);
            r.json["items"].as_array().unwrap().clone()
        }
    };
    let ids = |items: &[Value]| -> Vec<String> {
        items
            .iter()
            .map(|i| format!("{}:{}", i["identifier"].as_str().unwrap(), i["overdue"]))
            .collect()
    };
    let soon = get(String::new()).await;
    assert_eq!(ids(&soon), ["EXT-0001:true"], "{soon:?}");
    let later = get(format!(
        "from={}&to={}",
        today + chrono::Duration::days(150),
        today + chrono::Duration::days(250)
    ))
    .await;
    assert_eq!(
        ids(&later),
        ["EXT-0001:true", "EXT-0000:false"],
        "overdue first: {later:?}"
    );
    let due = &later[1];
    assert_eq!(due["building_id"], b.id.to_string());
    assert_eq!(due["rule_code"], EXT_6M);
    let next =
        chrono::NaiveDate::parse_from_str(due["next_due"].as_str().unwrap(), "%Y-%m-%d").unwrap();
    assert_eq!(
        next,
        today.checked_add_months(chrono::Months::new(6)).unwrap()
    );
    // One building; another organisation's building is not found.
    assert_eq!(get(format!("building_id={}", b.id)).await.len(), 1);
    let r = srv
        .client
        .get(&format!("/v1/schedule?building_id={}", theirs.id), Some(t))
        .await;
    assert_problem(&r, 404, "not_found");
    let mine = srv
        .client
        .get("/v1/schedule", Some(&other.admin.token))
        .await;
    assert!(mine.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["building_id"] == theirs.id.to_string()));
    for bad in [
        "from=2026-02-01&to=2026-01-01",
        "from=2026-01-01&to=2027-06-01",
        "from=soon",
    ] {
        let r = srv
            .client
            .get(&format!("/v1/schedule?{bad}"), Some(t))
            .await;
        assert_problem(&r, 400, "invalid_query");
    }
}
