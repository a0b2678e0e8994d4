//! Evidence: streamed, hashed, content-addressed uploads; downloads; verification; the
//! rejections (each leaves nothing recorded and nothing on disk); roles and organisations;
//! and flat memory for a 20 MiB upload.

use std::path::Path;

use base64::Engine;
use firemode_server::store::buildings::BuildingRecord;
use firemode_tests::fixtures::{self, Building};
use firemode_tests::{assert_problem, backend_tests, Backend, Client, Org, Resp, TestServer, User};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

backend_tests!(
    upload_download_verify_list,
    same_bytes_are_stored_once,
    rejected_uploads_leave_nothing,
    oversize_uploads_are_413,
    roles_and_organisations,
    evidence_idempotency,
    upload_memory_stays_flat,
);

// ---------------------------------------------------------------------------------------------
// Fixtures

/// A session (through `POST /v1/tests/sessions`, as `by`) on a new building of `org`.
pub async fn new_session(srv: &TestServer, org: &Org, by: &User, assigned: &[Uuid]) -> Uuid {
    let building = fixtures::building(srv, org, 1).await;
    session_on(srv, by, &building, assigned).await
}

pub async fn session_on(
    srv: &TestServer,
    by: &User,
    building: &Building,
    assigned: &[Uuid],
) -> Uuid {
    fixtures::session(srv, by, building, assigned).await["id"]
        .as_str()
        .expect("session id")
        .parse()
        .expect("uuid")
}

/// A building row for a store that no server is running on yet.
fn building_record(org_id: Uuid) -> BuildingRecord {
    let now = chrono::Utc::now();
    BuildingRecord {
        id: Uuid::now_v7(),
        org_id,
        name: "Tower One".into(),
        address: "1 Collins St, Melbourne VIC 3000".into(),
        building_type: "office".into(),
        contact_name_enc: None,
        contact_phone_enc: None,
        contact_email: None,
        rule_set_code: "AS1851".into(),
        rule_set_version: "2012.1.0".into(),
        editions: Default::default(),
        created_at: now,
        updated_at: now,
        state: None,
        schedule_anchor: None,
    }
}

pub fn sha_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `len` bytes of a JPEG-looking file (magic bytes, then a pattern that varies with `seed`).
pub fn jpeg(len: usize, seed: u8) -> Vec<u8> {
    let mut v = vec![
        0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0,
    ];
    v.extend((0..len.saturating_sub(v.len())).map(|i| (i as u8).wrapping_mul(31) ^ seed));
    v.truncate(len);
    v
}

fn png(len: usize) -> Vec<u8> {
    let mut v = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    v.resize(len, 7);
    v
}

/// One upload, built up field by field.
pub struct Upload {
    pub session_id: String,
    pub evidence_type: String,
    pub file: Vec<u8>,
    pub filename: String,
    pub sha256: Option<String>,
    pub content_digest: Option<String>,
    pub key: Option<String>,
    pub asset_id: Option<String>,
    pub metadata: Option<String>,
    /// Send the file as a stream of unknown length (chunked, no Content-Length).
    pub chunked: bool,
}

impl Upload {
    pub fn photo(session_id: Uuid, file: Vec<u8>) -> Self {
        Self {
            session_id: session_id.to_string(),
            evidence_type: "photo".into(),
            sha256: Some(sha_hex(&file)),
            file,
            filename: "panel.jpg".into(),
            content_digest: None,
            key: Some(Uuid::new_v4().to_string()),
            asset_id: None,
            metadata: None,
            chunked: false,
        }
    }

