//! The S3 evidence backend against a real S3-compatible server (moto's server mode in CI, found
//! through `FIREMODE_TEST_S3_ENDPOINT`): uploads land in the bucket and nowhere else, come back
//! byte for byte, verify, and a digest mismatch stores nothing. Both the single conditional put
//! (small files) and the multipart upload (files over 4 MiB) are exercised.
//!
//! The test creates a bucket of its own with a plain unsigned `PUT /<bucket>` and lists it with
//! unsigned requests, which moto accepts (objects themselves it serves to their signed owner
//! only, so their bytes are checked through the server's download); the server signs every
//! request with the AWS_* credentials, as it would against AWS.

use firemode_server::config::EvidenceStoreKind;
use firemode_tests::{backend_tests, s3_test_endpoint, test_config, Backend, TestDb, TestServer};
use reqwest::Method;
use uuid::Uuid;

use crate::evidence::{files_under, jpeg, new_session, sha_hex, Upload};

backend_tests!(s3_upload_download_verify_and_refuse_mismatch);

/// The objects in `bucket` as (key, size), by key (ListObjectsV2 through an unsigned request).
async fn bucket_objects(
    http: &reqwest::Client,
    endpoint: &str,
    bucket: &str,
) -> Vec<(String, u64)> {
    let res = http
        .get(format!("{endpoint}/{bucket}?list-type=2"))
        .send()
        .await
        .expect("list the bucket");
    assert!(
        res.status().is_success(),
        "list the bucket: {}",
        res.status()
    );
    let xml = res.text().await.expect("listing");
    let field = |entry: &str, name: &str| -> Option<String> {
        let start = entry.find(&format!("<{name}>"))? + name.len() + 2;
        let end = entry[start..].find(&format!("</{name}>"))?;
        Some(entry[start..start + end].to_owned())
    };
    let mut objects: Vec<(String, u64)> = xml
        .split("<Contents>")
        .skip(1)
        .map(|entry| {
            let key = field(entry, "Key").expect("a listed object has a key");
            let size = field(entry, "Size")
                .and_then(|s| s.parse().ok())
                .expect("a listed object has a size");
            (key, size)
        })
        .collect();
    objects.sort();
    objects
}

/// Where the server keeps an object with this content (see `EvidenceObjects::location`).
fn key_of(bytes: &[u8]) -> String {
    let hex = sha_hex(bytes);
    format!("sha256/{}/{hex}", &hex[..2])
}

async fn s3_upload_download_verify_and_refuse_mismatch(b: Backend) {
    let Some(endpoint) = s3_test_endpoint() else {
        return;
    };
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let http = reqwest::Client::new();
    let bucket = format!("fm-test-{}", &Uuid::new_v4().simple().to_string()[..20]);
    let made = http
        .put(format!("{endpoint}/{bucket}"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("S3 server at {endpoint} is unreachable: {e}"));
    assert!(
        made.status().is_success(),
        "create bucket {bucket}: {}",
        made.status()
    );

    let mut cfg = test_config(&db);
    cfg.evidence_store = EvidenceStoreKind::S3;
    cfg.evidence_s3_bucket = Some(bucket.clone());
    cfg.evidence_s3_endpoint = Some(endpoint.clone());
    cfg.evidence_s3_region = Some("us-east-1".into());
    cfg.evidence_s3_allow_http = true;
    let srv = TestServer::start_with(db, cfg).await;
    let org = srv.org("Acme").await;
    let inspector = srv.user(&org, "inspector").await;
    let session = new_session(&srv, &org, &org.admin, &[inspector.id]).await;

    // One file under the single-put limit, one above it (multipart: 8 MiB parts).
    let small = jpeg(300 * 1024, 1);
    let large = jpeg(9 * 1024 * 1024 + 123, 2);
    for file in [&small, &large] {
        let up = Upload::photo(session, file.clone())
            .send(&srv.client, &inspector.token)
            .await;
        assert_eq!(up.status, 201, "upload: {}", up.body);
        assert_eq!(up.str("sha256"), sha_hex(file));
        let id = up.uuid("evidence_id");

        let res = srv
            .client
            .request(
                Method::GET,
                &format!("/v1/evidence/{id}/content"),
                Some(&inspector.token),
            )
            .send()
            .await
            .expect("download");
        assert_eq!(res.status(), 200);
        let got = res.bytes().await.expect("body");
        assert!(
            got.as_ref() == file.as_slice(),
            "downloaded bytes differ ({} vs {} bytes)",
            got.len(),
            file.len()
        );

        let v = srv
            .client
            .get(&format!("/v1/evidence/{id}/verify"), Some(&inspector.token))
            .await;
        assert_eq!(v.status, 200, "{}", v.body);
        assert_eq!(v.json["verified"], true, "{}", v.body);
        assert_eq!(v.str("sha256"), sha_hex(file));
    }
    // Nothing went to the local evidence folder.
    assert!(
        files_under(&srv.db.dir.path().join("evidence")).is_empty(),
        "local evidence files with evidence_store = s3"
    );
    // Both are in the bucket under their hash, with their size (the bytes came back above).
    let mut expected = vec![
        (key_of(&small), small.len() as u64),
        (key_of(&large), large.len() as u64),
    ];
    expected.sort();
    assert_eq!(bucket_objects(&http, &endpoint, &bucket).await, expected);

    // A declared digest that does not match the bytes: refused, and nothing is stored.
    let other = jpeg(200 * 1024, 3);
    let mut bad = Upload::photo(session, other.clone());
    bad.sha256 = Some(sha_hex(&small));
    let r = bad.send(&srv.client, &inspector.token).await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.json["code"], "hash_mismatch", "{}", r.body);
    assert_eq!(
        bucket_objects(&http, &endpoint, &bucket).await,
        expected,
        "a refused upload left an object"
    );
    let list = srv
        .client
        .get(
            &format!("/v1/tests/sessions/{session}/evidence"),
            Some(&inspector.token),
        )
        .await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert_eq!(
        list.json["items"].as_array().map(Vec::len),
        Some(2),
        "a refused upload left a record: {}",
        list.body
    );
    assert!(
        files_under(&srv.db.dir.path().join("evidence-tmp")).is_empty(),
        "temporary upload files left behind"
    );
    srv.stop().await;
}
