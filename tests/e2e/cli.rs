//! The real binary: the README flow (serve, create-org, login), admin commands beside a running
//! server, secrets kept out of logs, configuration errors, graceful shutdown.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use firemode_tests::process::Proc;
use firemode_tests::{logs, postgres_admin_url, Client, TestDb};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_firemode-e2e-server");

fn spawn(args: &[&str], env: &[(&str, &str)]) -> Proc {
    Proc::spawn(BIN, args, env)
}

fn admin(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.arg("admin")
        .args(args)
        .env_remove("DATABASE_URL")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    )
}

/// The README, step by step, on a fresh data directory, plus the admin commands beside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_flow_on_zero_setup_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_s = data.to_str().unwrap();
    let srv = spawn(
        &["serve", "--listen", "127.0.0.1:0", "--data-dir", data_s],
        &[("FIREMODE_LOG_FORMAT", "json")],
    );
    let c = Client::new(&srv.base);
    assert_eq!(c.get("/health", None).await.status, 200);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.join("secrets.toml"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "generated secrets are owner-only");
    }
    assert!(
        srv.output().contains("generated new secrets"),
        "a warning says secrets were generated"
    );

    let pw = "readme-password-1";
    let env = [("FIREMODE_ADMIN_PASSWORD", pw)];
    // Run from another folder with no data: refused, nothing created, the folder named.
    let elsewhere = dir.path().join("elsewhere");
    let (ok, _, err) = admin(
        &[
            "--data-dir",
            elsewhere.to_str().unwrap(),
            "create-user",
            "--org",
            &uuid::Uuid::new_v4().to_string(),
            "--email",
            "lost@acme.test",
            "--role",
            "office",
        ],
        &env,
    );
    assert!(!ok, "no database, no user: {err}");
    assert!(
        err.contains("no FireMode database") && err.contains(elsewhere.to_str().unwrap()),
        "{err}"
    );
    assert!(
        !elsewhere.join("firemode.db").exists(),
        "no empty database was created"
    );

    let (ok, org, err) = admin(
        &[
            "--data-dir",
            data_s,
            "--json",
            "create-org",
            "--name",
            "Acme Fire",
            "--admin-email",
            "admin@acme.test",
        ],
        &env,
    );
    assert!(ok, "{err}");
    assert!(
        err.contains(&format!("data folder {data_s}")) && err.contains("firemode.db"),
        "admin commands say which data they use: {err}"
    );
    let created: serde_json::Value = serde_json::from_str(&org).expect("--json prints JSON");
    assert_eq!(created["org_name"], "Acme Fire");
    assert_eq!(created["admin_email"], "admin@acme.test");
    let org_id: uuid::Uuid = created["org_id"].as_str().unwrap().parse().unwrap();
    let org = org_id.to_string();
    let (ok, out, err) = admin(
        &[
            "--data-dir",
            data_s,
            "create-user",
            "--org",
            &org,
            "--email",
            "ivy@acme.test",
            "--role",
            "inspector",
            "--full-name",
            "Ivy Inspector",
        ],
        &[("FIREMODE_ADMIN_PASSWORD", "inspector-pass-1")],
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("created user ivy@acme.test (inspector) in \"Acme Fire\"")
            && out.contains("user id: "),
        "labelled output: {out}"
    );
    let (ok, _, err) = admin(
        &[
            "--data-dir",
            data_s,
            "create-user",
            "--org",
            &org,
            "--email",
            "x@acme.test",
            "--role",
            "boss",
        ],
        &env,
    );
    assert!(
        !ok && err.contains("boss"),
        "bad role is one clear line: {err}"
    );

    let login = c
        .post(
            "/v1/auth/login",
            None,
            &json!({ "email": "admin@acme.test", "password": pw }),
        )
        .await;
    assert_eq!(login.status, 200, "{}", login.body);
    let token = login.str("access_token").to_owned();
    let me = c.get("/v1/users/me", Some(&token)).await;
    assert_eq!(me.json["org_id"], org_id.to_string());
    let ivy = c
        .post(
            "/v1/auth/login",
            None,
            &json!({ "email": "ivy@acme.test", "password": "inspector-pass-1" }),
        )
        .await;
    let ivy_token = ivy.str("access_token").to_owned();

    // rotate-pii-key while the server runs: it picks up the new key and still reads names.
    let (ok, out, err) = admin(&["--data-dir", data_s, "rotate-pii-key"], &[]);
    assert!(ok, "{err}");
    assert!(out.contains("under key 2"), "{out}");
    let users = c.get("/v1/users", Some(&token)).await;
    assert!(users.body.contains("Ivy Inspector"), "{}", users.body);

    // revoke-tokens from the CLI reaches the running server within a second.
    let (ok, _, err) = admin(
        &[
            "--data-dir",
            data_s,
            "revoke-tokens",
            "--email",
            "ivy@acme.test",
        ],
        &[],
    );
    assert!(ok, "{err}");
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        if c.get("/v1/users/me", Some(&ivy_token)).await.status == 401 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "CLI revocation not seen by the server"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let (status, logs) = srv.terminate();
    assert!(status.success(), "SIGTERM exits 0: {status}");
    assert!(
        logs.contains("shutdown requested") && logs.contains("stopped"),
        "{logs}"
    );
    for secret in [
        pw,
        "inspector-pass-1",
        token.as_str(),
        ivy_token.as_str(),
        login.str("refresh_token"),
        "Ivy Inspector",
    ] {
        assert!(!logs.contains(secret), "secret leaked into logs");
    }
    let secrets = std::fs::read_to_string(data.join("secrets.toml")).unwrap();
    let jwt_line = secrets
        .lines()
        .find(|l| l.starts_with("jwt_secret"))
        .unwrap();
    let jwt = jwt_line.split('"').nth(1).unwrap();
    assert!(!logs.contains(jwt), "JWT key leaked into logs");
}