    pub async fn send(&self, client: &Client, token: &str) -> Resp {
        let mut form = reqwest::multipart::Form::new()
            .text("session_id", self.session_id.clone())
            .text("evidence_type", self.evidence_type.clone());
        if let Some(a) = &self.asset_id {
            form = form.text("asset_id", a.clone());
        }
        if let Some(m) = &self.metadata {
            form = form.text("metadata", m.clone());
        }
        if let Some(s) = &self.sha256 {
            form = form.text("sha256", s.clone());
        }
        let part = if self.chunked {
            let chunks: Vec<Result<Vec<u8>, std::io::Error>> = self
                .file
                .chunks(16 * 1024)
                .map(|c| Ok(c.to_vec()))
                .collect();
            reqwest::multipart::Part::stream(reqwest::Body::wrap_stream(
                futures_util::stream::iter(chunks),
            ))
        } else {
            reqwest::multipart::Part::bytes(self.file.clone())
        };
        form = form.part(
            "file",
            part.file_name(self.filename.clone())
                .mime_str("application/octet-stream")
                .unwrap(),
        );
        let mut rb = client
            .request(reqwest::Method::POST, "/v1/evidence", Some(token))
            .multipart(form);
        if let Some(k) = &self.key {
            rb = rb.header("idempotency-key", k);
        }
        if let Some(d) = &self.content_digest {
            rb = rb.header("content-digest", d);
        }
        Client::send(rb).await
    }
}

/// Files (not folders) under `dir`, recursively; none when it does not exist.
pub fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Nothing in the object store, nothing in the upload temp folder, no record for the session.
async fn assert_nothing_left(srv: &TestServer, token: &str, session: Uuid, what: &str) {
    let data = srv.db.dir.path();
    assert_eq!(
        files_under(&data.join("evidence")),
        Vec::<std::path::PathBuf>::new(),
        "{what}: object store"
    );
    assert_eq!(
        files_under(&data.join("evidence-tmp")),
        Vec::<std::path::PathBuf>::new(),
        "{what}: temp files"
    );
    let list = srv
        .client
        .get(
            &format!("/v1/tests/sessions/{session}/evidence"),
            Some(token),
        )
        .await;
    assert_eq!(list.status, 200, "{what}: {}", list.body);
    assert_eq!(list.json["items"], json!([]), "{what}: records");
}

struct World {
    srv: TestServer,
    org: Org,
    admin: User,
    inspector: User,
    building: Building,
    session: Uuid,
}

impl World {
    /// Another session in the same building.
    async fn another_session(&self, assigned: &[Uuid]) -> Uuid {
        session_on(&self.srv, &self.admin, &self.building, assigned).await
    }
}

async fn world(b: Backend) -> Option<World> {
    let srv = TestServer::start(b).await?;
    let org = srv.org("Acme").await;
    let inspector = srv.user(&org, "inspector").await;
    let building = fixtures::building(&srv, &org, 1).await;
    let session = session_on(&srv, &org.admin, &building, &[inspector.id]).await;
    Some(World {
        srv,
        admin: org.admin.clone(),
        org,
        inspector,
        building,
        session,
    })
}

// ---------------------------------------------------------------------------------------------
// Tests

