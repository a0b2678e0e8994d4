//! Configuration in layers: defaults < TOML file (`--config`) < `FIREMODE_*` environment < CLI
//! flags. Unknown settings warn; bad settings stop start-up with a message saying what to fix.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;

/// A value that must not be printed: `Debug` and `Display` show `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Where the data lives. The PostgreSQL URL is secret (it may carry a password); `Display`
/// masks the password.
#[derive(Clone, Debug)]
pub enum DatabaseUrl {
    Sqlite(PathBuf),
    Postgres(Secret<String>),
}

impl DatabaseUrl {
    /// Parse by scheme (not prefix matching): `sqlite:`, `postgres:` or `postgresql:`.
    pub fn parse(raw: &str) -> anyhow::Result<Self> {
        let (scheme, rest) = raw.split_once(':').with_context(|| {
            "DATABASE_URL has no scheme: use sqlite://<path> or postgres://user@host/db".to_string()
        })?;
        match scheme.to_ascii_lowercase().as_str() {
            "sqlite" => {
                let path = rest.strip_prefix("//").unwrap_or(rest);
                let path = path.split('?').next().unwrap_or(path);
                if path.is_empty() || path == ":memory:" {
                    bail!("DATABASE_URL: sqlite needs a file path, e.g. sqlite://./data/firemode.db");
                }
                Ok(DatabaseUrl::Sqlite(PathBuf::from(path)))
            }
            "postgres" | "postgresql" => Ok(DatabaseUrl::Postgres(Secret::new(raw.to_owned()))),
            other => bail!(
                "DATABASE_URL scheme '{other}' is not supported: use sqlite://<path> or postgres://user@host/db"
            ),
        }
    }

    pub fn backend(&self) -> &'static str {
        match self {
            DatabaseUrl::Sqlite(_) => "sqlite",
            DatabaseUrl::Postgres(_) => "postgres",
        }
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatabaseUrl::Sqlite(p) => write!(f, "sqlite://{}", p.display()),
            DatabaseUrl::Postgres(s) => f.write_str(&mask_password(s.expose())),
        }
    }
}

