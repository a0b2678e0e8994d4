//! The back-office web console (`/console`): served by the binary with its own CSP, and driven
//! in a real Chromium by `clients/js/test/console/console.test.mjs` (playwright-core) while
//! real, unmodified automerge-repo tablets edit the same sessions.

use std::path::PathBuf;
use std::time::Duration;

use firemode_server::http::console::{ASSETS, CSP};
use firemode_tests::clients::{js_clients_available, run_node_test, user_json};
use firemode_tests::{assert_problem, backend_tests, Backend, TestServer};
use serde_json::json;

backend_tests!(console_is_served_offline_ready, console_in_chromium);

/// `/` → 303 `/console/`; the page and every asset with its content type, the console CSP,
/// `no-cache` and an ETag that answers 304; unknown files 404; nothing refers to another
/// origin.
async fn console_is_served_offline_ready(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let raw = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let root = raw.get(format!("{}/", srv.base)).send().await.unwrap();
    assert_eq!(root.status(), 303);
    assert_eq!(root.headers()["location"], "/console/");
    let bare = raw
        .get(format!("{}/console", srv.base))
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), 308);
    assert_eq!(bare.headers()["location"], "/console/");

    let page = raw
        .get(format!("{}/console/", srv.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let h = page.headers().clone();
    assert_eq!(h["content-type"], "text/html; charset=utf-8");
    assert_eq!(h["content-security-policy"], CSP);
    assert!(CSP.contains("script-src 'self'") && !CSP.contains("unsafe"));
    assert_eq!(h["cache-control"], "no-cache");
    assert_eq!(h["x-content-type-options"], "nosniff");
    let etag = h["etag"].to_str().unwrap().to_owned();
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"<script type="module" src="/console/assets/app.js">"#));
    let again = raw
        .get(format!("{}/console/", srv.base))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);

    let mut seen = 0;
    for asset in ASSETS.iter().filter(|a| a.name != "index.html") {
        let r = raw
            .get(format!("{}/console/assets/{}", srv.base, asset.name))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", asset.name);
        let want = if asset.name.ends_with(".js") {
            "text/javascript; charset=utf-8"
        } else {
            "text/css; charset=utf-8"
        };
        assert_eq!(r.headers()["content-type"], want, "{}", asset.name);
        assert_eq!(r.headers()["content-security-policy"], CSP);
        assert_eq!(r.headers()["cache-control"], "no-cache");
        assert!(r.headers().contains_key("etag"));
        assert_eq!(r.text().await.unwrap(), asset.body);
        seen += 1;
    }
    assert!(seen >= 10, "{seen} assets");
    // Every module the page or another module imports is embedded.
    for asset in ASSETS {
        for import in imports(asset.body) {
            assert!(
                ASSETS.iter().any(|a| a.name == import),
                "{} imports {import}, which is not embedded",
                asset.name
            );
        }
    }

    for missing in ["nope.js", "index.html", "..%2Fapp.js", "app.js.map"] {
        let r = srv
            .client
            .get(&format!("/console/assets/{missing}"), None)
            .await;
        assert_problem(&r, 404, "not_found");
    }

    // Offline-ready: no URL of another origin, no inline script or style, no eval, and no
    // innerHTML (API strings are untrusted: the screens build nodes with textContent).
    for asset in ASSETS {
        for bad in [
            "http://",
            "https://",
            "//cdn",
            "eval(",
            "new Function",
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            " style=\"",
        ] {
            assert!(!asset.body.contains(bad), "{} contains {bad:?}", asset.name);
        }
    }
    let index = ASSETS.iter().find(|a| a.name == "index.html").unwrap();
    assert!(!index.body.contains("<style"), "no inline style");
    assert_eq!(
        index.body.matches("<script").count(),
        index.body.matches("<script type=\"module\" src=").count(),
        "no inline script"
    );
}

/// `./x.js` imports of a module, by file name.
fn imports(body: &str) -> Vec<String> {
    let mut out = Vec::new();
    for part in body.split("\"./").skip(1) {
        if let Some(end) = part.find('"') {
            let name = &part[..end];
            if name.ends_with(".js") {
                out.push(name.to_owned());
            }
        }
    }
    out
}

/// Debian's Chromium, or `FIREMODE_CHROMIUM`. Outside CI a missing browser skips the test.
fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("FIREMODE_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if path.exists() {
        return Some(path);
    }
    if std::env::var_os("CI").is_some() {
        panic!("CI is set but Chromium is not at {}", path.display());
    }
    eprintln!(
        "skipping the console browser test: no Chromium at {}",
        path.display()
    );
    None
}