async fn upload_download_verify_list(b: Backend) {
    let Some(World {
        srv,
        admin,
        inspector,
        session,
        building,
        ..
    }) = world(b).await
    else {
        return;
    };
    let bytes = jpeg(300 * 1024, 1);
    // An asset of the session's building (any other id is refused: input_rules.rs).
    let asset = building.assets[0];
    let mut up = Upload::photo(session, bytes.clone());
    up.asset_id = Some(asset.to_string());
    up.metadata = Some(r#"{"caption":"FIP panel","gps":[-37.8,144.9]}"#.into());
    let r = up.send(&srv.client, &inspector.token).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json["sha256"], sha_hex(&bytes));
    assert_eq!(r.json["size"], bytes.len());
    assert_eq!(r.json["content_type"], "image/jpeg");
    assert_eq!(r.json["status"], "verified");
    assert_eq!(r.json["session_id"], session.to_string());
    let id = r.uuid("evidence_id");
    assert_eq!(r.header("location"), Some(format!("/v1/evidence/{id}")));
    assert_eq!(r.header("idempotent-replayed"), None);

    let meta = srv
        .client
        .get(&format!("/v1/evidence/{id}"), Some(&inspector.token))
        .await;
    assert_eq!(meta.status, 200, "{}", meta.body);
    assert_eq!(meta.json["asset_id"], asset.to_string());
    assert_eq!(meta.json["evidence_type"], "photo");
    assert_eq!(meta.json["filename"], "panel.jpg");
    assert_eq!(meta.json["metadata"]["caption"], "FIP panel");
    assert_eq!(meta.json["uploaded_by"], inspector.id.to_string());

    let res = srv
        .client
        .request(
            reqwest::Method::GET,
            &format!("/v1/evidence/{id}/content"),
            Some(&admin.token),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let h = |n: &str| res.headers().get(n).map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(h("content-type").as_deref(), Some("image/jpeg"));
    assert_eq!(h("content-length"), Some(bytes.len().to_string()));
    assert_eq!(
        h("content-disposition"),
        Some(format!("attachment; filename=\"{id}.jpg\""))
    );
    assert_eq!(h("x-content-type-options").as_deref(), Some("nosniff"));
    let digest = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&bytes));
    assert_eq!(h("repr-digest"), Some(format!("sha-256=:{digest}:")));
    assert_eq!(res.bytes().await.unwrap().as_ref(), &bytes[..]);

    let v = srv
        .client
        .get(&format!("/v1/evidence/{id}/verify"), Some(&inspector.token))
        .await;
    assert_eq!(v.status, 200, "{}", v.body);
    assert_eq!(v.json["verified"], true);
    assert_eq!(v.json["sha256"], sha_hex(&bytes));

    // The integrity can also come as an RFC 9530 header; a PNG document by the office admin.
    let doc = png(10_000);
    let mut up = Upload::photo(session, doc.clone());
    up.evidence_type = "document".into();
    up.sha256 = None;
    up.content_digest = Some(format!(
        "sha-512=:{}:, sha-256=:{}:",
        base64::engine::general_purpose::STANDARD.encode([0u8; 64]),
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&doc))
    ));
    let r2 = up.send(&srv.client, &admin.token).await;
    assert_eq!(r2.status, 201, "{}", r2.body);
    assert_eq!(r2.json["content_type"], "image/png");

    let mut pdf = Upload::photo(session, b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj".to_vec());
    pdf.evidence_type = "document".into();
    let r3 = pdf.send(&srv.client, &inspector.token).await;
    assert_eq!(r3.status, 201, "{}", r3.body);
    assert_eq!(r3.json["content_type"], "application/pdf");

    let list = srv
        .client
        .get(
            &format!("/v1/tests/sessions/{session}/evidence?limit=1"),
            Some(&inspector.token),
        )
        .await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert_eq!(list.json["items"][0]["id"], id.to_string());
    let cursor = list.str("next_cursor").to_owned();
    let rest = srv
        .client
        .get(
            &format!("/v1/tests/sessions/{session}/evidence?cursor={cursor}"),
            Some(&inspector.token),
        )
        .await;
    assert_eq!(rest.json["items"][0]["id"], r2.json["evidence_id"]);
    assert_eq!(rest.json["items"][1]["id"], r3.json["evidence_id"]);
    assert!(rest.json["next_cursor"].is_null());

    // The upload is in the uploader's audit trail.
    let audits = srv
        .client
        .get("/v1/users/me/audits", Some(&inspector.token))
        .await;
    let rows = audits.json["items"].as_array().unwrap();
    let row = rows
        .iter()
        .find(|a| a["action"] == "evidence.upload")
        .expect("evidence.upload audit row");
    assert_eq!(row["target_id"], id.to_string());
    assert_eq!(row["details"]["sha256"], sha_hex(&bytes));

    // Verification recomputes from the stored bytes: tampering on disk is caught.
    let objects = files_under(&srv.db.dir.path().join("evidence"));
    let object = objects
        .iter()
        .find(|p| p.file_name().unwrap().to_str().unwrap() == sha_hex(&bytes))
        .expect("object stored under its sha256");
    let mut tampered = bytes.clone();
    tampered[1000] ^= 1;
    std::fs::write(object, &tampered).unwrap();
    let v = srv
        .client
        .get(&format!("/v1/evidence/{id}/verify"), Some(&admin.token))
        .await;
    assert_eq!(v.json["verified"], false, "{}", v.body);
    assert_eq!(v.json["sha256"], sha_hex(&tampered));
    assert_eq!(v.json["expected_sha256"], sha_hex(&bytes));
}

