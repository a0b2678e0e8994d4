//! Login throttling that slows guessing without becoming a way to lock people out.
//!
//! The unit is the (email, client address) pair, kept in the database so every node shares it
//! and `firemode admin unlock` can clear it:
//! - a pair may fail `max_failures - 1` times freely; from the `max_failures`-th failure on it
//!   waits a growing delay (step * k^2: 30 s, 2 min, 4.5 min, ... capped at the lockout);
//! - attempts are counted *before* the password hash runs, so a burst of concurrent guesses
//!   cannot all slip through while the first ones are still hashing;
//! - an address that has failed many times (an attacker cycling through emails) gets no second
//!   try on any email it already failed for, while a first attempt for an email is never
//!   refused: a correct password from an address that has not failed for that account always
//!   gets in, however much its neighbours behind the same NAT failed, and however much anyone
//!   elsewhere failed for that account.
//!
//! Unknown and known emails are counted the same way, so throttling tells nothing about which
//! emails have accounts.

use std::net::IpAddr;
use std::time::Duration;

use crate::store::{Store, StoreResult, ThrottleRule};

/// An address may fail this many times more than one pair before it loses second tries.
const ADDRESS_FACTOR: i64 = 4;
/// The first growing delay, in ms (then 4x, 9x, ... this).
const STEP_MS: i64 = 30_000;

pub struct LoginThrottle {
    max_failures: i64,
    lockout: Duration,
}

/// The attempt may go ahead; it has been counted as a failure until [`LoginThrottle::succeeded`].
#[derive(Debug)]
pub struct Attempt {
    email: String,
    address: String,
}

impl LoginThrottle {
    pub fn new(max_failures: u32, lockout: Duration) -> Self {
        Self {
            max_failures: i64::from(max_failures.max(1)),
            lockout,
        }
    }

    fn rule(&self) -> ThrottleRule {
        let window_ms = i64::try_from(self.lockout.as_millis()).unwrap_or(i64::MAX / 4);
        ThrottleRule {
            window_ms,
            free: self.max_failures,
            step_ms: STEP_MS.min(window_ms.max(1)),
            max_ms: window_ms,
        }
    }

    /// Count an attempt before its password is checked, or `Err(seconds to wait)`.
    pub async fn begin(
        &self,
        store: &dyn Store,
        email: &str,
        ip: Option<IpAddr>,
    ) -> StoreResult<Result<Attempt, u64>> {
        let address = ip.map(|i| i.to_string()).unwrap_or_default();
        let now = chrono::Utc::now().timestamp_millis();
        let rule = self.rule();
        let fresh = |r: &crate::store::ThrottleRow| r.last_at >= now - rule.window_ms;
        let (pair, whole) = store.throttle_rows(email, &address).await?;
        // An address over its limit gets no second try on an email it already failed for.
        let pair_failed = pair.as_ref().is_some_and(|p| fresh(p) && p.failures > 0);
        if let Some(w) = whole.filter(|w| fresh(w)) {
            if pair_failed && w.failures >= self.max_failures * ADDRESS_FACTOR {
                return Ok(Err(wait_secs(w.last_at + rule.window_ms - now)));
            }
        }
        if store
            .throttle_attempt(email, &address, now, rule)
            .await?
            .is_none()
        {
            // Locked; read the lock again, a concurrent attempt may have just set it.
            let (pair, _) = store.throttle_rows(email, &address).await?;
            return Ok(Err(wait_secs(pair.map_or(0, |p| p.locked_until) - now)));
        }
        // The address as a whole: counted, never locked by itself (see the module comment).
        let whole_rule = ThrottleRule {
            free: i64::MAX / 4,
            ..rule
        };
        store
            .throttle_attempt("", &address, now, whole_rule)
            .await?;
        Ok(Ok(Attempt {
            email: email.to_owned(),
            address,
        }))
    }

    /// The password was never checked (503): take the attempt back.
    pub async fn abandon(&self, store: &dyn Store, attempt: Attempt) -> StoreResult<()> {
        store
            .throttle_forgive(&attempt.email, &attempt.address)
            .await?;
        store.throttle_forgive("", &attempt.address).await
    }

    /// The password was right: this pair starts over and the address gets its attempt back.
    pub async fn succeeded(&self, store: &dyn Store, attempt: Attempt) -> StoreResult<()> {
        store
            .throttle_clear(&attempt.email, Some(&attempt.address))
            .await?;
        store.throttle_forgive("", &attempt.address).await
    }
}

fn wait_secs(ms: i64) -> u64 {
    u64::try_from((ms.max(1000) + 999) / 1000).unwrap_or(1)
}
