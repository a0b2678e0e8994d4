//! The users whose tokens were recently accepted: who they are, as the database last said.
//!
//! A token signed with the real key says who its bearer is; the database decides whether that
//! user exists, belongs to the token's organisation, still has the token's role and is active.
//! Asking the database on every request would double the queries of the hot paths, so the
//! answer is kept for [`KNOWN_USER_TTL`] and forgotten earlier when the user changes: every
//! change of role, activity or password writes a user revocation, which every node reads
//! (poll and NOTIFY, see `revocation`) and which drops the entry here. A user changed behind
//! the server's back (SQL by hand) is seen within the TTL.

use std::time::{Duration, Instant};

use dashmap::DashMap;
use uuid::Uuid;

use crate::store::Role;

/// How long an answer about a user is trusted without asking again.
pub const KNOWN_USER_TTL: Duration = Duration::from_secs(30);
/// Entries kept at most; above it the stale ones go, then all (a key holder minting tokens for
/// random ids cannot grow the map without bound).
pub const KNOWN_USER_CAP: usize = 50_000;

/// What the database said about a user: `None` when there is no such user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserFacts {
    pub org: Uuid,
    pub role: Role,
    pub active: bool,
}

#[derive(Default)]
pub struct KnownUsers {
    map: DashMap<Uuid, (Option<UserFacts>, Instant)>,
}

impl KnownUsers {
    /// The cached answer for `user`, if fresh: `Some(None)` means "no such user".
    pub fn get(&self, user: Uuid) -> Option<Option<UserFacts>> {
        let entry = self.map.get(&user)?;
        let (facts, at) = *entry;
        (at.elapsed() < KNOWN_USER_TTL).then_some(facts)
    }

    pub fn put(&self, user: Uuid, facts: Option<UserFacts>) {
        if self.map.len() >= KNOWN_USER_CAP {
            self.map.retain(|_, (_, at)| at.elapsed() < KNOWN_USER_TTL);
            if self.map.len() >= KNOWN_USER_CAP {
                self.map.clear();
            }
        }
        self.map.insert(user, (facts, Instant::now()));
    }

    pub fn forget(&self, user: Uuid) {
        self.map.remove(&user);
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_forgets_and_stays_bounded() {
        let k = KnownUsers::default();
        let u = Uuid::new_v4();
        assert_eq!(k.get(u), None);
        k.put(u, None);
        assert_eq!(k.get(u), Some(None));
        let facts = UserFacts {
            org: Uuid::new_v4(),
            role: Role::Office,
            active: true,
        };
        k.put(u, Some(facts));
        assert_eq!(k.get(u), Some(Some(facts)));
        k.forget(u);
        assert_eq!(k.get(u), None);
        for _ in 0..KNOWN_USER_CAP + 10 {
            k.put(Uuid::new_v4(), None);
        }
        assert!(k.len() <= KNOWN_USER_CAP);
    }
}
