//! Records owners must keep, on a realistic fixture made through the API: a 20-storey office
//! tower with every equipment kind of the rule library, five years of routine service
//! (2020-2024: monthly, three-monthly, six-monthly, yearly and five-yearly visits by a named
//! licensed technician, each session signed off), one monthly visit skipped (May 2024) and an
//! extinguisher failed in July 2024 and repaired two weeks later. Sessions and results go
//! through REST; the recorded times are then moved into the past with SQL (as the compliance
//! tests do), since the server stamps results with the time they arrive.
//!
//! Set `FIREMODE_TEST_RECORDS_DIR` to keep the PDFs the test fetches (to look at them).

use std::collections::BTreeMap;

use chrono::{Datelike, Months, NaiveDate, TimeZone, Utc};
use firemode_tests::{assert_problem, backend_tests, Backend, Client, Org, TestServer, User};
use serde_json::{json, Value};
use uuid::Uuid;

backend_tests!(
    records_of_a_twenty_storey_tower,
    deleting_a_building_with_records_archives_it,
    records_roles_and_bad_input,
    out_of_tolerance_is_raised_once_per_service,
    purge_removes_archived_buildings_after_retention,
);

/// Run `$body` with `$pool` connected to the test server's database, on either backend.
macro_rules! with_db {
    ($srv:expr, |$pool:ident| $body:expr) => {{
        let url = $srv.db.raw_url();
        match $srv.db.backend() {
            Backend::Sqlite => {
                let $pool = sqlx::SqlitePool::connect(&url).await.expect("sqlite");
                let out = $body;
                $pool.close().await;
                out
            }
            Backend::Postgres => {
                let $pool = sqlx::PgPool::connect(&url).await.expect("postgres");
                let out = $body;
                $pool.close().await;
                out
            }
        }
    }};
}

const TECH_NAME: &str = "Sam Nguyen";
const TECH_LICENCE: &str = "FPAS-0423-NSW";
const SIGNER_NAME: &str = "Alex Morgan";
const SIGNER_LICENCE: &str = "BPB-C10-7788";
const FAILED_EXT: &str = "EXT-L07-1";

/// How many assets of each kind, and where (the tower's plant, floors and roof). Kinds the
/// library has that this table does not name get one asset in the plant room.
fn asset_plan() -> Vec<(String, String, String)> {
    let mut rows: Vec<(String, String, String)> = Vec::new();
    let mut add = |kind: &str, id: String, loc: String| rows.push((kind.into(), id, loc));
    for floor in 1..=20 {
        let f = format!("L{floor:02}");
        let level = format!("Level {floor}");
        for n in 1..=2 {
            add(
                "portable_extinguisher",
                format!("EXT-{f}-{n}"),
                format!("{level} fire stair {n} landing"),
            );
            add(
                "fire_door",
                format!("FD-{f}-{n}"),
                format!("{level} fire stair {n} door"),
            );
            add(
                "exit_sign",
                format!("EXIT-{f}-{n}"),
                format!("{level} above stair {n} door"),
            );
        }
        for n in 1..=3 {
            add(
                "emergency_lighting",
                format!("EL-{f}-{n}"),
                format!("{level} corridor luminaire {n}"),
            );
        }
        add(
            "fire_hose_reel",
            format!("FHR-{f}"),
            format!("{level} core cupboard"),
        );
        add(
            "smoke_door",
            format!("SD-{f}"),
            format!("{level} lift lobby"),
        );
    }
    let plant = [
        (
            "sprinkler_system",
            "SPR-01",
            "Basement 1 sprinkler valve room",
        ),
        ("fire_pumpset", "PUMP-D1", "Basement 2 pump room (diesel)"),
        ("fire_pumpset", "PUMP-E1", "Basement 2 pump room (electric)"),
        (
            "fire_hydrant_system",
            "HYD-01",
            "Ground floor hydrant booster",
        ),
        (
            "water_storage_tank",
            "TANK-01",
            "Basement 2 fire water tank",
        ),
        (
            "fire_detection_alarm",
            "FIP-01",
            "Ground floor fire control room",
        ),
        (
            "special_hazard_system",
            "GAS-01",
            "Level 12 communications room",
        ),
        ("lay_flat_hose", "LFH-01", "Ground floor hydrant cabinet"),
        ("wheeled_extinguisher", "WEXT-01", "Basement 1 loading dock"),
        ("fire_blanket", "FB-01", "Level 3 kitchen"),
        ("fire_blanket", "FB-02", "Level 15 kitchen"),
        ("sliding_fire_door", "SFD-01", "Basement 1 loading dock"),
        (
            "smoke_control_mechanical",
            "SMK-01",
            "Roof stair pressurisation fan",
        ),
        (
            "smoke_control_mechanical",
            "SMK-02",
            "Roof smoke exhaust fan",
        ),
    ];
    for (kind, id, loc) in plant {
        add(kind, id.into(), loc.into());
    }
    for k in firemode_server::rules::equipment_kinds() {
        if !rows.iter().any(|(kind, _, _)| *kind == k.kind) {
            let id = format!("X-{}", k.kind.to_uppercase());
            rows.push((k.kind.clone(), id, "Basement 1 plant room".into()));
        }
    }
    rows
}

