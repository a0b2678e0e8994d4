//! Shared application state, handed to every handler as `State<AppState>`.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::limiter::LoginThrottle;
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
    pub limiter: Arc<LoginThrottle>,
    /// Bounded password hashing (login, password changes).
    pub hasher: Arc<crate::auth::password::Hasher>,
    pub metrics: Arc<Metrics>,
    /// The evidence object store (content-addressed, write-once).
    pub evidence: Arc<crate::evidence::EvidenceObjects>,
    /// The sync hub (document actors, connections, group commit).
    pub hub: crate::hub::Hub,
    /// Cancelled when the server shuts down; every background task watches it.
    pub shutdown: CancellationToken,
    /// Every background task is spawned here so shutdown can wait for them.
    pub tasks: TaskTracker,
    /// Schedules computed under their organisation's version (`http::schedule_cache`).
    pub schedules: Arc<crate::http::schedule_cache::ScheduleCache>,
    /// Live events for `GET /v1/events` (`crate::live`).
    pub live: Arc<crate::live::LiveEvents>,
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
                let pg =
                    PgStore::connect_with_timeout(url.expose(), config.db_acquire_timeout).await?;
                let pool = pg.pool().clone();
                (Arc::new(pg), Some(pool))
            }
        };
        crate::rules::seed_library(store.as_ref()).await?;
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
        let evidence = Arc::new(crate::evidence::EvidenceObjects::from_config(&config)?);
        crate::http::idempotency::spawn_purger(store.clone(), shutdown.clone(), &tasks);
        let projector = crate::projection::Projector::spawn(
            store.clone(),
            crate::projection::workers_for(&config.database_url),
        );
        let storage_id = store
            .meta_value("storage_id", &uuid::Uuid::new_v4().to_string())
            .await?;
        let hub = crate::hub::Hub::new(
            store.clone(),
            projector,
            crate::hub::HubConfig {
                ping_interval: config.sync_ping_interval,
                idle_unload: config.sync_idle_unload,
                max_frame: config.sync_max_frame,
                outbound_queue: config.sync_outbound_queue,
                compact_after: config.sync_compact_after,
                sweep_interval: config.sync_sweep_interval,
            },
            storage_id,
            tasks.clone(),
            shutdown.clone(),
        );
        if let Some(pool) = &pg_pool {
            crate::hub::spawn_listener(hub.clone(), pool.clone(), &tasks, shutdown.clone());
            crate::hub::spawn_sweeper(hub.clone(), &tasks, shutdown.clone());
        }
        {
            // Projections a crash (or a stopped node) left behind the documents: re-checked
            // in the background, so start-up does not wait for them.
            let hub = hub.clone();
            tasks.spawn(async move {
                hub.project_backlog().await;
            });
        }
        let pii = Arc::new(secrets.pii);
        crate::notices::spawn(
            store.clone(),
            pii.clone(),
            crate::notices::WorkerConfig::from_config(&config),
            shutdown.clone(),
            &tasks,
        );
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
            pii,
            revocations,
            limiter: Arc::new(LoginThrottle::new(
                config.login_max_failures,
                config.login_lockout,
            )),
            hasher: Arc::new(crate::auth::password::Hasher::new(
                config.password_hash_concurrency,
                config.password_hash_wait,
            )),
            metrics: Arc::new(Metrics::default()),
            evidence,
            config: Arc::new(config),
            hub,
            shutdown,
            tasks,
            schedules: Arc::default(),
            live: Arc::default(),
        })
    }

    /// Graceful stop after the listener closed: flush documents, then wait for every task.
    /// The projection queue is not drained: what is queued is marked stale and projected at
    /// the next start (`crate::projection::Projector`).
    pub async fn drain(&self) {
        self.shutdown.cancel();
        self.hub.stop_projections();
        self.hub.drain().await;
        self.hub.finish_projections().await;
        self.tasks.close();
        if tokio::time::timeout(std::time::Duration::from_secs(20), self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                remaining = self.tasks.len(),
                loaded_documents = self.hub.loaded_documents(),
                projections_pending = self.hub.projections_pending(),
                "background tasks did not finish within 20 s"
            );
        }
    }
}
