//! Notices that leave the building: the outbox written with the defect change (REST and the
//! projection), signed webhooks to a real HTTP receiver started here (signatures checked with
//! the Standard Webhooks algorithm written out below, not the server's code), retries with
//! backoff after 500s, giving up, manual redelivery with the same `webhook-id`, secret rotation
//! (both signatures verify during the grace period), deadlines met only by a delivered notice,
//! escalation once, two nodes on one PostgreSQL delivering each notice once, and bad input.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chrono::Utc;
use firemode_server::config::Config;
use firemode_server::store::defects::{DefectRecord, DefectWrite};
use firemode_server::store::Page;
use firemode_tests::fixtures::{building, session, Building};
use firemode_tests::{
    assert_problem, backend_tests, test_config, Backend, Org, Resp, TestDb, TestServer,
};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use uuid::Uuid;

backend_tests!(
    webhooks_are_signed_retried_with_backoff_and_given_up,
    redelivery_keeps_the_id_and_rotation_signs_with_both_secrets,
    outbox_rows_exist_iff_the_defect_change_committed,
    deadline_met_only_by_delivery_and_escalated_once,
    endpoints_refuse_bad_input_and_other_organisations,
    printable_notice_names_the_finder_and_the_deadline,
);

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    id: String,
    timestamp: String,
    signature: String,
    body: String,
    at: Instant,
}

/// What the receiver got so far, and how many requests it still answers with 500.
type Log = (Arc<Mutex<Vec<Received>>>, Arc<AtomicUsize>);

/// A webhook receiver on a real socket: answers 500 to the first `fail_first` requests (all of
/// them with `usize::MAX`), then 200.
#[derive(Clone)]
struct Receiver {
    got: Arc<Mutex<Vec<Received>>>,
    fail_first: Arc<AtomicUsize>,
    url: String,
}

impl Receiver {
    async fn start(fail_first: usize) -> Self {
        let got = Arc::new(Mutex::new(Vec::new()));
        let fail = Arc::new(AtomicUsize::new(fail_first));
        let state = (got.clone(), fail.clone());
        async fn hook(
            State((got, fail)): State<Log>,
            headers: HeaderMap,
            body: String,
        ) -> (StatusCode, &'static str) {
            let h = |n: &str| {
                headers
                    .get(n)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned()
            };
            let n = {
                let mut g = got.lock().unwrap();
                g.push(Received {
                    id: h("webhook-id"),
                    timestamp: h("webhook-timestamp"),
                    signature: h("webhook-signature"),
                    body,
                    at: Instant::now(),
                });
                g.len()
            };
            if n <= fail.load(Ordering::SeqCst) {
                (StatusCode::INTERNAL_SERVER_ERROR, "receiver down")
            } else {
                (StatusCode::OK, "ok")
            }
        }
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(hook))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            got,
            fail_first: fail,
            url,
        }
    }

    fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}

/// The Standard Webhooks check: some `v1,` signature of the header is the base64 HMAC-SHA256,
/// keyed with the base64-decoded part of `whsec_...`, of `{id}.{timestamp}.{body}`.
fn signed_by(secret: &str, r: &Received) -> bool {
    let key = B64
        .decode(secret.strip_prefix("whsec_").expect("whsec_ prefix"))
        .expect("base64 secret");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{}.{}.{}", r.id, r.timestamp, r.body).as_bytes());
    let expected = format!("v1,{}", B64.encode(mac.finalize().into_bytes()));
    r.signature.split(' ').any(|s| s == expected)
}

fn fast(cfg: &mut Config) {
    cfg.notice_poll = Duration::from_millis(50);
    cfg.notice_retry_base = Duration::from_millis(300);
    cfg.notice_max_attempts = 4;
    cfg.webhook_timeout = Duration::from_secs(3);
}

async fn start(b: Backend) -> Option<(TestServer, Org, Building)> {
    let db = TestDb::new(b).await?;
    let mut cfg = test_config(&db);
    fast(&mut cfg);
    let srv = TestServer::start_with(db, cfg).await;
    let org = srv.org("Acme").await;
    let bld = building(&srv, &org, 2).await;
    Some((srv, org, bld))
}

