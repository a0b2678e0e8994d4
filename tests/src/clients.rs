//! Helpers for tests with real sync clients: buildings, assets and sessions made through the
//! REST API, and the Node runner for the JS conformance tests in `clients/js/test`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use uuid::Uuid;

use crate::{TestServer, User};

/// Equipment kinds with a six-monthly rule in the shipped library (one item each per session).
pub const SIX_MONTHLY_KINDS: [&str; 4] = [
    "portable_extinguisher",
    "fire_hose_reel",
    "emergency_lighting",
    "fire_blanket",
];

/// A building with one asset per kind in `kinds`, made through the REST API by `office`.
/// Returns the building id and the asset ids in the order of `kinds`.
pub async fn building_with_assets(
    srv: &TestServer,
    office: &User,
    kinds: &[&str],
) -> (Uuid, Vec<Uuid>) {
    let r = srv
        .client
        .post(
            "/v1/buildings",
            Some(&office.token),
            &json!({ "name": "Harbour Tower", "address": "1 Quay St, Sydney NSW",
                     "building_type": "Class 5 office" }),
        )
        .await;
    assert_eq!(r.status, 201, "create building: {}", r.body);
    let building = r.uuid("id");
    let mut assets = Vec::new();
    for (n, kind) in kinds.iter().enumerate() {
        let r = srv
            .client
            .post(
                &format!("/v1/buildings/{building}/assets"),
                Some(&office.token),
                &json!({ "asset_type": kind, "location": format!("Level {n}"),
                         "identifier": format!("TAG-{n:03}") }),
            )
            .await;
        assert_eq!(r.status, 201, "create asset {kind}: {}", r.body);
        assets.push(r.uuid("id"));
    }
    (building, assets)
}

/// A six-monthly session of `building` assigned to `assigned`, made by `office`; the response.
pub async fn create_session(
    srv: &TestServer,
    office: &User,
    building: Uuid,
    name: &str,
    assigned: &[Uuid],
) -> Value {
    let r = srv
        .client
        .post(
            "/v1/tests/sessions",
            Some(&office.token),
            &json!({ "building_id": building, "name": name, "frequency": "six_monthly",
                     "assigned_to": assigned }),
        )
        .await;
    assert_eq!(r.status, 201, "create session: {}", r.body);
    r.json
}

/// The server's copy of a session document (`GET .../document`): `{heads, document, ...}`.
pub async fn server_document(srv_base: &str, token: &str, session: &str) -> Value {
    let client = crate::Client::new(srv_base);
    let r = client
        .get(
            &format!("/v1/tests/sessions/{session}/document"),
            Some(token),
        )
        .await;
    assert_eq!(r.status, 200, "GET document: {}", r.body);
    r.json
}

/// Document heads (a JSON array of strings) in a canonical order, for comparison.
pub fn sorted_heads(heads: &Value) -> Vec<String> {
    let mut v: Vec<String> = heads
        .as_array()
        .expect("heads array")
        .iter()
        .map(|h| h.as_str().expect("head").to_owned())
        .collect();
    v.sort();
    v
}

/// A user as the JS fixture describes it.
pub fn user_json(u: &User) -> Value {
    json!({ "id": u.id, "email": u.email, "password": u.password, "token": u.token,
            "refresh": u.refresh })
}

/// `clients/js` in this repository.
pub fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../clients/js")
}

/// `npm ci` in clients/js when its modules are missing, once per test process (so the README's
/// one test command also works on a fresh clone). Err says why the clients cannot run.
fn install_js_modules(dir: &std::path::Path) -> Result<(), String> {
    static INSTALLED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            // Every package the tests use (a checkout whose lock file gained one reinstalls).
            let needed = [
                "@automerge/automerge-repo",
                "typescript",
                "openapi-typescript",
            ];
            if needed
                .iter()
                .all(|p| dir.join("node_modules").join(p).exists())
            {
                return Ok(());
            }
            eprintln!(
                "installing the JS clients' modules: npm ci in {}",
                dir.display()
            );
            let out = std::process::Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(dir)
                .output()
                .map_err(|e| {
                    format!("clients/js/node_modules is missing and npm cannot run: {e}")
                })?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "clients/js/node_modules is missing and `npm ci` failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                ))
            }
        })
        .clone()
}

