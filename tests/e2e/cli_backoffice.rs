//! `firemode-cli` for the back office, against a running server on both databases: login with
//! an address without a scheme, buildings by name, an asset import (dry run first, refused
//! rows listed, then accepted), defects listed with building names and advanced one step, and
//! the compliance report downloaded.

use std::process::Stdio;
use std::time::Duration;

use firemode_tests::{backend_tests, Backend, Client, TestServer};
use serde_json::{json, Value};
use uuid::Uuid;

const BIN: &str = env!("CARGO_BIN_EXE_firemode-e2e-cli");

backend_tests!(back_office_from_the_command_line);

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ok(&self) -> &str {
        assert_eq!(
            self.code,
            Some(0),
            "stdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
        &self.stdout
    }
}

async fn tool(home: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.arg("--config-dir")
        .arg(home.join("firemode"))
        .args(args)
        .current_dir(home)
        .stdin(Stdio::null())
        .env("HOME", home)
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("FIREMODE_URL")
        .env_remove("FIREMODE_EMAIL")
        .env_remove("FIREMODE_PASSWORD")
        .env_remove("FIREMODE_CONFIG_DIR");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("the tool finished")
        .expect("run firemode-e2e-cli");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

async fn back_office_from_the_command_line(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Back Office").await;
    let t = Some(org.admin.token.as_str());
    let r = srv
        .client
        .post(
            "/v1/buildings",
            t,
            &json!({"name": "Collins Tower", "address": "1 Collins St", "building_type": "office"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let tower = r.uuid("id");
    let home = tempfile::tempdir().unwrap();
    let h = home.path();

    // Login with an address as people type it.
    let addr = srv.base.trim_start_matches("http://").to_owned();
    let run = tool(
        h,
        &["login", "--url", &addr, "--email", &org.admin.email],
        &[("FIREMODE_PASSWORD", &org.admin.password)],
    )
    .await;
    assert!(
        run.ok().contains(&format!("logged in to http://{addr}")),
        "{}",
        run.stdout
    );

    let out = tool(h, &["buildings"], &[]).await;
    assert!(out.ok().contains("Collins Tower") && out.stdout.contains(&tower.to_string()));

    // Import: a dry run catches what it can without sending; the server's refusal lists rows;
    // a good file is imported into the building named by name.
    let bad = h.join("bad.csv");
    std::fs::write(
        &bad,
        "asset_type,location,colour\nportable_extinguisher,,red\n",
    )
    .unwrap();
    let run = tool(
        h,
        &[
            "assets",
            "import",
            "collins tower",
            bad.to_str().unwrap(),
            "--dry-run",
        ],
        &[],
    )
    .await;
    assert_eq!(run.code, Some(1), "{}", run.stdout);
    assert!(
        run.stdout.contains("unknown column 'colour'")
            && run.stdout.contains("row 2: location is empty"),
        "{}",
        run.stdout
    );
    let wrong = h.join("wrong.csv");
    std::fs::write(
        &wrong,
        "asset_type,location,identifier\nextinguisher,Level 1,EXT-1\nportable_extinguisher,Level 2,EXT-2\n",
    )
    .unwrap();
    let run = tool(
        h,
        &[
            "assets",
            "import",
            "Collins Tower",
            wrong.to_str().unwrap(),
            "--dry-run",
        ],
        &[],
    )
    .await;
    assert!(run.ok().contains("2 rows"), "{}", run.stdout);
    let run = tool(
        h,
        &["assets", "import", "Collins Tower", wrong.to_str().unwrap()],
        &[],
    )
    .await;
    assert_eq!(run.code, Some(1));
    assert!(
        run.stdout.contains("ROW") && run.stdout.contains("asset_type"),
        "{}",
        run.stdout
    );
    assert!(run.stderr.contains("invalid_csv"), "{}", run.stderr);
    let assets = srv
        .client
        .get(&format!("/v1/buildings/{tower}/assets"), t)
        .await;
    assert_eq!(assets.json["items"], json!([]), "nothing imported");
    let good = h.join("good.csv");
    std::fs::write(
        &good,
        "asset_type,location,identifier\nportable_extinguisher,Level 1,EXT-1\nportable_extinguisher,Level 2,EXT-2\n",
    )
    .unwrap();
    let run = tool(
        h,
        &["assets", "import", "Collins Tower", good.to_str().unwrap()],
        &[],
    )
    .await;
    assert!(
        run.ok().contains("imported 2 assets into 'Collins Tower'"),
        "{}",
        run.stdout
    );

    // A defect from a failed result, listed with the building's name, advanced one step.
    let assets = srv
        .client
        .get(&format!("/v1/buildings/{tower}/assets"), t)
        .await;
    let asset = assets.json["items"][0]["id"].as_str().unwrap().to_owned();
    let s = srv
        .client
        .post(
            "/v1/tests/sessions",
            t,
            &json!({"building_id": tower, "name": "March", "frequency": "six_monthly", "assigned_to": []}),
        )
        .await;
    assert_eq!(s.status, 201, "{}", s.body);
    let sid = s.str("id").to_owned();
    let r = Client::send(
        srv.client
            .request(
                reqwest::Method::POST,
                &format!("/v1/tests/sessions/{sid}/results"),
                t,
            )
            .header("idempotency-key", Uuid::new_v4().to_string())
            .json(&json!({"results": [{"asset_id": asset, "outcome": "fail"}]})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let defect = loop {
        let d = srv
            .client
            .get(&format!("/v1/defects?session_id={sid}"), t)
            .await;
        if let Some(id) = d.json["items"][0]["id"].as_str() {
            break id.to_owned();
        }
        assert!(tokio::time::Instant::now() < deadline, "no defect opened");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Sessions show the building's name, not its id.
    let run = tool(h, &["sessions"], &[]).await;
    assert!(
        run.ok().contains("Collins Tower") && !run.stdout.contains(&tower.to_string()),
        "{}",
        run.stdout
    );
    let run = tool(
        h,
        &["defects", "--building", "Collins Tower", "--status", "open"],
        &[],
    )
    .await;
    let listed = run.ok();
    assert!(
        listed.contains("Collins Tower") && listed.contains(&defect),
        "{listed}"
    );
    assert!(
        !listed.contains(&tower.to_string()),
        "names, not building ids: {listed}"
    );
    let run = tool(
        h,
        &["defect", "advance", &defect, "--note", "told the manager"],
        &[],
    )
    .await;
    assert!(run.ok().contains("is now acknowledged"), "{}", run.stdout);
    let d = srv.client.get(&format!("/v1/defects/{defect}"), t).await;
    assert_eq!(d.json["status"], "acknowledged", "{}", d.body);

    // Evidence: uploaded with its hash, then verified.
    let photo = h.join("gauge.jpg");
    std::fs::write(&photo, crate::evidence::jpeg(50_000, 9)).unwrap();
    let run = tool(
        h,
        &[
            "--json",
            "evidence",
            "upload",
            &sid,
            photo.to_str().unwrap(),
            "--asset",
            &asset,
            "--caption",
            "gauge",
        ],
        &[],
    )
    .await;
    let up: Value = serde_json::from_str(run.ok()).unwrap();
    assert_eq!(up["status"], "verified", "{up}");
    let eid = up["evidence_id"].as_str().unwrap().to_owned();
    let run = tool(h, &["evidence", "verify", &eid], &[]).await;
    assert!(run.ok().contains("match"), "{}", run.stdout);
    let stored = srv.client.get(&format!("/v1/evidence/{eid}"), t).await;
    assert_eq!(stored.json["asset_id"], asset.as_str(), "{}", stored.body);

    // Reports: the PDF by default, CSV and JSON on request.
    let run = tool(h, &["report", "Collins Tower"], &[]).await;
    run.ok();
    let pdf = std::fs::read(h.join("compliance-collins-tower.pdf")).unwrap();
    assert!(pdf.starts_with(b"%PDF"), "a PDF");
    let run = tool(
        h,
        &[
            "--json",
            "report",
            "Collins Tower",
            "--format",
            "csv",
            "-o",
            "r.csv",
        ],
        &[],
    )
    .await;
    let v: Value = serde_json::from_str(run.ok()).unwrap();
    assert_eq!(v["format"], "csv");
    assert!(std::fs::read_to_string(h.join("r.csv"))
        .unwrap()
        .contains("EXT-1"));

    // A building that does not exist is one clear error.
    let run = tool(h, &["report", "Nowhere"], &[]).await;
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.contains("no building named 'Nowhere'"),
        "{}",
        run.stderr
    );
}
