//! The server under test and its documents.
//!
//! FireMode: log in, create a building with assets and sessions through the REST API (the
//! server builds each session document), or reuse session ids from `--sessions-file`. The
//! reference server has no REST API and stores whatever clients send: its documents are built
//! here with the same schema and size (`create_session_document`, one item per asset) and pushed
//! by a seeding client before anything is measured.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use firemode_client::Client;
use firemode_sync_core::automerge::sync;
use firemode_sync_core::automerge::{ActorId, Automerge};
use firemode_sync_core::{create_session_document, DocumentId, ItemInit, SessionInit};
use futures_util::stream::{self, StreamExt, TryStreamExt};
use uuid::Uuid;

use super::peer::{self, Endpoint, Peer};
use super::{ServerKind, TargetArgs};

/// The rule a six-monthly portable extinguisher item is tested against (as the server picks it).
const EXTINGUISHER_RULE: &str = "AS1851-10-6M-EXT";

pub struct Target {
    pub kind: ServerKind,
    pub base: String,
    pub endpoint: Endpoint,
    /// Peer ids are `<user id>:<device>`; FireMode checks the prefix, the reference server
    /// accepts anything, so a random id stands in there.
    pub user_id: Uuid,
    rest: Option<Client>,
    /// When the access token runs out (FireMode closes sync sockets then).
    pub token_expires: Option<chrono::DateTime<chrono::Utc>>,
}

/// A document the benchmark uses: its id and, for the reference server, the content to seed.
#[derive(Clone)]
pub struct DocSpec {
    pub id: String,
    pub seed: Option<Arc<SessionInit>>,
}

impl DocSpec {
    /// The seed document (reference server only), built as the FireMode server builds its own.
    pub fn build_seed(&self, actor: ActorId) -> Result<Option<Automerge>> {
        match &self.seed {
            None => Ok(None),
            Some(init) => Ok(Some(
                create_session_document(init, actor, chrono::Utc::now().timestamp())
                    .map_err(|e| anyhow!("cannot build a seed document: {e}"))?,
            )),
        }
    }
}

fn is_loopback(host: &str) -> bool {
    matches!(host, "localhost" | "[::1]" | "::1") || host.starts_with("127.")
}

impl Target {
    pub async fn connect(args: &TargetArgs) -> Result<Self> {
        let base = firemode_client::reqwest::Url::parse(&args.url)
            .with_context(|| format!("--url {} is not a URL", args.url))?;
        let host = base.host_str().unwrap_or_default().to_owned();
        if !is_loopback(&host) {
            bail!("the sync benchmark only runs against a local server (loopback), not {host}");
        }
        let port = base.port_or_known_default().unwrap_or(80);
        let base_s = args.url.trim_end_matches('/').to_owned();
        match args.server {
            ServerKind::Reference => Ok(Target {
                kind: ServerKind::Reference,
                base: base_s,
                endpoint: Endpoint {
                    ws_url: format!("ws://{host}:{port}/"),
                    token: None,
                },
                user_id: Uuid::new_v4(),
                rest: None,
                token_expires: None,
            }),
            ServerKind::Firemode => {
                let (Some(email), Some(password)) = (&args.email, &args.password) else {
                    bail!("FireMode needs --email and --password (or FIREMODE_EMAIL / FIREMODE_PASSWORD) of an admin or office user");
                };
                let http = firemode_client::reqwest::Client::builder()
                    .timeout(Duration::from_secs(60))
                    .pool_max_idle_per_host(64)
                    .tcp_nodelay(true)
                    .build()
                    .context("cannot build the HTTP client")?;
                let client = Client::with_http_client(&base_s, http)?;
                client
                    .login(email, password)
                    .await
                    .context("login failed")?;
                let me = client.me().await?;
                let tokens = client.tokens().context("no tokens after login")?;
                Ok(Target {
                    kind: ServerKind::Firemode,
                    base: base_s,
                    endpoint: Endpoint {
                        ws_url: format!("ws://{host}:{port}/v1/sync"),
                        token: Some(tokens.access_token),
                    },
                    user_id: me.id,
                    rest: Some(client),
                    token_expires: Some(tokens.access_expires_at),
                })
            }
        }
    }

