//! `firemode-cli` as people use it, against a running server: login (credentials file 0600),
//! `sessions`, a real conflict from two sync clients seen with `conflicts`, settled with
//! `resolve`, `history` with devices, transparent token refresh, and errors as one line.
//!
//! The tool runs as a subprocess: `firemode-e2e-cli` is `firemode_client::cli::main()`, the
//! same commands the `firemode-cli` binary carries.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use firemode_sync_core::automerge::sync;
use firemode_sync_core::automerge::{Automerge, ReadDoc, ROOT};
use firemode_tests::fixtures::{building, conflict_authors, put_item_field, session};
use firemode_tests::sync_client::SyncClient;
use firemode_tests::{backend_tests, test_config, Backend, Org, TestDb, TestServer, User};
use serde_json::{json, Value};
use uuid::Uuid;

const BIN: &str = env!("CARGO_BIN_EXE_firemode-e2e-cli");

backend_tests!(
    login_and_list_sessions,
    conflicts_resolve_and_history,
    expired_access_token_is_refreshed,
    errors_are_one_clear_line,
);

/// One run of the tool.
struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Out {
    fn ok(&self) -> &Self {
        assert_eq!(
            self.code,
            Some(0),
            "expected success\nstdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
        self
    }

    fn json(&self) -> Value {
        self.ok();
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("--json printed no JSON ({e}): {}", self.stdout))
    }

    /// Exit status 1 and exactly one line on stderr, which is returned.
    fn one_line_error(&self) -> String {
        assert_eq!(
            self.code,
            Some(1),
            "expected failure\nstdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
        let err = self.stderr.trim_end();
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(err.starts_with("error: "), "{err}");
        assert!(self.stdout.is_empty(), "nothing on stdout: {}", self.stdout);
        err.to_owned()
    }
}

/// The tool with a config directory of its own (a person on one machine).
struct Tool {
    home: tempfile::TempDir,
}

impl Tool {
    fn new() -> Self {
        Self {
            home: tempfile::tempdir().unwrap(),
        }
    }

    fn config_dir(&self) -> PathBuf {
        self.home.path().join("firemode")
    }

    fn credentials(&self) -> PathBuf {
        self.config_dir().join("credentials.json")
    }

    async fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Out {
        let mut cmd = tokio::process::Command::new(BIN);
        cmd.arg("--config-dir")
            .arg(self.config_dir())
            .args(args)
            .stdin(Stdio::null())
            .env("HOME", self.home.path())
            .env_remove("XDG_CONFIG_HOME");
        for var in [
            "FIREMODE_URL",
            "FIREMODE_EMAIL",
            "FIREMODE_PASSWORD",
            "FIREMODE_CONFIG_DIR",
        ] {
            cmd.env_remove(var);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
            .await
            .expect("the tool finished within a minute")
            .expect("run firemode-e2e-cli");
        Out {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    async fn run(&self, args: &[&str]) -> Out {
        self.run_env(args, &[]).await
    }

    async fn login(&self, srv: &TestServer, user: &User) -> Out {
        self.run_env(
            &["login", "--url", &srv.base, "--email", &user.email],
            &[("FIREMODE_PASSWORD", &user.password)],
        )
        .await
    }

    fn saved(&self) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.credentials()).unwrap()).unwrap()
    }
}

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn ids(list: &Value) -> Vec<String> {
    let mut ids: Vec<String> = list["items"]
        .as_array()
        .unwrap_or_else(|| panic!("items in {list}"))
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

async fn login_and_list_sessions(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let ivy = srv.user(&org, "inspector").await;
    let tower = building(&srv, &org, 1).await;
    let annex = building(&srv, &org, 1).await;
    let s1 = session(&srv, &org.admin, &tower, &[ivy.id]).await;
    let s2 = session(&srv, &org.admin, &annex, &[]).await;
    let (id1, id2) = (s1["id"].as_str().unwrap(), s2["id"].as_str().unwrap());

    let admin = Tool::new();
    let out = admin.login(&srv, &org.admin).await;
    out.ok();
    assert!(out.stdout.contains("logged in to"), "{}", out.stdout);
    assert_eq!(
        mode(&admin.credentials()),
        0o600,
        "credentials are owner-only"
    );
    assert_eq!(mode(&admin.config_dir()), 0o700);
    let saved = admin.saved();
    assert_eq!(saved["url"], srv.base.as_str());
    assert_eq!(saved["email"], org.admin.email.as_str());
    assert!(saved["tokens"]["refresh_token"].is_string());
    let text = std::fs::read_to_string(admin.credentials()).unwrap();
    assert!(
        !text.contains(&org.admin.password),
        "the password is not stored"
    );

    // A table a person can read: header, one row per session, a count.
    let out = admin.run(&["sessions"]).await;
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(
        lines[0].starts_with("ID ") && lines[0].contains("NAME") && lines[0].contains("STATUS"),
        "{}",
        out.stdout
    );
    for id in [id1, id2] {
        let row = lines
            .iter()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("{id} in {}", out.stdout));
        assert!(
            row.contains("Six-monthly service")
                && row.contains("in_progress")
                && row.contains("six_monthly"),
            "{row}"
        );
    }
    assert_eq!(lines.last(), Some(&"2 sessions"), "{}", out.stdout);
    // Columns line up: every row has its NAME where the header has it.
    let name_col = lines[0].find("NAME").unwrap();
    assert!(
        lines[1..3]
            .iter()
            .all(|l| l[name_col..].starts_with("Six-monthly")),
        "{}",
        out.stdout
    );

    // --json: the API's fields, for scripts.
    let list = admin.run(&["sessions", "--json"]).await.json();
    assert_eq!(ids(&list), sorted(vec![id1.into(), id2.into()]));
    let first = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id1)
        .unwrap();
    assert_eq!(first["document_url"], s1["document_url"]);
    assert_eq!(first["building_id"], tower.id.to_string());
    assert_eq!(first["assigned_to"], json!([ivy.id]));

    // Filters.
    let only_annex = admin
        .run(&["sessions", "--json", "--building", &annex.id.to_string()])
        .await
        .json();
    assert_eq!(ids(&only_annex), vec![id2.to_owned()]);
    let none = admin.run(&["sessions", "--status", "completed"]).await;
    assert_eq!(none.ok().stdout, "no sessions\n");
    let r = srv
        .client
        .patch(
            &format!("/v1/tests/sessions/{id2}"),
            Some(&org.admin.token),
            &json!({ "status": "completed" }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let done = admin
        .run(&["sessions", "--json", "--status", "completed"])
        .await
        .json();
    assert_eq!(ids(&done), vec![id2.to_owned()]);
    let open = admin
        .run(&["sessions", "--json", "--status", "in_progress"])
        .await
        .json();
    assert_eq!(ids(&open), vec![id1.to_owned()]);
    assert_eq!(
        admin.run(&["sessions", "--mine"]).await.ok().stdout,
        "no sessions\n"
    );

    // An inspector on another machine sees the session assigned to them.
    let tablet = Tool::new();
    tablet.login(&srv, &ivy).await.ok();
    let mine = tablet.run(&["sessions", "--json", "--mine"]).await.json();
    assert_eq!(ids(&mine), vec![id1.to_owned()]);
    assert_eq!(
        ids(&tablet.run(&["sessions", "--json"]).await.json()),
        vec![id1.to_owned()]
    );
    let me = tablet.run(&["whoami", "--json"]).await.json();
    assert_eq!(me["id"], ivy.id.to_string());

    // Logging out revokes and forgets; afterwards the tool says what to do.
    let out = tablet.run(&["logout"]).await;
    out.ok();
    assert!(!tablet.credentials().exists());
    let err = tablet.run(&["sessions"]).await.one_line_error();
    assert!(
        err.contains("not logged in") && err.contains("firemode-cli login"),
        "{err}"
    );
}

/// Two inspectors' tablets set the same outcome while offline, then sync: a real conflict.
/// Returns the session as the API shows it and the asset whose outcome is in conflict.
async fn two_tablets_disagree(
    srv: &TestServer,
    org: &Org,
    ivy: &User,
    sam: &User,
) -> (Value, Uuid) {
    let bld = building(srv, org, 1).await;
    let s = session(srv, &org.admin, &bld, &[ivy.id, sam.id]).await;
    let doc_id = s["document_id"].as_str().unwrap().to_owned();
    let asset = bld.assets[0];
    let mut a = SyncClient::joined(&srv.base, &ivy.token, &format!("{}:ivy-tablet", ivy.id)).await;
    let mut c = SyncClient::joined(&srv.base, &sam.token, &format!("{}:sam-tablet", sam.id)).await;
    let (mut da, mut sa) = (Automerge::new(), sync::State::new());
    let (mut dc, mut sc) = (Automerge::new(), sync::State::new());
    a.sync(&doc_id, &mut da, &mut sa, true).await.unwrap();
    c.sync(&doc_id, &mut dc, &mut sc, true).await.unwrap();
    put_item_field(&mut da, asset, "outcome", "pass");
    put_item_field(&mut dc, asset, "outcome", "fail");
    a.sync(&doc_id, &mut da, &mut sa, false).await.unwrap();
    c.sync(&doc_id, &mut dc, &mut sc, false).await.unwrap();
    a.sync(&doc_id, &mut da, &mut sa, false).await.unwrap();
    assert_eq!(da.get_heads(), dc.get_heads(), "both tablets converged");
    let (_, items) = da.get(ROOT, "items").unwrap().unwrap();
    let (_, item) = da.get(&items, asset.to_string()).unwrap().unwrap();
    assert_eq!(
        da.get_all(&item, "outcome").unwrap().len(),
        2,
        "automerge kept both values"
    );
    (s, asset)
}

async fn conflicts_resolve_and_history(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let ivy = srv.user(&org, "inspector").await;
    let sam = srv.user(&org, "inspector").await;
    let (s, asset) = two_tablets_disagree(&srv, &org, &ivy, &sam).await;
    let sid = s["id"].as_str().unwrap();
    let (doc_id, doc_url) = (
        s["document_id"].as_str().unwrap(),
        s["document_url"].as_str().unwrap(),
    );
    let path = format!("/items/{asset}/outcome");

    let office = Tool::new();
    office.login(&srv, &org.admin).await.ok();

    // The grouped view: one block for the item (tag, location, type), a side per tablet with
    // its author and device, the value each side holds and which one shows now. The session
    // is named by its automerge URL here.
    let out = office.run(&["conflicts", doc_url]).await;
    out.ok();
    let text = &out.stdout;
    assert!(
        text.starts_with(&format!("session {sid}: 1 item in conflict\n")),
        "{text}"
    );
    assert!(
        text.contains("EXT-0000 · Level 0 · portable_extinguisher\n"),
        "{text}"
    );
    assert!(text.contains(&format!("  asset {asset}\n")), "{text}");
    assert!(text.contains("  differs: outcome\n"), "{text}");
    assert!(text.lines().all(|l| l.chars().count() <= 100), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    // (the side's header line, its value line) for a value.
    let side_of = |value: &str| -> (String, String) {
        let at = lines
            .iter()
            .position(|l| l.contains(&format!("\"{value}\"")))
            .unwrap_or_else(|| panic!("a row for {value} in {text}"));
        let header = lines[..at]
            .iter()
            .rev()
            .find(|l| l.starts_with("  side "))
            .unwrap_or_else(|| panic!("a side above {value} in {text}"));
        (header.to_string(), lines[at].to_string())
    };
    let (pass, fail) = (side_of("pass"), side_of("fail"));
    // The admin may see names; these users have none, so the server gives their emails.
    // (Long names are cut to keep lines within 100 columns.)
    let start = |email: &str| email.chars().take(30).collect::<String>();
    assert!(
        pass.0.contains(&start(&ivy.email)) && pass.0.contains("ivy-tablet"),
        "{pass:?}"
    );
    assert!(
        fail.0.contains(&start(&sam.email)) && fail.0.contains("sam-tablet"),
        "{fail:?}"
    );
    assert_eq!(
        [&pass.1, &fail.1]
            .iter()
            .filter(|r| r.ends_with("(shown now)"))
            .count(),
        1,
        "exactly one value shows: {text}"
    );
    assert!(
        text.contains(&format!(
            "firemode-cli resolve-item {sid} <ASSET> --side <N>"
        )),
        "{text}"
    );

    // --json, with the session named by its document id.
    let c = office.run(&["conflicts", "--json", doc_id]).await.json();
    assert_eq!(c["session_id"], sid);
    assert_eq!(c["items"][0]["identifier"], "EXT-0000");
    assert_eq!(c["items"][0]["sides"].as_array().unwrap().len(), 2);
    let list = c["conflicts"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{c}");
    assert_eq!(list[0]["path"], path.as_str());
    assert_eq!(list[0]["kind"], "concurrent_edits");
    let authors = conflict_authors(&list[0]["values"]);
    assert_eq!(
        authors,
        vec![
            ("fail".into(), sam.id.to_string(), "sam-tablet".into()),
            ("pass".into(), ivy.id.to_string(), "ivy-tablet".into())
        ]
    );
    // Keep the value that is NOT winning now, so the resolution visibly changes the document.
    let winner = list[0]["winner"].as_str().unwrap();
    let chosen = if winner == "pass" { "fail" } else { "pass" };

    // An unquoted word is taken as a string.
    let out = office.run(&["resolve", doc_id, &path, chosen]).await;
    out.ok();
    assert!(
        out.stdout.contains(&format!(
            "resolved {path} in session {sid}: kept \"{chosen}\""
        )),
        "{}",
        out.stdout
    );
    let after = office.run(&["conflicts", "--json", sid]).await.json();
    assert_eq!(after["conflicts"], json!([]), "the conflict is gone");
    assert_eq!(
        office.run(&["conflicts", sid]).await.ok().stdout,
        format!("no conflicts in session {sid}\n")
    );
    let d = srv
        .client
        .get(
            &format!("/v1/tests/sessions/{sid}/document"),
            Some(&org.admin.token),
        )
        .await;
    assert_eq!(d.status, 200, "{}", d.body);
    assert_eq!(
        d.json["document"]["items"][asset.to_string()]["outcome"],
        chosen,
        "the server holds the chosen value"
    );
    // Resolving again: nothing to resolve, said in one line.
    let err = office
        .run(&["resolve", sid, &path, chosen])
        .await
        .one_line_error();
    assert!(err.contains("422") && err.contains("no conflict"), "{err}");

    // History: creation by the server, each tablet's edit, the resolution; with devices.
    let out = office.run(&["history", sid]).await;
    out.ok();
    let text = &out.stdout;
    assert!(
        text.starts_with(&format!("session {sid}: 4 changes\n")),
        "{text}"
    );
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[1].contains("CHANGE") && lines[1].contains("AUTHOR") && lines[1].contains("DEVICE"),
        "{text}"
    );
    let line_with = |needle: &str| {
        lines
            .iter()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle} in {text}"))
            .to_string()
    };
    assert!(line_with("ivy-tablet").contains(&ivy.email), "{text}");
    assert!(line_with("sam-tablet").contains(&sam.email), "{text}");
    assert!(
        line_with(&format!("resolve {path}")).contains(&org.admin.email),
        "{text}"
    );
    let h = office.run(&["history", "--json", doc_url]).await.json();
    let changes = h["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 4, "{h}");
    let devices: Vec<&str> = changes
        .iter()
        .map(|c| c["author"]["device_id"].as_str().unwrap())
        .collect();
    assert_eq!(devices[0], "server");
    assert_eq!(
        sorted(devices[1..3].iter().map(|d| d.to_string()).collect()),
        ["ivy-tablet", "sam-tablet"]
    );
    assert_eq!(devices[3], "server");
    // Short hashes in the table are the start of the full ones.
    for c in changes {
        let hash = c["hash"].as_str().unwrap();
        assert!(text.contains(&hash[..8]), "{hash} in {text}");
    }
    // An inspector of the session sees authors by id, without names.
    let ivy_tool = Tool::new();
    ivy_tool.login(&srv, &ivy).await.ok();
    let out = ivy_tool.run(&["history", sid]).await;
    out.ok();
    assert!(
        out.stdout.contains(&sam.id.to_string()) && !out.stdout.contains(&sam.email),
        "{}",
        out.stdout
    );

    // resolve-item: a side needs a conflict; values are an edit, fine without one.
    let asset_arg = asset.to_string();
    let err = office
        .run(&["resolve-item", sid, &asset_arg, "--side", "0"])
        .await
        .one_line_error();
    assert!(err.contains("409") && err.contains("no conflict"), "{err}");
    let err = office
        .run(&["resolve-item", sid, &asset_arg])
        .await
        .one_line_error();
    assert!(err.contains("--side") && err.contains("--set"), "{err}");
    let out = office
        .run(&[
            "resolve-item",
            sid,
            &asset_arg,
            "--set",
            "outcome=not_accessible",
            "--set",
            "notes=ladder needed",
        ])
        .await;
    out.ok();
    assert!(
        out.stdout.contains(&format!(
            "resolved item {asset} in session {sid}: set notes, outcome"
        )),
        "{}",
        out.stdout
    );
    let d = srv
        .client
        .get(
            &format!("/v1/tests/sessions/{sid}/document"),
            Some(&org.admin.token),
        )
        .await;
    let item = &d.json["document"]["items"][asset.to_string()];
    assert_eq!(item["outcome"], "not_accessible");
    assert_eq!(item["notes"], "ladder needed");

    // A new disagreement, settled by taking a side, the asset named by its tag.
    let (s2, asset2) = two_tablets_disagree(&srv, &org, &ivy, &sam).await;
    let sid2 = s2["id"].as_str().unwrap();
    let c = office.run(&["conflicts", "--json", sid2]).await.json();
    let sides = c["items"][0]["sides"].as_array().unwrap().clone();
    let sam_side = sides
        .iter()
        .find(|s| s["author"]["user_id"] == sam.id.to_string().as_str())
        .unwrap();
    let n = sam_side["side"].to_string();
    let out = office
        .run(&["resolve-item", sid2, "EXT-0000", "--side", &n])
        .await;
    out.ok();
    assert!(
        out.stdout.contains(&format!(
            "resolved item {asset2} in session {sid2}: took side {n}"
        )),
        "{}",
        out.stdout
    );
    assert_eq!(
        office.run(&["conflicts", sid2]).await.ok().stdout,
        format!("no conflicts in session {sid2}\n")
    );
    let d = srv
        .client
        .get(
            &format!("/v1/tests/sessions/{sid2}/document"),
            Some(&org.admin.token),
        )
        .await;
    assert_eq!(
        d.json["document"]["items"][asset2.to_string()]["outcome"],
        "fail"
    );
}

async fn expired_access_token_is_refreshed(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let mut cfg = test_config(&db);
    // Two seconds: `exp` is whole seconds from a floored `iat`, so a token lives 1-2 s.
    cfg.access_token_ttl = Duration::from_secs(2);
    let srv = TestServer::start_with(db, cfg).await;
    let org = srv.org("Acme").await;
    let bld = building(&srv, &org, 1).await;
    // With a fresh token each try: on a slow machine one may expire on the way.
    let mut tries = 0;
    let s = loop {
        let admin = srv.login(&org.admin.email, &org.admin.password).await;
        let r = srv
            .client
            .post(
                "/v1/tests/sessions",
                Some(&admin.token),
                &json!({ "building_id": bld.id, "name": "Six-monthly service", "frequency": "six_monthly" }),
            )
            .await;
        tries += 1;
        if r.status == 201 || tries == 5 {
            assert_eq!(r.status, 201, "{}", r.body);
            break r.json;
        }
    };
    let sid = s["id"].as_str().unwrap();

    let tool = Tool::new();
    tool.login(&srv, &org.admin).await.ok();
    let before = tool.saved();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    // The access token is dead by now; the command refreshes it and goes on.
    let list = tool.run(&["sessions", "--json"]).await.json();
    assert_eq!(ids(&list), vec![sid.to_owned()]);
    let after = tool.saved();
    assert_ne!(
        after["tokens"]["access_token"],
        before["tokens"]["access_token"]
    );
    assert_ne!(
        after["tokens"]["refresh_token"], before["tokens"]["refresh_token"],
        "the rotated pair is saved"
    );
    assert_eq!(
        mode(&tool.credentials()),
        0o600,
        "still owner-only after the refresh"
    );
    // And again, from the saved (rotated) refresh token: reusing the old one would have
    // ended the login.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let out = tool.run(&["conflicts", sid]).await;
    assert_eq!(out.ok().stdout, format!("no conflicts in session {sid}\n"));
    assert_ne!(
        tool.saved()["tokens"]["refresh_token"],
        after["tokens"]["refresh_token"]
    );
    tool.run(&["history", sid]).await.ok();
}

async fn errors_are_one_clear_line(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let org = srv.org("Acme").await;
    let rival = srv.org("Rival").await;
    let auditor = srv.user(&org, "auditor").await;
    let bld = building(&srv, &org, 1).await;
    let s = session(&srv, &org.admin, &bld, &[]).await;
    let sid = s["id"].as_str().unwrap();
    let path = format!("/items/{}/outcome", bld.assets[0]);

    // Not logged in: says so and what to run.
    let nobody = Tool::new();
    for args in [
        vec!["sessions"],
        vec!["conflicts", sid],
        vec!["history", sid],
        vec!["resolve", sid, &path, "pass"],
    ] {
        let err = nobody.run(&args).await.one_line_error();
        assert!(
            err.contains("not logged in") && err.contains("firemode-cli login --url"),
            "{err}"
        );
    }
    // A wrong password.
    let out = nobody
        .run_env(
            &["login", "--url", &srv.base, "--email", &org.admin.email],
            &[("FIREMODE_PASSWORD", "wrong-password-1")],
        )
        .await;
    let err = out.one_line_error();
    assert!(err.contains("401"), "{err}");
    assert!(!nobody.credentials().exists());

    let tool = Tool::new();
    tool.login(&srv, &org.admin).await.ok();
    // An unknown session, and another organisation's session, read exactly alike.
    let unknown = Uuid::new_v4().to_string();
    for cmd in ["conflicts", "history"] {
        let err = tool.run(&[cmd, &unknown]).await.one_line_error();
        assert!(
            err.contains(&format!("no session {unknown}")) && err.contains("404"),
            "{err}"
        );
    }
    let theirs = Tool::new();
    theirs.login(&srv, &rival.admin).await.ok();
    let err = theirs.run(&["conflicts", sid]).await.one_line_error();
    assert!(
        err.contains(&format!("no session {sid}")) && err.contains("404"),
        "{err}"
    );
    let err = theirs
        .run(&["resolve", sid, &path, "pass"])
        .await
        .one_line_error();
    assert!(err.contains("404"), "{err}");
    // --json: the error as one JSON object on stderr, with the server's code.
    let out = tool.run(&["conflicts", "--json", &unknown]).await;
    assert_eq!(out.code, Some(1));
    let e: Value =
        serde_json::from_str(out.stderr.trim()).unwrap_or_else(|_| panic!("{}", out.stderr));
    assert_eq!(e["error"]["status"], 404);
    assert_eq!(e["error"]["code"], "not_found");
    // Something that is not a session name at all.
    let err = tool
        .run(&["history", "not-a-session"])
        .await
        .one_line_error();
    assert!(err.contains("'not-a-session' is not a session"), "{err}");
    // A path that is not a JSON pointer, and a value the server refuses.
    let err = tool
        .run(&["resolve", sid, "items/x/outcome", "pass"])
        .await
        .one_line_error();
    assert!(err.contains("JSON pointer"), "{err}");
    let err = tool
        .run(&["resolve", sid, &path, "melted"])
        .await
        .one_line_error();
    assert!(err.contains("422") && err.contains("outcome"), "{err}");
    // An auditor reads but does not resolve.
    let audit = Tool::new();
    audit.login(&srv, &auditor).await.ok();
    audit.run(&["conflicts", sid]).await.ok();
    let err = audit
        .run(&["resolve", sid, &path, "pass"])
        .await
        .one_line_error();
    assert!(err.contains("403"), "{err}");
    // Bad usage is exit status 2 (clap), not a server round trip.
    let out = tool.run(&["sessions", "--status", "done"]).await;
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    let out = tool.run(&["sessions", "--building", "not-a-uuid"]).await;
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    // The server gone: a transport error, still one line.
    let base = srv.base.clone();
    drop(srv.stop().await);
    let err = tool.run(&["sessions"]).await.one_line_error();
    assert!(err.contains(&base) || err.contains("request to"), "{err}");
}
