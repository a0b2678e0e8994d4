//! Test harness: a real FireMode server on a fresh database per test (a SQLite file in a temp
//! dir, or a new PostgreSQL database), and an HTTP client that speaks to it.
//!
//! PostgreSQL tests run when `FIREMODE_TEST_DATABASE_URL` is set (a URL of a database the user
//! may `CREATE DATABASE` from). When `CI` is set and it is missing or unreachable, they fail.

pub mod clients;
pub mod fixtures;
pub mod http;
pub mod logs;
pub mod process;
pub mod smtp;
pub mod sync_client;

use std::sync::Arc;

use firemode_server::config::{Config, DatabaseUrl, Secret};
use firemode_server::crypto::random_b64;
use firemode_server::store::Store;
use firemode_server::AppState;
use serde_json::{json, Value};
use uuid::Uuid;

pub use http::{Client, Resp};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Generate a `sqlite` and a `postgres` test for each named `async fn(Backend)`.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::Backend::Sqlite).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::Backend::Postgres).await
                }
            }
        )*
    };
}

/// The PostgreSQL admin URL for tests, or None (skip) outside CI. Panics in CI when missing.
pub fn postgres_admin_url() -> Option<String> {
    match std::env::var("FIREMODE_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => {
            panic!("CI is set but FIREMODE_TEST_DATABASE_URL is not: PostgreSQL tests must not be skipped in CI")
        }
        _ => {
            eprintln!("skipping PostgreSQL test: FIREMODE_TEST_DATABASE_URL is not set");
            None
        }
    }
}

/// The S3-compatible server for the S3 evidence tests (`FIREMODE_TEST_S3_ENDPOINT`, e.g. moto's
/// server mode, which `.ci/run` starts), or None (skip) outside CI. Panics in CI when missing,
/// and whenever the AWS_* credentials the server signs with are missing (any values do for
/// moto).
pub fn s3_test_endpoint() -> Option<String> {
    match std::env::var("FIREMODE_TEST_S3_ENDPOINT") {
        Ok(url) if !url.is_empty() => {
            for var in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
                assert!(
                    std::env::var_os(var).is_some_and(|v| !v.is_empty()),
                    "FIREMODE_TEST_S3_ENDPOINT is set but {var} is not: the server signs its S3 \
                     requests with the AWS_* credentials (any values do for moto)"
                );
            }
            Some(url.trim_end_matches('/').to_owned())
        }
        _ if std::env::var_os("CI").is_some() => {
            panic!("CI is set but FIREMODE_TEST_S3_ENDPOINT is not: the S3 evidence tests must not be skipped in CI")
        }
        _ => {
            eprintln!("skipping S3 evidence test: FIREMODE_TEST_S3_ENDPOINT is not set (.ci/run starts moto and sets it)");
            None
        }
    }
}

/// A database of its own for one test; dropped (PostgreSQL) when the guard goes.
pub struct TestDb {
    pub url: DatabaseUrl,
    pub dir: tempfile::TempDir,
    pg: Option<(String, String)>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> Option<Self> {
        let dir = tempfile::tempdir().expect("temp dir");
        match backend {
            Backend::Sqlite => Some(Self {
                url: DatabaseUrl::Sqlite(dir.path().join("firemode.db")),
                dir,
                pg: None,
            }),
            Backend::Postgres => {
                let admin = postgres_admin_url()?;
                let name = format!("fm_test_{}", Uuid::new_v4().simple());
                let mut conn = pg_admin(&admin).await;
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut conn)
                    .await
                    .unwrap_or_else(|e| panic!("cannot create test database on {admin}: {e}"));
                let url = replace_db_name(&admin, &name);
                Some(Self {
                    url: DatabaseUrl::Postgres(Secret::new(url)),
                    dir,
                    pg: Some((admin, name)),
                })
            }
        }
    }

    /// The same database for a second server (another node); dropping it drops nothing.
    pub fn shared(&self) -> TestDb {
        TestDb {
            url: self.url.clone(),
            dir: tempfile::tempdir().expect("temp dir"),
            pg: None,
        }
    }

    /// A raw connection URL, for tests that read columns directly.
    pub fn raw_url(&self) -> String {
        match &self.url {
            DatabaseUrl::Sqlite(p) => format!("sqlite://{}", p.display()),
            DatabaseUrl::Postgres(s) => s.expose().clone(),
        }
    }

    pub fn backend(&self) -> Backend {
        if self.pg.is_some() {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }
}