async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn endpoint(srv: &TestServer, org: &Org, url: &str, types: Value) -> (String, String) {
    let r = srv
        .client
        .post(
            "/v1/webhook-endpoints",
            Some(&org.admin.token),
            &json!({ "url": url, "description": "owner's system", "event_types": types }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let secret = r.str("secret").to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    (
        r.json["endpoint"]["id"].as_str().unwrap().to_owned(),
        secret,
    )
}

async fn defect(
    srv: &TestServer,
    org: &Org,
    bld: &Building,
    severity: &str,
    days_ago: i64,
) -> Resp {
    let r = srv
        .client
        .post(
            "/v1/defects",
            Some(&org.admin.token),
            &json!({ "building_id": bld.id, "asset_id": bld.assets[0], "severity": severity,
                     "title": format!("{severity} defect"), "description": "hose reel leaking at the gland",
                     "discovered_at": (Utc::now() - chrono::Duration::days(days_ago)).to_rfc3339() }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    r
}

async fn get(srv: &TestServer, token: &str, path: &str) -> Value {
    let r = srv.client.get(path, Some(token)).await;
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    r.json
}

async fn webhooks_are_signed_retried_with_backoff_and_given_up(b: Backend) {
    let Some((srv, org, bld)) = start(b).await else {
        return;
    };
    let t = org.admin.token.clone();
    let flaky = Receiver::start(2).await;
    let down = Receiver::start(usize::MAX).await;
    let (flaky_id, flaky_secret) = endpoint(&srv, &org, &flaky.url, json!([])).await;
    let (down_id, down_secret) = endpoint(&srv, &org, &down.url, json!(["defect.opened"])).await;
    let d = defect(&srv, &org, &bld, "critical", 0).await;
    let did = d.str("id").to_owned();
    assert!(d.json["notified_at"].is_null());

    wait_for(
        "three attempts at the flaky receiver, four at the dead one",
        Duration::from_secs(20),
        || async { flaky.got().len() >= 3 && down.got().len() >= 4 },
    )
    .await;
    // Let the worker record the last attempts and show that nothing more is sent.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got = flaky.got();
    assert_eq!(got.len(), 3, "2 failures then 1 success, nothing after");
    assert_eq!(down.got().len(), 4, "bounded: notice_max_attempts = 4");

    // One webhook-id for every attempt: the notice's id. Every request is signed.
    let notice_id = got[0].id.clone();
    assert!(got.iter().all(|r| r.id == notice_id));
    assert!(got.iter().all(|r| signed_by(&flaky_secret, r)));
    assert!(down
        .got()
        .iter()
        .all(|r| r.id == notice_id && signed_by(&down_secret, r)));
    assert!(
        !signed_by(&down_secret, &got[0]),
        "each endpoint has its own secret"
    );
    let now = Utc::now().timestamp();
    let ts: i64 = got[2].timestamp.parse().unwrap();
    assert!(
        (now - ts).abs() < 60,
        "webhook-timestamp is the send time in seconds"
    );
    let body: Value = serde_json::from_str(&got[2].body).unwrap();
    assert_eq!(body["type"], "defect.opened");
    assert_eq!(body["data"]["defect_id"], did);
    assert_eq!(body["data"]["severity"], "critical");
    assert_eq!(body["data"]["building"]["name"], "Test Tower");
    assert_eq!(body["data"]["asset"]["identifier"], "EXT-0000");
    assert_eq!(body["data"]["notice_id"], notice_id);
    assert_eq!(
        body["data"]["notify_by"],
        d.json["notify_by"]
            .as_str()
            .map(|s| {
                chrono::DateTime::parse_from_rfc3339(s)
                    .unwrap()
                    .with_timezone(&Utc)
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            })
            .unwrap()
    );
    // Exponential backoff: 300 ms, then 600 ms (plus up to a poll interval each).
    let gap1 = got[1].at - got[0].at;
    let gap2 = got[2].at - got[1].at;
    assert!(gap1 >= Duration::from_millis(290), "{gap1:?}");
    assert!(
        gap2 >= Duration::from_millis(590) && gap2 > gap1,
        "{gap1:?} then {gap2:?}"
    );

    // The defect: deadline met by the delivery; the notices with each recipient's outcome.
    let one = get(&srv, &t, &format!("/v1/defects/{did}")).await;
    assert!(one["notified_at"].is_string(), "{one}");
    assert_eq!(one["overdue"], false);
    let notices = one["notices"].as_array().unwrap();
    assert_eq!(notices.len(), 1, "{one}");
    assert_eq!(notices[0]["id"], notice_id);
    assert_eq!(notices[0]["kind"], "defect.opened");
    let deliveries = notices[0]["deliveries"].as_array().unwrap();
    let of = |ep: &str| {
        deliveries
            .iter()
            .find(|d| d["endpoint_id"] == ep)
            .unwrap()
            .clone()
    };
    assert_eq!(of(&flaky_id)["status"], "delivered");
    assert_eq!(of(&flaky_id)["attempts"], 3);
    assert_eq!(of(&flaky_id)["recipient"], flaky.url);
    assert_eq!(of(&flaky_id)["channel"], "webhook");
    assert_eq!(of(&down_id)["status"], "failed");
    assert_eq!(of(&down_id)["attempts"], 4);
    assert!(of(&down_id)["last_error"].as_str().unwrap().contains("500"));

    // Every attempt logged: per notice, and per endpoint (newest first).
    let n = get(&srv, &t, &format!("/v1/notices/{notice_id}")).await;
    let flaky_attempts: Vec<(Value, Value)> = n["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["endpoint_id"] == flaky_id.as_str())
        .map(|a| (a["outcome"].clone(), a["http_status"].clone()))
        .collect();
    assert_eq!(
        flaky_attempts,
        vec![
            (json!("failed"), json!(500)),
            (json!("failed"), json!(500)),
            (json!("delivered"), json!(200))
        ]
    );
    let log = get(
        &srv,
        &t,
        &format!("/v1/webhook-endpoints/{down_id}/deliveries"),
    )
    .await;
    let log = log["items"].as_array().unwrap();
    assert_eq!(log.len(), 4);
    assert!(log
        .iter()
        .all(|a| a["outcome"] == "failed" && a["http_status"] == 500));
    assert!(
        log[0]["at"].as_str() >= log[3]["at"].as_str(),
        "newest first"
    );

    // The secret is never shown again.
    let listed = srv.client.get("/v1/webhook-endpoints", Some(&t)).await;
    assert_eq!(listed.status, 200);
    assert!(!listed.body.contains(&flaky_secret[6..]) && !listed.body.contains("whsec_"));
    let audits = srv
        .client
        .get("/v1/users/me/audits?limit=500", Some(&t))
        .await;
    assert!(
        !audits.body.contains(&flaky_secret[6..]),
        "not in the audit trail either"
    );
    assert!(
        !firemode_tests::logs::captured().contains(&flaky_secret[6..]),
        "nor in the logs"
    );
    srv.stop().await;
}

async fn redelivery_keeps_the_id_and_rotation_signs_with_both_secrets(b: Backend) {
    let Some((srv, org, bld)) = start(b).await else {
        return;
    };
    let t = org.admin.token.clone();
    let office = srv.user(&org, "office").await;
    let rx = Receiver::start(0).await;
    let (ep, old_secret) = endpoint(&srv, &org, &rx.url, json!([])).await;
    let d = defect(&srv, &org, &bld, "non_critical", 0).await;
    wait_for("the first delivery", Duration::from_secs(10), || async {
        rx.got().len() == 1
    })
    .await;
    let first = rx.got()[0].clone();
    assert!(signed_by(&old_secret, &first));
    assert_eq!(first.signature.split(' ').count(), 1);

    // Rotate with a grace period: both secrets sign.
    let r = srv
        .client
        .post(
            &format!("/v1/webhook-endpoints/{ep}/rotate-secret"),
            Some(&t),
            &json!({ "grace_secs": 3600 }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let new_secret = r.str("secret").to_owned();
    assert_ne!(new_secret, old_secret);
    assert!(r.json["endpoint"]["previous_secret_valid_until"].is_string());

    // Office redelivers: the same webhook-id, signed by the new and the old secret.
    let red = srv
        .client
        .post(
            &format!("/v1/notices/{}/redeliver", first.id),
            Some(&office.token),
            &json!({}),
        )
        .await;
    assert_eq!(red.status, 202, "{}", red.body);
    assert_eq!(red.json["queued"], 1);
    wait_for("the redelivery", Duration::from_secs(10), || async {
        rx.got().len() == 2
    })
    .await;
    let again = rx.got()[1].clone();
    assert_eq!(
        again.id, first.id,
        "same webhook-id: receivers drop it as a duplicate if they had it"
    );
    assert_eq!(again.signature.split(' ').count(), 2, "{}", again.signature);
    assert!(signed_by(&new_secret, &again) && signed_by(&old_secret, &again));

    // The grace period ended at once: only the newest secret signs.
    let r = srv
        .client
        .post(
            &format!("/v1/webhook-endpoints/{ep}/rotate-secret"),
            Some(&t),
            &json!({ "grace_secs": 0 }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let newest = r.str("secret").to_owned();
    let red = srv
        .client
        .post(
            &format!("/v1/notices/{}/redeliver", first.id),
            Some(&t),
            &json!({}),
        )
        .await;
    assert_eq!(red.status, 202, "{}", red.body);
    wait_for("the second redelivery", Duration::from_secs(10), || async {
        rx.got().len() == 3
    })
    .await;
    let third = rx.got()[2].clone();
    assert!(signed_by(&newest, &third));
    assert!(!signed_by(&new_secret, &third) && !signed_by(&old_secret, &third));
    assert_eq!(third.id, first.id);

    // A disabled endpoint gets nothing; redelivery queues none.
    let p = srv
        .client
        .patch(
            &format!("/v1/webhook-endpoints/{ep}"),
            Some(&t),
            &json!({ "enabled": false }),
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert_eq!(p.json["enabled"], false);
    let red = srv
        .client
        .post(
            &format!("/v1/notices/{}/redeliver", first.id),
            Some(&t),
            &json!({}),
        )
        .await;
    assert_eq!(red.json["queued"], 0, "{}", red.body);
    defect(&srv, &org, &bld, "non_conformance", 0).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(rx.got().len(), 3);
    // Notices of the defect, as the list shows them.
    let listed = get(&srv, &t, &format!("/v1/notices?defect_id={}", d.str("id"))).await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    assert_eq!(listed["items"][0]["deliveries"][0]["status"], "delivered");
    // Deleting keeps the log; the endpoint is gone from the API.
    let del = srv
        .client
        .delete(&format!("/v1/webhook-endpoints/{ep}"), Some(&t))
        .await;
    assert_eq!(del.status, 204, "{}", del.body);
    assert_eq!(
        srv.client
            .get(&format!("/v1/webhook-endpoints/{ep}"), Some(&t))
            .await
            .status,
        404
    );
    let n = get(&srv, &t, &format!("/v1/notices/{}", first.id)).await;
    assert_eq!(n["attempts"].as_array().unwrap().len(), 3);
    srv.stop().await;
}

fn record(org: &Org, bld: &Building, asset: usize, condition: &str) -> DefectRecord {
    let now = Utc::now();
    DefectRecord {
        id: Uuid::now_v7(),
        org_id: org.id,
        building_id: bld.id,
        asset_id: Some(bld.assets[asset]),
        session_id: None,
        rule_code: None,
        rule_version: None,
        severity: "critical".into(),
        status: "open".into(),
        source: "automatic".into(),
        title: "EXT: discharged".into(),
        description: "found discharged".into(),
        observed_condition: Some(condition.into()),
        evidence: sqlx::types::Json(vec![]),
        discovered_at: now,
        notify_by: now + chrono::Duration::hours(24),
        acknowledged_at: None,
        created_by: None,
        created_at: now,
        updated_at: now,
        severity_overridden: false,
        severity_reason: None,
        duplicate_of: None,
        notified_at: None,
        escalated_at: None,
        asset_identifier: None,
        asset_type: None,
        asset_location: None,
    }
}

async fn kinds(srv: &TestServer, org: &Org, defect: Uuid) -> Vec<String> {
    srv.store()
        .list_notices(
            org.id,
            Some(defect),
            None,
            Page {
                after: None,
                limit: 100,
            },
        )
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.kind)
        .collect()
}

async fn outbox_rows_exist_iff_the_defect_change_committed(b: Backend) {
    let Some((srv, org, bld)) = start(b).await else {
        return;
    };
    let store = srv.store();
    let rx = Receiver::start(0).await;
    endpoint(&srv, &org, &rx.url, json!([])).await;

    // The projection's write: a defect opened together with a change that fails rolls back
    // both; the same defect alone commits with its notice.
    let d = record(&org, &bld, 0, "discharged");
    let failing = [
        DefectWrite::Open(Box::new(d.clone())),
        DefectWrite::Reconfirm {
            id: Uuid::now_v7(),
            session: Uuid::now_v7(),
            at: Utc::now(),
            severity: None,
            evidence: vec![],
            notify_by: None,
        },
    ];
    assert!(store.write_defects(&failing).await.is_err());
    assert!(
        store.get_defect(org.id, d.id, None).await.is_err(),
        "no defect"
    );
    assert!(kinds(&srv, &org, d.id).await.is_empty(), "and no notice");
    store
        .write_defects(&[DefectWrite::Open(Box::new(d.clone()))])
        .await
        .unwrap();
    assert_eq!(kinds(&srv, &org, d.id).await, ["defect.opened"]);

    // A critical defect found again by another visit is confirmed again.
    let s = session(&srv, &org.admin, &bld, &[]).await;
    let sid: Uuid = s["id"].as_str().unwrap().parse().unwrap();
    store
        .write_defects(&[DefectWrite::Reconfirm {
            id: d.id,
            session: sid,
            at: Utc::now(),
            severity: None,
            evidence: vec![],
            notify_by: None,
        }])
        .await
        .unwrap();
    assert_eq!(
        kinds(&srv, &org, d.id).await,
        ["defect.opened", "defect.reconfirmed"]
    );

    // REST: a refused defect (409, same asset and condition) writes no notice.
    let t = org.admin.token.clone();
    let body = json!({ "building_id": bld.id, "asset_id": bld.assets[1], "severity": "non_critical",
                       "title": "Gauge out of green", "rule_code": "AS1851-10-6M-EXT",
                       "observed_condition": "extinguisher_discharged_or_empty" });
    let first = srv.client.post("/v1/defects", Some(&t), &body).await;
    assert_eq!(first.status, 201, "{}", first.body);
    let fid: Uuid = first.uuid("id");
    assert_problem(
        &srv.client.post("/v1/defects", Some(&t), &body).await,
        409,
        "defect_exists",
    );
    let all = store
        .list_notices(
            org.id,
            None,
            None,
            Page {
                after: None,
                limit: 100,
            },
        )
        .await
        .unwrap();
    assert_eq!(all.len(), 3, "{all:?}");

    // Raised to critical by hand: the 24-hour notice, and the earlier delivery no longer meets
    // the new deadline until this one is delivered.
    wait_for("the first notice delivered", Duration::from_secs(10), || {
        let srv = &srv;
        let t = t.clone();
        async move { get(srv, &t, &format!("/v1/defects/{fid}")).await["notified_at"].is_string() }
    })
    .await;
    rx.fail_first.store(usize::MAX, Ordering::SeqCst);
    let p = srv
        .client
        .patch(
            &format!("/v1/defects/{fid}"),
            Some(&t),
            &json!({ "severity": "critical", "reason": "only extinguisher on the floor" }),
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert!(p.json["notified_at"].is_null(), "a new period: {}", p.json);
    assert_eq!(
        kinds(&srv, &org, fid).await,
        ["defect.opened", "defect.severity_raised"]
    );
    // Lowering it again needs no notice.
    let p = srv
        .client
        .patch(
            &format!("/v1/defects/{fid}"),
            Some(&t),
            &json!({ "severity": "non_critical", "reason": "second extinguisher found" }),
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert_eq!(kinds(&srv, &org, fid).await.len(), 2);
    // A status change does not meet the deadline.
    let p = srv
        .client
        .patch(
            &format!("/v1/defects/{fid}"),
            Some(&t),
            &json!({ "status": "acknowledged" }),
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert!(p.json["notified_at"].is_null());
    srv.stop().await;
}

async fn deadline_met_only_by_delivery_and_escalated_once(b: Backend) {
    let Some((srv, org, bld)) = start(b).await else {
        return;
    };
    let t = org.admin.token.clone();
    // The owner's system only takes escalations: the opened notice goes nowhere.
    let rx = Receiver::start(0).await;
    endpoint(&srv, &org, &rx.url, json!(["defect.escalated"])).await;
    // Found two days ago, critical: the 24-hour deadline has passed, nobody was told.
    let late = defect(&srv, &org, &bld, "critical", 2).await;
    let lid = late.str("id").to_owned();
    // Found today: not due yet.
    let fresh = defect(&srv, &org, &bld, "non_critical", 0).await;
    wait_for(
        "the escalation webhook",
        Duration::from_secs(10),
        || async { !rx.got().is_empty() },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = rx.got();
    assert_eq!(
        got.len(),
        1,
        "escalated once, whatever the number of worker rounds"
    );
    let body: Value = serde_json::from_str(&got[0].body).unwrap();
    assert_eq!(body["type"], "defect.escalated");
    assert_eq!(body["data"]["defect_id"], lid);
    let one = get(&srv, &t, &format!("/v1/defects/{lid}")).await;
    assert!(one["escalated_at"].is_string(), "{one}");
    assert!(
        one["notified_at"].is_null(),
        "an escalation does not tell the owner"
    );
    assert_eq!(one["overdue"], true);
    let kinds: Vec<&str> = one["notices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["defect.opened", "defect.escalated"]);
    assert_eq!(
        one["notices"][0]["deliveries"].as_array().unwrap().len(),
        0,
        "filtered out"
    );
    let overdue = get(&srv, &t, "/v1/defects?overdue=true").await;
    let ids: Vec<&str> = overdue["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [lid.as_str()]);
    let f = get(&srv, &t, &format!("/v1/defects/{}", fresh.str("id"))).await;
    assert!(f["escalated_at"].is_null());
    srv.stop().await;
}

async fn endpoints_refuse_bad_input_and_other_organisations(b: Backend) {
    let Some((srv, org, bld)) = start(b).await else {
        return;
    };
    let t = org.admin.token.clone();
    let post = |body: Value| {
        let srv = &srv;
        let t = t.clone();
        async move {
            srv.client
                .post("/v1/webhook-endpoints", Some(&t), &body)
                .await
        }
    };
    for (body, code) in [
        (json!({ "url": "ftp://x.test/" }), "invalid_field"),
        (json!({ "url": "https://user:pw@x.test/" }), "invalid_field"),
        (
            json!({ "url": "https://x.test/", "description": "d".repeat(501) }),
            "invalid_field",
        ),
        (
            json!({ "url": "https://x.test/", "event_types": ["defect.exploded"] }),
            "invalid_body",
        ),
        (json!({ "url": "https://x.test/\u{0}" }), "invalid_text"),
        (
            json!({ "url": "https://x.test/", "secret": "mine" }),
            "invalid_body",
        ),
    ] {
        let r = post(body.clone()).await;
        assert_eq!(r.status, 422, "{body}: {}", r.body);
        assert_eq!(r.json["code"], code, "{body}: {}", r.body);
    }
    let listed = get(&srv, &t, "/v1/webhook-endpoints").await;
    assert_eq!(listed.as_array().unwrap().len(), 0, "nothing was created");
    let rx = Receiver::start(0).await;
    let (ep, _) = endpoint(&srv, &org, &rx.url, json!([])).await;
    let r = srv
        .client
        .post(
            &format!("/v1/webhook-endpoints/{ep}/rotate-secret"),
            Some(&t),
            &json!({ "grace_secs": 999_999_999 }),
        )
        .await;
    assert_problem(&r, 422, "invalid_field");
    let r = srv
        .client
        .patch(&format!("/v1/webhook-endpoints/{ep}"), Some(&t), &json!({}))
        .await;
    assert_problem(&r, 422, "invalid_body");
    let d = defect(&srv, &org, &bld, "non_critical", 0).await;
    wait_for("a delivery", Duration::from_secs(10), || async {
        rx.got().len() == 1
    })
    .await;
    let notice = rx.got()[0].id.clone();

    // Another organisation sees none of it: 404 as for an id that does not exist.
    let other = srv.org("Other").await;
    let o = other.admin.token.clone();
    for path in [
        format!("/v1/webhook-endpoints/{ep}"),
        format!("/v1/webhook-endpoints/{ep}/deliveries"),
        format!("/v1/notices/{notice}"),
    ] {
        assert_problem(&srv.client.get(&path, Some(&o)).await, 404, "not_found");
    }
    assert_problem(
        &srv.client
            .patch(
                &format!("/v1/webhook-endpoints/{ep}"),
                Some(&o),
                &json!({ "enabled": false }),
            )
            .await,
        404,
        "not_found",
    );
    assert_problem(
        &srv.client
            .delete(&format!("/v1/webhook-endpoints/{ep}"), Some(&o))
            .await,
        404,
        "not_found",
    );
    assert_problem(
        &srv.client
            .post(
                &format!("/v1/notices/{notice}/redeliver"),
                Some(&o),
                &json!({}),
            )
            .await,
        404,
        "not_found",
    );
    let theirs = get(&srv, &o, &format!("/v1/notices?defect_id={}", d.str("id"))).await;
    assert_eq!(theirs["items"].as_array().unwrap().len(), 0);
    assert_eq!(
        get(&srv, &o, "/v1/webhook-endpoints")
            .await
            .as_array()
            .unwrap()
            .len(),
        0
    );
    // Still enabled and delivering for its own organisation.
    assert_eq!(
        get(&srv, &t, &format!("/v1/webhook-endpoints/{ep}")).await["enabled"],
        true
    );
    srv.stop().await;
}

/// Two nodes on one PostgreSQL, each with its delivery worker polling every 20 ms: every notice
/// reaches the receiver once (the claim skips rows the other node holds), with one attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_deliver_each_notice_once() {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let mut cfg = test_config(&db);
    fast(&mut cfg);
    cfg.notice_poll = Duration::from_millis(20);
    let second_db = db.shared();
    let a = TestServer::start_with(db, cfg.clone()).await;
    let b = TestServer::start_with(second_db, cfg).await;
    let org = a.org("Acme").await;
    let bld = building(&a, &org, 40).await;
    let rx = Receiver::start(0).await;
    endpoint(&a, &org, &rx.url, json!([])).await;
    let n = 40;
    for i in 0..n {
        // Half through each node.
        let node = if i % 2 == 0 { &a } else { &b };
        let r = node
            .client
            .post(
                "/v1/defects",
                Some(&org.admin.token),
                &json!({ "building_id": bld.id, "asset_id": bld.assets[i], "severity": "critical",
                         "title": format!("defect {i}") }),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    wait_for("every notice", Duration::from_secs(30), || async {
        let mut ids: Vec<String> = rx.got().into_iter().map(|r| r.id).collect();
        ids.sort();
        ids.dedup();
        ids.len() == n
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = rx.got();
    let mut ids: Vec<String> = got.iter().map(|r| r.id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n);
    assert_eq!(got.len(), n, "no notice delivered twice");
    let notices = a
        .store()
        .list_notices(
            org.id,
            None,
            None,
            Page {
                after: None,
                limit: 1000,
            },
        )
        .await
        .unwrap();
    let deliveries = a
        .store()
        .notice_deliveries(&notices.iter().map(|n| n.id).collect::<Vec<_>>())
        .await
        .unwrap();
    assert_eq!(deliveries.len(), n);
    assert!(deliveries
        .iter()
        .all(|d| d.status == "delivered" && d.attempts == 1));
    b.stop().await;
    a.stop().await;
}

#[test]
fn receiver_check_matches_the_specification_example() {
    // The Standard Webhooks specification's example values.
    let r = Received {
        id: "msg_p5jXN8AQM9LWM0D4loKWxJek".into(),
        timestamp: "1614265330".into(),
        signature: "v1,bm9ldHUjKzFob2VudXRob2VodWUzMjRvdWVvdW9ldQo= v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=".into(),
        body: r#"{"test": 2432232314}"#.into(),
        at: Instant::now(),
    };
    assert!(signed_by("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", &r));
    assert!(!signed_by("whsec_AfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", &r));
}

/// A defect found by an inspector's session, raised to critical: its notice prints as a
/// one-page PDF naming the building, asset, finder and licence, the deadline and what to do.
/// `FIREMODE_NOTICE_PDF_OUT=<file>` keeps the PDF (to render it to PNG and look at it).
async fn printable_notice_names_the_finder_and_the_deadline(b: Backend) {
    let Some((srv, org, bld)) = start(b).await else {
        return;
    };
    let t = org.admin.token.clone();
    let inspector = srv.user(&org, "inspector").await;
    let s = session(&srv, &org.admin, &bld, &[inspector.id]).await;
    let sid = s["id"].as_str().unwrap().to_owned();
    let r = firemode_tests::Client::send(
        srv.client
            .request(
                reqwest::Method::POST,
                &format!("/v1/tests/sessions/{sid}/results"),
                Some(&inspector.token),
            )
            .header("idempotency-key", Uuid::new_v4().to_string())
            .json(&json!({ "results": [{ "asset_id": bld.assets[0], "outcome": "fail",
                                          "observed_condition": "extinguisher_discharged_or_empty" }] })),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // The projection opens the defect.
    let started = Instant::now();
    let defect = loop {
        let l = get(&srv, &t, &format!("/v1/defects?session_id={sid}")).await;
        if let Some(id) = l["items"][0]["id"].as_str() {
            break id.to_owned();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no defect from the results"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    let p = srv
        .client
        .patch(
            &format!("/v1/defects/{defect}"),
            Some(&t),
            &json!({ "severity": "critical", "reason": "the only extinguisher in the kitchen" }),
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.body);
    let notices = get(&srv, &t, &format!("/v1/notices?defect_id={defect}")).await;
    let items = notices["items"].as_array().unwrap();
    let kinds: Vec<&str> = items.iter().map(|n| n["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["defect.opened", "defect.severity_raised"],
        "the projection wrote the first"
    );
    let raised = items[1]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        items[1]["data"]["links"]["pdf"],
        format!("/v1/notices/{raised}/pdf")
    );

    // The inspector whose session found it may print it.
    let r = srv
        .client
        .raw()
        .get(format!("{}/v1/notices/{raised}/pdf", srv.base))
        .bearer_auth(&inspector.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/pdf");
    let bytes = r.bytes().await.unwrap().to_vec();
    if let Ok(path) = std::env::var("FIREMODE_NOTICE_PDF_OUT") {
        std::fs::write(path, &bytes).unwrap();
    }
    let doc = lopdf::Document::load_mem(&bytes).expect("a PDF lopdf can parse");
    assert_eq!(doc.get_pages().len(), 1);
    let text = doc.extract_text(&[1]).unwrap();
    for expected in [
        "Critical defect notice",
        "Test Tower",
        "1 Test St, Melbourne VIC",
        "EXT-0000",
        "Portable fire extinguisher",
        "extinguisher discharged or empty",
        "Six-monthly service",
        // The inspector assigned to the session, with their licence (wrapped onto its own line).
        "licence",
        &format!("LIC-{}", inspector.id),
        "Notify the owner by",
        "What the owner must do",
        "Acme",
        &raised,
    ] {
        assert!(text.contains(expected), "{expected:?} not in {text}");
    }
    // Another organisation: 404.
    let other = srv.org("Other").await;
    assert_problem(
        &srv.client
            .get(
                &format!("/v1/notices/{raised}/pdf"),
                Some(&other.admin.token),
            )
            .await,
        404,
        "not_found",
    );
    srv.stop().await;
}
