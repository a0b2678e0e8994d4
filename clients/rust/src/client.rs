//! The client core: base URL, token state, the one request path every endpoint goes through
//! (bearer header, refresh-once on an expired token, problem+json errors) and the generic JSON
//! helpers endpoints are written with.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::Utc;
use reqwest::{Method, RequestBuilder, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{ApiError, Error};
use crate::types::{TokenPair, Tokens};

/// Whether a request carries the access token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// No `Authorization` header (login, refresh, health).
    None,
    /// `Authorization: Bearer <access token>`; fails with [`Error::NotLoggedIn`] without one.
    Bearer,
}

/// A FireMode API client. Cheap to clone: clones share the connection pool and the tokens, so
/// a refresh done by one is seen by all.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    /// Without a trailing slash; paths start with `/`.
    base: String,
    tokens: RwLock<Option<Tokens>>,
    /// One refresh at a time: a refresh token is single-use, and presenting a rotated one
    /// makes the server revoke the whole login.
    refresh_lock: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.inner.base)
            .field("logged_in", &self.tokens().is_some())
            .finish()
    }
}

/// Default per-request timeout of [`Client::new`].
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

impl Client {
    /// A client for the server at `base_url` (e.g. `http://127.0.0.1:8080`), with a 30 s
    /// request timeout and no tokens.
    pub fn new(base_url: &str) -> Result<Self, Error> {
        let http = reqwest::Client::builder()
            .timeout(DEFAULT_TIMEOUT)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("firemode-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::InvalidUrl {
                url: base_url.to_owned(),
                reason: format!("cannot build an HTTP client: {e}"),
            })?;
        Self::with_http_client(base_url, http)
    }

    /// A client using a `reqwest::Client` configured by the caller (timeouts, pool size, ...).
    pub fn with_http_client(base_url: &str, http: reqwest::Client) -> Result<Self, Error> {
        let invalid = |reason: &str| Error::InvalidUrl {
            url: base_url.to_owned(),
            reason: reason.to_owned(),
        };
        let url = reqwest::Url::parse(base_url).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("the scheme must be http or https"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid("a server URL has no query or fragment"));
        }
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base: url.as_str().trim_end_matches('/').to_owned(),
                tokens: RwLock::new(None),
                refresh_lock: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// Give the client tokens saved earlier (see [`Client::tokens`]).
    pub fn with_tokens(self, tokens: Tokens) -> Self {
        self.set_tokens(Some(tokens));
        self
    }

    /// The server's base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.inner.base
    }

    /// The tokens held now (after a login or an automatic refresh), to save for later.
    pub fn tokens(&self) -> Option<Tokens> {
        self.inner
            .tokens
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replace (or, with `None`, forget) the tokens.
    pub fn set_tokens(&self, tokens: Option<Tokens>) {
        *self.inner.tokens.write().unwrap_or_else(|p| p.into_inner()) = tokens;
    }

    /// The absolute URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.inner.base, path)
    }

    pub(crate) fn store_pair(&self, pair: &TokenPair) {
        self.set_tokens(Some(Tokens::from_pair(pair, Utc::now())));
    }

    /// Send a request built by `build` and return the successful (2xx) response.
    ///
    /// `build` gets the HTTP client and the absolute URL of `path`, and may be called twice:
    /// with [`Auth::Bearer`], a 401 caused by an expired access token triggers one refresh and
    /// one retry with a freshly built request (so bodies must be re-creatable). The bearer
    /// header is added here. Non-2xx answers become [`Error::Api`].
    ///
    /// This is the extension point for endpoints the JSON helpers do not cover (multipart
    /// uploads, streamed downloads, `Idempotency-Key` and digest headers).
    pub async fn execute<F>(&self, auth: Auth, path: &str, build: F) -> Result<Response, Error>
    where
        F: Fn(&reqwest::Client, &str) -> RequestBuilder,
    {
        let url = self.url(path);
        let used = match auth {
            Auth::None => None,
            Auth::Bearer => Some(self.tokens().ok_or(Error::NotLoggedIn)?),
        };
        let first = self.send_once(&url, used.as_ref(), &build).await;
        let used = match (first, used) {
            (Err(Error::Api(e)), Some(used))
                if e.status == 401 && (e.says_expired() || used.access_expired(Utc::now())) =>
            {
                used
            }
            (result, _) => return result,
        };
        self.refresh_after_expiry(&used).await?;
        let fresh = self.tokens().ok_or(Error::NotLoggedIn)?;
        self.send_once(&url, Some(&fresh), &build).await
    }

    async fn send_once<F>(
        &self,
        url: &str,
        tokens: Option<&Tokens>,
        build: &F,
    ) -> Result<Response, Error>
    where
        F: Fn(&reqwest::Client, &str) -> RequestBuilder,
    {
        let mut rb = build(&self.inner.http, url);
        if let Some(t) = tokens {
            rb = rb.bearer_auth(&t.access_token);
        }
        let res = rb.send().await.map_err(|e| Error::transport(url, e))?;
        if res.status().is_success() {
            return Ok(res);
        }
        let status = res.status().as_u16();
        let request_id = res
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = res.bytes().await.map_err(|e| Error::transport(url, e))?;
        Err(ApiError::from_response(status, request_id, &body).into())
    }

    /// Refresh after `used` was found expired, unless another task already did.
    async fn refresh_after_expiry(&self, used: &Tokens) -> Result<(), Error> {
        let _guard = self.inner.refresh_lock.lock().await;
        match self.tokens() {
            Some(now) if now.access_token != used.access_token => Ok(()),
            Some(now) => self.refresh_locked(&now.refresh_token).await.map(|_| ()),
            None => Err(Error::NotLoggedIn),
        }
    }

    /// `POST /v1/auth/refresh` with the lock held. A refused refresh token is dead for good,
    /// so the tokens are forgotten then.
    pub(crate) async fn refresh_locked(&self, refresh_token: &str) -> Result<TokenPair, Error> {
        #[derive(Serialize)]
        struct Body<'a> {
            refresh_token: &'a str,
        }
        let url = self.url("/v1/auth/refresh");
        let bytes =
            serde_json::to_vec(&Body { refresh_token }).map_err(|source| Error::Decode {
                url: url.clone(),
                source,
            })?;
        // Straight to `send_once`, not `execute`: a refresh is never itself refreshed.
        let build = |http: &reqwest::Client, url: &str| {
            http.post(url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(bytes.clone())
        };
        let result = match self.send_once(&url, None, &build).await {
            Ok(res) => decode::<TokenPair>(res).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(pair) => {
                self.store_pair(&pair);
                Ok(pair)
            }
            Err(e) => {
                if e.status() == Some(401) {
                    self.set_tokens(None);
                }
                Err(e)
            }
        }
    }

    pub(crate) async fn refresh_lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.inner.refresh_lock.lock().await
    }

    /// Send `body` (if any) as JSON and decode a JSON answer.
    async fn send_json<B, T>(
        &self,
        method: Method,
        auth: Auth,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, Error>
    where
        B: Serialize + ?Sized,
        T: DeserializeOwned,
    {
        // Serialised once; the retry after a refresh resends the same bytes.
        let bytes = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| Error::Decode {
                url: self.url(path),
                source: e,
            })?;
        let res = self
            .execute(auth, path, |http, url| {
                let rb = http.request(method.clone(), url);
                match &bytes {
                    Some(b) => rb
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .body(b.clone()),
                    None => rb,
                }
            })
            .await?;
        decode(res).await
    }

    /// `GET path` with the bearer token; decode the JSON answer.
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, Error> {
        self.send_json::<(), T>(Method::GET, Auth::Bearer, path, None)
            .await
    }

    /// `GET path?query` with the bearer token; `query` is serialised as a query string.
    pub async fn get_json_query<Q, T>(&self, path: &str, query: &Q) -> Result<T, Error>
    where
        Q: Serialize + ?Sized,
        T: DeserializeOwned,
    {
        let res = self
            .execute(Auth::Bearer, path, |http, url| http.get(url).query(query))
            .await?;
        decode(res).await
    }

    /// `POST path` with a JSON body and the bearer token; decode the JSON answer.
    pub async fn post_json<B, T>(&self, path: &str, body: &B) -> Result<T, Error>
    where
        B: Serialize + ?Sized,
        T: DeserializeOwned,
    {
        self.send_json(Method::POST, Auth::Bearer, path, Some(body))
            .await
    }

    /// `POST path` with a JSON body, the bearer token and an `Idempotency-Key`: a repeat with
    /// the same key and body replays the first answer instead of acting twice.
    pub async fn post_json_idempotent<B, T>(
        &self,
        path: &str,
        idempotency_key: &str,
        body: &B,
    ) -> Result<T, Error>
    where
        B: Serialize + ?Sized,
        T: DeserializeOwned,
    {
        let bytes = serde_json::to_vec(body).map_err(|e| Error::Decode {
            url: self.url(path),
            source: e,
        })?;
        let res = self
            .execute(Auth::Bearer, path, |http, url| {
                http.post(url)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .header("idempotency-key", idempotency_key)
                    .body(bytes.clone())
            })
            .await?;
        decode(res).await
    }

    /// `PATCH path` with a JSON body and the bearer token; decode the JSON answer.
    pub async fn patch_json<B, T>(&self, path: &str, body: &B) -> Result<T, Error>
    where
        B: Serialize + ?Sized,
        T: DeserializeOwned,
    {
        self.send_json(Method::PATCH, Auth::Bearer, path, Some(body))
            .await
    }

    /// `POST path` without a body, with the bearer token, for endpoints answering 204.
    pub async fn post_empty(&self, path: &str) -> Result<(), Error> {
        self.execute(Auth::Bearer, path, |http, url| http.post(url))
            .await?;
        Ok(())
    }

    /// `POST path` with a JSON body and no token (login and refresh).
    pub(crate) async fn post_json_anonymous<B, T>(&self, path: &str, body: &B) -> Result<T, Error>
    where
        B: Serialize + ?Sized,
        T: DeserializeOwned,
    {
        self.send_json(Method::POST, Auth::None, path, Some(body))
            .await
    }
}