/// Content addressing: the same bytes twice are one object and two records (two uploads are
/// two pieces of evidence — who, when, which session); a retry with the same key is one.
async fn same_bytes_are_stored_once(b: Backend) {
    let Some(w) = world(b).await else {
        return;
    };
    let other = w.another_session(&[]).await;
    let World {
        srv,
        admin,
        inspector,
        session,
        ..
    } = w;
    let bytes = jpeg(50_000, 9);
    let a = Upload::photo(session, bytes.clone())
        .send(&srv.client, &inspector.token)
        .await;
    let b2 = Upload::photo(other, bytes.clone())
        .send(&srv.client, &admin.token)
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(b2.status, 201, "{}", b2.body);
    assert_ne!(a.json["evidence_id"], b2.json["evidence_id"]);
    assert_eq!(a.json["sha256"], b2.json["sha256"]);
    let objects = files_under(&srv.db.dir.path().join("evidence"));
    assert_eq!(
        objects.len(),
        1,
        "one object for identical bytes: {objects:?}"
    );
    // Both records read the shared object back.
    for r in [&a, &b2] {
        let id = r.str("evidence_id");
        let c = srv
            .client
            .get(&format!("/v1/evidence/{id}/verify"), Some(&admin.token))
            .await;
        assert_eq!(c.json["verified"], true, "{}", c.body);
    }
    // A large upload (past the single-put size) goes through the multipart path.
    let big = jpeg(6 * 1024 * 1024 + 123, 3);
    let r = Upload::photo(session, big.clone())
        .send(&srv.client, &admin.token)
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.str("evidence_id");
    let c = srv
        .client
        .get(&format!("/v1/evidence/{id}/verify"), Some(&admin.token))
        .await;
    assert_eq!(c.json["verified"], true, "{}", c.body);
    assert_eq!(c.json["size"], big.len());
    let again = Upload::photo(other, big)
        .send(&srv.client, &admin.token)
        .await;
    assert_eq!(again.status, 201, "{}", again.body);
    assert_eq!(files_under(&srv.db.dir.path().join("evidence")).len(), 2);
    assert_eq!(
        files_under(&srv.db.dir.path().join("evidence-tmp")).len(),
        0
    );
}

