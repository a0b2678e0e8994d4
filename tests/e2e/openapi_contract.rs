//! Issue 13, the API contract: `/openapi.json` as clients generate from it. Unique operation
//! ids named after resources, errors as problem+json with the real shape, binary bodies typed
//! as binary, every response described, the sync endpoint present; and, where the validator is
//! installed (`.ci/run` installs it; required in CI), `openapi-spec-validator` accepts it.

use std::collections::BTreeMap;

use firemode_tests::{Backend, TestServer};
use serde_json::Value;

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// Every operation as (method, path, operation).
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for m in METHODS {
            if let Some(op) = item.get(m) {
                out.push((m.to_owned(), path.clone(), op.clone()));
            }
        }
    }
    out
}

/// Operation ids used more than once, with where.
pub fn duplicate_operation_ids(doc: &Value) -> BTreeMap<String, Vec<String>> {
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (m, path, op) in operations(doc) {
        let id = op["operationId"].as_str().unwrap_or("").to_owned();
        seen.entry(id).or_default().push(format!("{m} {path}"));
    }
    seen.retain(|id, at| id.is_empty() || at.len() > 1);
    seen
}

#[test]
fn duplicate_operation_ids_are_found() {
    // The check itself: a document with a repeated id (as utoipa's handler names gave) fails.
    let doc = serde_json::json!({ "paths": {
        "/v1/a": { "get": { "operationId": "list" } },
        "/v1/b": { "get": { "operationId": "list" }, "post": { "operationId": "createB" } },
        "/v1/c": { "get": {} }
    }});
    let dups = duplicate_operation_ids(&doc);
    assert_eq!(dups["list"], ["get /v1/a", "get /v1/b"]);
    assert_eq!(dups[""], ["get /v1/c"], "a missing id counts");
    assert!(!dups.contains_key("createB"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_is_a_contract() {
    let srv = TestServer::start(Backend::Sqlite).await.expect("sqlite");
    let r = srv.client.get("/openapi.json", None).await;
    assert_eq!(r.status, 200);
    let doc = r.json;
    assert_eq!(
        doc,
        serde_json::to_value(firemode_server::http::openapi()).unwrap(),
        "the served document is the library's"
    );

    let dups = duplicate_operation_ids(&doc);
    assert!(
        dups.is_empty(),
        "operationIds must be unique and present: {dups:?}"
    );
    let ids: BTreeMap<String, String> = operations(&doc)
        .into_iter()
        .map(|(m, p, op)| {
            (
                format!("{m} {p}"),
                op["operationId"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(ids["get /v1/buildings"], "listBuildings");
    assert_eq!(
        ids["post /v1/buildings/{id}/assets/import"],
        "importBuildingAssets"
    );
    assert_eq!(ids["get /v1/sync"], "getSync");

    // Errors: problem+json with the Problem schema, nothing else; a 401 wherever a token is
    // needed; every response described.
    for (m, path, op) in operations(&doc) {
        let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
        let responses = op["responses"].as_object().expect("responses");
        if secured {
            assert!(responses.contains_key("401"), "{m} {path}: no 401");
        }
        for (status, resp) in responses {
            let desc = resp["description"].as_str().unwrap_or("");
            assert!(
                !desc.trim().is_empty(),
                "{m} {path} {status}: empty description"
            );
            if status.as_str() >= "400" && path != "/v1/sync" {
                let content = resp["content"].as_object().expect("error content");
                assert_eq!(
                    content.keys().collect::<Vec<_>>(),
                    ["application/problem+json"],
                    "{m} {path} {status}"
                );
                assert_eq!(
                    content["application/problem+json"]["schema"]["$ref"],
                    "#/components/schemas/Problem",
                    "{m} {path} {status}"
                );
            }
        }
    }
    let problem = &doc["components"]["schemas"]["Problem"];
    for member in [
        "type",
        "title",
        "status",
        "detail",
        "code",
        "request_id",
        "retryable",
        "errors",
    ] {
        assert!(
            problem["properties"].get(member).is_some(),
            "Problem lacks {member}: {problem}"
        );
    }

    // Binary bodies.
    let pdf = &doc["paths"]["/v1/buildings/{id}/compliance"]["get"]["responses"]["200"]["content"]
        ["application/pdf"]["schema"];
    assert_eq!(pdf["type"], "string", "{pdf}");
    assert_eq!(pdf["format"], "binary", "{pdf}");
    let csv = &doc["paths"]["/v1/buildings/{id}/compliance"]["get"]["responses"]["200"]["content"]
        ["text/csv"]["schema"];
    assert_eq!(csv["format"], "binary", "{csv}");
    let content = &doc["paths"]["/v1/evidence/{id}/content"]["get"]["responses"]["200"]["content"]
        ["application/octet-stream"]["schema"];
    assert_eq!(content["format"], "binary", "{content}");

    // The validator, where installed.
    let validator = std::env::var("FIREMODE_OPENAPI_VALIDATOR")
        .ok()
        .filter(|v| !v.is_empty())
        .or_else(|| which("openapi-spec-validator"));
    match validator {
        Some(bin) => {
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("openapi.json");
            std::fs::write(&file, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
            let out = std::process::Command::new(&bin)
                .arg(&file)
                .output()
                .unwrap_or_else(|e| panic!("cannot run {bin}: {e}"));
            assert!(
                out.status.success(),
                "openapi-spec-validator refuses /openapi.json:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        None if std::env::var_os("CI").is_some() => {
            panic!("CI is set but openapi-spec-validator is not installed (.ci/run installs it)")
        }
        None => eprintln!("skipping OpenAPI validation: openapi-spec-validator is not installed"),
    }
}

fn which(bin: &str) -> Option<String> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(bin))
        .find(|p| p.is_file())
        .map(|p| p.to_string_lossy().into_owned())
}
