//! Slows repeated failed logins per email and per client address. In memory, per node: its job
//! is to make online guessing slow, not to be a global quota.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use dashmap::DashMap;

pub struct LoginLimiter {
    max_failures: u32,
    lockout: Duration,
    failures: DashMap<String, (u32, Instant)>,
}

/// An address may fail this many times more than one email (offices share addresses).
const ADDRESS_FACTOR: u32 = 4;

impl LoginLimiter {
    pub fn new(max_failures: u32, lockout: Duration) -> Self {
        Self {
            max_failures,
            lockout,
            failures: DashMap::new(),
        }
    }

    fn keys(email: &str, ip: Option<IpAddr>) -> [(String, u32); 2] {
        [
            (format!("e:{email}"), 1),
            (
                ip.map(|i| format!("a:{i}")).unwrap_or_default(),
                ADDRESS_FACTOR,
            ),
        ]
    }

    /// `Err(seconds)` when this email or address must wait.
    pub fn check(&self, email: &str, ip: Option<IpAddr>) -> Result<(), u64> {
        let now = Instant::now();
        for (key, factor) in Self::keys(email, ip) {
            if key.is_empty() {
                continue;
            }
            if let Some(entry) = self.failures.get(&key) {
                let (count, since) = *entry;
                let elapsed = now.duration_since(since);
                if count >= self.max_failures * factor && elapsed < self.lockout {
                    return Err((self.lockout - elapsed).as_secs().max(1));
                }
            }
        }
        Ok(())
    }

    pub fn failed(&self, email: &str, ip: Option<IpAddr>) {
        let now = Instant::now();
        for (key, _) in Self::keys(email, ip) {
            if key.is_empty() {
                continue;
            }
            let mut e = self.failures.entry(key).or_insert((0, now));
            if now.duration_since(e.1) >= self.lockout {
                *e = (0, now);
            }
            e.0 += 1;
            e.1 = now;
        }
        if self.failures.len() > 100_000 {
            let lockout = self.lockout;
            self.failures
                .retain(|_, (_, since)| now.duration_since(*since) < lockout);
        }
    }

    pub fn succeeded(&self, email: &str) {
        self.failures.remove(&format!("e:{email}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_max_failures_per_email() {
        let l = LoginLimiter::new(3, Duration::from_secs(60));
        let ip: Option<IpAddr> = "10.0.0.1".parse().ok();
        for _ in 0..3 {
            assert!(l.check("a@x", ip).is_ok());
            l.failed("a@x", ip);
        }
        let wait = l.check("a@x", ip).unwrap_err();
        assert!(wait > 0 && wait <= 60);
        assert!(
            l.check("b@x", ip).is_ok(),
            "other emails from the address still pass"
        );
        l.succeeded("b@x");
    }
}