async fn rejected_uploads_leave_nothing(b: Backend) {
    let Some(w) = world(b).await else {
        return;
    };
    let (srv, admin, inspector, session, org) = (&w.srv, &w.admin, &w.inspector, w.session, &w.org);
    let c = &srv.client;
    let t = &inspector.token;
    let good = jpeg(40_000, 2);

    let mut up = Upload::photo(session, good.clone());
    up.sha256 = Some(sha_hex(b"something else"));
    assert_problem(&up.send(c, t).await, 422, "hash_mismatch");
    assert_nothing_left(srv, t, session, "hash mismatch (field)").await;

    let mut up = Upload::photo(session, good.clone());
    up.sha256 = None;
    up.content_digest = Some(format!(
        "sha-256=:{}:",
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(b"other"))
    ));
    assert_problem(&up.send(c, t).await, 422, "hash_mismatch");
    assert_nothing_left(srv, t, session, "hash mismatch (header)").await;

    // Field right, header wrong: every declared digest must match.
    let mut up = Upload::photo(session, good.clone());
    up.content_digest = Some(format!(
        "sha-256=:{}:",
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(b"other"))
    ));
    assert_problem(&up.send(c, t).await, 422, "hash_mismatch");

    let mut up = Upload::photo(session, good.clone());
    up.content_digest = Some("sha-256=:not base64:".into());
    assert_problem(&up.send(c, t).await, 400, "invalid_digest");

    let mut up = Upload::photo(session, good.clone());
    up.sha256 = None;
    assert_problem(&up.send(c, t).await, 400, "integrity_required");
    assert_nothing_left(srv, t, session, "missing integrity").await;

    let mut up = Upload::photo(session, good.clone());
    up.sha256 = Some("abc".into());
    assert_problem(&up.send(c, t).await, 422, "invalid_form");

    let gif = [
        b"GIF89a\x01\x00\x01\x00\x80\x00\x00".as_slice(),
        &[0u8; 500],
    ]
    .concat();
    let mut exe = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff".to_vec();
    exe.resize(100_000, 0x90);
    for (what, bytes) in [("gif", gif), ("exe", exe), ("tiny", vec![0xFF, 0xD8])] {
        let up = Upload::photo(session, bytes);
        assert_problem(&up.send(c, t).await, 415, "unsupported_media_type");
        assert_nothing_left(srv, t, session, what).await;
    }
    assert_problem(
        &Upload::photo(session, Vec::new()).send(c, t).await,
        422,
        "empty_file",
    );
    // A large refused file: refused after its first bytes, the rest read and discarded, so
    // the client gets the answer rather than a reset connection.
    let mut big_exe = b"MZ\x90\x00".to_vec();
    big_exe.resize(3 * 1024 * 1024, 0x90);
    assert_problem(
        &Upload::photo(session, big_exe).send(c, t).await,
        415,
        "unsupported_media_type",
    );
    assert_nothing_left(srv, t, session, "big exe").await;

    // A PDF is a document, not a photo.
    let up = Upload::photo(session, b"%PDF-1.7\n%....".to_vec());
    assert_problem(&up.send(c, t).await, 422, "evidence_type_mismatch");
    assert_nothing_left(srv, t, session, "type mismatch").await;

    let mut up = Upload::photo(session, good.clone());
    up.evidence_type = "selfie".into();
    assert_problem(&up.send(c, t).await, 422, "invalid_form");
    let mut up = Upload::photo(session, good.clone());
    up.metadata = Some("[1,2]".into());
    assert_problem(&up.send(c, t).await, 422, "invalid_form");
    let mut up = Upload::photo(session, good.clone());
    up.metadata = Some("{not json".into());
    assert_problem(&up.send(c, t).await, 422, "invalid_form");
    let mut up = Upload::photo(session, good.clone());
    up.asset_id = Some("not-a-uuid".into());
    assert_problem(&up.send(c, t).await, 422, "invalid_form");
    let mut up = Upload::photo(session, good.clone());
    up.session_id = "42".into();
    assert_problem(&up.send(c, t).await, 422, "invalid_form");
    assert_nothing_left(srv, t, session, "bad fields").await;

    // Malformed bodies.
    let key = || ("idempotency-key", Uuid::new_v4().to_string());
    let send_raw = |ct: &'static str, body: &'static [u8]| {
        let (k, v) = key();
        Client::send(
            c.request(reqwest::Method::POST, "/v1/evidence", Some(t))
                .header("content-type", ct)
                .header(k, v)
                .body(body),
        )
    };
    assert_problem(
        &send_raw(
            "multipart/form-data; boundary=XyZ",
            b"this is not multipart at all",
        )
        .await,
        400,
        "malformed_multipart",
    );
    assert_problem(
        &send_raw(
            "multipart/form-data; boundary=XyZ",
            b"--XyZ\r\nContent-Disposition: form-data; name=\"session_id\"\r\n\r\nabc",
        )
        .await,
        400,
        "malformed_multipart",
    );
    assert_problem(
        &send_raw("application/json", b"{}").await,
        400,
        "malformed_multipart",
    );
    let no_file = Client::send(
        c.request(reqwest::Method::POST, "/v1/evidence", Some(t))
            .header("idempotency-key", "k-no-file")
            .multipart(
                reqwest::multipart::Form::new()
                    .text("session_id", session.to_string())
                    .text("evidence_type", "photo")
                    .text("sha256", sha_hex(b"x")),
            ),
    )
    .await;
    assert_problem(&no_file, 422, "invalid_form");
    assert_nothing_left(srv, t, session, "malformed").await;

    // Sessions: unknown, another organisation's, not assigned; auditors.
    let unknown = Upload::photo(Uuid::now_v7(), good.clone());
    assert_problem(&unknown.send(c, t).await, 404, "not_found");
    let other = srv.org("Other Co").await;
    let foreign = new_session(srv, &other, &other.admin, &[]).await;
    assert_problem(
        &Upload::photo(foreign, good.clone()).send(c, t).await,
        404,
        "not_found",
    );
    assert_problem(
        &Upload::photo(foreign, good.clone())
            .send(c, &admin.token)
            .await,
        404,
        "not_found",
    );
    // An unassigned inspector cannot see the session: 404, as on the session itself.
    let stranger = srv.user(org, "inspector").await;
    assert_problem(
        &Upload::photo(session, good.clone())
            .send(c, &stranger.token)
            .await,
        404,
        "not_found",
    );
    let auditor = srv.user(org, "auditor").await;
    assert_problem(
        &Upload::photo(session, good.clone())
            .send(c, &auditor.token)
            .await,
        403,
        "forbidden",
    );
    assert_problem(
        &Upload::photo(session, good.clone())
            .send(c, "not-a-token")
            .await,
        401,
        "unauthorized",
    );
    assert_nothing_left(srv, t, session, "authorization").await;
    let list = c
        .get(
            &format!("/v1/tests/sessions/{foreign}/evidence"),
            Some(&other.admin.token),
        )
        .await;
    assert_eq!(
        list.json["items"],
        json!([]),
        "nothing recorded in the other organisation"
    );
}