async fn pg_admin(url: &str) -> sqlx::postgres::PgConnection {
    use sqlx::Connection;
    sqlx::postgres::PgConnection::connect(url)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at FIREMODE_TEST_DATABASE_URL is unreachable: {e}"))
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin, name)) = self.pg.take() {
            // Best effort, on a thread of its own: Drop cannot await.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                if let Ok(rt) = rt {
                    rt.block_on(async {
                        use sqlx::Connection;
                        if let Ok(mut c) = sqlx::postgres::PgConnection::connect(&admin).await {
                            let _ = sqlx::query(&format!(
                                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                            ))
                            .execute(&mut c)
                            .await;
                        }
                    });
                }
            })
            .join();
        }
    }
}

/// Swap the database name (path) of a PostgreSQL URL, keeping any query string.
pub fn replace_db_name(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    format!("{base}/{name}{query}")
}

/// Configuration for a test server on `db`. Secrets are explicit on PostgreSQL (as production
/// requires) and zero-setup (generated into the temp dir) on SQLite.
pub fn test_config(db: &TestDb) -> Config {
    let mut cfg = Config::for_data_dir(db.dir.path());
    cfg.database_url = db.url.clone();
    cfg.listen = "127.0.0.1:0".parse().expect("addr");
    if db.backend() == Backend::Postgres {
        cfg.jwt_secret = Some(Secret::new(random_b64(48)));
        cfg.pii_keys = Some(Secret::new(format!("1:{}", random_b64(32))));
    }
    cfg
}

/// A running server.
pub struct TestServer {
    pub base: String,
    pub state: AppState,
    pub db: TestDb,
    pub client: Client,
    handle: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    /// Start on a fresh database; None when the backend is not available (PostgreSQL outside CI).
    pub async fn start(backend: Backend) -> Option<Self> {
        let db = TestDb::new(backend).await?;
        let cfg = test_config(&db);
        Some(Self::start_with(db, cfg).await)
    }

    pub async fn start_with(db: TestDb, cfg: Config) -> Self {
        logs::init();
        let state = AppState::new(cfg).await.expect("server state");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        Self::serve_on(db, state, listener)
    }

    /// Start on `db` listening on `addr` (e.g. the address of a server just stopped, so that
    /// clients reconnect to the same URL). Like the binary, it binds once the state is ready, so
    /// clients see "connection refused" until then. Retries briefly while the port is taken.
    pub async fn start_on(db: TestDb, cfg: Config, addr: std::net::SocketAddr) -> Self {
        logs::init();
        let state = AppState::new(cfg).await.expect("server state");
        let mut tries = 0;
        let listener = loop {
            match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => break l,
                Err(e) if tries < 50 => {
                    tries += 1;
                    tracing::debug!(error = %e, %addr, "port still taken; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(e) => panic!("cannot bind {addr} again: {e}"),
            }
        };
        Self::serve_on(db, state, listener)
    }

    /// The address this server listens on.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.base
            .trim_start_matches("http://")
            .parse()
            .expect("base is http://<addr>")
    }

    fn serve_on(db: TestDb, state: AppState, listener: tokio::net::TcpListener) -> Self {
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let handle = tokio::spawn(firemode_server::serve(listener, state.clone()));
        let client = Client::new(&base);
        Self {
            base,
            state,
            db,
            client,
            handle: Some(handle),
        }
    }

    pub fn store(&self) -> Arc<dyn Store> {
        self.state.store.clone()
    }

    /// Graceful stop: cancel, drain documents, wait for background tasks.
    pub async fn stop(mut self) -> TestDb {
        self.state.shutdown.cancel();
        if let Some(h) = self.handle.take() {
            let _ = h.await;
        }
        self.state.drain().await;
        // Let the pools go before the database is dropped.
        let db = std::mem::replace(
            &mut self.db,
            TestDb {
                url: DatabaseUrl::Sqlite("/nonexistent".into()),
                dir: tempfile::tempdir().expect("tmp"),
                pg: None,
            },
        );
        drop(self);
        db
    }

