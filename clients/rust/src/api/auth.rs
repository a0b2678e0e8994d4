//! `/v1/auth`: login, refresh, logout.

use serde::Serialize;

use crate::{Client, Error, TokenPair};

#[derive(Serialize)]
struct LoginBody<'a> {
    email: &'a str,
    password: &'a str,
}

impl Client {
    /// `POST /v1/auth/login`. On success the client holds the new tokens.
    ///
    /// Wrong credentials are a 401 `unauthorized`; too many failures a 429 `rate_limited`.
    pub async fn login(&self, email: &str, password: &str) -> Result<TokenPair, Error> {
        let pair: TokenPair = self
            .post_json_anonymous("/v1/auth/login", &LoginBody { email, password })
            .await?;
        self.store_pair(&pair);
        Ok(pair)
    }

    /// `POST /v1/auth/refresh`: exchange the refresh token for a new pair, now.
    ///
    /// Calls that get a 401 for an expired access token do this by themselves; call it
    /// directly only to renew ahead of time. If the server refuses the refresh token (expired,
    /// revoked, or already used), the client forgets its tokens.
    pub async fn refresh(&self) -> Result<TokenPair, Error> {
        let _guard = self.refresh_lock().await;
        let tokens = self.tokens().ok_or(Error::NotLoggedIn)?;
        self.refresh_locked(&tokens.refresh_token).await
    }

    /// `POST /v1/auth/logout`: the server revokes the access token and its refresh family.
    /// The client forgets its tokens on success, and also on a 401 (they were dead already).
    pub async fn logout(&self) -> Result<(), Error> {
        match self.post_empty("/v1/auth/logout").await {
            Ok(()) => {
                self.set_tokens(None);
                Ok(())
            }
            Err(e) => {
                if e.status() == Some(401) {
                    self.set_tokens(None);
                }
                Err(e)
            }
        }
    }
}