/// Read a 2xx response body as JSON of type `T`.
async fn decode<T: DeserializeOwned>(res: Response) -> Result<T, Error> {
    let url = res.url().to_string();
    let bytes = res.bytes().await.map_err(|e| Error::transport(&url, e))?;
    serde_json::from_slice(&bytes).map_err(|source| Error::Decode { url, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_is_normalised_and_checked() {
        let c = Client::new("http://127.0.0.1:8080/").unwrap();
        assert_eq!(c.url("/v1/users/me"), "http://127.0.0.1:8080/v1/users/me");
        let c = Client::new("http://example.test/api/").unwrap();
        assert_eq!(c.url("/health"), "http://example.test/api/health");
        assert!(matches!(
            Client::new("ftp://example.test"),
            Err(Error::InvalidUrl { .. })
        ));
        assert!(matches!(
            Client::new("127.0.0.1:8080"),
            Err(Error::InvalidUrl { .. })
        ));
        assert!(matches!(
            Client::new("http://h/?x=1"),
            Err(Error::InvalidUrl { .. })
        ));
    }

    #[tokio::test]
    async fn bearer_calls_need_a_login() {
        let c = Client::new("http://127.0.0.1:9").unwrap();
        assert!(matches!(c.me().await, Err(Error::NotLoggedIn)));
    }
}