/// `postgres://user:pw@host/db` -> `postgres://user:***@host/db`.
fn mask_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "[unparseable url]".into();
    };
    let (authority, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let tail = tail.split('?').next().unwrap_or("");
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            if userinfo.contains(':') {
                format!("{scheme}://{user}:***@{host}{tail}")
            } else {
                format!("{scheme}://{user}@{host}{tail}")
            }
        }
        None => format!("{scheme}://{authority}{tail}"),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Auto,
    Json,
    Pretty,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvidenceStoreKind {
    /// `<data_dir>/evidence` on the local file system.
    Local,
    /// An S3-compatible bucket (`evidence_s3_*` settings, AWS_* credentials).
    S3,
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// A second address serving only `GET /metrics` (e.g. 127.0.0.1:9090); when set, the API
    /// port no longer serves it. None: `/metrics` on the API port.
    pub metrics_listen: Option<SocketAddr>,
    /// When set, `/metrics` (wherever it is served) needs `Authorization: Bearer <token>`.
    pub metrics_token: Option<Secret<String>>,
    pub data_dir: PathBuf,
    pub database_url: DatabaseUrl,
    /// How long a request waits for a database connection before it is answered 503
    /// (`retryable`) instead of hanging: with the database down or the network path to it cut,
    /// the pool would otherwise wait its default 10 s per request. Env
    /// `FIREMODE_DB_ACQUIRE_TIMEOUT_MS`, default 2000 (PostgreSQL).
    pub db_acquire_timeout: Duration,
    /// HS256 key for access tokens. `None` in zero-setup mode: generated into the data dir.
    pub jwt_secret: Option<Secret<String>>,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    /// PII keys as `id:base64key,...`; `None` in zero-setup mode.
    pub pii_keys: Option<Secret<String>>,
    /// Which key id encrypts new data; default: the highest.
    pub pii_active_key: Option<u32>,
    pub max_json_body: usize,
    /// Sync hub: keepalive ping interval; a socket that misses a pong for as long is dropped.
    pub sync_ping_interval: Duration,
    /// Sync hub: unload a document this long after its last command once no connection has
    /// it open. Loaded documents cost memory (about 75 KiB each for a 20-item session): with
    /// 30 s, 10,000 sessions touched once in 28 s were all still loaded (755 MB); with 5 s the
    /// server peaked at 237 MB on SQLite and 316 MB on PostgreSQL (docs/benchmarks.md).
    pub sync_idle_unload: Duration,
    /// Sync hub: largest WebSocket message accepted.
    pub sync_max_frame: usize,
    /// Sync hub: frames queued per connection before it counts as too slow and is dropped.
    pub sync_outbound_queue: usize,
    /// Sync hub: snapshot a document after this many stored changes.
    pub sync_compact_after: usize,
    /// Sync hub, several nodes: how often a node catches up documents other nodes changed
    /// whose doorbell (NOTIFY) it missed.
    pub sync_sweep_interval: Duration,
    pub login_max_failures: u32,
    pub login_lockout: Duration,
    /// Password hashes run at once (0: one per core). Each holds 19 MiB while it runs.
    pub password_hash_concurrency: usize,
    /// How long a login waits for a hashing slot before it is answered 503 + Retry-After.
    pub password_hash_wait: Duration,
    pub revocation_poll: Duration,
    pub log_format: LogFormat,
    /// Largest evidence file accepted, in bytes (default 25 MiB).
    pub evidence_max_bytes: u64,
    /// Where evidence bytes live: a folder under the data dir, or an S3-compatible bucket.
    pub evidence_store: EvidenceStoreKind,
    pub evidence_s3_bucket: Option<String>,
    /// e.g. `https://s3.ap-southeast-2.amazonaws.com` or a MinIO URL; default: AWS.
    pub evidence_s3_endpoint: Option<String>,
    pub evidence_s3_region: Option<String>,
    /// Allow a plain-http endpoint (local MinIO); credentials come from the AWS_* variables.
    pub evidence_s3_allow_http: bool,
    /// How long an idempotency key's outcome is kept (default 24 h).
    pub idempotency_ttl: Duration,
    /// An in-flight idempotency claim older than this may be taken over by a retry.
    pub idempotency_stale_after: Duration,
    /// Browser origins (`https://app.example.com`) allowed to call the API cross-origin
    /// (CORS). Empty: no CORS headers at all.
    pub cors_allowed_origins: Vec<String>,
    /// Proxies whose `X-Forwarded-For` is believed for the client address (login throttling,
    /// logs). Empty: the socket's peer is the client.
    pub trusted_proxies: Vec<Cidr>,
    /// Notice worker: how often it looks for due deliveries and overdue defects.
    pub notice_poll: Duration,
    /// Notice worker: the first retry's delay (each later one doubles, at most an hour).
    pub notice_retry_base: Duration,
    /// Notice worker: attempts per delivery before it is marked failed.
    pub notice_max_attempts: u32,
    /// Notice worker: a webhook request's whole time (connect, send, answer).
    pub webhook_timeout: Duration,
    /// Email notices: the SMTP server (`smtp://host:port`, `smtps://user:pass@host`); none: no
    /// email. Secret (it may carry a password).
    pub smtp_url: Option<Secret<String>>,
    /// Email notices: the From address.
    pub smtp_from: Option<String>,
    /// Email notices: how long to wait for each SMTP answer.
    pub smtp_timeout: Duration,
    /// Email notices: certificate authorities (PEM) trusted for the mail server's certificate
    /// beside the system's, for a relay with a private CA.
    pub smtp_ca_file: Option<PathBuf>,
    /// Warnings found while loading (unknown keys...), logged once tracing is up.
    pub warnings: Vec<String>,
}