    /// The same server's sync endpoint on another node (same secrets, so the token holds).
    pub fn endpoint_at(&self, url: &str) -> Result<Endpoint> {
        let base = firemode_client::reqwest::Url::parse(url)
            .with_context(|| format!("--peer-url {url} is not a URL"))?;
        let host = base.host_str().unwrap_or_default().to_owned();
        if !is_loopback(&host) {
            bail!("the sync benchmark only runs against a local server (loopback), not {host}");
        }
        let port = base.port_or_known_default().unwrap_or(80);
        Ok(Endpoint {
            ws_url: match self.kind {
                ServerKind::Firemode => format!("ws://{host}:{port}/v1/sync"),
                ServerKind::Reference => format!("ws://{host}:{port}/"),
            },
            token: self.endpoint.token.clone(),
        })
    }

    pub fn peer_id(&self, device: &str) -> String {
        format!("{}:{device}", self.user_id)
    }

    /// Fail early if the run outlasts the access token (FireMode closes sockets at expiry).
    pub fn check_token_lasts(&self, run: Duration) -> Result<()> {
        if let Some(exp) = self.token_expires {
            let left = (exp - chrono::Utc::now()).num_seconds();
            if (left as f64) < run.as_secs_f64() + 30.0 {
                bail!(
                    "the access token expires in {left} s but the run needs about {:.0} s: start the server with FIREMODE_ACCESS_TOKEN_TTL_SECS=3600",
                    run.as_secs_f64() + 30.0
                );
            }
        }
        Ok(())
    }

    /// `n` documents of `assets` items each, ready to be requested (FireMode: registered
    /// sessions; reference: specs to seed).
    pub async fn documents(&self, args: &TargetArgs, n: usize) -> Result<Vec<DocSpec>> {
        match self.kind {
            ServerKind::Reference => {
                if let Some(p) = args.sessions_file.as_ref().filter(|p| p.exists()) {
                    let ids = read_ids(p)?;
                    if ids.len() < n {
                        bail!(
                            "{} holds {} documents, {n} needed: seed them again with a new file",
                            p.display(),
                            ids.len()
                        );
                    }
                    return Ok(ids
                        .into_iter()
                        .take(n)
                        .map(|id| DocSpec { id, seed: None })
                        .collect());
                }
                let building = Uuid::new_v4();
                let org = Uuid::new_v4();
                let items: Vec<ItemInit> = (0..args.assets)
                    .map(|_| ItemInit {
                        asset_id: Uuid::new_v4(),
                        rule_code: EXTINGUISHER_RULE.into(),
                    })
                    .collect();
                let docs: Vec<DocSpec> = (0..n)
                    .map(|_| {
                        let id = Uuid::new_v4();
                        DocSpec {
                            id: DocumentId::from_uuid(id).to_string(),
                            seed: Some(Arc::new(SessionInit {
                                session_id: id,
                                building_id: building,
                                org_id: org,
                                rule_set_code: "AS1851".into(),
                                rule_set_version: "2012.1.0".into(),
                                frequency: "six_monthly".into(),
                                name: "Six-monthly service (sync bench)".into(),
                                items: items.clone(),
                            })),
                        }
                    })
                    .collect();
                Ok(docs)
            }
            ServerKind::Firemode => {
                let mut ids = match &args.sessions_file {
                    Some(p) if p.exists() => read_ids(p)?,
                    _ => Vec::new(),
                };
                if ids.len() < n {
                    let more = self.create_sessions(args, n - ids.len()).await?;
                    ids.extend(more);
                    if let Some(p) = &args.sessions_file {
                        std::fs::write(p, ids.join("\n") + "\n")
                            .with_context(|| format!("cannot write {}", p.display()))?;
                    }
                }
                ids.truncate(n);
                Ok(ids
                    .into_iter()
                    .map(|id| DocSpec { id, seed: None })
                    .collect())
            }
        }
    }

    fn rest(&self) -> Result<&Client> {
        self.rest.as_ref().context("no REST client for this server")
    }

    async fn create_sessions(&self, args: &TargetArgs, n: usize) -> Result<Vec<String>> {
        let client = self.rest()?;
        let building = match args.building_id {
            Some(b) => b,
            None => self.create_building(args.assets).await?,
        };
        eprintln!("creating {n} sessions on building {building} ...");
        let t0 = std::time::Instant::now();
        let ids: Vec<String> = stream::iter(0..n)
            .map(|i| async move {
                let name = format!("Sync bench {i}");
                crate::bench::fixtures::create_session(client, building, &name, "six_monthly")
                    .await
                    .map(|s| s.document_id)
            })
            .buffer_unordered(args.setup_concurrency.max(1))
            .try_collect()
            .await
            .context("creating sessions failed")?;
        eprintln!(
            "created {n} sessions in {:.1} s",
            t0.elapsed().as_secs_f64()
        );
        Ok(ids)
    }

