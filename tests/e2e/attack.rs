//! Issue 12, item 8: the attack suite. Probed from outside, on both databases, with a summary
//! line per category (requests tried, failures) printed at the end of each test
//! (`cargo test --test e2e attack -- --nocapture` shows them; `.ci/run` runs it so).
//!
//! - `cross_org_matrix`: every operation of `/openapi.json` (fetched from the running server)
//!   whose path takes an id, called with real ids of organisation A as every role of A (the
//!   outcome docs/roles.md gives) and as every role of organisation B (never 2xx: 404, or 403
//!   where the role is refused first). No 5xx anywhere. `/v1/sync` too: every role of B asks
//!   for A's session document and a random one (request, sync and ephemeral messages):
//!   doc-unavailable, nothing about the document comes back, nothing changes.
//! - `text_sweep`: every string query parameter and top-level string body field of every
//!   operation, sent with NUL and invalid percent-encodings (4xx, nothing changed) and with
//!   control characters, 100 KB, RTL/combining/emoji text (never 5xx).
//! - `jwt_attacks`: forged, expired, foreign, tampered, revoked and oversized tokens, and tokens
//!   signed with the real key for users the database does not back (unknown, deactivated,
//!   another organisation's, a role above their own), on REST and
//!   on `/v1/sync` (401; 400/414/431 for the oversized one).
//! - `kill9_loop`: three `kill -9` cycles of the real binary under concurrent REST writes,
//!   a Rust tablet's edits and two JS tablets' (unmodified automerge-repo, in Node); every
//!   acknowledged write present after each restart (for automerge-repo: a change inside the
//!   heads the server last announced, `handle.getSyncInfo(storageId)`).
//! - `schemathesis`: schemathesis (PyPI) fuzzing every operation as an admin, checks
//!   `not_a_server_error` and `response_schema_conformance`.
//!
//! The PostgreSQL outage of item 8 is `hardening.rs::database_outage_is_503` (503 problem+json,
//! `retryable: true` within 2.5 s, automatic recovery); the single-kill durability test with
//! derived state is `durability.rs`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use firemode_tests::fixtures;
use firemode_tests::sync_client::SyncClient;
use firemode_tests::{backend_tests, Backend, Client, Org, Resp, TestServer, User};
use reqwest::Method;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::evidence::{jpeg, Upload};
use crate::roles::{rule_body, table, Cell, ROLES};

backend_tests!(
    cross_org_matrix,
    text_sweep,
    jwt_attacks,
    kill9_loop,
    schemathesis
);

const METHODS: [&str; 5] = ["get", "put", "post", "patch", "delete"];

/// Failures are collected, the summary printed, then the test fails listing them.
struct Tally {
    category: &'static str,
    backend: Backend,
    tried: usize,
    failures: Vec<String>,
}

impl Tally {
    fn new(category: &'static str, backend: Backend) -> Self {
        Self {
            category,
            backend,
            tried: 0,
            failures: Vec::new(),
        }
    }

    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.failures.push(what().chars().take(400).collect());
        }
    }

    fn finish(self) {
        eprintln!(
            "attack summary: {} ({:?}): requests tried {}, failures: {}",
            self.category,
            self.backend,
            self.tried,
            self.failures.len()
        );
        assert!(
            self.failures.is_empty(),
            "{} failure(s) in {}:\n{}",
            self.failures.len(),
            self.category,
            self.failures.join("\n")
        );
    }
}

/// One organisation with a user of every role and one object of every kind.
struct Side {
    org: Org,
    /// In `ROLES` order; the admin is the organisation's first admin.
    users: Vec<User>,
    /// A user who is only ever the target of `/v1/users/{id}` routes.
    target: User,
    building: Uuid,
    asset: Uuid,
    session: Uuid,
    /// The session's automerge document id (base58check), for `/v1/sync`.
    document: String,
    evidence: Uuid,
    defect: Uuid,
    rule: String,
    /// A webhook endpoint (nothing listens at its URL) and the notice of `defect`.
    endpoint: Uuid,
    notice: Uuid,
    condition_report: Uuid,
}