async fn oversize_uploads_are_413(b: Backend) {
    let Some(db) = firemode_tests::TestDb::new(b).await else {
        return;
    };
    let mut cfg = firemode_tests::test_config(&db);
    cfg.evidence_max_bytes = 256 * 1024;
    let srv = TestServer::start_with(db, cfg).await;
    let org = srv.org("Acme").await;
    let session = new_session(&srv, &org, &org.admin, &[]).await;
    let t = &org.admin.token;

    // Exactly at the limit is fine.
    let at = jpeg(256 * 1024, 4);
    let r = Upload::photo(session, at).send(&srv.client, t).await;
    assert_eq!(r.status, 201, "{}", r.body);
    for f in files_under(&srv.db.dir.path().join("evidence")) {
        std::fs::remove_file(f).unwrap();
    }
    let session = new_session(&srv, &org, &org.admin, &[]).await;

    // Content-Length far past the limit: refused on the headers alone. The client asks
    // `Expect: 100-continue` and never sends a byte of body; the answer is a 413, not a
    // "100 Continue" (which would mean the server wanted to read it).
    let (status, body) = headers_only_upload(&srv.base, t, 1 << 30).await;
    assert_eq!(status, 413, "{body}");
    let problem: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(problem["code"], "payload_too_large");
    // One byte over, with a Content-Length within the allowance for the form: counted.
    let over = jpeg(256 * 1024 + 1, 6);
    assert_problem(
        &Upload::photo(session, over.clone())
            .send(&srv.client, t)
            .await,
        413,
        "payload_too_large",
    );
    // No Content-Length at all (chunked): counted while streaming.
    let mut up = Upload::photo(session, jpeg(400 * 1024, 7));
    up.chunked = true;
    assert_problem(&up.send(&srv.client, t).await, 413, "payload_too_large");
    assert_nothing_left(&srv, t, session, "oversize").await;
    // A chunked upload within the limit works.
    let mut up = Upload::photo(session, jpeg(100 * 1024, 8));
    up.chunked = true;
    assert_eq!(up.send(&srv.client, t).await.status, 201);
}

/// Send only the headers of an upload declaring `content_length` bytes; return the status and
/// body of the answer.
async fn headers_only_upload(base: &str, token: &str, content_length: u64) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v1/evidence HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Idempotency-Key: big-1\r\nContent-Type: multipart/form-data; boundary=XyZ\r\n\
         Content-Length: {content_length}\r\nExpect: 100-continue\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline, s.read(&mut chunk))
            .await
            .expect("no answer to the headers")
            .unwrap();
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if body.len() >= len || n == 0 {
                let status = head.split(' ').nth(1).unwrap().parse().unwrap();
                return (status, body.to_owned());
            }
        }
        assert!(n > 0, "connection closed early: {text}");
    }
}

