//! Access tokens (JWT, HS256 pinned) and opaque refresh tokens.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::store::Role;

/// Every claim is required; a token missing any of them does not deserialize.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: Uuid,
    pub org: Uuid,
    pub role: Role,
    pub jti: String,
    pub iat: i64,
    pub exp: i64,
    pub iss: String,
    pub aud: String,
    /// The login session (refresh-token family) this token belongs to; logout revokes it.
    pub sid: Uuid,
    /// Not before (optional; we never set it, but a token that has one must honour it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
}

/// How far a token's `iat`/`nbf` may lie in the future (clock skew between nodes). A token
/// "issued" later than that was not issued by us as claimed, and one with `iat` far ahead would
/// outlive a user revocation (those compare `iat` with the revocation time).
pub const FUTURE_LEEWAY_SECS: i64 = 60;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the access token has expired")]
    Expired,
    #[error("the access token is invalid")]
    Invalid,
}

pub struct TokenService {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    audience: String,
    pub access_ttl: Duration,
}

impl TokenService {
    pub fn new(secret: &[u8], issuer: &str, audience: &str, access_ttl: Duration) -> Self {
        // Algorithm pinned: tokens claiming `none`, RS256 etc. are rejected before any key use.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.leeway = 0;
        validation.validate_exp = true;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            access_ttl,
        }
    }

    /// Mint an access token. `iat` is `issued_at` (seconds); see `RevocationList::issue_time`.
    pub fn issue(
        &self,
        user: Uuid,
        org: Uuid,
        role: Role,
        sid: Uuid,
        issued_at: i64,
    ) -> (String, Claims) {
        let claims = Claims {
            sub: user,
            org,
            role,
            jti: Uuid::new_v4().to_string(),
            iat: issued_at,
            exp: issued_at + self.access_ttl.as_secs() as i64,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sid,
            nbf: None,
        };
        // Encoding HS256 with a valid key cannot fail.
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .unwrap_or_default();
        (token, claims)
    }

    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        match jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation) {
            Ok(data) => {
                let c = data.claims;
                let horizon = chrono::Utc::now().timestamp() + FUTURE_LEEWAY_SECS;
                if c.iat > horizon || c.nbf.is_some_and(|nbf| nbf > horizon) {
                    return Err(TokenError::Invalid);
                }
                Ok(c)
            }
            Err(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::ExpiredSignature) => {
                Err(TokenError::Expired)
            }
            Err(_) => Err(TokenError::Invalid),
        }
    }
}

/// A fresh refresh token (shown once to the client) and the hash that is stored.
pub fn new_refresh_token() -> (String, Vec<u8>) {
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let token = format!("fmr_{}", B64URL.encode(raw));
    let hash = hash_refresh_token(&token);
    (token, hash)
}

pub fn hash_refresh_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc() -> TokenService {
        TokenService::new(
            b"0123456789abcdef0123456789abcdef",
            "firemode",
            "firemode-api",
            Duration::from_secs(900),
        )
    }

    #[test]
    fn issue_and_verify() {
        let s = svc();
        let now = chrono::Utc::now().timestamp();
        let (t, c) = s.issue(
            Uuid::new_v4(),
            Uuid::new_v4(),
            Role::Office,
            Uuid::new_v4(),
            now,
        );
        let back = s.verify(&t).unwrap();
        assert_eq!(back.jti, c.jti);
        assert_eq!(back.role, Role::Office);
    }

    #[test]
    fn rejects_other_keys_audiences_and_expired() {
        let s = svc();
        let now = chrono::Utc::now().timestamp();
        let other = TokenService::new(
            b"another-secret-another-secret-xx",
            "firemode",
            "firemode-api",
            Duration::from_secs(900),
        );
        let (t, _) = other.issue(
            Uuid::new_v4(),
            Uuid::new_v4(),
            Role::Admin,
            Uuid::new_v4(),
            now,
        );
        assert!(matches!(s.verify(&t), Err(TokenError::Invalid)));
        let aud = TokenService::new(
            b"0123456789abcdef0123456789abcdef",
            "firemode",
            "elsewhere",
            Duration::from_secs(900),
        );
        let (t, _) = aud.issue(
            Uuid::new_v4(),
            Uuid::new_v4(),
            Role::Admin,
            Uuid::new_v4(),
            now,
        );
        assert!(matches!(s.verify(&t), Err(TokenError::Invalid)));
        let (t, _) = s.issue(
            Uuid::new_v4(),
            Uuid::new_v4(),
            Role::Admin,
            Uuid::new_v4(),
            now - 1000,
        );
        assert!(matches!(s.verify(&t), Err(TokenError::Expired)));
    }

    #[test]
    fn refuses_future_iat_and_nbf_beyond_the_leeway() {
        let s = svc();
        let now = chrono::Utc::now().timestamp();
        let issue = |iat| {
            s.issue(
                Uuid::new_v4(),
                Uuid::new_v4(),
                Role::Office,
                Uuid::new_v4(),
                iat,
            )
            .0
        };
        assert!(s.verify(&issue(now + 5)).is_ok(), "small skew is fine");
        assert!(matches!(
            s.verify(&issue(now + 3600)),
            Err(TokenError::Invalid)
        ));
        let (_, mut c) = s.issue(
            Uuid::new_v4(),
            Uuid::new_v4(),
            Role::Office,
            Uuid::new_v4(),
            now,
        );
        c.nbf = Some(now + 3600);
        let t = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &c, &s.encoding).unwrap();
        assert!(matches!(s.verify(&t), Err(TokenError::Invalid)));
        c.nbf = Some(now - 10);
        let t = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &c, &s.encoding).unwrap();
        assert!(s.verify(&t).is_ok());
    }
}