/// A database password and explicit secrets given to the binary never reach its logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_secrets_stay_out_of_logs() {
    let Some(db) = TestDb::new(firemode_tests::Backend::Postgres).await else {
        return;
    };
    // Trust authentication ignores the password, so a fake one still connects.
    let url = db
        .raw_url()
        .replacen("://", "://postgres:pg-password-xyzzy@", 1);
    let url = if db.raw_url().contains('@') {
        db.raw_url()
            .replacen("postgres@", "postgres:pg-password-xyzzy@", 1)
    } else {
        url
    };
    let jwt = firemode_server::crypto::random_b64(48);
    let pii = format!("1:{}", firemode_server::crypto::random_b64(32));
    let srv = spawn(
        &["serve", "--listen", "127.0.0.1:0"],
        &[
            ("DATABASE_URL", &url),
            ("FIREMODE_JWT_SECRET", &jwt),
            ("FIREMODE_PII_KEYS", &pii),
            ("FIREMODE_LOG_FORMAT", "json"),
        ],
    );
    let c = Client::new(&srv.base);
    assert_eq!(c.get("/ready", None).await.status, 200);
    let (status, logs) = srv.terminate();
    assert!(status.success());
    assert!(logs.contains("***"), "the URL is logged masked: {logs}");
    for secret in [
        "pg-password-xyzzy",
        jwt.as_str(),
        pii.split(':').nth(1).unwrap(),
    ] {
        assert!(!logs.contains(secret), "secret leaked: {logs}");
    }
    drop(db);
    let _ = postgres_admin_url;
}