    /// A building of `assets` portable extinguishers: the items the reference server's
    /// documents get too.
    async fn create_building(&self, assets: usize) -> Result<Uuid> {
        let kinds = ["portable_extinguisher"];
        crate::bench::fixtures::create_building(self.rest()?, &kinds, assets)
            .await
            .context("creating the building failed")
    }

    /// Loaded documents as the server reports them (FireMode `/metrics`), if it does.
    pub async fn loaded_documents(&self) -> Option<u64> {
        if self.kind != ServerKind::Firemode {
            return None;
        }
        let text = firemode_client::reqwest::get(format!("{}/metrics", self.base))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("firemode_sync_documents_loaded "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|v| v as u64)
    }

    /// Wait until the server has unloaded every document (FireMode), at most `wait`.
    pub async fn wait_unloaded(&self, wait: Duration) -> Option<u64> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let n = self.loaded_documents().await?;
            if n == 0 || tokio::time::Instant::now() >= deadline {
                return Some(n);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Push every seed document to the reference server (one connection per worker), so that
    /// clients can then `request` them. A no-op for FireMode.
    /// Once seeded, their ids go to `file` (when given), for a later run to reuse.
    pub async fn seed(
        &self,
        docs: &[DocSpec],
        concurrency: usize,
        file: Option<&Path>,
    ) -> Result<()> {
        if self.kind != ServerKind::Reference {
            return Ok(());
        }
        let all: Vec<&str> = docs.iter().map(|d| d.id.as_str()).collect();
        // Documents read from --sessions-file were seeded by an earlier run.
        let docs: Vec<DocSpec> = docs.iter().filter(|d| d.seed.is_some()).cloned().collect();
        if docs.is_empty() {
            return Ok(());
        }
        let t0 = std::time::Instant::now();
        let chunks: Vec<Vec<DocSpec>> = docs
            .chunks(docs.len().div_ceil(concurrency.max(1)).max(1))
            .map(|c| c.to_vec())
            .collect();
        let mut tasks = Vec::new();
        for (w, chunk) in chunks.into_iter().enumerate() {
            let ep = self.endpoint.clone();
            let peer_id = self.peer_id(&format!("seed-{w}"));
            tasks.push(tokio::spawn(async move {
                let mut p = Peer::connect(&ep, peer_id, Duration::from_secs(10)).await?;
                for d in chunk {
                    let mut doc = d
                        .build_seed(ActorId::random())?
                        .context("nothing to seed")?;
                    let mut state = sync::State::new();
                    peer::sync_until_equal(
                        &mut p,
                        &d.id,
                        &mut doc,
                        &mut state,
                        false,
                        Duration::from_secs(30),
                    )
                    .await?;
                }
                p.close().await;
                anyhow::Ok(())
            }));
        }
        for t in tasks {
            t.await.context("seeding task panicked")??;
        }
        eprintln!(
            "seeded {} documents in {:.1} s",
            docs.len(),
            t0.elapsed().as_secs_f64()
        );
        if let Some(p) = file {
            std::fs::write(p, all.join("\n") + "\n")
                .with_context(|| format!("cannot write {}", p.display()))?;
        }
        Ok(())
    }
}

fn read_ids(p: &Path) -> Result<Vec<String>> {
    let text =
        std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
    let ids: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    for id in &ids {
        id.parse::<DocumentId>()
            .map_err(|e| anyhow!("{}: '{id}' is not a document id: {e}", p.display()))?;
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_hosts() {
        assert!(is_loopback("127.0.0.1"));
        assert!(is_loopback("localhost"));
        assert!(is_loopback("[::1]"));
        assert!(!is_loopback("10.0.0.1"));
        assert!(!is_loopback("example.com"));
    }

    #[test]
    fn seed_documents_have_one_item_per_asset() {
        let spec = DocSpec {
            id: "x".into(),
            seed: Some(Arc::new(SessionInit {
                session_id: Uuid::new_v4(),
                building_id: Uuid::new_v4(),
                org_id: Uuid::new_v4(),
                rule_set_code: "AS1851".into(),
                rule_set_version: "2012.1.0".into(),
                frequency: "six_monthly".into(),
                name: "n".into(),
                items: (0..5)
                    .map(|_| ItemInit {
                        asset_id: Uuid::new_v4(),
                        rule_code: EXTINGUISHER_RULE.into(),
                    })
                    .collect(),
            })),
        };
        let doc = spec.build_seed(ActorId::random()).unwrap().unwrap();
        assert_eq!(firemode_sync_core::project(&doc).items.len(), 5);
    }
}