/// Whether the JS conformance tests can run: `node` and `clients/js/node_modules` (installed
/// here with `npm ci` when missing).
/// Outside CI a missing piece skips the test with a message; in CI it fails.
pub fn js_clients_available() -> bool {
    let dir = js_dir();
    let node = std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let missing = if !node {
        Some("node is not installed".to_owned())
    } else {
        install_js_modules(&dir).err()
    };
    match missing {
        None => true,
        Some(why) if std::env::var_os("CI").is_some() => {
            panic!("CI is set but the JS conformance tests cannot run: {why}")
        }
        Some(why) => {
            eprintln!("skipping JS conformance test: {why}");
            false
        }
    }
}

/// What a `node --test` run produced.
pub struct NodeRun {
    pub success: bool,
    /// stdout, then stderr.
    pub output: String,
    /// What the test wrote to `FIREMODE_OUTPUT` (JSON), or Null.
    pub result: Value,
}

/// A running `node --test clients/js/test/<file>`: the fixture is in `FIREMODE_FIXTURE` (a temp
/// file), results go to `FIREMODE_OUTPUT`, and `FIREMODE_CONTROL` names a directory where the
/// JS side and this side exchange signal files (e.g. "restart the server now").
pub struct NodeTest {
    child: tokio::process::Child,
    dir: tempfile::TempDir,
    file: String,
}

impl NodeTest {
    pub fn spawn(file: &str, fixture: &Value) -> Self {
        let dir = tempfile::tempdir().expect("tmp");
        let fixture_path = dir.path().join("fixture.json");
        std::fs::write(
            &fixture_path,
            serde_json::to_vec_pretty(fixture).expect("json"),
        )
        .expect("fixture");
        std::fs::create_dir(dir.path().join("control")).expect("control dir");
        // Files, not pipes: nobody has to drain them while the test runs.
        let stdout = std::fs::File::create(dir.path().join("stdout")).expect("stdout");
        let stderr = std::fs::File::create(dir.path().join("stderr")).expect("stderr");
        let child = tokio::process::Command::new("node")
            .arg("--test")
            .arg("--test-reporter=spec")
            .arg(format!("test/{file}"))
            .current_dir(js_dir())
            .env("FIREMODE_FIXTURE", &fixture_path)
            .env("FIREMODE_OUTPUT", dir.path().join("output.json"))
            .env("FIREMODE_CONTROL", dir.path().join("control"))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .expect("spawn node");
        Self {
            child,
            dir,
            file: file.to_owned(),
        }
    }

    /// A signal file in the control directory.
    pub fn control(&self, name: &str) -> PathBuf {
        self.dir.path().join("control").join(name)
    }

    /// True once the process has exited.
    pub fn finished(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Wait for the run to end (killing it after `timeout`) and collect what it produced.
    pub async fn wait(mut self, timeout: Duration) -> NodeRun {
        let status = match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => status.expect("node status"),
            Err(_) => {
                let _ = self.child.kill().await;
                let output = self.output();
                panic!(
                    "node --test {} did not finish within {timeout:?}:\n{output}",
                    self.file
                );
            }
        };
        let result = std::fs::read(self.dir.path().join("output.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null);
        NodeRun {
            success: status.success(),
            output: self.output(),
            result,
        }
    }

    fn output(&self) -> String {
        let read =
            |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        format!("{}{}", read("stdout"), read("stderr"))
    }
}

/// Run a JS test file to the end (see [`NodeTest`]).
pub async fn run_node_test(file: &str, fixture: &Value, timeout: Duration) -> NodeRun {
    NodeTest::spawn(file, fixture).wait(timeout).await
}
