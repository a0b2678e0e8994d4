//! docs/roles.md's table, checked against the running server: for every row, the request is
//! made as each role and the outcome compared with the table's cell. The test also fails when
//! an authenticated route of the API has no row, so the document cannot drift from the code.
//!
//! Only SQLite: who may do what is decided in the handlers, the same code on either database.

use std::collections::BTreeSet;
use std::time::Duration;

use firemode_sync_core::automerge::sync;
use firemode_sync_core::automerge::{Automerge, ReadDoc, ROOT};
use firemode_tests::fixtures::{self, put_item_field, Building};
use firemode_tests::sync_client::SyncClient;
use firemode_tests::{Backend, Client, Org, Resp, TestServer, User};
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::evidence::{jpeg, Upload};

pub(crate) const ROLES: [&str; 4] = ["admin", "office", "inspector", "auditor"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cell {
    /// Allowed whether or not the caller is assigned to the session involved.
    Yes,
    /// Refused even when the caller is assigned to the session involved.
    No,
    /// Allowed on sessions assigned to the caller, refused on others.
    Assigned,
}

/// Every row of the table, as written in the first cell. Each has a probe in `probe`.
const PROBES: &[&str] = &[
    "`GET /v1/users/me`",
    "`GET /v1/users/me/audits`",
    "`POST /v1/auth/logout`",
    "`POST /v1/users`",
    "`GET /v1/users`",
    "`PATCH /v1/users/{id}`",
    "`POST /v1/users/{id}/revoke-tokens`",
    "`POST /v1/users/{id}/unlock`",
    "`POST /v1/buildings`",
    "`GET /v1/buildings`",
    "`GET /v1/buildings/{id}`",
    "`PATCH /v1/buildings/{id}`",
    "`PATCH /v1/buildings/{id}` changing `rule_set` or `editions`",
    "`DELETE /v1/buildings/{id}`",
    "`POST /v1/buildings/{id}/assets`",
    "`GET /v1/buildings/{id}/assets`",
    "`GET /v1/buildings/{id}/assets/{asset_id}`",
    "`PATCH /v1/buildings/{id}/assets/{asset_id}`",
    "`POST /v1/buildings/{id}/assets/import`",
    "`GET /v1/buildings/{id}/assets/{asset_id}/service-history`",
    "`POST /v1/buildings/{id}/assets/{asset_id}/service-history`",
    "`GET /v1/buildings/{id}/assets/{asset_id}/reference-values`",
    "`PUT /v1/buildings/{id}/assets/{asset_id}/reference-values` with `source` `first_service`",
    "`PUT /v1/buildings/{id}/assets/{asset_id}/reference-values` with another `source`",
    "`GET /v1/buildings/{id}/reference-values`",
    "`POST /v1/buildings/{id}/reference-values/import` with `first_service` rows only",
    "`POST /v1/buildings/{id}/reference-values/import` with other sources",
    "`GET /v1/buildings/{id}/compliance`",
    "`GET /v1/schedule`",
    "`POST /v1/schedule/sessions`",
    "`GET /v1/holidays`",
    "`PUT /v1/holidays/{state}/{year}`",
    "`GET /v1/buildings/{id}/logbook`",
    "`GET /v1/buildings/{id}/condition-report`",
    "`GET /v1/buildings/{id}/condition-reports`",
    "`POST /v1/buildings/{id}/condition-reports/sign`",
    "`GET /v1/condition-reports/{id}`",
    "`GET /v1/buildings/{id}/esm-statement`",
    "`GET /v1/rules`",
    "`GET /v1/rules/{code}`",
    "`GET /v1/rules/{code}/versions`",
    "`POST /v1/rules`",
    "`POST /v1/rules/{code}/versions/{version}/deactivate`",
    "`POST /v1/classify`",
    "`POST /v1/tests/sessions`",
    "`POST /v1/tests/sessions` with `document_id`",
    "`GET /v1/tests/sessions`",
    "`GET /v1/tests/sessions/{id}`",
    "`PATCH /v1/tests/sessions/{id}` with `name` or `assigned_to`",
    "`PATCH /v1/tests/sessions/{id}` with `status` only",
    "`PATCH /v1/tests/sessions/{id}` reopening a completed session",
    "`GET /v1/tests/sessions/{id}/document`",
    "`POST /v1/tests/sessions/{id}/results`",
    "`GET /v1/tests/sessions/{id}/results`",
    "`GET /v1/tests/sessions/{id}/history`",
    "`GET /v1/events`",
    "`GET /v1/tests/sessions/{id}/conflicts`",
    "`GET /v1/tests/sessions/{id}/diff`",
    "`POST /v1/tests/sessions/{id}/conflicts/resolve`",
    "`POST /v1/tests/sessions/{id}/conflicts/resolve-item`",
    "`GET /v1/tests/sessions/{id}/evidence`",
    "`POST /v1/evidence`",
    "`GET /v1/evidence/{id}`",
    "`GET /v1/evidence/{id}/content`",
    "`GET /v1/evidence/{id}/verify`",
    "`POST /v1/defects`",
    "`GET /v1/defects`",
    "`GET /v1/defects/{id}`",
    "`PATCH /v1/defects/{id}` with `status`",
    "`PATCH /v1/defects/{id}` with `severity`",
    "`POST /v1/webhook-endpoints`",
    "`GET /v1/webhook-endpoints`",
    "`GET /v1/webhook-endpoints/{id}`",
    "`PATCH /v1/webhook-endpoints/{id}`",
    "`DELETE /v1/webhook-endpoints/{id}`",
    "`POST /v1/webhook-endpoints/{id}/rotate-secret`",
    "`GET /v1/webhook-endpoints/{id}/deliveries`",
    "`GET /v1/notices`",
    "`GET /v1/notices/{id}`",
    "`GET /v1/notices/{id}/pdf`",
    "`POST /v1/notices/{id}/redeliver`",
    "`GET /v1/sync` reading a document",
    "`GET /v1/sync` changing a document",
];

/// The table of docs/roles.md: (first cell, one cell per role in `ROLES` order).
pub(crate) fn table() -> Vec<(String, [Cell; 4])> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/roles.md");
    let text = std::fs::read_to_string(&path).expect("docs/roles.md");
    let section = text
        .split("\n## What each role may do")
        .nth(1)
        .expect("docs/roles.md has the section 'What each role may do'");
    let section = section.split("\n## ").next().unwrap_or(section);
    assert!(
        section.contains("| request | what it does | admin | office | inspector | auditor |"),
        "the table's columns are request, what it does, then the roles in the order {ROLES:?}"
    );
    let mut rows = Vec::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        assert_eq!(cells.len(), 8, "a row has six cells: {line}");
        let cell = |s: &str| match s {
            "yes" => Cell::Yes,
            "no" => Cell::No,
            "assigned" => Cell::Assigned,
            other => panic!("unknown cell '{other}' in: {line}"),
        };
        rows.push((
            cells[1].to_owned(),
            [
                cell(cells[3]),
                cell(cells[4]),
                cell(cells[5]),
                cell(cells[6]),
            ],
        ));
    }
    rows
}