async fn post_results(srv: &TestServer, token: &str, session: Uuid, results: &[Value]) {
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

struct Tower {
    id: Uuid,
    /// Asset ids by identifier.
    assets: BTreeMap<String, Uuid>,
    tech: User,
}

/// One visit: a session of `frequency` assigned to the technician, every item passed (but
/// `fail` as given), signed off by the technician, then dated `day` (results at 10:00 UTC,
/// sign-off at 15:00).
async fn visit(
    srv: &TestServer,
    org: &Org,
    t: &Tower,
    frequency: &str,
    day: NaiveDate,
    fail: Option<(Uuid, &str)>,
) {
    let r = srv
        .client
        .post(
            "/v1/tests/sessions",
            Some(&org.admin.token),
            &json!({ "building_id": t.id, "name": format!("{} service {day}", frequency.replace('_', "-")),
                     "frequency": frequency, "assigned_to": [t.tech.id] }),
        )
        .await;
    assert_eq!(r.status, 201, "create session: {}", r.body);
    let session = r.uuid("id");
    let doc = srv
        .client
        .get(
            &format!("/v1/tests/sessions/{session}/document"),
            Some(&t.tech.token),
        )
        .await;
    assert_eq!(doc.status, 200, "{}", doc.body);
    let items: Vec<Uuid> = doc.json["document"]["items"]
        .as_object()
        .expect("document items")
        .keys()
        .map(|a| a.parse().unwrap())
        .collect();
    assert!(!items.is_empty(), "a {frequency} session has items");
    let results: Vec<Value> = items
        .iter()
        .map(|a| match fail {
            Some((f, condition)) if f == *a => {
                json!({ "asset_id": a, "outcome": "fail", "observed_conditions": [condition],
                        "notes": "Gauge in the red; tagged out of service" })
            }
            _ => json!({ "asset_id": a, "outcome": "pass" }),
        })
        .collect();
    post_results(srv, &t.tech.token, session, &results).await;
    // Dated before the sign-off too: signing off checks the session's services against their
    // tolerance windows (a service outside raises a non-conformance).
    let settled = srv
        .client
        .get(
            &format!("/v1/tests/sessions/{session}/results"),
            Some(&t.tech.token),
        )
        .await;
    assert_eq!(settled.status, 200);
    let recorded = format!("{day}T10:00:00.000Z");
    with_db!(srv, |pool| {
        sqlx::query("UPDATE session_items SET recorded_at = $1 WHERE session_id = $2")
            .bind(&recorded)
            .bind(session)
            .execute(&pool)
            .await
            .expect("date the items");
    });
    let done = srv
        .client
        .patch(
            &format!("/v1/tests/sessions/{session}"),
            Some(&t.tech.token),
            &json!({ "status": "completed" }),
        )
        .await;
    assert_eq!(done.status, 200, "sign off: {}", done.body);
    // Reading the results waits for the projection of every change so far.
    let settled = srv
        .client
        .get(
            &format!("/v1/tests/sessions/{session}/results"),
            Some(&t.tech.token),
        )
        .await;
    assert_eq!(settled.status, 200);
    let signed = Utc
        .with_ymd_and_hms(day.year(), day.month(), day.day(), 15, 0, 0)
        .unwrap();
    with_db!(srv, |pool| {
        sqlx::query("UPDATE session_items SET recorded_at = $1 WHERE session_id = $2")
            .bind(&recorded)
            .bind(session)
            .execute(&pool)
            .await
            .expect("date the items");
        sqlx::query("UPDATE test_sessions SET signed_off_at = $1 WHERE id = $2")
            .bind(signed)
            .bind(session)
            .execute(&pool)
            .await
            .expect("date the sign-off");
    });
}

/// The tower and its five years of history (see the module comment).
async fn tower(srv: &TestServer, org: &Org) -> Tower {
    let admin = &org.admin;
    // The people: a licensed technician who services and signs sessions off, and the office
    // admin who signs the condition report.
    let tech = srv.user(org, "inspector").await;
    let p = srv
        .client
        .patch(
            &format!("/v1/users/{}", tech.id),
            Some(&admin.token),
            &json!({ "full_name": TECH_NAME, "licence_number": TECH_LICENCE }),
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.body);
    let p = srv
        .client
        .patch(
            &format!("/v1/users/{}", admin.id),
            Some(&admin.token),
            &json!({ "full_name": SIGNER_NAME, "licence_number": SIGNER_LICENCE }),
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.body);

    let b = srv
        .client
        .post(
            "/v1/buildings",
            Some(&admin.token),
            &json!({ "name": "Harbour Point Tower", "address": "200 Harbour St, Sydney NSW 2000",
                     "building_type": "Class 5 office, 20 storeys" }),
        )
        .await;
    assert_eq!(b.status, 201, "{}", b.body);
    let id = b.uuid("id");
    let mut csv = String::from("asset_type,location,identifier,install_date\n");
    for (kind, ident, loc) in asset_plan() {
        csv.push_str(&format!("{kind},{loc},{ident},2019-11-01\n"));
    }
    let r = srv
        .client
        .post_raw(
            &format!("/v1/buildings/{id}/assets/import"),
            Some(&admin.token),
            "text/csv",
            csv.into_bytes(),
        )
        .await;
    assert!(r.status == 200 || r.status == 201, "import: {}", r.body);
    let list = srv
        .client
        .get(
            &format!("/v1/buildings/{id}/assets?limit=500"),
            Some(&admin.token),
        )
        .await;
    let assets: BTreeMap<String, Uuid> = list.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["identifier"].as_str().unwrap().to_owned(),
                a["id"].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect();
    assert_eq!(assets.len(), asset_plan().len());
    let t = Tower { id, assets, tech };

    let start = NaiveDate::from_ymd_opt(2020, 1, 15).unwrap();
    for m in 0..60u32 {
        let day = start.checked_add_months(Months::new(m)).unwrap();
        // May 2024: the monthly visit did not happen.
        if !(day.year() == 2024 && day.month() == 5) {
            visit(srv, org, &t, "monthly", day, None).await;
        }
        if m % 3 == 0 {
            visit(srv, org, &t, "three_monthly", day, None).await;
        }
        if m % 6 == 0 {
            let fail = (day == NaiveDate::from_ymd_opt(2024, 7, 15).unwrap())
                .then(|| (t.assets[FAILED_EXT], "extinguisher_discharged_or_empty"));
            visit(srv, org, &t, "six_monthly", day, fail).await;
        }
        if m % 12 == 0 {
            visit(srv, org, &t, "yearly", day, None).await;
        }
    }
    // The five-yearly routines, due five years after commissioning (2024-11-01).
    visit(
        srv,
        org,
        &t,
        "five_yearly",
        NaiveDate::from_ymd_opt(2024, 10, 15).unwrap(),
        None,
    )
    .await;

    // The failed extinguisher's defect: acknowledged, repair scheduled, repaired, verified
    // (through the API), then dated: found 2024-07-15, repaired 2024-07-29, verified 07-30.
    let defects = srv
        .client
        .get(
            &format!(
                "/v1/defects?building_id={id}&asset_id={}&status=open",
                t.assets[FAILED_EXT]
            ),
            Some(&admin.token),
        )
        .await;
    let defect = defects.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["asset_id"] == t.assets[FAILED_EXT].to_string())
        .unwrap_or_else(|| panic!("a defect for {FAILED_EXT}: {}", defects.body))["id"]
        .as_str()
        .unwrap()
        .parse::<Uuid>()
        .unwrap();
    for step in ["acknowledged", "repair_scheduled", "repaired", "verified"] {
        let r = srv
            .client
            .patch(
                &format!("/v1/defects/{defect}"),
                Some(&admin.token),
                &json!({ "status": step, "note": format!("{step} by the contractor") }),
            )
            .await;
        assert_eq!(r.status, 200, "{step}: {}", r.body);
    }
    let dated = [
        ("acknowledged", "2024-07-15T23:00:00Z"),
        ("repair_scheduled", "2024-07-16T01:00:00Z"),
        ("repaired", "2024-07-29T03:00:00Z"),
        ("verified", "2024-07-30T03:00:00Z"),
    ];
    with_db!(srv, |pool| {
        let found = Utc.with_ymd_and_hms(2024, 7, 15, 10, 0, 0).unwrap();
        sqlx::query("UPDATE defects SET discovered_at = $1, created_at = $1 WHERE id = $2")
            .bind(found)
            .bind(defect)
            .execute(&pool)
            .await
            .expect("date the defect");
        for (status, at) in dated {
            let at: chrono::DateTime<Utc> = at.parse().unwrap();
            sqlx::query("UPDATE defect_events SET at = $1 WHERE defect_id = $2 AND to_status = $3")
                .bind(at)
                .bind(defect)
                .bind(status)
                .execute(&pool)
                .await
                .expect("date the defect's steps");
        }
    });
    t
}

fn pdf_out(name: &str, bytes: &[u8]) {
    assert!(bytes.starts_with(b"%PDF-"), "{name} is a PDF");
    if let Ok(dir) = std::env::var("FIREMODE_TEST_RECORDS_DIR") {
        std::fs::write(std::path::Path::new(&dir).join(name), bytes).expect("write PDF");
    }
}

