//! Argon2id password hashing, always on a blocking thread (it takes tens of milliseconds and
//! ~19 MiB by design), and never more at once than the machine has cores.
//!
//! Unbounded, 64 concurrent failed logins for unknown emails took the server from 18 MiB to
//! 1.2 GiB (issue 12): each hash holds 19 MiB, and the blocking pool ran as many as arrived. Now
//! every hash first takes a permit from its [`Hasher`]; a request that cannot get one within the
//! hasher's wait is answered 503 with `Retry-After` instead of queueing without bound.

use std::sync::OnceLock;
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

pub use super::policy::{check_policy, PolicyContext, MIN_PASSWORD_LEN};

/// Argon2id parameters for new hashes: OWASP Password Storage Cheat Sheet (2025), first
/// recommended configuration "m=19456 (19 MiB), t=2, p=1" (its equivalent alternatives trade
/// memory for passes; this one keeps the per-hash memory, which bounds a login storm, low).
/// Hashes stored with other parameters still verify: verification reads them from the PHC
/// string. Pinned by `tests::parameters_are_owasp`.
pub const ARGON2_M_KIB: u32 = 19_456;
pub const ARGON2_T: u32 = 2;
pub const ARGON2_P: u32 = 1;

/// How long a request waits for a hashing permit by default (`password_hash_wait_ms`).
pub const PERMIT_WAIT: Duration = Duration::from_secs(2);

/// All hashing permits were taken for the whole wait; answered 503 with `Retry-After`.
#[derive(Debug, thiserror::Error)]
#[error("the server is busy checking passwords; retry shortly")]
pub struct Busy {
    pub retry_after_secs: u64,
}

/// Bounded password hashing: at most `concurrency` hashes at once (default: one per core;
/// argon2 with p=1 is single-threaded and CPU-bound, so more at once would only add memory,
/// 19 MiB each, and latency, not throughput), each caller waiting at most `wait` for its turn.
/// One per server (`AppState::hasher`); the free functions below use a process-wide one.
pub struct Hasher {
    permits: Semaphore,
    wait: Duration,
}

impl Hasher {
    /// `concurrency` 0 means one per core.
    pub fn new(concurrency: usize, wait: Duration) -> Self {
        let n = if concurrency == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            concurrency
        };
        Self {
            permits: Semaphore::new(n),
            wait,
        }
    }

    /// Run `f` on a blocking thread once a permit is free, or fail with [`Busy`].
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let permit = match tokio::time::timeout(self.wait, self.permits.acquire()).await {
            Ok(Ok(p)) => p,
            // The semaphore is never closed; a timeout is the busy case.
            _ => {
                return Err(Busy {
                    retry_after_secs: 1,
                }
                .into())
            }
        };
        let out = tokio::task::spawn_blocking(f).await?;
        drop(permit);
        out
    }

    pub async fn hash(&self, password: String) -> anyhow::Result<String> {
        self.run(move || hash_blocking(&password)).await
    }

    /// Verify; with `None` (unknown user) a dummy hash is checked so timing does not reveal
    /// whether the email exists.
    pub async fn verify(&self, password: String, phc: Option<String>) -> anyhow::Result<bool> {
        self.run(move || {
            let known = phc.is_some();
            let phc = phc.unwrap_or_else(|| dummy_hash().to_owned());
            let Ok(parsed) = PasswordHash::new(&phc) else {
                return Ok(false);
            };
            // Parameters come from the PHC string, so older hashes with other costs verify.
            let ok = Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok();
            Ok(ok && known)
        })
        .await
    }
}

/// The process-wide hasher for callers without a server (admin CLI, test set-up).
fn global() -> &'static Hasher {
    static GLOBAL: OnceLock<Hasher> = OnceLock::new();
    GLOBAL.get_or_init(|| Hasher::new(0, PERMIT_WAIT))
}

fn hasher() -> Argon2<'static> {
    // The constants are valid parameters; `Params::new` only fails outside argon2's bounds.
    let params = Params::new(ARGON2_M_KIB, ARGON2_T, ARGON2_P, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

pub async fn hash(password: String) -> anyhow::Result<String> {
    global().hash(password).await
}

/// Hash without a permit: for the admin CLI and tests, which run outside the server.
pub fn hash_blocking(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Ok(hasher()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("argon2: {e}"))?
        .to_string())
}

/// Verify with the process-wide hasher (see [`Hasher::verify`]).
pub async fn verify(password: String, phc: Option<String>) -> anyhow::Result<bool> {
    global().verify(password, phc).await
}

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_blocking("not a real password, only for timing").unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_owasp() {
        let phc = hash_blocking("correct horse battery staple").unwrap();
        assert!(
            phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "OWASP's Argon2id configuration (m=19 MiB, t=2, p=1): {phc}"
        );
    }

    #[tokio::test]
    async fn hashes_with_other_parameters_still_verify() {
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let old = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(4096, 3, 1, None).unwrap(),
        )
        .hash_password(b"an older password", &salt)
        .unwrap()
        .to_string();
        assert!(old.contains("m=4096,t=3,p=1"));
        assert!(verify("an older password".into(), Some(old.clone()))
            .await
            .unwrap());
        assert!(!verify("not it".into(), Some(old)).await.unwrap());
        let new = hash("a new password".into()).await.unwrap();
        assert!(verify("a new password".into(), Some(new)).await.unwrap());
        assert!(!verify("a new password".into(), None).await.unwrap());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hashing_is_bounded_by_permits() {
        // The only permit held: the next hash waits its deadline and is told to retry.
        let wait = Duration::from_millis(200);
        let hasher = Hasher::new(1, wait);
        let held = hasher.permits.acquire().await.unwrap();
        let started = std::time::Instant::now();
        let err = hasher.verify("x".into(), None).await.unwrap_err();
        assert!(err.downcast_ref::<Busy>().is_some(), "{err}");
        assert!(started.elapsed() >= wait);
        // The 503 it becomes carries Retry-After.
        let res =
            axum::response::IntoResponse::into_response(crate::http::error::ApiError::from(err));
        assert_eq!(res.status(), 503);
        assert_eq!(res.headers()["retry-after"], "1");
        drop(held);
        assert!(!hasher.verify("x".into(), None).await.unwrap());
    }
}