impl Config {
    /// Defaults for a data directory: SQLite inside it, everything else zero-setup.
    pub fn for_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        let data_dir = data_dir.into();
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            metrics_listen: None,
            metrics_token: None,
            database_url: DatabaseUrl::Sqlite(data_dir.join("firemode.db")),
            data_dir,
            db_acquire_timeout: Duration::from_secs(2),
            jwt_secret: None,
            jwt_issuer: "firemode".into(),
            jwt_audience: "firemode-api".into(),
            access_token_ttl: Duration::from_secs(15 * 60),
            refresh_token_ttl: Duration::from_secs(30 * 24 * 3600),
            pii_keys: None,
            pii_active_key: None,
            max_json_body: 1024 * 1024,
            sync_ping_interval: Duration::from_secs(5),
            sync_idle_unload: Duration::from_secs(2),
            sync_max_frame: 16 * 1024 * 1024,
            sync_outbound_queue: 1024,
            sync_compact_after: 500,
            sync_sweep_interval: Duration::from_secs(2),
            login_max_failures: 5,
            login_lockout: Duration::from_secs(15 * 60),
            password_hash_concurrency: 0,
            password_hash_wait: crate::auth::password::PERMIT_WAIT,
            revocation_poll: Duration::from_millis(500),
            log_format: LogFormat::Auto,
            evidence_max_bytes: 25 * 1024 * 1024,
            evidence_store: EvidenceStoreKind::Local,
            evidence_s3_bucket: None,
            evidence_s3_endpoint: None,
            evidence_s3_region: None,
            evidence_s3_allow_http: false,
            idempotency_ttl: Duration::from_secs(24 * 3600),
            idempotency_stale_after: Duration::from_secs(5 * 60),
            cors_allowed_origins: Vec::new(),
            trusted_proxies: Vec::new(),
            notice_poll: Duration::from_secs(5),
            notice_retry_base: Duration::from_secs(30),
            notice_max_attempts: 10,
            webhook_timeout: Duration::from_secs(10),
            smtp_url: None,
            smtp_from: None,
            smtp_timeout: Duration::from_secs(30),
            smtp_ca_file: None,
            warnings: Vec::new(),
        }
    }

    /// Load all layers. `file` is `--config`; `env` is the process environment (passed in so
    /// tests can supply their own); `flags` are CLI overrides as key/value pairs.
    pub fn load(
        file: Option<&Path>,
        env: &BTreeMap<String, String>,
        flags: &BTreeMap<&'static str, String>,
    ) -> anyhow::Result<Self> {
        let mut raw: BTreeMap<String, String> = BTreeMap::new();
        let mut warnings = Vec::new();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config file {}", path.display()))?;
            let table: toml::Table = text
                .parse()
                .with_context(|| format!("config file {} is not valid TOML", path.display()))?;
            for (k, v) in table {
                let value = match v {
                    toml::Value::String(s) => s,
                    other => other.to_string(),
                };
                raw.insert(k, value);
            }
        }
        if let Some(url) = env.get("DATABASE_URL") {
            raw.insert("database_url".into(), url.clone());
        }
        for (k, v) in env {
            if let Some(key) = k.strip_prefix("FIREMODE_") {
                let key = key.to_ascii_lowercase();
                if NOT_SETTINGS.contains(&key.as_str()) {
                    continue;
                }
                raw.insert(key, v.clone());
            }
        }
        for (k, v) in flags {
            raw.insert((*k).to_owned(), v.clone());
        }

        let data_dir = PathBuf::from(raw.remove("data_dir").unwrap_or_else(|| "./data".into()));
        let mut cfg = Config::for_data_dir(data_dir);
        for (key, value) in raw {
            cfg.apply(&key, &value, &mut warnings)?;
        }
        if let DatabaseUrl::Postgres(_) = cfg.database_url {
            if cfg.jwt_secret.is_none() || cfg.pii_keys.is_none() {
                bail!(
                    "with PostgreSQL, secrets must be configured explicitly: set FIREMODE_JWT_SECRET \
                     (at least 32 characters) and FIREMODE_PII_KEYS (e.g. 1:<base64 of 32 random bytes>; \
                     `firemode admin gen-key` prints one)"
                );
            }
        }
        if cfg.evidence_store == EvidenceStoreKind::S3 && cfg.evidence_s3_bucket.is_none() {
            bail!(
                "evidence_store = s3 needs a bucket: set FIREMODE_EVIDENCE_S3_BUCKET (and the \
                 AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_REGION variables)"
            );
        }
        if cfg.smtp_url.is_some() {
            let Some(from) = cfg.smtp_from.clone() else {
                bail!("smtp_url needs a From address: set FIREMODE_SMTP_FROM (e.g. FireMode <notices@example.com>)");
            };
            let smtp = crate::notices::SmtpConfig {
                url: cfg.smtp_url.clone().expect("checked"),
                from,
                timeout: cfg.smtp_timeout,
                ca_file: cfg.smtp_ca_file.clone(),
            };
            if let Err(e) = smtp.check() {
                bail!("{e}");
            }
        }
        cfg.warnings = warnings;
        Ok(cfg)
    }

    fn apply(&mut self, key: &str, value: &str, warnings: &mut Vec<String>) -> anyhow::Result<()> {
        let secs = |v: &str| -> anyhow::Result<Duration> {
            v.parse::<u64>().map(Duration::from_secs).with_context(|| {
                format!("setting '{key}' must be a whole number of seconds, got '{v}'")
            })
        };
        let number = |v: &str| -> anyhow::Result<u64> {
            v.parse::<u64>().with_context(|| {
                format!("setting '{key}' must be a non-negative whole number, got '{v}'")
            })
        };
        match key {
            "listen" => self.listen = resolve_listen(value)?,
            "metrics_listen" => {
                self.metrics_listen = if value.trim().is_empty() {
                    None
                } else {
                    Some(resolve_addr("metrics_listen", value.trim())?)
                }
            }
            "metrics_token" => {
                let token = value.trim();
                if !token.is_empty() && token.len() < 16 {
                    bail!("setting 'metrics_token' must be at least 16 characters long");
                }
                self.metrics_token = (!token.is_empty()).then(|| Secret::new(token.to_owned()))
            }
            "database_url" => self.database_url = DatabaseUrl::parse(value)?,
            "db_acquire_timeout_ms" => {
                self.db_acquire_timeout = Duration::from_millis(number(value)?.max(50))
            }
            "jwt_secret" => {
                if value.len() < 32 {
                    bail!("FIREMODE_JWT_SECRET must be at least 32 characters long");
                }
                self.jwt_secret = Some(Secret::new(value.to_owned()))
            }
            "jwt_issuer" => self.jwt_issuer = value.to_owned(),
            "jwt_audience" => self.jwt_audience = value.to_owned(),
            "access_token_ttl_secs" => self.access_token_ttl = secs(value)?,
            "refresh_token_ttl_secs" => self.refresh_token_ttl = secs(value)?,
            "pii_keys" => self.pii_keys = Some(Secret::new(value.to_owned())),
            "pii_active_key" => self.pii_active_key = Some(number(value)? as u32),
            "max_json_body" => self.max_json_body = number(value)? as usize,
            "sync_ping_interval_ms" => {
                self.sync_ping_interval = Duration::from_millis(number(value)?.max(100))
            }
            "sync_idle_unload_secs" => self.sync_idle_unload = secs(value)?,
            "sync_max_frame" => self.sync_max_frame = number(value)?.max(1024) as usize,
            "sync_outbound_queue" => self.sync_outbound_queue = number(value)?.max(8) as usize,
            "sync_compact_after" => self.sync_compact_after = number(value)?.max(1) as usize,
            "sync_sweep_ms" => {
                self.sync_sweep_interval = Duration::from_millis(number(value)?.max(50))
            }
            "notice_poll_ms" => self.notice_poll = Duration::from_millis(number(value)?.max(10)),
            "notice_retry_base_ms" => {
                self.notice_retry_base = Duration::from_millis(number(value)?.max(10))
            }
            "notice_max_attempts" => self.notice_max_attempts = number(value)?.clamp(1, 100) as u32,
            "webhook_timeout_ms" => {
                self.webhook_timeout = Duration::from_millis(number(value)?.max(100))
            }
            "smtp_url" => {
                self.smtp_url =
                    (!value.trim().is_empty()).then(|| Secret::new(value.trim().to_owned()))
            }
            "smtp_from" => {
                self.smtp_from = (!value.trim().is_empty()).then(|| value.trim().to_owned())
            }
            "smtp_timeout_ms" => self.smtp_timeout = Duration::from_millis(number(value)?.max(100)),
            "smtp_ca_file" => {
                self.smtp_ca_file = (!value.trim().is_empty()).then(|| PathBuf::from(value.trim()))
            }
            "login_max_failures" => self.login_max_failures = number(value)?.max(1) as u32,
            "login_lockout_secs" => self.login_lockout = secs(value)?,
            "password_hash_concurrency" => self.password_hash_concurrency = number(value)? as usize,
            "password_hash_wait_ms" => {
                self.password_hash_wait = Duration::from_millis(number(value)?)
            }
            "revocation_poll_ms" => {
                self.revocation_poll = Duration::from_millis(number(value)?.max(10))
            }
            "log_format" => {
                self.log_format = match value {
                    "auto" => LogFormat::Auto,
                    "json" => LogFormat::Json,
                    "pretty" => LogFormat::Pretty,
                    _ => bail!("setting 'log_format' must be auto, json or pretty, got '{value}'"),
                }
            }
            "evidence_max_bytes" => self.evidence_max_bytes = number(value)?.max(1),
            "evidence_store" => {
                self.evidence_store = match value {
                    "local" => EvidenceStoreKind::Local,
                    "s3" => EvidenceStoreKind::S3,
                    _ => bail!("setting 'evidence_store' must be local or s3, got '{value}'"),
                }
            }
            "evidence_s3_bucket" => self.evidence_s3_bucket = Some(value.to_owned()),
            "evidence_s3_endpoint" => self.evidence_s3_endpoint = Some(value.to_owned()),
            "evidence_s3_region" => self.evidence_s3_region = Some(value.to_owned()),
            "evidence_s3_allow_http" => {
                self.evidence_s3_allow_http = value.parse().with_context(|| {
                    format!("setting 'evidence_s3_allow_http' must be true or false, got '{value}'")
                })?
            }
            "idempotency_ttl_secs" => self.idempotency_ttl = secs(value)?,
            "idempotency_stale_after_secs" => self.idempotency_stale_after = secs(value)?,
            "cors_allowed_origins" => self.cors_allowed_origins = parse_origins(value)?,
            "trusted_proxies" => {
                self.trusted_proxies = list(value)
                    .map(|item| {
                        item.parse::<Cidr>().with_context(|| {
                            format!(
                                "setting 'trusted_proxies' takes IP addresses or CIDR blocks \
                                 (10.0.0.0/8, ::1), got '{item}'"
                            )
                        })
                    })
                    .collect::<anyhow::Result<_>>()?
            }
            other => warnings.push(format!("unknown setting '{other}' ignored")),
        }
        Ok(())
    }

    /// Zero-setup mode: secrets are generated into the data directory.
    pub fn zero_setup(&self) -> bool {
        matches!(self.database_url, DatabaseUrl::Sqlite(_))
            && (self.jwt_secret.is_none() || self.pii_keys.is_none())
    }
}

