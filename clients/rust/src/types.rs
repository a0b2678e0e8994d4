//! Request and response bodies, as the server defines them (`server/src/http/*.rs`).

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The answer of `POST /v1/auth/login` and `POST /v1/auth/refresh`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenPair {
    /// JWT for `Authorization: Bearer`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires (900 by default).
    pub expires_in: u64,
    /// Opaque; exchanged for a new pair at `/v1/auth/refresh`, which rotates it.
    pub refresh_token: String,
}

// Tokens are credentials: never print them.
impl fmt::Debug for TokenPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenPair")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

/// The tokens a [`crate::Client`] holds, with the access token's expiry as a wall-clock time,
/// so they can be saved (e.g. by `firemode-cli`) and given to a later client.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    /// JWT for `Authorization: Bearer`.
    pub access_token: String,
    /// Opaque refresh token (single use: the server rotates it).
    pub refresh_token: String,
    /// When the access token expires, by this machine's clock.
    pub access_expires_at: DateTime<Utc>,
}

impl Tokens {
    /// The tokens of a pair received at `now`.
    pub fn from_pair(pair: &TokenPair, now: DateTime<Utc>) -> Self {
        // A nonsensical lifetime saturates instead of overflowing.
        let access_expires_at = i64::try_from(pair.expires_in)
            .ok()
            .and_then(chrono::Duration::try_seconds)
            .and_then(|ttl| now.checked_add_signed(ttl))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        Tokens {
            access_token: pair.access_token.clone(),
            refresh_token: pair.refresh_token.clone(),
            access_expires_at,
        }
    }

    /// Whether the access token has expired at `now`.
    pub fn access_expired(&self, now: DateTime<Utc>) -> bool {
        self.access_expires_at <= now
    }
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokens")
            .field("access_expires_at", &self.access_expires_at)
            .finish_non_exhaustive()
    }
}

/// A user's role within their organisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Users, rules, everything.
    Admin,
    /// Buildings, assets, sessions, defects, reports.
    Office,
    /// Reads buildings; writes the sessions assigned to them.
    Inspector,
    /// Reads everything in the organisation, writes nothing.
    Auditor,
    /// A role this client version does not know (a newer server).
    #[serde(other)]
    Unknown,
}

impl Role {
    /// The wire name (`admin`, `office`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Office => "office",
            Role::Inspector => "inspector",
            Role::Auditor => "auditor",
            Role::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A user as the API shows it (`UserView`); PII fields are decrypted by the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// User id (UUIDv7).
    pub id: Uuid,
    /// The organisation the user belongs to.
    pub org_id: Uuid,
    /// Login email, lower-cased.
    pub email: String,
    /// Role within the organisation.
    pub role: Role,
    /// Full name, if set.
    pub full_name: Option<String>,
    /// Phone number, if set.
    pub phone: Option<String>,
    /// Inactive users cannot log in.
    pub active: bool,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// Body of `POST /v1/users` (admin only).
#[derive(Clone, Serialize)]
pub struct NewUser {
    /// Login email.
    pub email: String,
    /// Initial password; must meet the server's password policy.
    pub password: String,
    /// Role within the caller's organisation.
    pub role: Role,
    /// Optional full name (1-200 characters).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub full_name: Option<String>,
    /// Optional phone number (1-200 characters).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

impl fmt::Debug for NewUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewUser")
            .field("email", &self.email)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// Which page of a list to fetch: `?limit=&cursor=`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PageRequest {
    /// At most this many items (server default 50, maximum 500).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page; `None` for the first page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

impl PageRequest {
    /// The first page with the server's default size.
    pub fn first() -> Self {
        Self::default()
    }

    /// The page after `page`, or `None` when `page` was the last.
    pub fn after<T>(&self, page: &Page<T>) -> Option<Self> {
        page.next_cursor.as_ref().map(|c| PageRequest {
            limit: self.limit,
            cursor: Some(c.clone()),
        })
    }
}

/// One page of a list: `{items, next_cursor}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page<T> {
    /// The items, oldest first.
    pub items: Vec<T>,
    /// Pass as [`PageRequest::cursor`] to get the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(expires_in: u64) -> TokenPair {
        TokenPair {
            access_token: "secret-access".into(),
            token_type: "Bearer".into(),
            expires_in,
            refresh_token: "secret-refresh".into(),
        }
    }

    #[test]
    fn expiry_is_computed_from_expires_in() {
        let now = Utc::now();
        let t = Tokens::from_pair(&pair(900), now);
        assert_eq!(t.access_expires_at, now + chrono::Duration::seconds(900));
        assert!(!t.access_expired(now));
        assert!(t.access_expired(now + chrono::Duration::seconds(900)));
        let t = Tokens::from_pair(&pair(u64::MAX), now);
        assert_eq!(t.access_expires_at, DateTime::<Utc>::MAX_UTC);
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let p = pair(900);
        let t = Tokens::from_pair(&p, Utc::now());
        for text in [format!("{p:?}"), format!("{t:?}")] {
            assert!(!text.contains("secret"), "{text}");
        }
    }

    #[test]
    fn unknown_roles_are_tolerated() {
        let r: Role = serde_json::from_str("\"owner\"").unwrap();
        assert_eq!(r, Role::Unknown);
        let r: Role = serde_json::from_str("\"inspector\"").unwrap();
        assert_eq!(r, Role::Inspector);
    }
}
