//! A small JSON-over-HTTP client for tests.

use reqwest::Method;
use serde_json::Value;
use uuid::Uuid;

#[derive(Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
}

/// A response, read whole.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
    pub json: Value,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }
    pub fn str(&self, field: &str) -> &str {
        self.json[field]
            .as_str()
            .unwrap_or_else(|| panic!("no string field {field} in {}", self.body))
    }
    pub fn uuid(&self, field: &str) -> Uuid {
        self.str(field)
            .parse()
            .unwrap_or_else(|_| panic!("{field} is not a uuid in {}", self.body))
    }
}

impl Client {
    pub fn new(base: &str) -> Self {
        Self {
            base: base.to_owned(),
            http: reqwest::Client::new(),
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn raw(&self) -> &reqwest::Client {
        &self.http
    }

    pub fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let mut rb = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        rb
    }

    pub async fn send(rb: reqwest::RequestBuilder) -> Resp {
        Self::read(rb.send().await.expect("request failed")).await
    }

    async fn read(res: reqwest::Response) -> Resp {
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let body = res.text().await.expect("body");
        let json = serde_json::from_str(&body).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            body,
            json,
        }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Resp {
        Self::send(self.request(Method::GET, path, token)).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Resp {
        Self::send(self.request(Method::POST, path, token).json(body)).await
    }

    pub async fn patch(&self, path: &str, token: Option<&str>, body: &Value) -> Resp {
        Self::send(self.request(Method::PATCH, path, token).json(body)).await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> Resp {
        Self::send(self.request(Method::DELETE, path, token)).await
    }

    /// POST a raw body with a content type.
    /// POST a body over a size limit. The server answers 413 as soon as it sees the
    /// Content-Length and closes the connection without reading the rest, so a client still
    /// writing the body may get a broken pipe instead of the answer. `None` is that case (the
    /// body was refused before it was read); anything else is the answer.
    pub async fn post_oversize(
        &self,
        path: &str,
        token: Option<&str>,
        content_type: &str,
        body: Vec<u8>,
    ) -> Option<Resp> {
        // Its own client: the server may close the connection after refusing the body, and a
        // pooled connection it is closing must not be handed to the caller's next request.
        let once = Self {
            base: self.base.clone(),
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .expect("http client"),
        };
        let sent = once
            .request(Method::POST, path, token)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await;
        match sent {
            Ok(res) => Some(Self::read(res).await),
            Err(e) if e.is_request() && !e.is_timeout() && !e.is_connect() => None,
            Err(e) => panic!("request failed: {e:?}"),
        }
    }

    pub async fn post_raw(
        &self,
        path: &str,
        token: Option<&str>,
        content_type: &str,
        body: Vec<u8>,
    ) -> Resp {
        Self::send(
            self.request(Method::POST, path, token)
                .header("content-type", content_type)
                .body(body),
        )
        .await
    }
}