/// `host:port` or `ip:port`. A host name is resolved once, at start-up; its first IPv4
/// address is used (else its first address), so `localhost:8080` listens on 127.0.0.1.
fn resolve_listen(value: &str) -> anyhow::Result<SocketAddr> {
    resolve_addr("listen", value)
}

/// `resolve_listen` for the setting `key`.
fn resolve_addr(key: &str, value: &str) -> anyhow::Result<SocketAddr> {
    if let Ok(addr) = value.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let hint = || {
        format!(
            "setting '{key}' must be an address and port like 127.0.0.1:8080 or localhost:8080, got '{value}'"
        )
    };
    let (host, port) = value.rsplit_once(':').with_context(hint)?;
    let port: u16 = port.parse().ok().with_context(hint)?;
    if host.is_empty() {
        bail!(hint());
    }
    let addrs: Vec<SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
        .with_context(|| format!("setting '{key}': cannot resolve host '{host}'"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .with_context(|| format!("setting '{key}': host '{host}' has no address"))
}

/// The comma-separated items of a list setting, trimmed, empty ones skipped.
fn list(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// Origins as a browser sends them: `scheme://host[:port]`, no path; `*` is refused (list the
/// origins: a wildcard would let any web page drive the API with a user's pasted token).
fn parse_origins(value: &str) -> anyhow::Result<Vec<String>> {
    list(value)
        .map(|o| {
            let origin = o.trim_end_matches('/').to_ascii_lowercase();
            let ok = origin.split_once("://").is_some_and(|(scheme, host)| {
                (scheme == "http" || scheme == "https") && !host.is_empty() && !host.contains('/')
            });
            if !ok {
                bail!(
                    "setting 'cors_allowed_origins' takes origins like https://app.example.com \
                     (scheme, host, optional port; no path, no wildcard), got '{o}'"
                );
            }
            Ok(origin)
        })
        .collect()
}

/// An IP address block: `10.0.0.0/8`, `2001:db8::/32`, or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: std::net::IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for Cidr {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: std::net::IpAddr = addr.trim().parse()?;
        let addr = addr.to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.trim().parse::<u8>()?,
            None => max,
        };
        if prefix > max {
            bail!("prefix /{prefix} is longer than {max} bits");
        }
        Ok(Self { addr, prefix })
    }
}