struct World {
    srv: TestServer,
    org: Org,
    users: Vec<User>,
    building: Building,
}

impl World {
    fn admin(&self) -> &User {
        &self.org.admin
    }

    fn c(&self) -> &Client {
        &self.srv.client
    }

    /// A new session on the world's building, created by the admin, assigned to `to` or to
    /// nobody.
    async fn session(&self, to: Option<&User>) -> (Uuid, String) {
        let assigned: Vec<Uuid> = to.map(|u| u.id).into_iter().collect();
        let s = fixtures::session(&self.srv, self.admin(), &self.building, &assigned).await;
        (
            s["id"].as_str().expect("id").parse().expect("uuid"),
            s["document_id"].as_str().expect("document id").to_owned(),
        )
    }

    /// Evidence uploaded by the admin to a new session assigned to `to` (or nobody).
    async fn evidence(&self, to: Option<&User>) -> Uuid {
        let (session, _) = self.session(to).await;
        let r = Upload::photo(session, jpeg(2048, 7))
            .send(self.c(), &self.admin().token)
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        r.uuid("evidence_id")
    }

    async fn defect(&self) -> Uuid {
        let r = self
            .c()
            .post(
                "/v1/defects",
                Some(&self.admin().token),
                &json!({ "building_id": self.building.id, "severity": "non_critical",
                         "title": "Door closer missing" }),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        r.uuid("id")
    }

    /// A webhook endpoint made by the admin (nothing listens there; the probes do not wait).
    async fn endpoint(&self) -> Uuid {
        let r = self
            .c()
            .post(
                "/v1/webhook-endpoints",
                Some(&self.admin().token),
                &json!({ "url": "http://127.0.0.1:9/hook" }),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        r.json["endpoint"]["id"]
            .as_str()
            .expect("id")
            .parse()
            .expect("uuid")
    }

    /// The notice a new defect (not tied to a session) put in the outbox.
    async fn notice(&self) -> Uuid {
        let d = self.defect().await;
        let r = self
            .c()
            .get(
                &format!("/v1/notices?defect_id={d}"),
                Some(&self.admin().token),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.json["items"][0]["id"]
            .as_str()
            .expect("a notice")
            .parse()
            .expect("uuid")
    }
}

/// Did the request get past authorization? 2xx yes; 403 and 404 (hidden) no; anything else
/// means the probe itself is wrong.
fn allowed(key: &str, r: &Resp) -> bool {
    match r.status {
        200..=299 => true,
        403 | 404 => false,
        other => panic!("{key}: unexpected {other}: {}", r.body),
    }
}

pub(crate) fn rule_body(code: &str) -> Value {
    json!({
        "code": code,
        "version": "1.0.0",
        "name": "Extinguisher six-monthly check (site variant)",
        "description": "Present, charged, tagged.",
        "standard": "AS 1851-2012",
        "section": "10",
        "clause": "Section 10",
        "equipment": "portable_extinguisher",
        "frequency": "six_monthly",
        "readings": [],
        "classification_mappings": { "serviceable": "compliant", "missing": "critical_defect" }
    })
}

/// Make the request of the row `key` as `who`; true when it was allowed. Fixtures that involve
/// a session are assigned to `who` when `assigned`, to nobody otherwise.
async fn probe(w: &World, key: &str, who: &User, assigned: bool) -> bool {
    let t = Some(who.token.as_str());
    let admin = Some(w.admin().token.as_str());
    let to = assigned.then_some(who);
    let b = w.building.id;
    let asset = w.building.assets[0];
    let c = w.c();
    match key {
        "`GET /v1/users/me`" => allowed(key, &c.get("/v1/users/me", t).await),
        "`GET /v1/users/me/audits`" => allowed(key, &c.get("/v1/users/me/audits", t).await),
        "`POST /v1/auth/logout`" => {
            // A login of its own: logging out revokes the token used.
            let fresh = w.srv.login(&who.email, &who.password).await;
            allowed(
                key,
                &c.post("/v1/auth/logout", Some(&fresh.token), &json!({}))
                    .await,
            )
        }
        "`POST /v1/users`" => {
            let email = format!("new-{}@example.test", Uuid::new_v4().simple());
            let body =
                json!({ "email": email, "password": "a-long-password-1", "role": "inspector" });
            allowed(key, &c.post("/v1/users", t, &body).await)
        }
        "`GET /v1/users`" => allowed(key, &c.get("/v1/users", t).await),
        "`PATCH /v1/users/{id}`" => {
            let target = w.srv.user(&w.org, "inspector").await;
            let path = format!("/v1/users/{}", target.id);
            allowed(
                key,
                &c.patch(&path, t, &json!({ "full_name": "Jo Citizen" }))
                    .await,
            )
        }
        "`POST /v1/users/{id}/revoke-tokens`" => {
            let target = w.srv.user(&w.org, "inspector").await;
            let path = format!("/v1/users/{}/revoke-tokens", target.id);
            allowed(key, &c.post(&path, t, &json!({})).await)
        }
        "`POST /v1/users/{id}/unlock`" => {
            let target = w.srv.user(&w.org, "inspector").await;
            let path = format!("/v1/users/{}/unlock", target.id);
            allowed(key, &c.post(&path, t, &json!({})).await)
        }
        "`POST /v1/buildings`" => {
            let body =
                json!({ "name": "Annex", "address": "2 Test St", "building_type": "office" });
            allowed(key, &c.post("/v1/buildings", t, &body).await)
        }
        "`GET /v1/buildings`" => allowed(key, &c.get("/v1/buildings", t).await),
        "`GET /v1/buildings/{id}`" => allowed(key, &c.get(&format!("/v1/buildings/{b}"), t).await),
        "`PATCH /v1/buildings/{id}`" => {
            let body = json!({ "name": "Test Tower" });
            allowed(key, &c.patch(&format!("/v1/buildings/{b}"), t, &body).await)
        }
        "`PATCH /v1/buildings/{id}` changing `rule_set` or `editions`" => {
            // Move the lighting pin to the edition it is not on, so every call is a change.
            let now = c.get(&format!("/v1/buildings/{b}"), t).await;
            let pinned_2019 = now.json["editions"]
                .as_array()
                .is_some_and(|e| e.iter().any(|p| p["version"] == "2019.1.0"));
            let version = if pinned_2019 { "1995.1.0" } else { "2019.1.0" };
            let body = json!({ "editions": [{ "code": "AS2293.2", "version": version }] });
            allowed(key, &c.patch(&format!("/v1/buildings/{b}"), t, &body).await)
        }
        "`DELETE /v1/buildings/{id}`" => {
            let fresh = fixtures::building(&w.srv, &w.org, 1).await;
            allowed(
                key,
                &c.delete(&format!("/v1/buildings/{}", fresh.id), t).await,
            )
        }
        "`POST /v1/buildings/{id}/assets`" => {
            let body = json!({ "asset_type": "portable_extinguisher", "location": "Plant room" });
            allowed(
                key,
                &c.post(&format!("/v1/buildings/{b}/assets"), t, &body).await,
            )
        }
        "`GET /v1/buildings/{id}/assets`" => {
            allowed(key, &c.get(&format!("/v1/buildings/{b}/assets"), t).await)
        }
        "`GET /v1/buildings/{id}/assets/{asset_id}`" => allowed(
            key,
            &c.get(&format!("/v1/buildings/{b}/assets/{asset}"), t).await,
        ),
        "`PATCH /v1/buildings/{id}/assets/{asset_id}`" => {
            let path = format!("/v1/buildings/{b}/assets/{asset}");
            allowed(
                key,
                &c.patch(&path, t, &json!({ "location": "Level 0" })).await,
            )
        }
        "`POST /v1/buildings/{id}/assets/import`" => {
            let csv = "asset_type,location\nportable_extinguisher,Lobby\n";
            let path = format!("/v1/buildings/{b}/assets/import");
            allowed(
                key,
                &c.post_raw(&path, t, "text/csv", csv.as_bytes().to_vec())
                    .await,
            )
        }
        "`GET /v1/buildings/{id}/assets/{asset_id}/service-history`" => allowed(
            key,
            &c.get(
                &format!("/v1/buildings/{b}/assets/{asset}/service-history"),
                t,
            )
            .await,
        ),
        "`POST /v1/buildings/{id}/assets/{asset_id}/service-history`" => {
            // A day of its own per call (one service per routine and day).
            static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
            let back = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let day = chrono::Utc::now().date_naive() - chrono::Days::new(back);
            let body = json!({ "rule_code": "AS1851-10-6M-EXT", "serviced_on": day.to_string(),
                               "outcome": "pass", "note": "probe" });
            let path = format!("/v1/buildings/{b}/assets/{asset}/service-history");
            allowed(key, &c.post(&path, t, &body).await)
        }
        "`GET /v1/buildings/{id}/assets/{asset_id}/reference-values`" => allowed(
            key,
            &c.get(
                &format!("/v1/buildings/{b}/assets/{asset}/reference-values?history=true"),
                t,
            )
            .await,
        ),
        "`PUT /v1/buildings/{id}/assets/{asset_id}/reference-values` with `source` `first_service`"
        | "`PUT /v1/buildings/{id}/assets/{asset_id}/reference-values` with another `source`" => {
            // Each row its own key, so one row's values never stand in the other's way.
            let (k, source) = if key.contains("first_service") {
                ("probe_first_service", "first_service")
            } else {
                ("probe_commissioning", "commissioning")
            };
            let body = json!({ "values": [{ "kind": "baseline", "key": k, "value": 1.5,
                                            "unit": "kPa", "source": source }] });
            let rb = c
                .request(
                    Method::PUT,
                    &format!("/v1/buildings/{b}/assets/{asset}/reference-values"),
                    t,
                )
                .json(&body);
            allowed(key, &Client::send(rb).await)
        }
        "`GET /v1/buildings/{id}/reference-values`" => allowed(
            key,
            &c.get(&format!("/v1/buildings/{b}/reference-values"), t).await,
        ),
        "`POST /v1/buildings/{id}/reference-values/import` with `first_service` rows only"
        | "`POST /v1/buildings/{id}/reference-values/import` with other sources" => {
            let row = if key.contains("first_service") {
                "EXT-0000,baseline,probe_import_first_service,2,kPa,first_service"
            } else {
                "EXT-0000,design,probe_import_design,2,kPa,design_document"
            };
            let csv = format!("asset_identifier,kind,key,value,unit,source\n{row}\n");
            let path = format!("/v1/buildings/{b}/reference-values/import");
            allowed(key, &c.post_raw(&path, t, "text/csv", csv.into()).await)
        }
        "`GET /v1/buildings/{id}/compliance`" => allowed(
            key,
            &c.get(&format!("/v1/buildings/{b}/compliance"), t).await,
        ),
        "`GET /v1/schedule`" => allowed(
            key,
            &c.get(&format!("/v1/schedule?building_id={b}"), t).await,
        ),
        "`POST /v1/schedule/sessions`" => allowed(
            key,
            &c.post(
                "/v1/schedule/sessions",
                t,
                &json!({ "building_id": b, "name": "Due now" }),
            )
            .await,
        ),
        "`GET /v1/holidays`" => allowed(key, &c.get("/v1/holidays?state=NSW&year=2027", t).await),
        "`PUT /v1/holidays/{state}/{year}`" => {
            let rb = c
                .request(Method::PUT, "/v1/holidays/NSW/2027", t)
                .json(&json!({ "holidays": [{ "date": "2027-10-04", "name": "Labour Day" }] }));
            allowed(key, &Client::send(rb).await)
        }
        "`GET /v1/buildings/{id}/logbook`"
        | "`GET /v1/buildings/{id}/condition-report`"
        | "`GET /v1/buildings/{id}/condition-reports`"
        | "`GET /v1/buildings/{id}/esm-statement`" => {
            let suffix = key
                .trim_matches('`')
                .trim_start_matches("GET /v1/buildings/{id}");
            allowed(key, &c.get(&format!("/v1/buildings/{b}{suffix}"), t).await)
        }
        "`POST /v1/buildings/{id}/condition-reports/sign`" => {
            let body = json!({ "period_start": "2024-01-01", "period_end": "2024-12-31" });
            let path = format!("/v1/buildings/{b}/condition-reports/sign");
            allowed(key, &c.post(&path, t, &body).await)
        }
        "`GET /v1/condition-reports/{id}`" => {
            let body = json!({ "period_start": "2025-01-01", "period_end": "2025-12-31" });
            let path = format!("/v1/buildings/{b}/condition-reports/sign");
            let signed = c.post(&path, admin, &body).await;
            assert_eq!(signed.status, 201, "{key}: {}", signed.body);
            let id = signed.str("id").to_owned();
            allowed(key, &c.get(&format!("/v1/condition-reports/{id}"), t).await)
        }
        "`GET /v1/rules`" => allowed(key, &c.get("/v1/rules", t).await),
        "`GET /v1/rules/{code}`" => allowed(key, &c.get("/v1/rules/AS1851-10-6M-EXT", t).await),
        "`GET /v1/rules/{code}/versions`" => {
            allowed(key, &c.get("/v1/rules/AS1851-10-6M-EXT/versions", t).await)
        }
        "`POST /v1/rules`" => {
            let code = format!("ROLE-{}", &Uuid::new_v4().simple().to_string()[..12]);
            allowed(key, &c.post("/v1/rules", t, &rule_body(&code)).await)
        }
        "`POST /v1/rules/{code}/versions/{version}/deactivate`" => {
            let code = format!("ROLE-{}", &Uuid::new_v4().simple().to_string()[..12]);
            let r = c.post("/v1/rules", admin, &rule_body(&code)).await;
            assert_eq!(r.status, 201, "{}", r.body);
            let path = format!("/v1/rules/{code}/versions/1.0.0/deactivate");
            allowed(key, &c.post(&path, t, &json!({})).await)
        }
        "`POST /v1/classify`" => {
            let body =
                json!({ "rule_code": "AS1851-10-6M-EXT", "observed_condition": "serviceable" });
            allowed(key, &c.post("/v1/classify", t, &body).await)
        }
        "`POST /v1/tests/sessions`" => {
            let body = json!({ "building_id": b, "name": "Probe", "frequency": "six_monthly" });
            allowed(key, &c.post("/v1/tests/sessions", t, &body).await)
        }
        "`POST /v1/tests/sessions` with `document_id`" => {
            let body = json!({ "building_id": b, "name": "Offline", "frequency": "six_monthly",
                               "document_id": Uuid::new_v4() });
            allowed(key, &c.post("/v1/tests/sessions", t, &body).await)
        }
        "`GET /v1/tests/sessions`" => {
            // A building of its own, so the probe's session is on the first page.
            let bld = fixtures::building(&w.srv, &w.org, 1).await;
            let assigned: Vec<Uuid> = to.map(|u| u.id).into_iter().collect();
            let s = fixtures::session(&w.srv, w.admin(), &bld, &assigned).await;
            let r = c
                .get(&format!("/v1/tests/sessions?building_id={}", bld.id), t)
                .await;
            assert_eq!(r.status, 200, "{key}: {}", r.body);
            r.json["items"]
                .as_array()
                .expect("items")
                .iter()
                .any(|i| i["id"] == s["id"])
        }
        "`GET /v1/events`" => {
            // Sees the session's events: a stream opened before a result is recorded on a
            // session assigned (or not) to the caller gets its `session` event.
            let res = c
                .raw()
                .get(format!("{}/v1/events", c.base()))
                .bearer_auth(&who.token)
                .send()
                .await
                .expect("events");
            if res.status() != 200 {
                return false;
            }
            let (s, _) = w.session(to).await;
            let r = Client::send(
                c.request(
                    reqwest::Method::POST,
                    &format!("/v1/tests/sessions/{s}/results"),
                    admin,
                )
                .header("idempotency-key", Uuid::new_v4().to_string())
                .json(&json!({ "results": [{ "asset_id": asset, "outcome": "pass" }] })),
            )
            .await;
            assert!(r.status < 300, "{key}: {}", r.body);
            let want = format!("\"session_id\":\"{s}\"");
            let mut res = res;
            let mut seen = String::new();
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(4);
            while let Ok(Ok(Some(chunk))) = tokio::time::timeout_at(deadline, res.chunk()).await {
                seen.push_str(&String::from_utf8_lossy(&chunk));
                if seen.contains(&want) {
                    return true;
                }
            }
            false
        }
        "`GET /v1/tests/sessions/{id}`"
        | "`GET /v1/tests/sessions/{id}/document`"
        | "`GET /v1/tests/sessions/{id}/results`"
        | "`GET /v1/tests/sessions/{id}/history`"
        | "`GET /v1/tests/sessions/{id}/conflicts`"
        | "`GET /v1/tests/sessions/{id}/diff`"
        | "`GET /v1/tests/sessions/{id}/evidence`" => {
            let (s, _) = w.session(to).await;
            let suffix = key
                .trim_matches('`')
                .trim_start_matches("GET /v1/tests/sessions/{id}");
            allowed(
                key,
                &c.get(&format!("/v1/tests/sessions/{s}{suffix}"), t).await,
            )
        }
        "`PATCH /v1/tests/sessions/{id}` with `name` or `assigned_to`" => {
            let (s, _) = w.session(to).await;
            let body = json!({ "name": "Renamed" });
            allowed(
                key,
                &c.patch(&format!("/v1/tests/sessions/{s}"), t, &body).await,
            )
        }
        "`PATCH /v1/tests/sessions/{id}` with `status` only" => {
            let (s, _) = w.session(to).await;
            let body = json!({ "status": "completed" });
            allowed(
                key,
                &c.patch(&format!("/v1/tests/sessions/{s}"), t, &body).await,
            )
        }
        "`POST /v1/tests/sessions/{id}/results`" => {
            let (s, _) = w.session(to).await;
            let body = json!({ "results": [{ "asset_id": asset, "outcome": "pass" }] });
            let rb = c
                .request(Method::POST, &format!("/v1/tests/sessions/{s}/results"), t)
                .header("idempotency-key", Uuid::new_v4().to_string())
                .json(&body);
            allowed(key, &Client::send(rb).await)
        }
        "`POST /v1/tests/sessions/{id}/conflicts/resolve`" => {
            let (s, _) = w.session(to).await;
            let body = json!({ "path": format!("/items/{asset}/outcome"), "value": "pass" });
            let r = c
                .post(
                    &format!("/v1/tests/sessions/{s}/conflicts/resolve"),
                    t,
                    &body,
                )
                .await;
            // The session has no conflict: a caller who may resolve gets past authorization
            // and is told so (422 invalid_change); others are refused before that.
            if r.status == 422 {
                assert!(r.body.contains("no conflict"), "{key}: {}", r.body);
                true
            } else {
                allowed(key, &r)
            }
        }
        "`POST /v1/tests/sessions/{id}/conflicts/resolve-item`" => {
            let (s, _) = w.session(to).await;
            // An edit needs no conflict: a caller who may resolve gets 200.
            let body = json!({ "asset_id": asset, "values": { "notes": "checked" } });
            allowed(
                key,
                &c.post(
                    &format!("/v1/tests/sessions/{s}/conflicts/resolve-item"),
                    t,
                    &body,
                )
                .await,
            )
        }
        "`POST /v1/evidence`" => {
            let (s, _) = w.session(to).await;
            allowed(
                key,
                &Upload::photo(s, jpeg(2048, 3)).send(c, &who.token).await,
            )
        }
        "`GET /v1/evidence/{id}`"
        | "`GET /v1/evidence/{id}/content`"
        | "`GET /v1/evidence/{id}/verify`" => {
            let e = w.evidence(to).await;
            let suffix = key
                .trim_matches('`')
                .trim_start_matches("GET /v1/evidence/{id}");
            allowed(key, &c.get(&format!("/v1/evidence/{e}{suffix}"), t).await)
        }
        "`POST /v1/defects`" => {
            let body =
                json!({ "building_id": b, "severity": "non_conformance", "title": "Sign faded" });
            allowed(key, &c.post("/v1/defects", t, &body).await)
        }
        "`GET /v1/defects`" => allowed(key, &c.get("/v1/defects", t).await),
        "`GET /v1/defects/{id}`" => {
            let d = w.defect().await;
            allowed(key, &c.get(&format!("/v1/defects/{d}"), t).await)
        }
        "`PATCH /v1/defects/{id}` with `status`" => {
            let d = w.defect().await;
            let body = json!({ "status": "acknowledged" });
            allowed(key, &c.patch(&format!("/v1/defects/{d}"), t, &body).await)
        }
        "`PATCH /v1/defects/{id}` with `severity`" => {
            let d = w.defect().await;
            let body = json!({ "severity": "critical", "reason": "the only door to the stair" });
            allowed(key, &c.patch(&format!("/v1/defects/{d}"), t, &body).await)
        }
        "`POST /v1/webhook-endpoints`" => {
            let body = json!({ "url": "https://hooks.example.test/fm" });
            allowed(key, &c.post("/v1/webhook-endpoints", t, &body).await)
        }
        "`GET /v1/webhook-endpoints`" => allowed(key, &c.get("/v1/webhook-endpoints", t).await),
        "`GET /v1/webhook-endpoints/{id}`" | "`GET /v1/webhook-endpoints/{id}/deliveries`" => {
            let e = w.endpoint().await;
            let suffix = if key.contains("deliveries") {
                "/deliveries"
            } else {
                ""
            };
            allowed(
                key,
                &c.get(&format!("/v1/webhook-endpoints/{e}{suffix}"), t)
                    .await,
            )
        }
        "`PATCH /v1/webhook-endpoints/{id}`" => {
            let e = w.endpoint().await;
            let body = json!({ "enabled": false });
            allowed(
                key,
                &c.patch(&format!("/v1/webhook-endpoints/{e}"), t, &body)
                    .await,
            )
        }
        "`DELETE /v1/webhook-endpoints/{id}`" => {
            let e = w.endpoint().await;
            allowed(key, &c.delete(&format!("/v1/webhook-endpoints/{e}"), t).await)
        }
        "`POST /v1/webhook-endpoints/{id}/rotate-secret`" => {
            let e = w.endpoint().await;
            let path = format!("/v1/webhook-endpoints/{e}/rotate-secret");
            allowed(key, &c.post(&path, t, &json!({})).await)
        }
        "`GET /v1/notices`" => allowed(key, &c.get("/v1/notices", t).await),
        "`GET /v1/notices/{id}`" | "`GET /v1/notices/{id}/pdf`" => {
            let n = w.notice().await;
            let suffix = if key.contains("pdf") { "/pdf" } else { "" };
            allowed(key, &c.get(&format!("/v1/notices/{n}{suffix}"), t).await)
        }
        "`POST /v1/notices/{id}/redeliver`" => {
            let n = w.notice().await;
            let path = format!("/v1/notices/{n}/redeliver");
            allowed(key, &c.post(&path, t, &json!({})).await)
        }
        "`PATCH /v1/tests/sessions/{id}` reopening a completed session" => {
            let (s, _) = w.session(to).await;
            let url = format!("/v1/tests/sessions/{s}");
            let done = c
                .patch(
                    &url,
                    Some(&w.admin().token),
                    &json!({ "status": "completed" }),
                )
                .await;
            assert_eq!(done.status, 200, "{key}: {}", done.body);
            let body = json!({ "status": "in_progress", "reason": "signed off too early" });
            allowed(key, &c.patch(&url, t, &body).await)
        }
        "`GET /v1/sync` reading a document" | "`GET /v1/sync` changing a document" => {
            let (s, doc_id) = w.session(to).await;
            let peer = format!("{}:roles-{}", who.id, Uuid::new_v4().simple());
            let mut client = SyncClient::joined(&w.srv.base, &who.token, &peer).await;
            let (mut doc, mut state) = (Automerge::new(), sync::State::new());
            match client.sync(&doc_id, &mut doc, &mut state, true).await {
                Ok(()) => {}
                Err(e) if e == "doc-unavailable" => return false,
                Err(e) => panic!("{key}: {e}"),
            }
            assert!(
                doc.get(ROOT, "items").unwrap().is_some(),
                "{key}: the document arrived"
            );
            if key.contains("reading") {
                return true;
            }
            put_item_field(&mut doc, asset, "outcome", "fail");
            // An edit the server refuses to store is not an error to the client: it only
            // never comes back as saved. So look at the server's copy.
            let _ = client.sync(&doc_id, &mut doc, &mut state, false).await;
            let r = c
                .get(&format!("/v1/tests/sessions/{s}/document"), admin)
                .await;
            assert_eq!(r.status, 200, "{}", r.body);
            match r.json["document"]["items"][asset.to_string()]["outcome"].as_str() {
                Some("fail") => true,
                Some("not_tested") => false,
                other => panic!("{key}: outcome {other:?}"),
            }
        }
        other => panic!("no probe for the row {other} of docs/roles.md"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_matches_the_server() {
    let rows = table();
    let keys: BTreeSet<&str> = rows.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys.len(), rows.len(), "a row appears twice");
    let probes: BTreeSet<&str> = PROBES.iter().copied().collect();
    let undocumented: Vec<_> = probes.difference(&keys).collect();
    let unprobed: Vec<_> = keys.difference(&probes).collect();
    assert!(
        undocumented.is_empty() && unprobed.is_empty(),
        "docs/roles.md and this test disagree: rows missing from the document {undocumented:?}, \
         rows without a probe {unprobed:?}"
    );

    // Every operation of the API that needs a token has a row.
    let spec = firemode_server::http::openapi();
    for (path, item) in &spec.paths.paths {
        let ops = [
            ("GET", &item.get),
            ("POST", &item.post),
            ("PUT", &item.put),
            ("PATCH", &item.patch),
            ("DELETE", &item.delete),
        ];
        for (method, op) in ops {
            let Some(op) = op else { continue };
            if op.security.as_ref().is_none_or(|s| s.is_empty()) {
                continue;
            }
            let prefix = format!("`{method} {path}`");
            assert!(
                keys.iter().any(|k| k.starts_with(&prefix)),
                "{method} {path} needs a token but docs/roles.md has no row for it"
            );
        }
    }

    let srv = TestServer::start(Backend::Sqlite)
        .await
        .expect("SQLite is always available");
    let org = srv.org("Roles").await;
    let mut users = vec![org.admin.clone()];
    for role in &ROLES[1..] {
        users.push(srv.user(&org, role).await);
    }
    let building = fixtures::building(&srv, &org, 1).await;
    let w = World {
        srv,
        org,
        users,
        building,
    };

    let mut wrong = Vec::new();
    for (key, cells) in &rows {
        for (i, role) in ROLES.iter().enumerate() {
            let who = &w.users[i];
            // Yes: allowed without an assignment. No: refused even with one. Assigned: both.
            let checks: &[(bool, bool)] = match cells[i] {
                Cell::Yes => &[(false, true)],
                Cell::No => &[(true, false)],
                Cell::Assigned => &[(true, true), (false, false)],
            };
            for &(assigned, expected) in checks {
                let got =
                    tokio::time::timeout(Duration::from_secs(60), probe(&w, key, who, assigned))
                        .await
                        .unwrap_or_else(|_| panic!("{key} as {role}: no answer in 60 s"));
                if got != expected {
                    wrong.push(format!(
                        "{key} as {role} ({}): the table says {}, the server {}",
                        if assigned { "assigned" } else { "not assigned" },
                        if expected { "allowed" } else { "refused" },
                        if got { "allowed" } else { "refused" },
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "docs/roles.md does not match the server:\n{}",
        wrong.join("\n")
    );
}
