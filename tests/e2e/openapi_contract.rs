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

    closed_vocabularies_have_enums(&doc);
    examples_are_accepted(&srv, &doc).await;

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

/// Property names that always hold a code from a closed set.
const CLOSED: [&str; 9] = [
    "outcome",
    "status",
    "severity",
    "frequency",
    "classification",
    "asset_type",
    "equipment",
    "source",
    "kind",
];

/// Properties with one of those names whose values are not codes: a name for people, or a
/// type that may be `unknown` for an asset no longer registered.
const NOT_CODES: [&str; 3] = [
    "LogbookEntry.equipment",
    "LogbookEntry.asset_type",
    "LogbookDefect.asset_type",
];

/// Every string property with a closed vocabulary has its `enum` (from the server's own
/// constants and rule library), and the server's table names only properties that exist.
fn closed_vocabularies_have_enums(doc: &Value) {
    let mut again = doc.clone();
    let unmatched = firemode_server::http::vocabulary::add_enums(&mut again);
    assert!(
        unmatched.is_empty(),
        "the vocabulary table names properties the document lacks: {unmatched:?}"
    );
    assert_eq!(&again, doc, "the enums are already in the served document");
    let unmatched = firemode_server::http::vocabulary::allow_any(&mut again);
    assert!(
        unmatched.is_empty(),
        "the any-value table names properties the document lacks: {unmatched:?}"
    );
    let after = &doc["components"]["schemas"]["DiffChange"]["properties"]["after"];
    assert_eq!(
        after["type"],
        serde_json::json!(["string", "number", "boolean", "object", "array", "null"]),
        "a diff's value may be any JSON: {after}"
    );
    let mut missing = Vec::new();
    for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
        let Some(props) = schema["properties"].as_object() else {
            continue;
        };
        for (prop, def) in props {
            let stringy = def["type"] == "string"
                || def["type"]
                    .as_array()
                    .is_some_and(|t| t.iter().any(|t| t == "string"));
            let key = format!("{name}.{prop}");
            if CLOSED.contains(&prop.as_str())
                && stringy
                && def.get("enum").is_none()
                && !NOT_CODES.contains(&key.as_str())
            {
                missing.push(key);
            }
        }
    }
    assert!(
        missing.is_empty(),
        "closed vocabularies without enum: {missing:?}"
    );
    // Spot checks against the domain.
    let schemas = &doc["components"]["schemas"];
    let outcome = &schemas["ResultIn"]["properties"]["outcome"]["enum"];
    assert_eq!(
        outcome,
        &serde_json::json!(["pass", "fail", "not_tested", "not_accessible"])
    );
    let kinds = schemas["CreateAsset"]["properties"]["asset_type"]["enum"]
        .as_array()
        .unwrap();
    assert!(
        kinds.iter().any(|k| k == "portable_extinguisher") && kinds.len() > 30,
        "{kinds:?}"
    );
    let status = &schemas["UpdateSession"]["properties"]["status"]["enum"];
    assert_eq!(
        status,
        &serde_json::json!(["in_progress", "completed", null])
    );
}

/// Every JSON request body has an example, and the server's own deserialiser accepts each:
/// sent to a real server (path ids random, so the request ends in a 404 or a semantic
/// refusal), none is refused as malformed or of the wrong shape.
async fn examples_are_accepted(srv: &TestServer, doc: &Value) {
    let org = srv.org("Examples").await;
    let token = org.admin.token.clone();
    let mut tried = 0;
    for (m, path, op) in operations(doc) {
        let Some(body) = op.pointer("/requestBody/content/application~1json") else {
            continue;
        };
        let id = op["operationId"].as_str().unwrap();
        let example = body
            .get("example")
            .unwrap_or_else(|| panic!("{m} {path} ({id}): request body without an example"));
        let url: String = path
            .split('/')
            .map(|seg| match seg {
                "{state}" => "NSW".to_owned(),
                "{year}" => "2026".to_owned(),
                "{code}" => "AS1851-10-6M-EXT".to_owned(),
                "{version}" => "9.9.9".to_owned(),
                s if s.starts_with('{') => uuid::Uuid::new_v4().to_string(),
                s => s.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("/");
        let method = reqwest::Method::from_bytes(m.to_uppercase().as_bytes()).unwrap();
        let r = firemode_tests::Client::send(
            srv.client
                .request(method, &url, Some(&token))
                .header("idempotency-key", uuid::Uuid::new_v4().to_string())
                .json(example),
        )
        .await;
        let code = r.json["code"].as_str().unwrap_or("");
        assert!(
            !matches!(code, "invalid_body" | "malformed_json") && r.status != 415,
            "{m} {path} ({id}): its example is refused as a body: {} {}",
            r.status,
            r.body
        );
        tried += 1;
    }
    assert!(tried >= 24, "only {tried} request bodies");
}

/// The TypeScript types generated from the served document (`openapi-typescript`, from the
/// npm registry) typecheck against the JS client's use of the REST API (`tsc --checkJs` over
/// clients/js/src): a renamed field, a removed route or a changed type the client relies on
/// fails here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_typescript_client_typechecks() {
    if !firemode_tests::clients::js_clients_available() {
        return;
    }
    let srv = TestServer::start(Backend::Sqlite).await.expect("sqlite");
    let r = srv.client.get("/openapi.json", None).await;
    assert_eq!(r.status, 200);
    let js = firemode_tests::clients::js_dir();
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("openapi.json");
    std::fs::write(&spec, r.body.as_bytes()).unwrap();
    let run = |bin: &str, args: &[&std::ffi::OsStr]| {
        let out = std::process::Command::new(js.join("node_modules/.bin").join(bin))
            .args(args)
            .current_dir(&js)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {bin}: {e}"));
        assert!(
            out.status.success(),
            "{bin} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let generated = js.join("generated/api.d.ts");
    run(
        "openapi-typescript",
        &[spec.as_os_str(), "-o".as_ref(), generated.as_os_str()],
    );
    let types = std::fs::read_to_string(&generated).unwrap();
    assert!(
        types.contains("SessionView"),
        "generated types lack SessionView"
    );
    run("tsc", &["-p".as_ref(), "tsconfig.json".as_ref()]);
}

fn which(bin: &str) -> Option<String> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(bin))
        .find(|p| p.is_file())
        .map(|p| p.to_string_lossy().into_owned())
}