/// The console in Chromium: scenarios 1–7 of the JS side (sign-in and CSV import, a tablet
/// conflict resolved in the console, the defects board, the auditor, no other origin, live
/// updates, screenshots). This side seeds the organisation and checks what the server holds.
async fn console_in_chromium(b: Backend) {
    if !js_clients_available() {
        return;
    }
    let Some(chromium) = chromium() else {
        return;
    };
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Harbour Fire Services").await;
    let office = srv.user(&org, "office").await;
    let inspector1 = srv.user(&org, "inspector").await;
    let inspector2 = srv.user(&org, "inspector").await;
    let auditor = srv.user(&org, "auditor").await;
    let r = srv
        .client
        .post(
            "/v1/buildings",
            Some(&office.token),
            &json!({ "name": "Harbour Tower", "address": "1 Quay St, Sydney NSW",
                     "building_type": "Class 5 office" }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let building = r.uuid("id");

    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let screenshots = target
        .join("console-screenshots")
        .join(format!("{b:?}").to_lowercase());
    let fixture = json!({
        "base_url": srv.base,
        "org_id": org.id,
        "building_id": building,
        "chromium": chromium,
        "screenshots": screenshots,
        "users": {
            "admin": user_json(&org.admin),
            "office": user_json(&office),
            "inspector1": user_json(&inspector1),
            "inspector2": user_json(&inspector2),
            "auditor": user_json(&auditor),
        },
    });
    let run = run_node_test(
        "console/console.test.mjs",
        &fixture,
        Duration::from_secs(240),
    )
    .await;
    eprintln!("{}", run.output);
    assert!(run.success, "console browser tests failed:\n{}", run.output);
    let out = &run.result["console"];
    assert_eq!(out["foreign"], json!([]), "{out}");
    assert_eq!(out["violations"], json!([]), "{out}");
    assert_eq!(out["console_errors"], json!([]), "{out}");
    assert_eq!(out["auditor_forced_write"], 403);

    // What the console did is what the server holds.
    let session = out["session_id"].as_str().expect("session id");
    let assets = srv
        .client
        .get(
            &format!("/v1/buildings/{building}/assets"),
            Some(&office.token),
        )
        .await;
    let mut ids: Vec<&str> = assets.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["identifier"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, ["EL-101", "EXT-101", "HR-101"]);
    let s = srv
        .client
        .get(
            &format!("/v1/tests/sessions/{session}"),
            Some(&office.token),
        )
        .await;
    assert_eq!(s.status, 200, "{}", s.body);
    assert_eq!(s.json["name"], "Console round");
    let mut assigned: Vec<String> = s.json["assigned_to"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assigned.sort();
    let mut want = vec![inspector1.id.to_string(), inspector2.id.to_string()];
    want.sort();
    assert_eq!(assigned, want);

    // The conflict is gone on the server, and both tablets hold the value chosen.
    let c = srv
        .client
        .get(
            &format!("/v1/tests/sessions/{session}/conflicts"),
            Some(&office.token),
        )
        .await;
    assert_eq!(c.json["conflicts"], json!([]), "{}", c.body);
    let resolved = out["resolved_outcome"].as_str().expect("resolved outcome");
    assert!(["pass", "not_accessible"].contains(&resolved), "{resolved}");
    assert_eq!(out["tablet_outcomes"], json!([resolved, resolved]));
    let doc = srv
        .client
        .get(
            &format!("/v1/tests/sessions/{session}/document"),
            Some(&office.token),
        )
        .await;
    let items = doc.json["document"]["items"].as_object().unwrap();
    assert!(
        items.values().any(|i| i["outcome"] == resolved),
        "{}",
        doc.body
    );

    let defect = out["defect"]["id"].as_str().unwrap();
    let d = srv
        .client
        .get(&format!("/v1/defects/{defect}"), Some(&office.token))
        .await;
    assert_eq!(d.json["status"], "repair_scheduled");
    assert_eq!(d.json["severity"], "non_critical");
    assert_eq!(
        d.json["severity_reason"],
        "Another extinguisher covers the space"
    );
    assert_eq!(out["live"], true);
    // Through the server's event stream (GET /v1/events), not the polling fallback.
    assert_eq!(out["live_mode"], "on", "{out}");

    for name in ["buildings", "conflicts", "defects", "session", "users"] {
        for width in [768, 1280] {
            let f = screenshots.join(format!("{name}-{width}.png"));
            assert!(f.exists(), "no screenshot {}", f.display());
        }
    }
}