async fn roles_and_organisations(b: Backend) {
    let Some(World {
        srv,
        org,
        admin,
        inspector,
        session,
        ..
    }) = world(b).await
    else {
        return;
    };
    let r = Upload::photo(session, jpeg(5000, 1))
        .send(&srv.client, &inspector.token)
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.uuid("evidence_id");
    let paths = [
        format!("/v1/evidence/{id}"),
        format!("/v1/evidence/{id}/content"),
        format!("/v1/evidence/{id}/verify"),
        format!("/v1/tests/sessions/{session}/evidence"),
    ];
    let other = srv.org("Other Co").await;
    let auditor = srv.user(&org, "auditor").await;
    let office = srv.user(&org, "office").await;
    let stranger = srv.user(&org, "inspector").await;
    for p in &paths {
        assert_problem(
            &srv.client.get(p, Some(&other.admin.token)).await,
            404,
            "not_found",
        );
        // Not assigned: the session is invisible, so is its evidence.
        assert_problem(
            &srv.client.get(p, Some(&stranger.token)).await,
            404,
            "not_found",
        );
        for u in [&auditor, &office, &admin, &inspector] {
            let r = srv.client.get(p, Some(&u.token)).await;
            assert_eq!(r.status, 200, "{p}: {}", r.body);
        }
        assert_problem(&srv.client.get(p, None).await, 401, "unauthorized");
    }
    assert_problem(
        &srv.client
            .get("/v1/evidence/not-a-uuid", Some(&admin.token))
            .await,
        400,
        "invalid_path",
    );
    assert_problem(
        &srv.client
            .get(
                &format!("/v1/evidence/{}", Uuid::now_v7()),
                Some(&admin.token),
            )
            .await,
        404,
        "not_found",
    );
    // No route deletes evidence.
    for p in &paths[..1] {
        assert_problem(
            &srv.client.delete(p, Some(&admin.token)).await,
            405,
            "method_not_allowed",
        );
    }
    // The OpenAPI document describes the upload.
    let spec = srv.client.get("/openapi.json", None).await;
    assert!(spec.json["paths"]["/v1/evidence"]["post"].is_object());
    assert!(spec.json["paths"]["/v1/tests/sessions/{id}/evidence"]["get"].is_object());
}

async fn evidence_idempotency(b: Backend) {
    let Some(World {
        srv,
        inspector,
        session,
        ..
    }) = world(b).await
    else {
        return;
    };
    let c = &srv.client;
    let t = &inspector.token;
    let mut up = Upload::photo(session, jpeg(20_000, 1));
    up.key = None;
    assert_problem(&up.send(c, t).await, 400, "idempotency_key_required");
    up.key = Some("x".repeat(300));
    assert_problem(&up.send(c, t).await, 400, "invalid_idempotency_key");

    up.key = Some("photo-1".into());
    let first = up.send(c, t).await;
    assert_eq!(first.status, 201, "{}", first.body);
    let again = up.send(c, t).await;
    assert_eq!(again.status, 201, "{}", again.body);
    assert_eq!(again.header("idempotent-replayed").as_deref(), Some("true"));
    assert_eq!(again.json, first.json);
    let list = c
        .get(&format!("/v1/tests/sessions/{session}/evidence"), Some(t))
        .await;
    assert_eq!(
        list.json["items"].as_array().unwrap().len(),
        1,
        "a retry records nothing new"
    );

    // Same key, other bytes or other fields: refused.
    let mut other = Upload::photo(session, jpeg(20_000, 2));
    other.key = Some("photo-1".into());
    assert_problem(&other.send(c, t).await, 422, "idempotency_key_reused");
    let mut other = Upload::photo(session, jpeg(20_000, 1));
    other.key = Some("photo-1".into());
    other.metadata = Some(r#"{"caption":"changed"}"#.into());
    assert_problem(&other.send(c, t).await, 422, "idempotency_key_reused");

    // A rejected upload does not use up its key: the corrected retry succeeds.
    let mut bad = Upload::photo(session, jpeg(20_000, 3));
    bad.key = Some("photo-2".into());
    bad.sha256 = Some(sha_hex(b"typo"));
    assert_problem(&bad.send(c, t).await, 422, "hash_mismatch");
    bad.sha256 = Some(sha_hex(&bad.file));
    assert_eq!(bad.send(c, t).await.status, 201);

    // In flight: another request holds the key.
    let now = chrono::Utc::now();
    let claim = srv
        .store()
        .claim_idempotency_key(&firemode_server::store::idempotency::NewClaim {
            user_id: inspector.id,
            key: "photo-3",
            request_hash: &[7; 32],
            now,
            expires_at: now + chrono::Duration::hours(24),
            stale_before: now - chrono::Duration::minutes(5),
        })
        .await
        .unwrap();
    assert!(matches!(
        claim,
        firemode_server::store::idempotency::ClaimOutcome::Claimed(_)
    ));
    let mut held = Upload::photo(session, jpeg(20_000, 4));
    held.key = Some("photo-3".into());
    let r = held.send(c, t).await;
    assert_problem(&r, 409, "in_flight");
    assert_eq!(r.json["retryable"], true);
    assert_eq!(
        files_under(&srv.db.dir.path().join("evidence-tmp")).len(),
        0
    );
}

// ---------------------------------------------------------------------------------------------
// Memory: the real binary in a process of its own, so nothing else moves its high-water mark.

const BIN: &str = env!("CARGO_BIN_EXE_firemode-e2e-server");

/// The peak resident set (VmHWM) of a process, in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM line");
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("VmHWM value");
    kb * 1024
}