/// `FIREMODE_*` variables that are not server settings.
const NOT_SETTINGS: &[&str] = &[
    "admin_password",
    "test_database_url",
    "log",
    "config",
    "token",
    "url",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_settings_are_checked_and_the_password_never_shown() {
        let load = |pairs: &[(&str, &str)]| {
            let env: BTreeMap<String, String> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            Config::load(None, &env, &BTreeMap::new())
        };
        let url = (
            "FIREMODE_SMTP_URL",
            "smtps://fm:Hunter2-smtp@mail.example:465",
        );
        let from = ("FIREMODE_SMTP_FROM", "FireMode <notices@example.com>");
        let cfg = load(&[url, from]).unwrap();
        assert_eq!(cfg.smtp_url.as_ref().unwrap().expose(), url.1);
        assert!(!format!("{cfg:?}").contains("Hunter2"));
        let err = load(&[url]).unwrap_err().to_string();
        assert!(err.contains("FIREMODE_SMTP_FROM"), "{err}");
        for bad in [
            "http://fm:Hunter2-smtp@mail.example",
            "smtps://fm:Hunter2-smtp@",
        ] {
            let err = format!(
                "{:#}",
                load(&[("FIREMODE_SMTP_URL", bad), from]).unwrap_err()
            );
            assert!(err.contains("smtp_url"), "{err}");
            assert!(!err.contains("Hunter2"), "{err}");
        }
        let err = format!(
            "{:#}",
            load(&[url, ("FIREMODE_SMTP_FROM", "not an address")]).unwrap_err()
        );
        assert!(err.contains("smtp_from"), "{err}");
        assert!(load(&[]).unwrap().smtp_url.is_none(), "no SMTP by default");

        // A private authority for the relay: the file must hold a certificate, and the URL
        // must speak TLS for it to mean anything.
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no certificate here\n").unwrap();
        for (file, url, says) in [
            (&missing, url.1, "missing.pem"),
            (&empty, url.1, "holds no PEM certificate"),
        ] {
            let ca = ("FIREMODE_SMTP_CA_FILE", file.to_str().unwrap());
            let err = format!(
                "{:#}",
                load(&[("FIREMODE_SMTP_URL", url), from, ca]).unwrap_err()
            );
            assert!(err.contains(says), "{err}");
            assert!(!err.contains("Hunter2"), "{err}");
        }
        let pem = dir.path().join("ca.pem");
        let ca = ("FIREMODE_SMTP_CA_FILE", pem.to_str().unwrap());
        let plain = (
            "FIREMODE_SMTP_URL",
            "smtp://fm:Hunter2-smtp@mail.example:25",
        );
        let err = format!("{:#}", load(&[plain, from, ca]).unwrap_err());
        assert!(err.contains("speaks no TLS"), "{err}");
        assert!(!err.contains("Hunter2"), "{err}");
    }

    #[test]
    fn masks_database_password() {
        let url = DatabaseUrl::parse("postgres://app:hunter2@db.example:5432/fm?sslmode=require")
            .unwrap();
        let shown = url.to_string();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(shown, "postgres://app:***@db.example:5432/fm");
        assert!(!format!("{url:?}").contains("hunter2"));
    }

    #[test]
    fn rejects_unknown_scheme() {
        let err = DatabaseUrl::parse("mysql://root@localhost/fm")
            .unwrap_err()
            .to_string();
        assert!(err.contains("mysql"), "{err}");
        assert!(DatabaseUrl::parse("no-scheme").is_err());
        // Prefix matching would accept this; scheme parsing does not.
        assert!(DatabaseUrl::parse("sqlitex://a.db").is_err());
    }

    #[test]
    fn layers_in_order() {
        let dir = std::env::temp_dir().join(format!("fm-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:1000\"\nlogin_max_failures = 3\nbogus = 1\n",
        )
        .unwrap();
        let env = BTreeMap::from([("FIREMODE_LISTEN".to_string(), "127.0.0.1:2000".to_string())]);
        let cfg = Config::load(Some(&file), &env, &BTreeMap::new()).unwrap();
        assert_eq!(cfg.listen.port(), 2000);
        assert_eq!(cfg.login_max_failures, 3);
        assert!(cfg.warnings.iter().any(|w| w.contains("bogus")));
        let flags = BTreeMap::from([("listen", "127.0.0.1:3000".to_string())]);
        let cfg = Config::load(Some(&file), &env, &flags).unwrap();
        assert_eq!(cfg.listen.port(), 3000);
    }

    #[test]
    fn listen_takes_host_names() {
        let env = BTreeMap::from([("FIREMODE_LISTEN".to_string(), "localhost:18931".to_string())]);
        let cfg = Config::load(None, &env, &BTreeMap::new()).unwrap();
        assert_eq!(cfg.listen, "127.0.0.1:18931".parse().unwrap());
        for bad in [
            "localhost",
            ":80",
            "localhost:http",
            "no-such-host.invalid:80",
        ] {
            let env = BTreeMap::from([("FIREMODE_LISTEN".to_string(), bad.to_string())]);
            let err = Config::load(None, &env, &BTreeMap::new()).unwrap_err();
            assert!(err.to_string().contains("listen"), "{bad}: {err}");
        }
    }

    #[test]
    fn cidr_blocks() {
        let c: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(c.contains("10.1.200.3".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.0.9".parse().unwrap()));
        assert!(!c.contains("10.2.0.1".parse().unwrap()));
        let one: Cidr = "::1".parse().unwrap();
        assert!(one.contains("::1".parse().unwrap()));
        assert!(!one.contains("127.0.0.1".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("192.0.2.1".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("example.com".parse::<Cidr>().is_err());
        let env = BTreeMap::from([(
            "FIREMODE_CORS_ALLOWED_ORIGINS".to_string(),
            "https://App.example.com/, http://localhost:5173".to_string(),
        )]);
        let cfg = Config::load(None, &env, &BTreeMap::new()).unwrap();
        assert_eq!(
            cfg.cors_allowed_origins,
            ["https://app.example.com", "http://localhost:5173"]
        );
        for bad in ["*", "app.example.com", "https://a.example/path"] {
            let env =
                BTreeMap::from([("FIREMODE_CORS_ALLOWED_ORIGINS".to_string(), bad.to_string())]);
            assert!(Config::load(None, &env, &BTreeMap::new()).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_values_stop_startup() {
        let env = BTreeMap::from([("FIREMODE_LISTEN".to_string(), "nope".to_string())]);
        let err = Config::load(None, &env, &BTreeMap::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("listen"), "{err}");
        let env = BTreeMap::from([("DATABASE_URL".to_string(), "postgres://x@h/db".to_string())]);
        let err = Config::load(None, &env, &BTreeMap::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("FIREMODE_JWT_SECRET"), "{err}");
    }
}