/// On PostgreSQL too, admin commands refuse a database FireMode never set up (and leave it
/// empty), name it with the password masked, and work once `create-org` has set it up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_refuses_an_empty_postgres_database() {
    let Some(db) = TestDb::new(firemode_tests::Backend::Postgres).await else {
        return;
    };
    let url = db
        .raw_url()
        .replacen("postgres@", "postgres:pg-password-xyzzy@", 1);
    let env = [
        ("DATABASE_URL", url.as_str()),
        (
            "FIREMODE_JWT_SECRET",
            "an-explicit-jwt-secret-of-enough-length-1234",
        ),
        (
            "FIREMODE_PII_KEYS",
            "1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        ),
        ("FIREMODE_ADMIN_PASSWORD", "Harbour-lights-glow-at-9pm"),
    ];
    let (ok, _, err) = admin(&["unlock", "--email", "x@example.test"], &env);
    assert!(!ok, "{err}");
    assert!(err.contains("no FireMode database"), "{err}");
    assert!(
        !err.contains("pg-password-xyzzy") && err.contains("***"),
        "{err}"
    );
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&db.raw_url()).await.unwrap();
    let (tables,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(tables, 0, "nothing was created");
    let (ok, out, err) = admin(
        &[
            "--json",
            "create-org",
            "--name",
            "Pg Org",
            "--admin-email",
            "pg@org.test",
        ],
        &env,
    );
    assert!(ok, "{err}");
    assert!(out.contains("\"org_id\""), "{out}");
    let (ok, out, err) = admin(&["unlock", "--email", "pg@org.test"], &env);
    assert!(ok, "{err}");
    assert!(out.contains("unlocked pg@org.test"), "{out}");
}

/// Bad configuration stops start-up with one line that says what to fix.
#[test]
fn bad_configuration_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let run = |env: &[(&str, &str)], args: &[&str]| {
        let mut cmd = Command::new(BIN);
        cmd.arg("serve")
            .args(args)
            .env_remove("DATABASE_URL")
            .arg("--data-dir")
            .arg(dir.path());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = run(&[("DATABASE_URL", "mysql://root@localhost/fm")], &[]);
    assert!(e.contains("DATABASE_URL") && e.contains("mysql"), "{e}");
    let e = run(&[("FIREMODE_LISTEN", "not-an-address")], &[]);
    assert!(e.contains("listen"), "{e}");
    let e = run(
        &[(
            "DATABASE_URL",
            "postgres://postgres@127.0.0.1:5432/postgres",
        )],
        &[],
    );
    assert!(e.contains("FIREMODE_JWT_SECRET"), "{e}");
    assert_eq!(e.trim().lines().count(), 1, "{e}");
}

/// In-process servers log at trace level into one buffer; no secret of a login flow is in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_logs_hold_no_secrets() {
    let Some(srv) = firemode_tests::TestServer::start(firemode_tests::Backend::Sqlite).await else {
        return;
    };
    let org = srv.org("Logs").await;
    let r = srv
        .client
        .post(
            "/v1/users",
            Some(&org.admin.token),
            &json!({ "email": "pii@logs.test", "password": "very-secret-pw-991", "role": "office", "full_name": "Priscilla Loggins", "phone": "0499 123 456" }),
        )
        .await;
    assert_eq!(r.status, 201);
    let u = srv.login("pii@logs.test", "very-secret-pw-991").await;
    let refreshed = srv
        .client
        .post(
            "/v1/auth/refresh",
            None,
            &json!({ "refresh_token": u.refresh }),
        )
        .await;
    let _ = srv
        .client
        .post(
            "/v1/auth/login",
            None,
            &json!({ "email": "pii@logs.test", "password": "wrong-guess-pw-5" }),
        )
        .await;
    let logs = logs::captured();
    assert!(logs.contains("/v1/auth/login"), "the capture works");
    for secret in [
        "very-secret-pw-991",
        "wrong-guess-pw-5",
        "Priscilla",
        "0499 123 456",
        u.token.as_str(),
        u.refresh.as_str(),
        refreshed.str("refresh_token"),
        refreshed.str("access_token"),
        srv.jwt_secret().as_str(),
        org.admin.password.as_str(),
    ] {
        assert!(!logs.contains(secret), "a secret reached the logs");
    }
}