    /// A new organisation with an admin; returns the org id and a logged-in admin.
    pub async fn org(&self, name: &str) -> Org {
        let store = self.store();
        let org = store.create_org(name).await.expect("create org");
        let email = format!(
            "admin-{}@{}.test",
            Uuid::new_v4().simple(),
            name.to_lowercase().replace(' ', "-")
        );
        let password = "admin-password-123".to_string();
        let hash = firemode_server::auth::password::hash(password.clone())
            .await
            .expect("hash");
        let rec = store
            .create_user(firemode_server::store::NewUser {
                org_id: org.id,
                email: email.clone(),
                password_hash: hash,
                role: firemode_server::store::Role::Admin,
                full_name_enc: None,
                phone_enc: None,
            })
            .await
            .expect("create admin");
        // Every test user holds a licence number, as people who sign sessions off do (the
        // sign-off tests clear it to see the refusal).
        store
            .update_user(
                org.id,
                rec.id,
                firemode_server::store::UserPatch {
                    licence_number: Some(Some(format!("LIC-{}", rec.id.simple()))),
                    ..Default::default()
                },
            )
            .await
            .expect("set admin licence");
        let admin = self.login(&email, &password).await;
        Org { id: org.id, admin }
    }

    pub async fn login(&self, email: &str, password: &str) -> User {
        let r = self
            .client
            .post(
                "/v1/auth/login",
                None,
                &json!({ "email": email, "password": password }),
            )
            .await;
        assert_eq!(r.status, 200, "login failed: {}", r.body);
        let me = self
            .client
            .get("/v1/users/me", Some(r.str("access_token")))
            .await;
        assert_eq!(me.status, 200, "{}", me.body);
        User {
            id: me.uuid("id"),
            email: email.to_owned(),
            password: password.to_owned(),
            token: r.str("access_token").to_owned(),
            refresh: r.str("refresh_token").to_owned(),
        }
    }

    /// Create a user with `role` in the admin's organisation (through the API) and log in.
    pub async fn user(&self, org: &Org, role: &str) -> User {
        let email = format!("{role}-{}@example.test", Uuid::new_v4().simple());
        let password = format!("pw-{}", Uuid::new_v4().simple());
        let r = self
            .client
            .post(
                "/v1/users",
                Some(&org.admin.token),
                &json!({ "email": email, "password": password, "role": role }),
            )
            .await;
        assert_eq!(r.status, 201, "create user: {}", r.body);
        let id = r.str("id").to_owned();
        let p = self
            .client
            .patch(
                &format!("/v1/users/{id}"),
                Some(&org.admin.token),
                &json!({ "licence_number": format!("LIC-{id}") }),
            )
            .await;
        assert_eq!(p.status, 200, "set licence: {}", p.body);
        self.login(&email, &password).await
    }
}

pub struct Org {
    pub id: Uuid,
    pub admin: User,
}

#[derive(Clone)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub password: String,
    pub token: String,
    pub refresh: String,
}

/// Assert a problem+json response with `status` and `code`.
pub fn assert_problem(r: &Resp, status: u16, code: &str) {
    assert_eq!(
        r.status, status,
        "expected {status} {code}, got {}: {}",
        r.status, r.body
    );
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/problem+json"),
        "problem content type for {}",
        r.body
    );
    assert_eq!(r.json["code"], Value::from(code), "{}", r.body);
    assert_eq!(r.json["status"], Value::from(status), "{}", r.body);
    assert!(
        r.json["request_id"].as_str().is_some_and(|s| !s.is_empty()),
        "request_id in {}",
        r.body
    );
    assert!(r.json["retryable"].is_boolean(), "{}", r.body);
    assert!(
        r.json["title"].is_string() && r.json["type"].is_string() && r.json["detail"].is_string()
    );
}

impl TestServer {
    /// The HS256 key this server signs with (for forging tokens in tests).
    pub fn jwt_secret(&self) -> String {
        match &self.state.config.jwt_secret {
            Some(s) => s.expose().clone(),
            None => {
                let path = firemode_server::crypto::SecretsFile::path(&self.state.config.data_dir);
                let text = std::fs::read_to_string(path).expect("secrets file");
                let file: firemode_server::crypto::SecretsFile =
                    toml::from_str(&text).expect("secrets toml");
                file.jwt_secret
            }
        }
    }
}