struct Server {
    child: std::process::Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_server(data_dir: &Path, env: &[(&str, String)]) -> Server {
    use std::io::{BufRead, BufReader};
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env_remove("DATABASE_URL")
        .env("FIREMODE_LOG_FORMAT", "json")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn server");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("\"listening\"") {
                let v: Value = serde_json::from_str(&line).unwrap();
                let _ = tx.send(v["address"].as_str().unwrap().to_owned());
            }
        }
    });
    let addr = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("server did not start");
    Server {
        child,
        base: format!("http://{addr}"),
    }
}

async fn upload_memory_stays_flat(b: Backend) {
    let Some(db) = firemode_tests::TestDb::new(b).await else {
        return;
    };
    // An organisation, its admin and a building through the store, then the server in a
    // process of its own on the same database.
    let email = "mem@acme.test";
    let password = "memory-test-password";
    let building = {
        let store = firemode_server::store::connect(&db.url)
            .await
            .expect("store");
        let org = store.create_org("Acme").await.unwrap();
        let hash = firemode_server::auth::password::hash(password.into())
            .await
            .unwrap();
        store
            .create_user(firemode_server::store::NewUser {
                org_id: org.id,
                email: email.into(),
                password_hash: hash,
                role: firemode_server::store::Role::Admin,
                full_name_enc: None,
                phone_enc: None,
            })
            .await
            .unwrap();
        let building = building_record(org.id);
        store.create_building(&building).await.unwrap();
        building.id
    };
    let mut env = Vec::new();
    if b == Backend::Postgres {
        env.push(("DATABASE_URL", db.raw_url()));
        env.push((
            "FIREMODE_JWT_SECRET",
            firemode_server::crypto::random_b64(48),
        ));
        env.push((
            "FIREMODE_PII_KEYS",
            format!("1:{}", firemode_server::crypto::random_b64(32)),
        ));
    }
    let srv = spawn_server(db.dir.path(), &env);
    let client = Client::new(&srv.base);
    let login = client
        .post(
            "/v1/auth/login",
            None,
            &json!({ "email": email, "password": password }),
        )
        .await;
    assert_eq!(login.status, 200, "{}", login.body);
    let token = login.str("access_token").to_owned();
    let s = client
        .post(
            "/v1/tests/sessions",
            Some(&token),
            &json!({ "building_id": building, "name": "Memory", "frequency": "six_monthly", "assigned_to": [] }),
        )
        .await;
    assert_eq!(s.status, 201, "{}", s.body);
    let session = s.uuid("id");

    // Warm up every code path with small uploads, then measure a 20 MiB one.
    for seed in 0..3 {
        let r = Upload::photo(session, jpeg(256 * 1024, seed))
            .send(&client, &token)
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let pid = srv.child.id();
    let before = peak_rss(pid);
    let big = jpeg(20 * 1024 * 1024, 42);
    let r = Upload::photo(session, big.clone())
        .send(&client, &token)
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let after = peak_rss(pid);
    let growth = after.saturating_sub(before);
    eprintln!(
        "upload memory ({b:?}): peak RSS {} KiB before, {} KiB after a 20 MiB upload (+{} KiB)",
        before / 1024,
        after / 1024,
        growth / 1024
    );
    // Buffering the body would add at least its 20 MiB. Below that, what grows is allocator
    // retention: with mimalloc (the default allocator since the login-storm work) a streamed
    // 20 MiB upload was seen to raise the peak by ~10 MiB, where glibc stayed under 8.
    assert!(
        growth < 16 * 1024 * 1024,
        "peak RSS grew by {growth} bytes during a 20 MiB upload: the upload path buffers"
    );
    let id = r.str("evidence_id");
    let v = client
        .get(&format!("/v1/evidence/{id}/verify"), Some(&token))
        .await;
    assert_eq!(v.json["verified"], true, "{}", v.body);
    drop(srv);
    drop(db);
}