async fn side(srv: &TestServer, name: &str) -> Side {
    let org = srv.org(name).await;
    let mut users = vec![org.admin.clone()];
    for role in &ROLES[1..] {
        users.push(srv.user(&org, role).await);
    }
    let target = srv.user(&org, "inspector").await;
    let building = fixtures::building(srv, &org, 2).await;
    // Assigned to the inspector: "assigned" cells are then allowed.
    let s = fixtures::session(srv, &org.admin, &building, &[users[2].id]).await;
    let session: Uuid = s["id"].as_str().expect("id").parse().expect("uuid");
    let document = s["document_id"].as_str().expect("document_id").to_owned();
    let r = Upload::photo(session, jpeg(2048, 3))
        .send(&srv.client, &org.admin.token)
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let evidence = r.uuid("evidence_id");
    let r = srv
        .client
        .post(
            "/v1/defects",
            Some(&org.admin.token),
            &json!({ "building_id": building.id, "session_id": session,
                     "severity": "non_critical", "title": "Door closer missing" }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let defect = r.uuid("id");
    let rule = format!("ATK-{}", &Uuid::new_v4().simple().to_string()[..10]).to_uppercase();
    let r = srv
        .client
        .post("/v1/rules", Some(&org.admin.token), &rule_body(&rule))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = srv
        .client
        .post(
            "/v1/webhook-endpoints",
            Some(&org.admin.token),
            &json!({ "url": "http://127.0.0.1:9/hook" }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let endpoint: Uuid = r.json["endpoint"]["id"]
        .as_str()
        .expect("id")
        .parse()
        .expect("uuid");
    let r = srv
        .client
        .get(
            &format!("/v1/notices?defect_id={defect}"),
            Some(&org.admin.token),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let notice: Uuid = r.json["items"][0]["id"]
        .as_str()
        .expect("the defect's notice")
        .parse()
        .expect("uuid");
    let r = srv
        .client
        .post(
            &format!("/v1/buildings/{}/condition-reports/sign", building.id),
            Some(&org.admin.token),
            &json!({ "period_start": "2024-01-01", "period_end": "2024-12-31" }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let condition_report = r.uuid("id");
    Side {
        condition_report,
        endpoint,
        notice,
        org,
        users,
        target,
        building: building.id,
        asset: building.assets[0],
        session,
        document,
        evidence,
        defect,
        rule,
    }
}

/// Every operation as (method, path, operation), from the served document.
async fn operations(srv: &TestServer) -> (Value, Vec<(String, String, Value)>) {
    let r = srv.client.get("/openapi.json", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let doc = r.json;
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for m in METHODS {
            if let Some(op) = item.get(m) {
                out.push((m.to_owned(), path.clone(), op.clone()));
            }
        }
    }
    (doc, out)
}

/// Resolve a local `$ref`.
fn deref<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => {
            let mut at = doc;
            for part in r.trim_start_matches("#/").split('/') {
                at = &at[part];
            }
            deref(doc, at)
        }
        None => schema,
    }
}

/// A minimal valid-looking value for `schema`: required members only.
fn example(doc: &Value, schema: &Value, depth: usize) -> Value {
    let s = deref(doc, schema);
    if depth > 8 {
        return Value::Null;
    }
    for combo in ["allOf", "oneOf", "anyOf"] {
        if let Some(first) = s[combo].as_array().and_then(|a| {
            a.iter()
                .find(|v| deref(doc, v)["type"] != "null")
                .or(a.first())
        }) {
            if combo == "allOf" {
                let mut merged = Map::new();
                for part in s[combo].as_array().unwrap() {
                    if let Value::Object(m) = example(doc, part, depth + 1) {
                        merged.extend(m);
                    }
                }
                return Value::Object(merged);
            }
            return example(doc, first, depth + 1);
        }
    }
    if let Some(v) = s["enum"].as_array().and_then(|e| e.first()) {
        return v.clone();
    }
    if s.get("example").is_some_and(|e| !e.is_null()) {
        return s["example"].clone();
    }
    let ty = match &s["type"] {
        Value::Array(ts) => ts
            .iter()
            .find(|t| *t != "null")
            .cloned()
            .unwrap_or(Value::Null),
        t => t.clone(),
    };
    match ty.as_str().unwrap_or(if s["properties"].is_object() {
        "object"
    } else {
        ""
    }) {
        "object" => {
            let mut m = Map::new();
            for req in s["required"].as_array().into_iter().flatten() {
                let name = req.as_str().unwrap_or_default();
                m.insert(
                    name.to_owned(),
                    example(doc, &s["properties"][name], depth + 1),
                );
            }
            Value::Object(m)
        }
        "array" => {
            // As few items as allowed: none, or one when the schema needs some.
            let n = s["minItems"].as_u64().unwrap_or(0).min(1);
            Value::Array(
                (0..n)
                    .map(|_| example(doc, &s["items"], depth + 1))
                    .collect(),
            )
        }
        "integer" => json!(s["minimum"].as_i64().unwrap_or(1).max(1)),
        "number" => json!(s["minimum"].as_f64().unwrap_or(1.0).max(1.0)),
        "boolean" => json!(false),
        "string" => match s["format"].as_str() {
            Some("uuid") => json!(Uuid::new_v4()),
            Some("date-time") => json!(chrono::Utc::now().to_rfc3339()),
            Some("date") => json!("2026-01-01"),
            Some("email") => json!(format!("x-{}@example.test", Uuid::new_v4().simple())),
            Some("binary") => json!("x"),
            _ => json!("x"),
        },
        _ => Value::Null,
    }
}

/// Fill the path parameters of `path` with the ids of `side`. A route with an id of a kind
/// this suite does not know fails the test: teach it the new kind.
fn fill_path(path: &str, side: &Side) -> String {
    let id = if path.starts_with("/v1/users/") {
        side.target.id.to_string()
    } else if path.starts_with("/v1/buildings/") {
        side.building.to_string()
    } else if path.starts_with("/v1/tests/sessions/") {
        side.session.to_string()
    } else if path.starts_with("/v1/evidence/") {
        side.evidence.to_string()
    } else if path.starts_with("/v1/defects/") {
        side.defect.to_string()
    } else if path.starts_with("/v1/condition-reports/") {
        side.condition_report.to_string()
    } else if path.starts_with("/v1/rules/") {
        String::new()
    } else if path.starts_with("/v1/webhook-endpoints/") {
        side.endpoint.to_string()
    } else if path.starts_with("/v1/notices/") {
        side.notice.to_string()
    } else if path.starts_with("/v1/holidays/") {
        String::new()
    } else {
        panic!("{path}: a route with an id of a kind the attack suite does not know")
    };
    let out = path
        .replace("{id}", &id)
        .replace("{asset_id}", &side.asset.to_string())
        .replace("{code}", &side.rule)
        .replace("{version}", "1.0.0")
        .replace("{state}", "NSW")
        .replace("{year}", "2027");
    assert!(!out.contains('{'), "{path}: unknown path parameter");
    out
}

/// Required query parameters with example values.
fn required_query(doc: &Value, op: &Value) -> Vec<(String, String)> {
    op["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| deref(doc, p))
        .filter(|p| p["in"] == "query" && p["required"] == true)
        .map(|p| {
            let v = example(doc, &p["schema"], 0);
            let v = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            (p["name"].as_str().unwrap_or_default().to_owned(), v)
        })
        .collect()
}

/// The request body an operation takes: JSON (a minimal value) or something else (a tiny CSV
/// or form, enough to reach authorisation).
enum Body {
    None,
    Json(Value),
    Raw(&'static str, &'static str),
}

fn body_of(doc: &Value, op: &Value) -> Body {
    let content = &op["requestBody"]["content"];
    if let Some(schema) = content.get("application/json").map(|c| &c["schema"]) {
        Body::Json(example(doc, schema, 0))
    } else if content.get("text/csv").is_some() {
        Body::Raw("text/csv", "identifier\n")
    } else if content.get("multipart/form-data").is_some() {
        Body::Raw(
            "multipart/form-data; boundary=atk",
            "--atk\r\ncontent-disposition: form-data; name=\"file\"; filename=\"a.csv\"\r\ncontent-type: text/csv\r\n\r\nidentifier\n\r\n--atk--\r\n",
        )
    } else {
        Body::None
    }
}

async fn call(
    c: &Client,
    method: &str,
    url: &str,
    query: &[(String, String)],
    token: &str,
    body: &Body,
) -> Resp {
    let m = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
    let mut rb = c.request(m.clone(), url, Some(token)).query(query);
    if m != Method::GET {
        // Writes that need one (results) reach authorisation; the others ignore it.
        rb = rb.header("idempotency-key", Uuid::new_v4().to_string());
    }
    rb = match body {
        Body::None => rb,
        Body::Json(v) => rb.json(v),
        Body::Raw(ct, text) => rb.header("content-type", *ct).body(*text),
    };
    send(rb).await
}

/// Send; a request the server cut off without an answer is status 0 (a failure wherever an
/// answer is expected).
async fn send(rb: reqwest::RequestBuilder) -> Resp {
    match rb.send().await {
        Ok(res) => {
            let status = res.status().as_u16();
            let headers = res.headers().clone();
            let body = res.text().await.unwrap_or_default();
            let json = serde_json::from_str(&body).unwrap_or(Value::Null);
            Resp {
                status,
                headers,
                body,
                json,
            }
        }
        Err(e) => Resp {
            status: 0,
            headers: Default::default(),
            body: format!("no answer: {e}"),
            json: Value::Null,
        },
    }
}

/// What docs/roles.md says `role` gets on `method path`: every row for the request agrees that
/// it is allowed (Some(true)) or refused (Some(false)), or the rows differ by body (None).
fn expected(rows: &[(String, [Cell; 4])], method: &str, path: &str, role: usize) -> Option<bool> {
    let key = format!("`{} {}`", method.to_uppercase(), path);
    let cells: Vec<Cell> = rows
        .iter()
        .filter(|(k, _)| k == &key || k.starts_with(&format!("{key} ")))
        .map(|(_, c)| c[role])
        .collect();
    assert!(!cells.is_empty(), "{key}: no row in docs/roles.md");
    if cells.iter().all(|c| *c != Cell::No) {
        Some(true)
    } else if cells.iter().all(|c| *c == Cell::No) {
        Some(false)
    } else {
        None
    }
}

/// Destructive operations last, so that they do not remove what the others need.
fn order(method: &str, path: &str) -> u8 {
    match method {
        "get" => 0,
        "delete" => 3,
        _ if path.ends_with("/deactivate") || path.ends_with("/revoke-tokens") => 2,
        _ => 1,
    }
}

async fn cross_org_matrix(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let owner = side(&srv, "Owner Fire").await;
    let other = side(&srv, "Other Fire").await;
    let rows = table();
    let (doc, mut ops) = operations(&srv).await;
    // Routes whose path holds ids. The holidays' state and year are not ids of anything an
    // organisation owns: each organisation reads and sets its own.
    ops.retain(|(_, path, _)| path.contains('{') && !path.starts_with("/v1/holidays/"));
    ops.sort_by_key(|(m, p, _)| (order(m, p), p.clone(), m.clone()));
    assert!(
        ops.len() >= 25,
        "only {} id routes in the document",
        ops.len()
    );
    let mut t = Tally::new("cross-organisation matrix", b);
    let c = &srv.client;
    // The sync socket: every role of B asks for A's session document (and for a random one),
    // offers a change to it and sends it ephemeral data. Each is answered doc-unavailable and
    // nothing about the document comes back; A's assigned inspector, the control, gets it.
    let random = firemode_sync_core::DocumentId::from_uuid(Uuid::new_v4()).to_string();
    let before = owner_document(&srv, &owner).await;
    let (leaks, answered) = sync_probe(&srv, &owner.users[2], &owner.document, false).await;
    t.tried += 1;
    t.check(!leaks.is_empty() && !answered, || {
        format!("owner inspector: /v1/sync of the own session document got no content ({leaks:?})")
    });
    for (i, role) in ROLES.iter().enumerate() {
        for (which, doc) in [
            ("owner's session document", &owner.document),
            ("random document", &random),
        ] {
            let (leaks, answered) = sync_probe(&srv, &other.users[i], doc, true).await;
            t.tried += 1;
            t.check(leaks.is_empty() && answered, || {
                format!(
                    "other org {role}: /v1/sync of the {which}: doc-unavailable {answered}, \
                     messages about it {leaks:?}"
                )
            });
        }
    }
    let after = owner_document(&srv, &owner).await;
    t.tried += 1;
    t.check(before == after, || {
        format!("the other organisation's sync messages changed the document: {after}")
    });
    for (method, path, op) in &ops {
        let url = fill_path(path, &owner);
        let query = required_query(&doc, op);
        let body = body_of(&doc, op);
        let what = format!("{} {url}", method.to_uppercase());
        // The owner's roles first (their answers tell which refusals precede the lookup).
        let mut owner_status = [0u16; 4];
        let mut owner_code: [String; 4] = Default::default();
        for (i, role) in ROLES.iter().enumerate() {
            let r = call(c, method, &url, &query, &owner.users[i].token, &body).await;
            t.tried += 1;
            owner_status[i] = r.status;
            owner_code[i] = r.json["code"].as_str().unwrap_or_default().to_owned();
            let ok = match (r.status, expected(&rows, method, path, i)) {
                (500.., _) | (401, _) => false,
                (403, Some(true)) | (404, _) => false,
                (200..=299, Some(false)) => false,
                // Refused, for the role or (nothing performed) for the body's shape first.
                (_, Some(false)) => {
                    r.status == 403 || (r.status == 422 && r.json["code"] == "invalid_body")
                }
                _ => true,
            };
            t.check(ok, || {
                format!(
                    "owner {role}: {what} -> {} {}",
                    r.status,
                    r.body.chars().take(300).collect::<String>()
                )
            });
        }
        // Another organisation's every role, with the same ids.
        for (i, role) in ROLES.iter().enumerate() {
            let r = call(c, method, &url, &query, &other.users[i].token, &body).await;
            t.tried += 1;
            let code = r.json["code"].as_str().unwrap_or_default();
            let refused_first = expected(&rows, method, path, i) != Some(true);
            let ok = match r.status {
                404 => code == "not_found",
                403 => refused_first,
                // Refused for its shape before any lookup, exactly as the owner was: the
                // answer cannot tell whether the id exists.
                400 | 415 | 422 => owner_status[i] == r.status && owner_code[i] == code,
                _ => false,
            };
            t.check(ok, || {
                format!(
                    "other org {role}: {what} -> {} {}",
                    r.status,
                    r.body.chars().take(300).collect::<String>()
                )
            });
        }
    }
    // Nothing of the owner's changed hands: B's lists hold none of A's objects.
    for list in [
        "/v1/buildings",
        "/v1/defects",
        "/v1/tests/sessions",
        "/v1/users",
    ] {
        let r = c.get(list, Some(&other.org.admin.token)).await;
        t.tried += 1;
        for id in [owner.building, owner.defect, owner.session, owner.target.id] {
            t.check(!r.body.contains(&id.to_string()), || {
                format!("{list} of the other organisation lists {id}")
            });
        }
    }
    t.finish();
}

/// The session document as its organisation's admin reads it through REST.
async fn owner_document(srv: &TestServer, s: &Side) -> Value {
    let r = srv
        .client
        .get(
            &format!("/v1/tests/sessions/{}/document", s.session),
            Some(&s.org.admin.token),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json
}

/// Join `/v1/sync` as `user` and try `doc` every way a client can: a request with a change, a
/// sync message with a change, ephemeral data. Returns the messages about `doc` other than
/// doc-unavailable (content, heads, relayed data: a leak for a refused user), and whether a
/// doc-unavailable came.
async fn sync_probe(
    srv: &TestServer,
    user: &User,
    doc: &str,
    hostile: bool,
) -> (Vec<&'static str>, bool) {
    use firemode_sync_core::automerge::sync::{self, SyncDoc};
    use firemode_sync_core::automerge::transaction::Transactable;
    use firemode_sync_core::automerge::{Automerge, ROOT};
    use firemode_sync_core::wire::Message;
    use firemode_tests::sync_client::Event;

    let peer = format!("{}:probe-{}", user.id, Uuid::new_v4().simple());
    let mut c = SyncClient::joined(&srv.base, &user.token, &peer).await;
    let server = c.server_peer.clone().unwrap_or_default();
    let mut d = Automerge::new();
    if hostile {
        let mut tx = d.transaction();
        tx.put(ROOT, "status", "signed_off").unwrap();
        tx.put(ROOT, "injected", "by another organisation").unwrap();
        tx.commit();
    }
    let mut state = sync::State::new();
    let first = d.generate_sync_message(&mut state).expect("a sync message");
    c.send(&Message::Request {
        document_id: doc.to_owned(),
        sender_id: peer.clone(),
        target_id: server.clone(),
        data: first.encode(),
    })
    .await;
    if hostile {
        send_hostile(&mut c, &d, doc, &peer, &server).await;
    }
    let (mut leaks, mut answered) = (Vec::new(), false);
    // Everything that comes within a second (the control's answer comes well within it).
    let until = tokio::time::Instant::now() + std::time::Duration::from_secs(1);
    loop {
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        match c.next(left).await {
            Event::Msg(Message::DocUnavailable { document_id, .. }) if document_id == doc => {
                answered = true
            }
            Event::Msg(m) if m.document_id() == Some(doc) => leaks.push(m.type_name()),
            Event::Msg(_) => {}
            Event::Closed(_) | Event::Timeout => break,
        }
    }
    (leaks, answered)
}

/// After the request: a sync message with the change, and ephemeral data.
async fn send_hostile(
    c: &mut SyncClient,
    d: &firemode_sync_core::automerge::Automerge,
    doc: &str,
    peer: &str,
    server: &str,
) {
    use firemode_sync_core::automerge::sync::{self, SyncDoc};
    use firemode_sync_core::wire::Message;
    let mut state = sync::State::new();
    let again = d.generate_sync_message(&mut state).expect("a sync message");
    c.send(&Message::Sync {
        document_id: doc.to_owned(),
        sender_id: peer.to_owned(),
        target_id: server.to_owned(),
        data: again.encode(),
    })
    .await;
    c.send(&Message::Ephemeral {
        document_id: doc.to_owned(),
        sender_id: peer.to_owned(),
        target_id: server.to_owned(),
        count: 1,
        session_id: "probe".into(),
        data: vec![0xa0],
    })
    .await;
}

/// Everything of the organisation, read through the API (as its admin).
async fn snapshot(srv: &TestServer, s: &Side) -> Vec<Value> {
    let b = s.building;
    let mut out = Vec::new();
    for path in [
        "/v1/buildings?limit=200".to_owned(),
        format!("/v1/buildings/{b}"),
        format!("/v1/buildings/{b}/assets?limit=200"),
        format!("/v1/buildings/{b}/reference-values"),
        "/v1/tests/sessions?limit=200".to_owned(),
        format!("/v1/tests/sessions/{}", s.session),
        format!("/v1/tests/sessions/{}/results", s.session),
        format!("/v1/tests/sessions/{}/evidence", s.session),
        "/v1/defects?limit=200".to_owned(),
        "/v1/users?limit=200".to_owned(),
        "/v1/rules?limit=200".to_owned(),
    ] {
        let r = srv.client.get(&path, Some(&s.org.admin.token)).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        out.push(r.json);
    }
    out
}

/// One step from a JSON value into a member: an object's field or an array's first item,
/// with the schema of what is there (to build it when the minimal body leaves it out).
#[derive(Clone)]
enum Step {
    Key(String, Value),
    Item(Value),
}

/// A string somewhere in a request body: the steps from the root to it.
type Leaf = Vec<Step>;

fn leaf_name(leaf: &Leaf) -> String {
    leaf.iter()
        .map(|s| match s {
            Step::Key(k, _) => format!(".{k}"),
            Step::Item(_) => "[0]".to_owned(),
        })
        .collect()
}

fn is_string_schema(s: &Value) -> bool {
    let ty = &s["type"];
    (ty == "string" || ty.as_array().is_some_and(|a| a.contains(&json!("string"))))
        && s["enum"].is_null()
}

/// Every string the body schema `schema` holds, nested objects and arrays included (through
/// `allOf`/`oneOf`/`anyOf`), each once.
fn string_leaves(doc: &Value, schema: &Value, at: &mut Leaf, depth: usize, out: &mut Vec<Leaf>) {
    let s = deref(doc, schema);
    if depth > 8 {
        return;
    }
    if !at.is_empty() && is_string_schema(s) {
        let name = leaf_name(at);
        if !out.iter().any(|l| leaf_name(l) == name) {
            out.push(at.clone());
        }
    }
    for combo in ["allOf", "oneOf", "anyOf"] {
        for variant in s[combo].as_array().into_iter().flatten() {
            string_leaves(doc, variant, at, depth + 1, out);
        }
    }
    for (name, prop) in s["properties"].as_object().into_iter().flatten() {
        at.push(Step::Key(name.clone(), prop.clone()));
        string_leaves(doc, prop, at, depth + 1, out);
        at.pop();
    }
    if s["items"].is_object() {
        at.push(Step::Item(s["items"].clone()));
        string_leaves(doc, &s["items"], at, depth + 1, out);
        at.pop();
    }
}

/// `body` with `value` at `leaf`, the containers on the way built from their schemas when the
/// minimal body has none.
fn with_leaf(doc: &Value, body: &Value, leaf: &Leaf, value: Value) -> Value {
    let mut out = body.clone();
    let mut cur = &mut out;
    for (i, step) in leaf.iter().enumerate() {
        let last = i + 1 == leaf.len();
        match step {
            Step::Key(k, schema) => {
                if !cur.is_object() {
                    *cur = json!({});
                }
                let m = cur.as_object_mut().expect("object");
                if last {
                    m.insert(k.clone(), value);
                    break;
                }
                cur = m
                    .entry(k.clone())
                    .or_insert_with(|| example(doc, schema, 0));
            }
            Step::Item(schema) => {
                if !cur.is_array() {
                    *cur = json!([]);
                }
                let a = cur.as_array_mut().expect("array");
                if a.is_empty() {
                    a.push(example(doc, schema, 0));
                }
                if last {
                    a[0] = value;
                    break;
                }
                cur = &mut a[0];
            }
        }
    }
    out
}

/// The string query parameters and the strings (at any depth) of the JSON body of an operation.
fn string_inputs(doc: &Value, op: &Value) -> (Vec<String>, Vec<Leaf>) {
    let query = op["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| deref(doc, p))
        .filter(|p| p["in"] == "query")
        .filter_map(|p| p["name"].as_str().map(str::to_owned))
        .collect();
    let mut fields = Vec::new();
    if let Some(schema) = op["requestBody"]["content"]
        .get("application/json")
        .map(|c| &c["schema"])
    {
        string_leaves(doc, schema, &mut Vec::new(), 0, &mut fields);
    }
    (query, fields)
}

/// Routes the sweep leaves alone: they end the admin's own login.
fn sweep_skips(path: &str) -> bool {
    path == "/v1/auth/logout" || path.ends_with("/revoke-tokens") || path == "/v1/sync"
}

async fn text_sweep(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let s = side(&srv, "Sweep Fire").await;
    let admin = s.org.admin.token.clone();
    let (doc, mut ops) = operations(&srv).await;
    ops.retain(|(_, p, _)| !sweep_skips(p));
    ops.sort_by_key(|(m, p, _)| (order(m, p), p.clone(), m.clone()));
    let c = &srv.client;
    let mut bad = Tally::new("NUL and invalid-encoding sweep", b);
    let before = snapshot(&srv, &s).await;
    let (mut inputs, mut nested) = (0, 0);
    for (method, path, op) in &ops {
        let url = fill_path_any(path, &s);
        let query = required_query(&doc, op);
        let (qnames, fields) = string_inputs(&doc, op);
        inputs += qnames.len() + fields.len();
        let what = format!("{} {path}", method.to_uppercase());
        let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        // Query parameters, percent-encoded by hand: NUL, overlong and surrogate UTF-8,
        // bytes that are not UTF-8 at all.
        for name in &qnames {
            for raw in ["a%00b", "%00", "%FF%FE", "%C0%80", "%ED%A0%80", "%E2%82"] {
                let mut q: Vec<String> = query
                    .iter()
                    .filter(|(k, _)| k != name)
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                q.push(format!("{name}={raw}"));
                let full = format!("{url}?{}", q.join("&"));
                let r = send(c.request(m.clone(), &full, Some(&admin))).await;
                bad.tried += 1;
                bad.check((400..500).contains(&r.status), || {
                    format!("{what} ?{name}={raw} -> {} {}", r.status, r.body)
                });
            }
        }
        if let Body::Json(base) = body_of(&doc, op) {
            for leaf in &fields {
                let field = leaf_name(leaf);
                nested += usize::from(leaf.len() > 1);
                for v in ["a\u{0}b", "\u{0}"] {
                    let body = with_leaf(&doc, &base, leaf, json!(v));
                    let r = call(c, method, &url, &query, &admin, &Body::Json(body)).await;
                    bad.tried += 1;
                    bad.check((400..500).contains(&r.status), || {
                        format!("{what} {field}={v:?} -> {} {}", r.status, r.body)
                    });
                }
            }
            // A NUL in an object key.
            if let Value::Object(mut m) = base.clone() {
                m.insert("k\u{0}ey".into(), json!("x"));
                let r = call(
                    c,
                    method,
                    &url,
                    &query,
                    &admin,
                    &Body::Json(Value::Object(m)),
                )
                .await;
                bad.tried += 1;
                bad.check((400..500).contains(&r.status), || {
                    format!("{what} NUL key -> {} {}", r.status, r.body)
                });
            }
        }
    }
    let nul: [&str; 2] = ["a\u{0}b", "\u{0}"];
    inputs += forms_and_csv(&srv, &s, &nul, &mut bad, true).await;
    let after = snapshot(&srv, &s).await;
    bad.check(before == after, || {
        "refused requests changed the organisation's data".to_owned()
    });
    assert!(inputs > 20, "only {inputs} string inputs found");
    assert!(nested > 10, "only {nested} nested string body fields found");
    bad.finish();

    // Text that is valid but hostile: accepted or refused, never a server error.
    let mut odd = Tally::new("control, long and unicode text sweep", b);
    let long = "x".repeat(100 * 1024);
    let values: Vec<&str> = vec![
        "\u{1}\u{7}\u{8}\u{1b}[31m\u{7f}",
        "line\r\nbreak\ttab",
        "\u{202e}txt.exe\u{202c}",
        "e\u{301}\u{301}\u{301}\u{301}\u{301}\u{301}",
        "🧯🔥👩\u{200d}🚒",
        "\u{200b}\u{feff}\u{fffd}",
        "' OR 1=1 --",
        "../../etc/passwd",
        &long,
    ];
    for (method, path, op) in &ops {
        if path.starts_with("/v1/auth/") {
            // Failed logins feed the throttle; NUL was enough there.
            continue;
        }
        let url = fill_path_any(path, &s);
        let query = required_query(&doc, op);
        let (qnames, fields) = string_inputs(&doc, op);
        let what = format!("{} {path}", method.to_uppercase());
        for name in &qnames {
            for v in &values {
                let mut q: Vec<(String, String)> =
                    query.iter().filter(|(k, _)| k != name).cloned().collect();
                // The HTTP client builds no URL over 64 KiB: 60 KB in a query parameter.
                let v = if v.len() > 60_000 { &v[..60_000] } else { v };
                q.push((name.clone(), (*v).to_owned()));
                let r = call(c, method, &url, &q, &admin, &Body::None).await;
                odd.tried += 1;
                odd.check((200..500).contains(&r.status), || {
                    format!("{what} ?{name}={:.40} -> {} {}", v, r.status, r.body)
                });
            }
        }
        if let Body::Json(base) = body_of(&doc, op) {
            for leaf in &fields {
                let field = leaf_name(leaf);
                for v in &values {
                    let body = with_leaf(&doc, &base, leaf, json!(v));
                    let r = call(c, method, &url, &query, &admin, &Body::Json(body)).await;
                    odd.tried += 1;
                    odd.check((200..500).contains(&r.status), || {
                        format!("{what} {field}={:.40} -> {} {}", v, r.status, r.body)
                    });
                }
            }
        }
    }
    forms_and_csv(&srv, &s, &values, &mut odd, false).await;
    // Regressions found by this sweep: a 60 KB search was a 500 on SQLite (LIKE pattern too
    // long), and percent-encodings that are not UTF-8 were searched for as U+FFFD.
    for q in [format!("q={}", "x".repeat(60_000)), "q=%C0%80".to_owned()] {
        let r = c.get(&format!("/v1/buildings?{q}"), Some(&admin)).await;
        odd.tried += 1;
        odd.check(r.status == 400 && r.json["code"] == "invalid_query", || {
            format!("GET /v1/buildings?{q:.20}… -> {} {}", r.status, r.body)
        });
    }
    // The server still answers normally.
    let r = c.get("/v1/users/me", Some(&admin)).await;
    odd.tried += 1;
    odd.check(r.status == 200, || format!("after the sweep: {}", r.status));
    odd.finish();
}

/// A CSV cell holding `v` exactly (quoted, quotes doubled).
fn csv_cell(v: &str) -> String {
    format!("\"{}\"", v.replace('"', "\"\""))
}

/// The inputs that are not JSON: every field of the evidence upload form (the metadata's
/// nested strings too) and the file name, and every cell of the two CSV imports (assets,
/// reference values), each given every one of `values`. `refused`: each must be a 4xx;
/// otherwise anything but a 5xx. Returns how many inputs were probed.
async fn forms_and_csv(
    srv: &TestServer,
    s: &Side,
    values: &[&str],
    t: &mut Tally,
    refused: bool,
) -> usize {
    let c = &srv.client;
    let admin = s.org.admin.token.as_str();
    let mut seed = 0u8;
    let form_fields = [
        "session_id",
        "evidence_type",
        "asset_id",
        "sha256",
        "metadata",
        "metadata.note",
        "metadata.tags[0]",
        "metadata.nested.deeper",
        "file name",
    ];
    // The control (in the sweep that may write): the form and the rows as built here, with
    // no hostile value, are accepted, so the refusals below are the values'.
    let control = if refused { vec![] } else { vec![("none", "")] };
    for (field, v) in control.into_iter().chain(
        form_fields
            .iter()
            .flat_map(|f| values.iter().map(move |v| (*f, *v))),
    ) {
        {
            seed = seed.wrapping_add(1);
            let file = jpeg(1024, seed);
            let v = (*v).to_owned();
            let mut fields: Vec<(&str, String)> = vec![
                ("session_id", s.session.to_string()),
                ("evidence_type", "photo".into()),
                ("asset_id", s.asset.to_string()),
                ("sha256", crate::evidence::sha_hex(&file)),
            ];
            let mut filename = "panel.jpg".to_owned();
            let metadata = match field {
                "metadata" => Some(v.clone()),
                "metadata.note" => Some(json!({ "note": v }).to_string()),
                "metadata.tags[0]" => Some(json!({ "tags": [v, "ok"] }).to_string()),
                "metadata.nested.deeper" => {
                    Some(json!({ "nested": { "deeper": [{ "x": v }] } }).to_string())
                }
                "file name" => {
                    filename = v.clone();
                    None
                }
                "none" => None,
                name => {
                    for f in fields.iter_mut().filter(|f| f.0 == name) {
                        f.1 = v.clone();
                    }
                    None
                }
            };
            if let Some(m) = metadata {
                fields.push(("metadata", m));
            }
            // Built by hand: the bytes go out exactly as given (no client-side escaping).
            let mut body = Vec::new();
            for (name, value) in &fields {
                body.extend_from_slice(
                    format!("--atk\r\ncontent-disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                        .as_bytes(),
                );
            }
            body.extend_from_slice(
                format!(
                    "--atk\r\ncontent-disposition: form-data; name=\"file\"; filename=\"{}\"\r\ncontent-type: application/octet-stream\r\n\r\n",
                    filename.replace('"', "%22")
                )
                .as_bytes(),
            );
            body.extend_from_slice(&file);
            body.extend_from_slice(b"\r\n--atk--\r\n");
            let r = send(
                c.request(Method::POST, "/v1/evidence", Some(admin))
                    .header("content-type", "multipart/form-data; boundary=atk")
                    .header("idempotency-key", Uuid::new_v4().to_string())
                    .body(body),
            )
            .await;
            t.tried += 1;
            let ok = if field == "none" {
                r.status == 201
            } else if refused {
                (400..500).contains(&r.status)
            } else {
                (200..500).contains(&r.status)
            };
            t.check(ok, || {
                format!(
                    "POST /v1/evidence {field}={:.40?} -> {} {}",
                    v, r.status, r.body
                )
            });
        }
    }
    // The CSV imports: a valid row, one cell replaced; and the header.
    let b = s.building;
    let imports: [(String, &[&str], Vec<String>); 2] = [
        (
            format!("/v1/buildings/{b}/assets/import"),
            &[
                "asset_type",
                "location",
                "identifier",
                "install_date",
                "rule_codes",
                "manufacture_date",
                "schedule_anchor",
                "last_services",
            ],
            [
                "portable_extinguisher",
                "Store",
                "ATK-CSV",
                "2020-01-01",
                "",
                "",
                "",
                "",
            ]
            .map(str::to_owned)
            .to_vec(),
        ),
        (
            format!("/v1/buildings/{b}/reference-values/import"),
            &[
                "asset_identifier",
                "kind",
                "key",
                "value",
                "unit",
                "source",
                "note",
            ],
            [
                // The fixture's asset while nothing has changed; after the writing sweeps
                // renamed it, the asset the asset import's control row made.
                if refused { "EXT-0000" } else { "ATK-CSV" },
                "baseline",
                "flow",
                "1",
                "",
                "first_service",
                "from the sweep",
            ]
            .map(str::to_owned)
            .to_vec(),
        ),
    ];
    let mut cells = 0;
    for (url, header, row) in &imports {
        if !refused {
            let csv = format!("{}\n{}\n", header.join(","), row.join(","));
            let r = c
                .post_raw(url, Some(admin), "text/csv", csv.into_bytes())
                .await;
            t.tried += 1;
            t.check((200..300).contains(&r.status), || {
                format!("POST {url}, the control row -> {} {}", r.status, r.body)
            });
        }
        for col in 0..=header.len() {
            cells += 1;
            for (n, v) in values.iter().enumerate() {
                let mut head: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
                let mut cells_of_row = row.clone();
                let at = if col == header.len() {
                    // The header itself: a column name.
                    head[0] = format!("{}{v}", head[0]);
                    "header".to_owned()
                } else {
                    cells_of_row[col] = v.to_string();
                    if header[col] == "identifier" && !refused {
                        // Each accepted row makes an asset of its own.
                        cells_of_row[col] = format!("{v}-{n}");
                    }
                    header[col].to_owned()
                };
                let csv = format!(
                    "{}\n{}\n",
                    head.iter()
                        .map(|h| csv_cell(h))
                        .collect::<Vec<_>>()
                        .join(","),
                    cells_of_row
                        .iter()
                        .map(|h| csv_cell(h))
                        .collect::<Vec<_>>()
                        .join(",")
                );
                let r = c
                    .post_raw(url, Some(admin), "text/csv", csv.into_bytes())
                    .await;
                t.tried += 1;
                let ok = if refused {
                    (400..500).contains(&r.status)
                } else {
                    (200..500).contains(&r.status)
                };
                t.check(ok, || {
                    format!("POST {url} {at}={:.40?} -> {} {}", v, r.status, r.body)
                });
            }
        }
    }
    form_fields.len() + cells
}

/// `fill_path` for every route (those without ids included).
fn fill_path_any(path: &str, s: &Side) -> String {
    if path.contains('{') {
        fill_path(path, s)
    } else {
        path.to_owned()
    }
}

fn b64(v: &Value) -> String {
    B64URL.encode(serde_json::to_vec(v).unwrap())
}

fn hs256(claims: &Value, key: &[u8]) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(key),
    )
    .unwrap()
}

async fn jwt_attacks(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Token Fire").await;
    let secret = srv.jwt_secret();
    let now = chrono::Utc::now().timestamp();
    let admin = &org.admin;
    let claims = |f: &dyn Fn(&mut Value)| {
        let mut c = json!({
            "sub": admin.id, "org": org.id, "role": "admin",
            "jti": Uuid::new_v4().to_string(), "iat": now - 10, "exp": now + 600,
            "iss": "firemode", "aud": "firemode-api", "sid": Uuid::new_v4(),
        });
        f(&mut c);
        c
    };
    let good = hs256(&claims(&|_| {}), secret.as_bytes());
    // The control: a token forged with the real key and right claims is accepted, so the
    // refusals below are the claims', not the forging's.
    assert_eq!(
        srv.client.get("/v1/users/me", Some(&good)).await.status,
        200
    );

    let mut tokens: Vec<(String, String)> = Vec::new();
    let base_claims = claims(&|_| {});
    tokens.push((
        "alg none".into(),
        format!(
            "{}.{}.",
            b64(&json!({"alg": "none", "typ": "JWT"})),
            b64(&base_claims)
        ),
    ));
    tokens.push((
        "alg None, signature kept".into(),
        format!(
            "{}.{}.{}",
            b64(&json!({"alg": "None", "typ": "JWT"})),
            b64(&base_claims),
            good.rsplit('.').next().unwrap()
        ),
    ));
    let sig = good.rsplit('.').next().unwrap();
    for key in ["", "firemode", "firemode-api", "secret", "public"] {
        tokens.push((
            format!("HS256 with key {key:?}"),
            hs256(&base_claims, key.as_bytes()),
        ));
    }
    tokens.push((
        "RS256 header over an HS256 signature".into(),
        format!(
            "{}.{}.{sig}",
            b64(&json!({"alg": "RS256", "typ": "JWT"})),
            b64(&base_claims)
        ),
    ));
    for (what, f) in [
        (
            "expired",
            Box::new(|c: &mut Value| c["exp"] = json!(now - 60)) as Box<dyn Fn(&mut Value)>,
        ),
        (
            "iat a day ahead",
            Box::new(|c: &mut Value| c["iat"] = json!(now + 86_400)),
        ),
        (
            "nbf an hour ahead",
            Box::new(|c: &mut Value| c["nbf"] = json!(now + 3600)),
        ),
        (
            "wrong iss",
            Box::new(|c: &mut Value| c["iss"] = json!("evil")),
        ),
        (
            "wrong aud",
            Box::new(|c: &mut Value| c["aud"] = json!("firemode-sync")),
        ),
        (
            "no sid",
            Box::new(|c: &mut Value| {
                c.as_object_mut().unwrap().remove("sid");
            }),
        ),
    ] {
        tokens.push((what.into(), hs256(&claims(&*f), secret.as_bytes())));
    }
    // A real token with its payload changed (inspector to admin) and the signature kept.
    let inspector = srv.user(&org, "inspector").await;
    let parts: Vec<&str> = inspector.token.split('.').collect();
    let mut payload: Value = serde_json::from_slice(&B64URL.decode(parts[1]).unwrap()).unwrap();
    payload["role"] = json!("admin");
    tokens.push((
        "tampered payload, original signature".into(),
        format!("{}.{}.{}", parts[0], b64(&payload), parts[2]),
    ));
    tokens.push((
        "signature stripped".into(),
        format!("{}.{}.", parts[0], parts[1]),
    ));
    tokens.push((
        "refresh token as access token".into(),
        admin.refresh.clone(),
    ));
    tokens.push(("garbage".into(), "not.a.jwt".into()));
    // A deactivated user's still-unexpired token.
    let gone = srv.user(&org, "office").await;
    let r = srv
        .client
        .patch(
            &format!("/v1/users/{}", gone.id),
            Some(&admin.token),
            &json!({ "active": false }),
        )
        .await;
    assert_eq!(r.status, 200, "deactivate: {}", r.body);
    tokens.push(("deactivated user".into(), gone.token.clone()));
    // A logged-out session's token.
    let out = srv.login(&inspector.email, &inspector.password).await;
    let r = srv
        .client
        .post("/v1/auth/logout", Some(&out.token), &json!({}))
        .await;
    assert!(r.status < 300, "logout: {}", r.body);
    tokens.push(("logged-out token".into(), out.token.clone()));
    // Signed with the real key, for identities the database does not back: the signature
    // alone must not make a user. `iat` two seconds ahead passes the user revocation the
    // deactivation wrote, so the refusal is the user check's.
    let ahead = chrono::Utc::now().timestamp() + 2;
    let elsewhere = srv.org("Elsewhere Fire").await;
    for (what, sub, org_id, role, iat) in [
        (
            "unknown user, real key",
            Uuid::new_v4(),
            org.id,
            "admin",
            now - 10,
        ),
        (
            "unknown organisation, real key",
            admin.id,
            Uuid::new_v4(),
            "admin",
            now - 10,
        ),
        (
            "deactivated user, token minted after the deactivation",
            gone.id,
            org.id,
            "office",
            ahead,
        ),
        (
            "another organisation's admin claimed under this one",
            elsewhere.admin.id,
            org.id,
            "admin",
            now - 10,
        ),
        (
            "inspector claiming admin, real key",
            inspector.id,
            org.id,
            "admin",
            now - 10,
        ),
    ] {
        let c = claims(&|c| {
            c["sub"] = json!(sub);
            c["org"] = json!(org_id);
            c["role"] = json!(role);
            c["iat"] = json!(iat);
        });
        tokens.push((what.into(), hs256(&c, secret.as_bytes())));
    }
    // The control for the last one: the other organisation's admin under its own organisation.
    let own = hs256(
        &claims(&|c| {
            c["sub"] = json!(elsewhere.admin.id);
            c["org"] = json!(elsewhere.id);
        }),
        secret.as_bytes(),
    );
    assert_eq!(srv.client.get("/v1/users/me", Some(&own)).await.status, 200);
    let buildings_before = srv
        .client
        .get("/v1/buildings?limit=200", Some(&admin.token))
        .await;
    assert_eq!(buildings_before.status, 200, "{}", buildings_before.body);

    let mut t = Tally::new("JWT attacks", b);
    let c = &srv.client;
    let building = json!({ "name": "Forged Tower", "address": "1 Forged St, Melbourne VIC 3000",
                           "building_type": "Class 5 office" });
    for (what, token) in &tokens {
        let r = c.get("/v1/users/me", Some(token)).await;
        t.tried += 1;
        t.check(r.status == 401, || {
            format!("{what}: GET /v1/users/me -> {} {}", r.status, r.body)
        });
        let r = c.post("/v1/buildings", Some(token), &building).await;
        t.tried += 1;
        t.check(r.status == 401, || {
            format!("{what}: POST /v1/buildings -> {} {}", r.status, r.body)
        });
        // The sync socket: refused before the upgrade, header and query alike.
        let r = SyncClient::connect(&srv.base, token, &format!("{}:atk", admin.id)).await;
        t.tried += 1;
        let status = match &r {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
            Ok(_) => 101,
            Err(_) => 0,
        };
        t.check(status == 401, || {
            format!("{what}: /v1/sync upgrade -> {status}")
        });
        let r = c
            .request(Method::GET, "/v1/sync", None)
            .query(&[("token", token.as_str())]);
        let r = Client::send(r).await;
        t.tried += 1;
        t.check(r.status == 401, || {
            format!("{what}: /v1/sync?token -> {} {}", r.status, r.body)
        });
    }
    // Nothing was written under any of them.
    let r = c.get("/v1/buildings?limit=200", Some(&admin.token)).await;
    t.tried += 1;
    t.check(r.json == buildings_before.json, || {
        format!("refused tokens changed the buildings: {}", r.body)
    });
    // A 64 KB token: refused early, never a 2xx or 5xx.
    let huge = format!(
        "{}.{}.{sig}",
        B64URL.encode(format!(
            "{{\"alg\":\"HS256\",\"pad\":\"{}\"}}",
            "A".repeat(64 * 1024)
        )),
        b64(&base_claims)
    );
    let sent = c
        .request(Method::GET, "/v1/users/me", Some(&huge))
        .send()
        .await;
    t.tried += 1;
    match sent {
        Ok(r) => {
            let s = r.status().as_u16();
            t.check(matches!(s, 400 | 401 | 431), || {
                format!("64 KB token on REST -> {s}")
            });
        }
        // The server may close the connection on an oversized head before reading it all.
        Err(e) => t.check(!e.is_timeout(), || format!("64 KB token on REST: {e}")),
    }
    let r = SyncClient::connect(&srv.base, &huge, &format!("{}:atk", admin.id)).await;
    t.tried += 1;
    let ok = match &r {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            matches!(resp.status().as_u16(), 400 | 401 | 431)
        }
        Ok(_) => false,
        Err(_) => true,
    };
    t.check(ok, || "64 KB token on /v1/sync was not refused".into());
    // Every refusal left the real tokens working.
    let r = c.get("/v1/users/me", Some(&admin.token)).await;
    t.tried += 1;
    t.check(r.status == 200, || {
        format!("the admin's own token -> {}", r.status)
    });
    t.finish();
}

const BIN: &str = env!("CARGO_BIN_EXE_firemode-e2e-server");

/// Three `kill -9` cycles of the real binary under concurrent REST writes and tablet edits:
/// after each restart every acknowledged write is there (each building answered 201, each
/// change whose heads the server announced back).
async fn kill9_loop(b: Backend) {
    use firemode_sync_core::automerge::sync;
    use firemode_sync_core::automerge::transaction::Transactable;
    use firemode_sync_core::automerge::{Automerge, ChangeHash, ReadDoc, ROOT};
    use firemode_tests::process::Proc;

    let Some(db) = firemode_tests::TestDb::new(b).await else {
        return;
    };
    let data = db.dir.path().join("data");
    let data_s = data.to_str().unwrap().to_owned();
    let mut env: Vec<(String, String)> = vec![("FIREMODE_LOG_FORMAT".into(), "json".into())];
    if b == Backend::Postgres {
        env.push(("DATABASE_URL".into(), db.raw_url()));
        env.push((
            "FIREMODE_JWT_SECRET".into(),
            firemode_server::crypto::random_b64(48),
        ));
        env.push((
            "FIREMODE_PII_KEYS".into(),
            format!("1:{}", firemode_server::crypto::random_b64(32)),
        ));
    }
    let env_ref: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let args = ["serve", "--listen", "127.0.0.1:0", "--data-dir", &data_s];
    let mut srv = Proc::spawn(BIN, &args, &env_ref);
    firemode_tests::process::create_org(
        BIN,
        &data_s,
        &env_ref,
        b == Backend::Sqlite,
        ("Killed", "k@killed.test", "kill-nine-ledger-42"),
    );
    let c = Client::new(&srv.base);
    let login = c
        .post(
            "/v1/auth/login",
            None,
            &json!({ "email": "k@killed.test", "password": "kill-nine-ledger-42" }),
        )
        .await;
    assert_eq!(login.status, 200, "{}", login.body);
    let token = login.str("access_token").to_owned();
    let me = c.get("/v1/users/me", Some(&token)).await.uuid("id");
    let bld = c
        .post(
            "/v1/buildings",
            Some(&token),
            &json!({ "name": "Kill Tower", "address": "9 Signal St, Melbourne VIC 3000",
                     "building_type": "Class 5 office" }),
        )
        .await;
    assert_eq!(bld.status, 201, "{}", bld.body);
    let building = bld.str("id").to_owned();
    let a = c
        .post(
            &format!("/v1/buildings/{building}/assets"),
            Some(&token),
            &json!({ "asset_type": "portable_extinguisher", "location": "Level 1" }),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let asset = a.str("id").to_owned();
    let s = c
        .post(
            "/v1/tests/sessions",
            Some(&token),
            &json!({ "building_id": building, "name": "S", "frequency": "six_monthly" }),
        )
        .await;
    assert_eq!(s.status, 201, "{}", s.body);
    let sid = s.str("id").to_owned();
    let doc_id = s.str("document_id").to_owned();
    let peer = format!("{me}:tablet");
    // The JS tablets (unmodified automerge-repo, clients/js/test/kill9.test.mjs): a session
    // document each, so that each document has one writer and "acknowledged" is exact.
    let js = firemode_tests::clients::js_clients_available();
    let refresh = login.str("refresh_token").to_owned();
    let mut js_docs: Vec<(String, String)> = Vec::new();
    if js {
        for n in 0..2 {
            let s = c
                .post(
                    "/v1/tests/sessions",
                    Some(&token),
                    &json!({ "building_id": building, "name": format!("JS {n}"),
                             "frequency": "six_monthly" }),
                )
                .await;
            assert_eq!(s.status, 201, "{}", s.body);
            js_docs.push((
                s.str("document_url").to_owned(),
                s.str("document_id").to_owned(),
            ));
        }
    }
    let mut js_acked: Vec<Vec<ChangeHash>> = vec![Vec::new(); js_docs.len()];
    let mut js_edits = 0;

    let mut t = Tally::new("kill -9 cycles under REST and sync load", b);
    let mut acked_buildings: Vec<String> = Vec::new();
    let mut acked_heads: Vec<ChangeHash> = Vec::new();
    let mut total_edits = 0;
    let mut doc = Automerge::new();
    let mut state = sync::State::new();
    for cycle in 0..3 {
        // Acknowledgements so far in this cycle: (REST, tablet).
        let progress = std::sync::Arc::new((
            std::sync::atomic::AtomicUsize::new(0),
            std::sync::atomic::AtomicUsize::new(0),
        ));
        let seen = progress.clone();
        // REST writer: buildings until the server is gone.
        let base = srv.base.clone();
        let tok = token.clone();
        let writer = tokio::spawn(async move {
            let progress = seen;
            let http = reqwest::Client::new();
            let mut ok = Vec::new();
            let mut tried = 0;
            for i in 0.. {
                let sent = http
                    .post(format!("{base}/v1/buildings"))
                    .bearer_auth(&tok)
                    .json(&json!({ "name": format!("K{cycle}-{i}"),
                                   "address": "1 Crash St, Melbourne VIC 3000",
                                   "building_type": "Class 5 office" }))
                    .send()
                    .await;
                tried += 1;
                let Ok(res) = sent else { break };
                let status = res.status().as_u16();
                let Ok(body) = res.json::<Value>().await else {
                    break;
                };
                assert_eq!(status, 201, "building write {i}: {body}");
                ok.push(body["id"].as_str().unwrap().to_owned());
                progress.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            (ok, tried)
        });
        // Tablet: one edit after another, each acknowledged when the server announces its heads.
        let base = srv.base.clone();
        let tok = token.clone();
        let (peer_c, doc_c, asset_c) = (peer.clone(), doc_id.clone(), asset.clone());
        let seen = progress.clone();
        let editor = tokio::spawn(async move {
            let progress = seen;
            let mut client = SyncClient::joined(&base, &tok, &peer_c).await;
            let mut acked = Vec::new();
            let (mut tried, mut acked_edits) = (0, 0);
            if client
                .sync(&doc_c, &mut doc, &mut state, true)
                .await
                .is_err()
            {
                return (doc, state, acked, tried, acked_edits);
            }
            for i in 0.. {
                let mut tx = doc.transaction();
                let (_, items) = tx.get(ROOT, "items").unwrap().unwrap();
                let (_, item) = tx.get(&items, asset_c.as_str()).unwrap().unwrap();
                tx.put(
                    &item,
                    "observedCondition",
                    format!("cycle-{cycle}-edit-{i}"),
                )
                .unwrap();
                tx.commit();
                tried += 1;
                if client
                    .sync(&doc_c, &mut doc, &mut state, false)
                    .await
                    .is_err()
                {
                    break;
                }
                let heads = doc.get_heads();
                if state.their_heads.as_ref() == Some(&heads) {
                    acked = heads;
                    acked_edits = i + 1;
                    progress.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            }
            (doc, state, acked, tried, acked_edits)
        });
        // The JS tablets, started against this run of the server.
        let node = js.then(|| {
            let tablets: Vec<Value> = js_docs
                .iter()
                .enumerate()
                .map(|(n, (url, _))| json!({ "device": format!("js{n}"), "document_url": url, "asset": asset }))
                .collect();
            firemode_tests::clients::NodeTest::spawn(
                "kill9.test.mjs",
                &json!({ "base_url": srv.base, "cycle": cycle, "tablets": tablets,
                         "user": { "token": token, "refresh": refresh } }),
            )
        });
        // JS acknowledgements so far (the script's progress file), the fewest of its tablets.
        let js_progress = |node: &Option<firemode_tests::clients::NodeTest>| {
            node.as_ref().map_or(usize::MAX, |n| {
                std::fs::read(n.control("progress"))
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Vec<usize>>(&b).ok())
                    .and_then(|v| v.into_iter().min())
                    .unwrap_or(0)
            })
        };
        // Every kind of write under way (however slow the machine), then a little more load.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while (progress.0.load(std::sync::atomic::Ordering::SeqCst) == 0
            || progress.1.load(std::sync::atomic::Ordering::SeqCst) < 3
            || js_progress(&node) < 3)
            && std::time::Instant::now() < deadline
        {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        srv.kill9();
        if let Some(mut node) = node {
            std::fs::write(node.control("stop"), b"").unwrap();
            let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while !node.finished() && std::time::Instant::now() < until {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            let run = node.wait(std::time::Duration::from_secs(5)).await;
            let tablets = run.result["tablets"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            t.check(run.success && tablets.len() == js_docs.len(), || {
                format!("cycle {cycle}: the JS tablets failed: {}", run.output)
            });
            for (n, tb) in tablets.iter().enumerate() {
                let edits = tb["edits"].as_u64().unwrap_or(0) as usize;
                let acked_edits = tb["acked_edits"].as_u64().unwrap_or(0) as usize;
                t.tried += edits;
                js_edits += acked_edits;
                t.check(acked_edits > 0, || {
                    format!("cycle {cycle}: JS tablet {n}: no edit acknowledged before the kill ({edits} made)")
                });
                for h in tb["acked_heads"].as_array().into_iter().flatten() {
                    let h: ChangeHash = h
                        .as_str()
                        .unwrap_or_default()
                        .parse()
                        .expect("hex change hash");
                    js_acked[n].push(h);
                }
            }
        }
        let (ok, tried) = writer.await.unwrap();
        let (d, st, acked, edits, acked_edits) = editor.await.unwrap();
        total_edits += acked_edits;
        t.tried += tried + edits;
        (doc, state) = (d, sync::State::decode(&st.encode()).unwrap());
        t.check(!ok.is_empty() && !acked.is_empty(), || {
            format!("cycle {cycle}: no write acknowledged before the kill")
        });
        acked_buildings.extend(ok);
        acked_heads.extend(acked);

        srv = Proc::spawn(BIN, &args, &env_ref);
        let c = Client::new(&srv.base);
        for id in &acked_buildings {
            let r = c.get(&format!("/v1/buildings/{id}"), Some(&token)).await;
            t.tried += 1;
            t.check(r.status == 200, || {
                format!(
                    "cycle {cycle}: acknowledged building {id} -> {} {}",
                    r.status, r.body
                )
            });
        }
        // A fresh tablet pulls the document: every acknowledged change is in it.
        let mut fresh = Automerge::new();
        let mut fresh_state = sync::State::new();
        let mut puller = SyncClient::joined(&srv.base, &token, &format!("{me}:checker")).await;
        puller
            .sync(&doc_id, &mut fresh, &mut fresh_state, true)
            .await
            .unwrap();
        t.tried += 1;
        for h in &acked_heads {
            t.check(fresh.get_change_by_hash(h).is_some(), || {
                format!("cycle {cycle}: acknowledged change {h} lost")
            });
        }
        // The same for each JS tablet's document.
        for ((_, js_doc), acked) in js_docs.iter().zip(&js_acked) {
            let mut fresh = Automerge::new();
            let mut fresh_state = sync::State::new();
            puller
                .sync(js_doc, &mut fresh, &mut fresh_state, true)
                .await
                .unwrap();
            t.tried += 1;
            for h in acked {
                t.check(fresh.get_change_by_hash(h).is_some(), || {
                    format!("cycle {cycle}: acknowledged JS change {h} lost")
                });
            }
        }
        drop(puller);
        let r = c
            .get(&format!("/v1/tests/sessions/{sid}/document"), Some(&token))
            .await;
        t.tried += 1;
        t.check(r.status == 200, || {
            format!("document after restart: {}", r.status)
        });
        eprintln!(
            "kill -9 cycle {cycle} ({b:?}): {} buildings, {total_edits} Rust tablet edits and {js_edits} JS tablet edits acknowledged so far, all present",
            acked_buildings.len(),
        );
    }
    let (status, _) = srv.terminate();
    assert!(status.success());
    t.finish();
}

/// schemathesis (PyPI) against a running server: generated requests for every operation, as an
/// admin, checking that nothing answers 5xx and that every answer matches its documented
/// schema. `FIREMODE_SCHEMATHESIS` or `schemathesis` on PATH (`.ci/run` installs it; required
/// in CI, skipped with a message elsewhere).
async fn schemathesis(b: Backend) {
    let bin = match std::env::var("FIREMODE_SCHEMATHESIS") {
        Ok(p) if !p.is_empty() => p,
        _ => {
            let found = std::process::Command::new("schemathesis")
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success());
            if found {
                "schemathesis".to_owned()
            } else if std::env::var_os("CI").is_some() {
                panic!("CI is set but schemathesis is not installed (.ci/run installs it; FIREMODE_SCHEMATHESIS)")
            } else {
                eprintln!("skipping schemathesis: not installed (pip install schemathesis, or FIREMODE_SCHEMATHESIS)");
                return;
            }
        }
    };
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    // Real objects, so that some generated requests find something.
    let s = side(&srv, "Fuzz Fire").await;
    let report = srv.db.dir.path().join("schemathesis.json");
    let base = srv.base.clone();
    let token = s.org.admin.token.clone();
    let report_s = report.to_str().unwrap().to_owned();
    let budget = std::env::var("FIREMODE_SCHEMATHESIS_SECONDS").unwrap_or_else(|_| "75".into());
    // Path ids of real objects, so that generated requests reach the handlers' logic instead
    // of stopping at 404 (random and foreign ids are the matrix's part).
    let config = srv.db.dir.path().join("schemathesis.toml");
    let mut toml = String::new();
    for (prefix, id) in [
        ("/v1/buildings/", s.building.to_string()),
        ("/v1/tests/sessions/", s.session.to_string()),
        ("/v1/evidence/", s.evidence.to_string()),
        ("/v1/defects/", s.defect.to_string()),
        ("/v1/users/", s.target.id.to_string()),
    ] {
        toml.push_str(&format!(
            "[[operations]]\ninclude-path-regex = \"^{prefix}\\\\{{id\\\\}}\"\nparameters = {{ \"path.id\" = \"{id}\", \"path.asset_id\" = \"{}\" }}\n\n",
            s.asset
        ));
    }
    toml.push_str(&format!(
        "[[operations]]\ninclude-path-regex = \"^/v1/rules/\\\\{{code\\\\}}\"\nparameters = {{ \"path.code\" = \"{}\", \"path.version\" = \"1.0.0\" }}\n",
        s.rule
    ));
    std::fs::write(&config, &toml).unwrap();
    let config_s = config.to_str().unwrap().to_owned();
    // schemathesis keeps a cache (`.schemathesis/`) in its working directory: the temp dir.
    let workdir = srv.db.dir.path().to_owned();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(bin)
            .current_dir(workdir)
            .args([
                "--config-file",
                &config_s,
                "run",
                &format!("{base}/openapi.json"),
                "--checks",
                "not_a_server_error,response_schema_conformance",
                "--max-examples",
                "20",
                "--max-time",
                &budget,
                // One worker: hypothesis's lambda-source parsing in threads trips a CPython
                // error ("AST constructor recursion depth mismatch") on some versions.
                "--workers",
                "1",
                "--phases",
                "examples,coverage,fuzzing",
                "--seed",
                "12",
                "--no-color",
                "--request-timeout",
                "20",
                // Ending the admin's own login would turn every later request into a 401;
                // the WebSocket endpoint is not HTTP request/response.
                "--exclude-path",
                "/v1/auth/logout",
                "--exclude-path-regex",
                "revoke-tokens$",
                "--exclude-path",
                "/v1/sync",
                "--report",
                "json",
                "--report-json-path",
                &report_s,
                "-H",
                &format!("Authorization: Bearer {token}"),
            ])
            .output()
            .expect("run schemathesis")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // "Test cases:" then "11457 generated, 11450 passed, 7 failed" (or "..., N passed").
    let counts = stdout
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("Test cases"))
        .nth(1)
        .unwrap_or("")
        .trim()
        .to_owned();
    let number_before = |word: &str| {
        counts
            .split(',')
            .find(|part| part.trim().ends_with(word))
            .and_then(|part| part.split_whitespace().next())
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(0)
    };
    let (cases, failed) = (number_before("generated"), number_before("failed"));
    eprintln!(
        "attack summary: schemathesis ({b:?}): requests tried {cases}, failures: {failed}{}",
        if out.status.success() {
            ""
        } else {
            " (and the run failed, see below)"
        }
    );
    assert!(
        out.status.success(),
        "schemathesis found failures or errors:\n{stdout}\n{stderr}"
    );
    assert!(
        cases > 100,
        "schemathesis tried only {cases} cases:\n{stdout}"
    );
}