async fn records_of_a_twenty_storey_tower(be: Backend) {
    let Some(srv) = TestServer::start(be).await else {
        return;
    };
    let org = srv.org("Harbour Fire Services").await;
    let t = tower(&srv, &org).await;
    let admin = &org.admin.token;
    let auditor = srv.user(&org, "auditor").await;
    let year = "from=2024-01-01&to=2024-12-31";

    // The logbook (read by the auditor).
    let started = std::time::Instant::now();
    let r = srv
        .client
        .get(
            &format!("/v1/buildings/{}/logbook?{year}", t.id),
            Some(&auditor.token),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    eprintln!(
        "records figures ({be:?}): logbook JSON of a year in {:?}, {} bytes",
        started.elapsed(),
        r.body.len()
    );
    let book = &r.json;
    let entries = book["entries"].as_array().unwrap();
    assert!(entries
        .iter()
        .all(|e| e["date"].as_str().unwrap().starts_with("2024-")));
    let fail = entries
        .iter()
        .find(|e| e["identifier"] == FAILED_EXT && e["outcome"] == "fail")
        .expect("the failed extinguisher service");
    assert_eq!(fail["date"], "2024-07-15");
    assert_eq!(fail["performed_by"]["name"], TECH_NAME);
    assert_eq!(fail["performed_by"]["licence"], TECH_LICENCE);
    assert_eq!(fail["signed_off"]["by"]["name"], TECH_NAME);
    assert_eq!(fail["signed_off"]["licence"], TECH_LICENCE);
    assert_eq!(fail["location"], "Level 7 fire stair 1 landing");
    assert_eq!(fail["rule_code"], "AS1851-10-6M-EXT");
    assert!(fail["rule_name"].as_str().is_some_and(|n| !n.is_empty()));
    assert_eq!(
        fail["observed_conditions"],
        json!(["extinguisher_discharged_or_empty"])
    );
    // No monthly service is recorded in May 2024.
    assert!(!entries
        .iter()
        .any(|e| e["date"].as_str().unwrap().starts_with("2024-05")));
    let defect = book["defects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["identifier"] == FAILED_EXT)
        .expect("the extinguisher defect");
    assert_eq!(defect["found_at"], "2024-07-15T10:00:00Z");
    assert_eq!(defect["rectified_at"], "2024-07-29T03:00:00Z");
    assert_eq!(defect["verified_at"], "2024-07-30T03:00:00Z");
    assert_eq!(book["summary"]["defects_found"], 1);
    assert_eq!(book["summary"]["defects_rectified"], 1);
    assert_eq!(book["summary"]["failed"], 1);
    let services = book["summary"]["services"].as_u64().unwrap();
    assert!(services > 500, "{services} services in 2024");

    let csv = srv
        .client
        .get(
            &format!("/v1/buildings/{}/logbook?{year}&format=csv", t.id),
            Some(admin),
        )
        .await;
    assert_eq!(csv.status, 200);
    assert_eq!(
        csv.header("content-type").as_deref(),
        Some("text/csv; charset=utf-8")
    );
    let lines: Vec<&str> = csv.body.lines().collect();
    assert!(lines[0].starts_with("record,date,session_id"));
    assert_eq!(lines.len() as u64, 1 + services + 1, "services, one defect");
    assert!(lines.iter().any(|l| l.starts_with("service,2024-07-15")
        && l.contains(FAILED_EXT)
        && l.contains(TECH_LICENCE)));
    assert!(lines
        .iter()
        .any(|l| l.starts_with("defect,2024-07-15") && l.contains("2024-07-29T03:00:00Z")));

    let started = std::time::Instant::now();
    let pdf = srv
        .client
        .raw()
        .get(format!(
            "{}/v1/buildings/{}/logbook?{year}&format=pdf",
            srv.base, t.id
        ))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap();
    assert_eq!(pdf.status(), 200);
    let bytes = pdf.bytes().await.unwrap();
    eprintln!(
        "records figures ({be:?}): logbook PDF in {:?}, {} bytes",
        started.elapsed(),
        bytes.len()
    );
    pdf_out("logbook.pdf", &bytes);

    // The condition report: the skipped May visit is a monthly routine not done, for every
    // system serviced monthly.
    let started = std::time::Instant::now();
    let r = srv
        .client
        .get(
            &format!("/v1/buildings/{}/condition-report?{year}", t.id),
            Some(admin),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    eprintln!(
        "records figures ({be:?}): condition report over five years of history in {:?}",
        started.elapsed()
    );
    let report = r.json.clone();
    let systems = report["systems"].as_array().unwrap();
    let kinds: Vec<&str> = systems
        .iter()
        .map(|s| s["kind"].as_str().unwrap())
        .collect();
    for k in firemode_server::rules::equipment_kinds() {
        assert!(
            kinds.contains(&k.kind.as_str()),
            "system {} reported",
            k.kind
        );
    }
    let system = |kind: &str| {
        systems
            .iter()
            .find(|s| s["kind"] == kind)
            .unwrap_or_else(|| panic!("no system {kind}"))
    };
    let fip = system("fire_detection_alarm");
    let missed: Vec<&Value> = fip["exceptions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kept"] == "missed")
        .collect();
    assert_eq!(missed.len(), 1, "{fip}");
    assert_eq!(missed[0]["due"], "2024-05-15");
    assert_eq!(missed[0]["identifier"], "FIP-01");
    assert_eq!(fip["routines"]["missed"], 1);
    assert_eq!(fip["condition"], "services_missed");
    assert_eq!(report["condition"], "services_missed");
    let ext = system("portable_extinguisher");
    assert_eq!(ext["assets"], 40);
    assert_eq!(ext["routines"]["missed"], 0, "{ext}");
    assert_eq!(ext["routines"]["late"], 0);
    assert!(ext["routines"]["on_time"].as_u64().unwrap() >= 120);
    assert_eq!(
        ext["outstanding"],
        json!({ "critical": 0, "non_critical": 0, "non_conformance": 0 }),
        "the July defect was repaired in the period"
    );
    assert_eq!(ext["last_serviced"], "2024-10-15");
    assert_eq!(system("fire_door")["condition"], "satisfactory");

    // Signing: v1, then v2 superseding it; both kept as signed.
    let sign = |statement: Option<&str>| {
        let mut body = json!({ "period_start": "2024-01-01", "period_end": "2024-12-31" });
        if let Some(s) = statement {
            body["statement"] = json!(s);
        }
        body
    };
    let path = format!("/v1/buildings/{}/condition-reports/sign", t.id);
    let v1 = srv.client.post(&path, Some(admin), &sign(None)).await;
    assert_eq!(v1.status, 201, "{}", v1.body);
    assert_eq!(v1.json["version"], 1);
    assert_eq!(v1.json["signed_by"]["name"], SIGNER_NAME);
    assert_eq!(v1.json["signed_by"]["licence"], SIGNER_LICENCE);
    assert_eq!(v1.json["report"]["condition"], "services_missed");
    assert_eq!(v1.json["report"]["routines"], report["routines"]);
    let v2 = srv
        .client
        .post(
            &path,
            Some(admin),
            &sign(Some("Reviewed again after the May monthly service was found missed; the fire indicator panel was tested in June.")),
        )
        .await;
    assert_eq!(v2.status, 201, "{}", v2.body);
    assert_eq!(v2.json["version"], 2);
    assert_eq!(v2.json["supersedes"], v1.json["id"]);
    let list = srv
        .client
        .get(
            &format!("/v1/buildings/{}/condition-reports", t.id),
            Some(&auditor.token),
        )
        .await;
    assert_eq!(list.status, 200, "{}", list.body);
    let list = list.json.as_array().unwrap().clone();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["id"], v2.json["id"]);
    assert_eq!(list[1]["superseded_by"], v2.json["id"]);
    let old = srv
        .client
        .get(
            &format!("/v1/condition-reports/{}", v1.json["id"].as_str().unwrap()),
            Some(&auditor.token),
        )
        .await;
    assert_eq!(old.status, 200, "{}", old.body);
    assert_eq!(old.json["statement"], v1.json["statement"]);
    assert_eq!(old.json["signed_at"], v1.json["signed_at"]);
    let signed_pdf = srv
        .client
        .raw()
        .get(format!(
            "{}/v1/condition-reports/{}?format=pdf",
            srv.base,
            v2.json["id"].as_str().unwrap()
        ))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap();
    assert_eq!(signed_pdf.status(), 200);
    pdf_out("condition-report.pdf", &signed_pdf.bytes().await.unwrap());
    // Immutable in the database itself.
    let v1_id: Uuid = v1.json["id"].as_str().unwrap().parse().unwrap();
    let (update, delete) = with_db!(&srv, |pool| {
        let u = sqlx::query("UPDATE condition_reports SET statement = 'changed' WHERE id = $1")
            .bind(v1_id)
            .execute(&pool)
            .await;
        let d = sqlx::query("DELETE FROM condition_reports WHERE id = $1")
            .bind(v1_id)
            .execute(&pool)
            .await;
        (u.is_err(), d.is_err())
    });
    assert!(
        update && delete,
        "a signed report cannot be changed or deleted"
    );

    // The essential safety measures export.
    let r = srv
        .client
        .get(
            &format!("/v1/buildings/{}/esm-statement?{year}", t.id),
            Some(&auditor.token),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let esm = &r.json;
    assert_eq!(esm["assessor"]["name"], SIGNER_NAME);
    assert_eq!(esm["assessor"]["licence"], SIGNER_LICENCE);
    assert_eq!(esm["condition_report_id"], v2.json["id"]);
    let measures = esm["measures"].as_array().unwrap();
    for m in measures {
        assert!(
            m["standard_of_performance"]
                .as_str()
                .is_some_and(|s| s.starts_with("AS")),
            "{m}"
        );
        assert_eq!(m["assessor"]["name"], TECH_NAME, "{m}");
        assert_eq!(m["assessor"]["licence"], TECH_LICENCE, "{m}");
    }
    let measure = |name: &str| {
        measures
            .iter()
            .find(|m| m["measure"] == name)
            .unwrap_or_else(|| panic!("no measure {name}: {esm}"))
    };
    let ext = measure("Portable and wheeled fire extinguishers");
    assert_eq!(ext["assets"], 41);
    assert_eq!(ext["serviced_per_schedule"], true);
    assert_eq!(ext["standard_of_performance"], "AS 1851-2012");
    let detection = measure("Automatic fire detection and alarm systems");
    assert_eq!(detection["serviced_per_schedule"], false);
    let lights = measure("Emergency lighting");
    assert!(
        lights["standard_of_performance"]
            .as_str()
            .unwrap()
            .contains("2293"),
        "{lights}"
    );
    let csv = srv
        .client
        .get(
            &format!("/v1/buildings/{}/esm-statement?{year}&format=csv", t.id),
            Some(admin),
        )
        .await;
    assert_eq!(csv.status, 200);
    let lines: Vec<&str> = csv.body.lines().collect();
    assert_eq!(lines.len(), 1 + measures.len());
    assert!(lines.iter().any(
        |l| l.starts_with("Automatic fire detection and alarm systems,")
            && l.contains(",false,")
            && l.contains(TECH_LICENCE)
    ));
    let pdf = srv
        .client
        .raw()
        .get(format!(
            "{}/v1/buildings/{}/esm-statement?{year}&format=pdf",
            srv.base, t.id
        ))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap();
    assert_eq!(pdf.status(), 200);
    pdf_out("esm-statement.pdf", &pdf.bytes().await.unwrap());
}

async fn deleting_a_building_with_records_archives_it(be: Backend) {
    let Some(srv) = TestServer::start(be).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let admin = &org.admin.token;
    let b = firemode_tests::fixtures::building(&srv, &org, 2).await;
    let s = firemode_tests::fixtures::session(&srv, &org.admin, &b, &[]).await;
    let session: Uuid = s["id"].as_str().unwrap().parse().unwrap();
    post_results(
        &srv,
        admin,
        session,
        &[json!({ "asset_id": b.assets[0], "outcome": "pass" })],
    )
    .await;
    // A service the office recorded outside a session (yesterday: not in the future) is in
    // the logbook too, marked as such.
    let yesterday = Utc::now().date_naive().pred_opt().unwrap();
    let history = srv
        .client
        .post(
            &format!(
                "/v1/buildings/{}/assets/{}/service-history",
                b.id, b.assets[1]
            ),
            Some(admin),
            &json!({ "rule_code": "AS1851-10-6M-EXT", "serviced_on": yesterday, "outcome": "fail",
                     "note": "Gauge in the red; replaced" }),
        )
        .await;
    assert_eq!(history.status, 201, "{}", history.body);

    // Holding records, it is archived, not deleted.
    let r = srv
        .client
        .delete(&format!("/v1/buildings/{}", b.id), Some(admin))
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let list = srv.client.get("/v1/buildings", Some(admin)).await;
    assert!(
        !list.body.contains(&b.id.to_string()),
        "an archived building is not listed"
    );
    let got = srv
        .client
        .get(&format!("/v1/buildings/{}", b.id), Some(admin))
        .await;
    assert_eq!(got.status, 200);
    let until: chrono::DateTime<Utc> = got.json["archived"]["retain_until"]
        .as_str()
        .expect("archived")
        .parse()
        .unwrap();
    assert_eq!(until.year(), Utc::now().year() + 7);
    // Its records stay readable (by an auditor too).
    let auditor = srv.user(&org, "auditor").await;
    let today = Utc::now().date_naive();
    let book = srv
        .client
        .get(
            &format!("/v1/buildings/{}/logbook?to={today}", b.id),
            Some(&auditor.token),
        )
        .await;
    assert_eq!(book.status, 200, "{}", book.body);
    let entries = book.json["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{}", book.body);
    let office: Vec<&Value> = entries.iter().filter(|e| e["source"] == "office").collect();
    assert_eq!(office.len(), 1, "{}", book.body);
    assert_eq!(office[0]["session_id"], Value::Null);
    assert_eq!(office[0]["outcome"], "fail");
    assert_eq!(office[0]["date"], json!(yesterday));
    assert_eq!(office[0]["notes"], "Gauge in the red; replaced");
    assert_eq!(book.json["summary"]["services"], 2);
    assert_eq!(book.json["summary"]["sessions"], 1);
    let csv = srv
        .client
        .get(
            &format!("/v1/buildings/{}/logbook?to={today}&format=csv", b.id),
            Some(&auditor.token),
        )
        .await;
    assert_eq!(csv.status, 200);
    assert!(
        csv.body.lines().next().unwrap().ends_with(",source"),
        "{}",
        csv.body
    );
    assert!(
        csv.body
            .lines()
            .any(|l| l.starts_with("service,") && l.ends_with(",office")),
        "{}",
        csv.body
    );
    let results = srv
        .client
        .get(
            &format!("/v1/tests/sessions/{session}/results"),
            Some(admin),
        )
        .await;
    assert_eq!(results.status, 200);
    // It takes nothing new.
    let new_session = srv
        .client
        .post(
            "/v1/tests/sessions",
            Some(admin),
            &json!({ "building_id": b.id, "name": "After", "frequency": "six_monthly" }),
        )
        .await;
    assert_problem(&new_session, 409, "building_archived");
    let asset = srv
        .client
        .post(
            &format!("/v1/buildings/{}/assets", b.id),
            Some(admin),
            &json!({ "asset_type": "portable_extinguisher", "location": "Lobby" }),
        )
        .await;
    assert_problem(&asset, 409, "building_archived");
    let import = srv
        .client
        .post_raw(
            &format!("/v1/buildings/{}/assets/import", b.id),
            Some(admin),
            "text/csv",
            b"asset_type,location\nportable_extinguisher,Lobby\n".to_vec(),
        )
        .await;
    assert_problem(&import, 409, "building_archived");
    // Nor does it take edits: the building, its assets, their history and baselines, manual
    // defects. Each refusal changes nothing.
    let before = srv
        .client
        .get(&format!("/v1/buildings/{}", b.id), Some(admin))
        .await
        .json;
    let asset_url = format!("/v1/buildings/{}/assets/{}", b.id, b.assets[0]);
    let asset_before = srv.client.get(&asset_url, Some(admin)).await.json;
    let refused = [
        srv.client
            .patch(&format!("/v1/buildings/{}", b.id), Some(admin), &json!({ "name": "Renamed" }))
            .await,
        srv.client
            .patch(&asset_url, Some(admin), &json!({ "location": "Moved" }))
            .await,
        srv.client
            .post(
                &format!("{asset_url}/service-history"),
                Some(admin),
                &json!({ "rule_code": "AS1851-10-6M-EXT", "serviced_on": "2026-01-10",
                         "outcome": "pass" }),
            )
            .await,
        srv.client
            .post(
                "/v1/defects",
                Some(admin),
                &json!({ "building_id": b.id, "title": "Door wedged open", "severity": "non_critical" }),
            )
            .await,
    ];
    for r in &refused {
        assert_problem(r, 409, "building_archived");
    }
    assert_eq!(
        srv.client
            .get(&format!("/v1/buildings/{}", b.id), Some(admin))
            .await
            .json,
        before
    );
    assert_eq!(
        srv.client.get(&asset_url, Some(admin)).await.json,
        asset_before
    );
    // Deleting it again is refused while its records are kept.
    let again = srv
        .client
        .delete(&format!("/v1/buildings/{}", b.id), Some(admin))
        .await;
    assert_problem(&again, 409, "records_retained");
    assert!(
        again.body.contains(&until.date_naive().to_string()),
        "{}",
        again.body
    );
    // And the database refuses to delete the records themselves.
    let refused = with_db!(&srv, |pool| {
        sqlx::query("DELETE FROM test_sessions WHERE id = $1")
            .bind(session)
            .execute(&pool)
            .await
            .is_err()
    });
    assert!(
        refused,
        "a session younger than seven years cannot be deleted"
    );

    // A building without records is deleted outright.
    let empty = firemode_tests::fixtures::building(&srv, &org, 1).await;
    let r = srv
        .client
        .delete(&format!("/v1/buildings/{}", empty.id), Some(admin))
        .await;
    assert_eq!(r.status, 204);
    let gone = srv
        .client
        .get(&format!("/v1/buildings/{}", empty.id), Some(admin))
        .await;
    assert_eq!(gone.status, 404);
}

async fn records_roles_and_bad_input(be: Backend) {
    let Some(srv) = TestServer::start(be).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let other = srv.org("Other").await;
    let admin = &org.admin.token;
    let b = firemode_tests::fixtures::building(&srv, &org, 1).await;
    let inspector = srv.user(&org, "inspector").await;
    let office = srv.user(&org, "office").await;
    let auditor = srv.user(&org, "auditor").await;
    let routes = [
        format!("/v1/buildings/{}/logbook", b.id),
        format!("/v1/buildings/{}/condition-report", b.id),
        format!("/v1/buildings/{}/condition-reports", b.id),
        format!("/v1/buildings/{}/esm-statement", b.id),
    ];
    for path in &routes {
        for who in [admin, &office.token, &auditor.token] {
            let r = srv.client.get(path, Some(who)).await;
            assert_eq!(r.status, 200, "{path}: {}", r.body);
        }
        assert_problem(
            &srv.client.get(path, Some(&inspector.token)).await,
            403,
            "forbidden",
        );
        // Another organisation's building is not found.
        assert_problem(
            &srv.client.get(path, Some(&other.admin.token)).await,
            404,
            "not_found",
        );
    }
    // Bad ranges and formats.
    let logbook = &routes[0];
    for q in [
        "?from=2024-02-01&to=2024-01-01",
        "?from=2000-01-01&to=2024-01-01",
    ] {
        assert_problem(
            &srv.client.get(&format!("{logbook}{q}"), Some(admin)).await,
            400,
            "invalid_query",
        );
    }
    assert_problem(
        &srv.client
            .get(
                &format!("{}?from=2023-01-01&to=2024-06-30", routes[1]),
                Some(admin),
            )
            .await,
        400,
        "invalid_query",
    );
    assert_problem(
        &srv.client
            .get(&format!("{}?format=csv", routes[1]), Some(admin))
            .await,
        400,
        "invalid_query",
    );
    let r = srv
        .client
        .get(&format!("{logbook}?format=xml"), Some(admin))
        .await;
    assert_eq!(r.status, 400, "{}", r.body);

    // Signing: admin and office with a licence; not inspectors or auditors; not without a
    // licence; not for a future or too long period; the statement is checked.
    let sign = format!("/v1/buildings/{}/condition-reports/sign", b.id);
    let body = json!({ "period_start": "2024-01-01", "period_end": "2024-12-31" });
    for who in [&inspector.token, &auditor.token] {
        assert_problem(
            &srv.client.post(&sign, Some(who), &body).await,
            403,
            "forbidden",
        );
    }
    assert_problem(
        &srv.client
            .post(&sign, Some(&other.admin.token), &body)
            .await,
        404,
        "not_found",
    );
    let r = srv.client.post(&sign, Some(&office.token), &body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let today = Utc::now().date_naive();
    let future = today + chrono::Days::new(30);
    for (bad, field) in [
        (
            json!({ "period_start": today.to_string(), "period_end": future.to_string() }),
            "future",
        ),
        (
            json!({ "period_start": "2022-01-01", "period_end": "2024-12-31" }),
            "366 days",
        ),
        (
            json!({ "period_start": "2024-01-01", "period_end": "2024-12-31", "statement": "  " }),
            "statement",
        ),
    ] {
        let r = srv.client.post(&sign, Some(admin), &bad).await;
        assert_problem(&r, 422, "invalid_field");
        assert!(r.body.contains(field), "{field}: {}", r.body);
    }
    let r = srv
        .client
        .post(
            &sign,
            Some(admin),
            &json!({ "period_start": "2024-01-01", "period_end": "2024-12-31", "statement": "ok\u{0}" }),
        )
        .await;
    assert!(
        (400..500).contains(&r.status),
        "NUL in the statement: {}",
        r.body
    );
    let unlicensed = srv
        .client
        .patch(
            &format!("/v1/users/{}", office.id),
            Some(admin),
            &json!({ "licence_number": null }),
        )
        .await;
    assert_eq!(unlicensed.status, 200, "{}", unlicensed.body);
    assert_problem(
        &srv.client.post(&sign, Some(&office.token), &body).await,
        422,
        "licence_required",
    );
    // Nothing was signed by the refused requests.
    let list = srv.client.get(&routes[2], Some(admin)).await;
    assert_eq!(list.json.as_array().unwrap().len(), 1);
    // A signed report of another organisation is not found.
    let id = list.json[0]["id"].as_str().unwrap();
    assert_problem(
        &srv.client
            .get(
                &format!("/v1/condition-reports/{id}"),
                Some(&other.admin.token),
            )
            .await,
        404,
        "not_found",
    );
    assert_problem(
        &srv.client
            .get(
                &format!("/v1/condition-reports/{id}"),
                Some(&inspector.token),
            )
            .await,
        403,
        "forbidden",
    );
}

const EXT_6M: &str = "AS1851-10-6M-EXT";

/// Defects of a building with the out-of-tolerance condition.
async fn tolerance_ncs(srv: &TestServer, token: &str, building: Uuid) -> Vec<Value> {
    let r = srv
        .client
        .get(&format!("/v1/defects?building_id={building}"), Some(token))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["observed_condition"] == "service_outside_tolerance")
        .cloned()
        .collect()
}

/// Wait (the projection runs behind the write) until `ok(ncs)` holds.
async fn wait_ncs(
    srv: &TestServer,
    token: &str,
    building: Uuid,
    ok: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let found = tolerance_ncs(srv, token, building).await;
        if ok(&found) {
            return found;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not raised in time: {found:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// A routine serviced outside its tolerance window raises its non-conformance when the
/// service is recorded — through REST results and through a tablet syncing the session
/// document — with its own source and a one-week deadline; re-projection and the sign-off
/// never raise it twice.
async fn out_of_tolerance_is_raised_once_per_service(be: Backend) {
    let Some(srv) = TestServer::start(be).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let t = org.admin.token.as_str();
    let b = srv
        .client
        .post(
            "/v1/buildings",
            Some(t),
            &json!({ "name": "Harbour House", "address": "2 Quay St, Sydney NSW",
                     "building_type": "Class 5", "state": "NSW" }),
        )
        .await;
    assert_eq!(b.status, 201, "{}", b.body);
    let b = b.uuid("id");
    // EXT-0 and EXT-1 last serviced 15 months ago: their six-monthly grid's dates are three
    // months ago and three months ahead (±1 month), so a service today is outside tolerance.
    // EXT-2 was serviced six months ago: today is its scheduled date.
    let lapsed = Utc::now()
        .date_naive()
        .checked_sub_months(chrono::Months::new(15))
        .unwrap();
    let recent = Utc::now()
        .date_naive()
        .checked_sub_months(chrono::Months::new(6))
        .unwrap();
    let mut assets = Vec::new();
    for (i, last) in [(0, lapsed), (1, lapsed), (2, recent)] {
        let a = srv
            .client
            .post(
                &format!("/v1/buildings/{b}/assets"),
                Some(t),
                &json!({ "asset_type": "portable_extinguisher", "location": format!("Level {i}"),
                         "identifier": format!("EXT-{i}"), "rule_codes": [EXT_6M] }),
            )
            .await;
        assert_eq!(a.status, 201, "{}", a.body);
        let a = a.uuid("id");
        let h = srv
            .client
            .post(
                &format!("/v1/buildings/{b}/assets/{a}/service-history"),
                Some(t),
                &json!({ "rule_code": EXT_6M, "serviced_on": last, "outcome": "pass" }),
            )
            .await;
        assert_eq!(h.status, 201, "{}", h.body);
        assets.push(a);
    }
    let inspector = srv.user(&org, "inspector").await;
    let s = srv
        .client
        .post(
            "/v1/tests/sessions",
            Some(t),
            &json!({ "building_id": b, "name": "Catch-up", "frequency": "six_monthly",
                     "assigned_to": [inspector.id] }),
        )
        .await;
    assert_eq!(s.status, 201, "{}", s.body);
    let session = s.uuid("id");
    let doc_id = s.str("document_id").to_owned();

    // REST: EXT-0 serviced today (outside tolerance), EXT-2 today (on time).
    post_results(
        &srv,
        &inspector.token,
        session,
        &[
            json!({ "asset_id": assets[0], "outcome": "pass" }),
            json!({ "asset_id": assets[2], "outcome": "pass" }),
        ],
    )
    .await;
    let found = wait_ncs(&srv, t, b, |f| !f.is_empty()).await;
    assert_eq!(found.len(), 1, "{found:?}");
    let nc = &found[0];
    assert_eq!(nc["asset_id"], assets[0].to_string());
    assert_eq!(nc["source"], "out_of_tolerance");
    assert_eq!(nc["severity"], "non_conformance");
    assert_eq!(nc["status"], "open");
    assert_eq!(nc["rule_code"], EXT_6M);
    assert_eq!(nc["session_id"], session.to_string());
    let discovered: chrono::DateTime<Utc> = nc["discovered_at"].as_str().unwrap().parse().unwrap();
    let notify_by: chrono::DateTime<Utc> = nc["notify_by"].as_str().unwrap().parse().unwrap();
    assert_eq!((notify_by - discovered).num_days(), 7);

    // Re-projection (the item written again, with a note) raises nothing new.
    post_results(
        &srv,
        &inspector.token,
        session,
        &[json!({ "asset_id": assets[0], "outcome": "pass", "notes": "Gauge checked twice" })],
    )
    .await;
    srv.state.hub.settled(session).await;

    // A tablet records EXT-1 through the sync hub: raised by the projection of that edit.
    let mut tablet = firemode_tests::sync_client::SyncClient::joined(
        &srv.base,
        &inspector.token,
        &format!("{}:tablet", inspector.id),
    )
    .await;
    let (mut doc, mut state) = (
        firemode_sync_core::automerge::Automerge::new(),
        firemode_sync_core::automerge::sync::State::new(),
    );
    tablet
        .sync(&doc_id, &mut doc, &mut state, true)
        .await
        .unwrap();
    let now = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let by = inspector.id.to_string();
    firemode_tests::fixtures::put_item_fields(
        &mut doc,
        assets[1],
        &[
            ("outcome", "pass"),
            ("recordedBy", by.as_str()),
            ("recordedAt", now.as_str()),
        ],
    );
    tablet
        .sync(&doc_id, &mut doc, &mut state, false)
        .await
        .unwrap();
    let found = wait_ncs(&srv, t, b, |f| f.len() >= 2).await;
    let tablet_nc = found
        .iter()
        .find(|d| d["asset_id"] == assets[1].to_string())
        .expect("raised for the tablet's service");
    assert_eq!(tablet_nc["source"], "out_of_tolerance");
    assert_eq!(tablet_nc["session_id"], session.to_string());

    // The sign-off checks again: still one per service, none stored as manual.
    let r = srv
        .client
        .patch(
            &format!("/v1/tests/sessions/{session}"),
            Some(t),
            &json!({ "status": "completed" }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    srv.state.hub.settled(session).await;
    let found = tolerance_ncs(&srv, t, b).await;
    let mut per_asset: Vec<String> = found
        .iter()
        .map(|d| d["asset_id"].as_str().unwrap().to_owned())
        .collect();
    per_asset.sort();
    let mut expected = vec![assets[0].to_string(), assets[1].to_string()];
    expected.sort();
    assert_eq!(per_asset, expected, "{found:?}");
    assert!(found.iter().all(|d| d["source"] == "out_of_tolerance"));
    // The database holds exactly these two, whatever the API filters.
    let stored: i64 = with_db!(&srv, |pool| {
        sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM defects WHERE observed_condition = 'service_outside_tolerance'",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
    });
    assert_eq!(stored, 2);
    // The database refuses an unknown source, and a second one for the same service.
    let refused = with_db!(&srv, |pool| {
        let bogus = sqlx::query("UPDATE defects SET source = 'bogus' WHERE observed_condition = 'service_outside_tolerance'")
            .execute(&pool)
            .await
            .is_err();
        let twice = sqlx::query(
            "INSERT INTO defects (id, org_id, building_id, asset_id, session_id, rule_code, rule_version, \
             severity, status, source, title, description, observed_condition, evidence, discovered_at, \
             notify_by, acknowledged_at, created_by, created_at, updated_at, severity_overridden, \
             severity_reason, duplicate_of) \
             SELECT $1, org_id, building_id, asset_id, session_id, rule_code, rule_version, severity, \
             status, source, title, description, observed_condition, evidence, discovered_at, notify_by, \
             acknowledged_at, created_by, created_at, updated_at, severity_overridden, severity_reason, \
             duplicate_of FROM defects WHERE observed_condition = 'service_outside_tolerance' AND asset_id = $2",
        )
        .bind(Uuid::now_v7())
        .bind(assets[0])
        .execute(&pool)
        .await
        .is_err();
        (bogus, twice)
    });
    assert_eq!(refused, (true, true));
}

/// Where the local evidence store keeps an object: any file under the data folder named by
/// its SHA-256.
fn object_file(dir: &std::path::Path, hex: &str) -> Option<std::path::PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if let Some(found) = object_file(&path, hex) {
                return Some(found);
            }
        } else if path.file_name().is_some_and(|n| n == hex) {
            return Some(path);
        }
    }
    None
}

fn purge_cli(srv: &TestServer, args: &[&str]) -> (bool, String, String) {
    let cfg = &srv.state.config;
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_firemode-e2e-server"));
    cmd.arg("admin")
        .arg("--data-dir")
        .arg(&cfg.data_dir)
        .arg("--database-url")
        .arg(srv.db.raw_url())
        .args(args)
        .env_remove("DATABASE_URL")
        .stdin(std::process::Stdio::null());
    if let Some(k) = &cfg.pii_keys {
        cmd.env("FIREMODE_PII_KEYS", k.expose());
    }
    if let Some(k) = &cfg.jwt_secret {
        cmd.env("FIREMODE_JWT_SECRET", k.expose());
    }
    let out = cmd.output().expect("run the server binary");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Rows that belong to `building`, per table.
async fn building_rows(srv: &TestServer, building: Uuid) -> BTreeMap<&'static str, i64> {
    let queries: [(&str, &str); 10] = [
        ("buildings", "SELECT COUNT(*) FROM buildings WHERE id = $1"),
        ("assets", "SELECT COUNT(*) FROM assets WHERE building_id = $1"),
        ("test_sessions", "SELECT COUNT(*) FROM test_sessions WHERE building_id = $1"),
        ("session_items", "SELECT COUNT(*) FROM session_items WHERE building_id = $1"),
        ("doc_changes", "SELECT COUNT(*) FROM doc_changes WHERE session_id IN (SELECT id FROM test_sessions WHERE building_id = $1)"),
        ("evidence", "SELECT COUNT(*) FROM evidence WHERE session_id IN (SELECT id FROM test_sessions WHERE building_id = $1)"),
        ("defects", "SELECT COUNT(*) FROM defects WHERE building_id = $1"),
        ("notices", "SELECT COUNT(*) FROM notices WHERE defect_id IN (SELECT id FROM defects WHERE building_id = $1)"),
        ("service_history", "SELECT COUNT(*) FROM asset_service_history WHERE building_id = $1"),
        ("archives", "SELECT COUNT(*) FROM building_archives WHERE building_id = $1"),
    ];
    let mut out = BTreeMap::new();
    for (name, sql) in queries {
        let n: i64 = with_db!(srv, |pool| {
            sqlx::query_scalar::<_, i64>(sql)
                .bind(building)
                .fetch_one(&pool)
                .await
                .unwrap()
        });
        out.insert(name, n);
    }
    out
}

/// Move a building's archive and records into the past, as if archived `years` ago.
async fn age_building(srv: &TestServer, building: Uuid, years: u32, records_too: bool) {
    let archived = Utc::now()
        .checked_sub_months(chrono::Months::new(12 * years))
        .unwrap();
    let until = archived
        .checked_add_months(chrono::Months::new(12 * 7))
        .unwrap();
    let mut statements = vec![(
        "UPDATE building_archives SET archived_at = $2, retain_until = $3 WHERE building_id = $1",
        true,
    )];
    if records_too {
        statements.extend([
            ("UPDATE test_sessions SET created_at = $2 WHERE building_id = $1", false),
            ("UPDATE defects SET created_at = $2 WHERE building_id = $1", false),
            ("UPDATE defect_events SET at = $2 WHERE defect_id IN (SELECT id FROM defects WHERE building_id = $1)", false),
            ("UPDATE evidence SET created_at = $2 WHERE session_id IN (SELECT id FROM test_sessions WHERE building_id = $1)", false),
        ]);
    }
    for (sql, with_until) in statements {
        with_db!(srv, |pool| {
            let q = sqlx::query(sql).bind(building).bind(archived);
            let q = if with_until { q.bind(until) } else { q };
            q.execute(&pool).await.unwrap();
        });
    }
}

/// `firemode admin purge-archived`: archived buildings whose retention has ended go, with
/// their records and evidence objects (an object another building's evidence shares stays);
/// a building inside retention stays; one holding a record younger than seven years is
/// refused whole; a cut-off under seven years is refused; dry runs change nothing; purges are
/// audited and recorded; a second run finds nothing more.
async fn purge_removes_archived_buildings_after_retention(be: Backend) {
    let Some(srv) = TestServer::start(be).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let admin = &org.admin.token;
    let shared = crate::evidence::jpeg(2048, 7);
    let own = crate::evidence::jpeg(2048, 9);
    // Three buildings with records: old (to purge), recent (inside retention), young_records
    // (archived long ago on paper, but holding a session younger than seven years).
    let mut built = Vec::new();
    for name in ["old", "recent", "young"] {
        let b = firemode_tests::fixtures::building(&srv, &org, 2).await;
        let s = firemode_tests::fixtures::session(&srv, &org.admin, &b, &[]).await;
        let session: Uuid = s["id"].as_str().unwrap().parse().unwrap();
        post_results(
            &srv,
            admin,
            session,
            &[json!({ "asset_id": b.assets[0], "outcome": "fail",
                      "observed_condition": "extinguisher_missing" })],
        )
        .await;
        for bytes in [&shared, &own] {
            if name != "old" && bytes == &own {
                continue;
            }
            let mut up = crate::evidence::Upload::photo(session, bytes.clone());
            up.asset_id = Some(b.assets[0].to_string());
            let r = up.send(&srv.client, admin).await;
            assert_eq!(r.status, 201, "{}", r.body);
        }
        srv.state.hub.settled(session).await;
        let h = srv
            .client
            .post(
                &format!("/v1/buildings/{}/assets/{}/service-history", b.id, b.assets[1]),
                Some(admin),
                &json!({ "rule_code": "AS1851-10-6M-EXT", "serviced_on": "2024-03-01", "outcome": "pass" }),
            )
            .await;
        assert_eq!(h.status, 201, "{}", h.body);
        let r = srv
            .client
            .delete(&format!("/v1/buildings/{}", b.id), Some(admin))
            .await;
        assert_eq!(r.status, 204, "{}", r.body);
        built.push(b.id);
    }
    let (old, recent, young) = (built[0], built[1], built[2]);
    age_building(&srv, old, 8, true).await;
    age_building(&srv, young, 8, false).await;
    let before_old = building_rows(&srv, old).await;
    let held = |rows: &BTreeMap<&'static str, i64>| {
        [
            "buildings",
            "assets",
            "test_sessions",
            "session_items",
            "evidence",
            "defects",
            "service_history",
            "archives",
        ]
        .iter()
        .all(|k| rows[k] > 0)
    };
    assert!(held(&before_old), "{before_old:?}");
    assert_eq!(before_old["evidence"], 2, "{before_old:?}");
    let data = srv.state.config.data_dir.clone();
    let own_file = object_file(&data, &crate::evidence::sha_hex(&own)).expect("stored");
    let shared_hex = crate::evidence::sha_hex(&shared);
    assert!(object_file(&data, &shared_hex).is_some());

    // Under seven years is refused outright.
    let (ok, _, err) = purge_cli(&srv, &["purge-archived", "--older-than-years", "6"]);
    assert!(!ok, "{err}");
    assert!(err.contains("at least 7"), "{err}");

    // A dry run lists and changes nothing.
    let (ok, out, err) = purge_cli(&srv, &["--json", "purge-archived", "--dry-run"]);
    assert!(ok, "{err}");
    let listed: Value = serde_json::from_str(out.trim()).unwrap_or_else(|_| panic!("{out}"));
    let action = |v: &Value, id: Uuid| -> (String, String) {
        let b = v["buildings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["building_id"] == id.to_string())
            .unwrap_or_else(|| panic!("{v}"));
        (
            b["action"].as_str().unwrap().to_owned(),
            b["reason"].as_str().unwrap_or("").to_owned(),
        )
    };
    assert_eq!(action(&listed, old).0, "would_purge");
    assert_eq!(
        action(&listed, recent),
        ("kept".into(), "inside retention".into())
    );
    assert_eq!(action(&listed, young).0, "would_purge");
    assert_eq!(building_rows(&srv, old).await, before_old);

    // The purge.
    let (ok, out, err) = purge_cli(
        &srv,
        &["--json", "purge-archived", "--older-than-years", "7"],
    );
    assert!(ok, "{err}");
    let done: Value = serde_json::from_str(out.trim()).unwrap_or_else(|_| panic!("{out}"));
    assert_eq!(action(&done, old).0, "purged", "{done}");
    assert_eq!(action(&done, recent).0, "kept");
    assert_eq!(action(&done, young).0, "refused", "{done}");
    let purged = done["buildings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["building_id"] == old.to_string())
        .unwrap();
    assert_eq!(purged["removed"]["assets"], 2, "{purged}");
    assert_eq!(purged["removed"]["sessions"], 1, "{purged}");
    assert_eq!(purged["removed"]["evidence"], 2, "{purged}");
    assert_eq!(purged["removed"]["service_history"], 1, "{purged}");
    assert!(
        purged["removed"]["defects"].as_u64().unwrap() >= 1,
        "{purged}"
    );
    assert_eq!(
        purged["objects_deleted"], 1,
        "only the object nobody else uses: {purged}"
    );
    let after_old = building_rows(&srv, old).await;
    assert!(after_old.values().all(|n| *n == 0), "{after_old:?}");
    assert!(!own_file.exists(), "its own evidence object is deleted");
    assert!(
        object_file(&data, &shared_hex).is_some(),
        "an object other evidence refers to stays"
    );
    // The others are untouched.
    for b in [recent, young] {
        let rows = building_rows(&srv, b).await;
        assert!(held(&rows), "{b}: {rows:?}");
    }
    let got = srv
        .client
        .get(&format!("/v1/buildings/{recent}"), Some(admin))
        .await;
    assert_eq!(got.status, 200);
    let gone = srv
        .client
        .get(&format!("/v1/buildings/{old}"), Some(admin))
        .await;
    assert_eq!(gone.status, 404);
    // Audited, and recorded where the building no longer is.
    let (audits, purges): (i64, i64) = with_db!(&srv, |pool| {
        let a: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM audits WHERE action = 'building.purge' AND target_id = $1",
        )
        .bind(old.to_string())
        .fetch_one(&pool)
        .await
        .unwrap();
        let p: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM building_purges WHERE building_id = $1")
                .bind(old)
                .fetch_one(&pool)
                .await
                .unwrap();
        (a, p)
    });
    assert_eq!((audits, purges), (1, 1));

    // A second run finds nothing more to purge.
    let (ok, out, err) = purge_cli(&srv, &["--json", "purge-archived"]);
    assert!(ok, "{err}");
    let again: Value = serde_json::from_str(out.trim()).unwrap();
    assert!(again["buildings"]
        .as_array()
        .unwrap()
        .iter()
        .all(|b| b["building_id"] != old.to_string() && b["action"] != "purged"));
}
