//! The revocation list, served from memory and kept current from the database.
//!
//! Revocations are rows in `revocations`; every node (and the admin CLI, a separate process)
//! writes there. Nodes poll for new rows every `revocation_poll` and, on PostgreSQL, also wake on
//! NOTIFY. Subscribers (sync sockets) hear about each new revocation through a broadcast channel.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use dashmap::DashMap;
use tokio::sync::broadcast;
use uuid::Uuid;

use super::known_users::KnownUsers;
use super::tokens::Claims;
use crate::store::{Revocation, RevocationKind, Store};

#[derive(Debug, Clone)]
pub enum Revoked {
    Token(String),
    User(Uuid),
    /// A login session (refresh-token family): every access token with this `sid`.
    Family(Uuid),
}

pub struct RevocationList {
    jtis: DashMap<String, i64>,
    users: DashMap<Uuid, i64>,
    /// Revoked token families (`sid`) -> when the last access token of theirs expires.
    families: DashMap<Uuid, i64>,
    last_seq: AtomicI64,
    events: broadcast::Sender<Revoked>,
    /// Users recently looked up for authentication; a user revocation forgets the user.
    pub known: KnownUsers,
}

impl Default for RevocationList {
    fn default() -> Self {
        Self {
            jtis: DashMap::new(),
            users: DashMap::new(),
            families: DashMap::new(),
            last_seq: AtomicI64::new(0),
            events: broadcast::channel(1024).0,
            known: KnownUsers::default(),
        }
    }
}

impl RevocationList {
    pub fn is_revoked(&self, claims: &Claims) -> bool {
        if self.jtis.contains_key(&claims.jti) || self.families.contains_key(&claims.sid) {
            return true;
        }
        // A user revocation at time T revokes tokens with iat < T (seconds, T rounded up).
        matches!(self.users.get(&claims.sub), Some(nb) if claims.iat < *nb)
    }

    /// The `iat` for a token issued now: never before the user's latest revocation, so a login
    /// in the same second as a revocation still gets a valid token.
    pub fn issue_time(&self, user: Uuid, now: DateTime<Utc>) -> i64 {
        let now = now.timestamp();
        self.users.get(&user).map_or(now, |nb| now.max(*nb))
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Revoked> {
        self.events.subscribe()
    }

    fn apply(&self, r: &Revocation) {
        match r.kind {
            RevocationKind::Jti => {
                self.jtis
                    .insert(r.subject.clone(), r.expires_at.timestamp());
                let _ = self.events.send(Revoked::Token(r.subject.clone()));
            }
            RevocationKind::Family => {
                if let Ok(sid) = r.subject.parse::<Uuid>() {
                    self.families.insert(sid, r.expires_at.timestamp());
                    let _ = self.events.send(Revoked::Family(sid));
                }
            }
            RevocationKind::User => {
                if let Ok(user) = r.subject.parse::<Uuid>() {
                    // Role, activity or password changed: ask the database again.
                    self.known.forget(user);
                    let nb = ceil_secs(r.not_before);
                    self.users
                        .entry(user)
                        .and_modify(|v| *v = (*v).max(nb))
                        .or_insert(nb);
                    let _ = self.events.send(Revoked::User(user));
                }
            }
        }
        self.last_seq.fetch_max(r.seq, Ordering::SeqCst);
    }

    /// Load revocations newer than what we have seen.
    pub async fn refresh(&self, store: &dyn Store) -> anyhow::Result<()> {
        let now = Utc::now();
        let rows = store
            .revocations_since(self.last_seq.load(Ordering::SeqCst), now)
            .await?;
        for r in &rows {
            self.apply(r);
        }
        let now_secs = now.timestamp();
        self.jtis.retain(|_, exp| *exp > now_secs);
        self.families.retain(|_, exp| *exp > now_secs);
        Ok(())
    }

    /// Revoke one access token until it would have expired anyway.
    pub async fn revoke_token(&self, store: &dyn Store, claims: &Claims) -> anyhow::Result<()> {
        let exp = DateTime::from_timestamp(claims.exp, 0).unwrap_or_else(Utc::now);
        store
            .insert_revocation(RevocationKind::Jti, &claims.jti, Utc::now(), exp)
            .await?;
        self.refresh(store).await
    }

    /// Revoke every access token of a login session (a refresh-token family, the `sid` claim)
    /// at once: used when a rotated refresh token is replayed, so the thief's access token stops
    /// working too, not only their refresh token. The row lives as long as the longest access
    /// token. Refresh tokens of the family are revoked by the caller.
    pub async fn revoke_family(
        &self,
        store: &dyn Store,
        family: Uuid,
        access_ttl: std::time::Duration,
    ) -> anyhow::Result<()> {
        let now = Utc::now();
        let until = now + chrono::Duration::from_std(access_ttl)? + chrono::Duration::seconds(5);
        store
            .insert_revocation(RevocationKind::Family, &family.to_string(), now, until)
            .await?;
        self.refresh(store).await
    }

    /// Revoke every token a user holds now; the row lives as long as the longest access token.
    pub async fn revoke_user(
        &self,
        store: &dyn Store,
        user: Uuid,
        access_ttl: std::time::Duration,
    ) -> anyhow::Result<()> {
        let now = Utc::now();
        let until = now + chrono::Duration::from_std(access_ttl)? + chrono::Duration::seconds(5);
        store
            .insert_revocation(RevocationKind::User, &user.to_string(), now, until)
            .await?;
        store.revoke_user_refresh_tokens(user, now).await?;
        self.refresh(store).await
    }
}

fn ceil_secs(t: DateTime<Utc>) -> i64 {
    let s = t.timestamp();
    if t.timestamp_subsec_nanos() > 0 {
        s + 1
    } else {
        s
    }
}

/// Keep the list current until `shutdown`: poll, and on PostgreSQL also LISTEN.
pub fn spawn_refresher(
    list: Arc<RevocationList>,
    store: Arc<dyn Store>,
    pg_pool: Option<sqlx::PgPool>,
    every: std::time::Duration,
    shutdown: tokio_util::sync::CancellationToken,
    tasks: &tokio_util::task::TaskTracker,
) {
    let wake = Arc::new(tokio::sync::Notify::new());
    if let Some(pool) = pg_pool {
        let wake = wake.clone();
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            loop {
                let listener = async {
                    let mut l = sqlx::postgres::PgListener::connect_with(&pool).await?;
                    l.listen(crate::store::REVOCATION_CHANNEL).await?;
                    loop {
                        l.recv().await?;
                        wake.notify_one();
                    }
                    #[allow(unreachable_code)]
                    Ok::<(), sqlx::Error>(())
                };
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    res = listener => {
                        if let Err(e) = res {
                            tracing::warn!(error = %e, "revocation listener failed; retrying");
                        }
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    }
                }
            }
        });
    }
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut purge = tokio::time::interval(std::time::Duration::from_secs(3600));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {}
                _ = wake.notified() => {}
                _ = purge.tick() => {
                    if let Err(e) = store.purge_expired(Utc::now()).await {
                        tracing::warn!(error = %e, "purging expired revocations failed");
                    }
                }
            }
            if let Err(e) = list.refresh(store.as_ref()).await {
                tracing::warn!(error = %e, "refreshing the revocation list failed");
            }
        }
    });
}
