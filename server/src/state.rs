//! Shared application state, handed to every handler as `State<AppState>`.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::limiter::LoginLimiter;
use crate::auth::revocation::{self, RevocationList};
use crate::auth::tokens::TokenService;
use crate::config::{Config, DatabaseUrl};
use crate::crypto::{PiiCipher, Secrets};
use crate::store::{PgStore, SqliteStore, Store};
use crate::telemetry::Metrics;

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub config: Arc<Config>,
    pub tokens: Arc<TokenService>,
    pub pii: Arc<PiiCipher>,
    pub revocations: Arc<RevocationList>,
    pub limiter: Arc<LoginLimiter>,
    pub metrics: Arc<Metrics>,
    /// Cancelled when the server shuts down; every background task watches it.
    pub shutdown: CancellationToken,
    /// Every background task is spawned here so shutdown can wait for them.
    pub tasks: TaskTracker,
}

impl AppState {
    /// Connect the store (running migrations), resolve secrets, load the revocation list and
    /// start the background tasks.
    pub async fn new(config: Config) -> anyhow::Result<Self> {
        let secrets = Secrets::resolve(&config)?;
        if secrets.generated {
            tracing::warn!(
                path = %crate::crypto::SecretsFile::path(&config.data_dir).display(),
                "zero-setup mode: generated new secrets into the data directory; back this file up \
                 with the database, or PII becomes unreadable"
            );
        }
        let (store, pg_pool): (Arc<dyn Store>, _) = match &config.database_url {
            DatabaseUrl::Sqlite(path) => (Arc::new(SqliteStore::open(path).await?), None),
            DatabaseUrl::Postgres(url) => {
                let pg = PgStore::connect(url.expose()).await?;
                let pool = pg.pool().clone();
                (Arc::new(pg), Some(pool))
            }
        };
        let tokens = TokenService::new(
            secrets.jwt_secret.expose().as_bytes(),
            &config.jwt_issuer,
            &config.jwt_audience,
            config.access_token_ttl,
        );
        let revocations = Arc::new(RevocationList::default());
        revocations.refresh(store.as_ref()).await?;
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        revocation::spawn_refresher(
            revocations.clone(),
            store.clone(),
            pg_pool,
            config.revocation_poll,
            shutdown.clone(),
            &tasks,
        );
        Ok(Self {
            store,
            tokens: Arc::new(tokens),
            pii: Arc::new(secrets.pii),
            revocations,
            limiter: Arc::new(LoginLimiter::new(
                config.login_max_failures,
                config.login_lockout,
            )),
            metrics: Arc::new(Metrics::default()),
            config: Arc::new(config),
            shutdown,
            tasks,
        })
    }
}
