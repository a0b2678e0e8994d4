//! Errors: what the server said ([`ApiError`]) and what went wrong on the way ([`Error`]).

use std::fmt;

use serde::Deserialize;

/// An error answer from the server: the RFC 9457 problem+json body FireMode sends with every
/// non-2xx response.
///
/// When a response is not problem+json (a proxy's HTML page, say), the fields are filled in
/// from what is known: `code` is `unexpected_response` and `detail` the start of the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status code.
    pub status: u16,
    /// Stable snake_case error code, e.g. `unauthorized`, `invalid_body`, `already_exists`.
    pub code: String,
    /// Human-readable explanation of what was wrong with the request.
    pub detail: String,
    /// The server's request id (also in the `x-request-id` header); quote it in bug reports.
    pub request_id: Option<String>,
    /// Whether the server says repeating the request may succeed (429, 503, 500, in-flight).
    pub retryable: bool,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.detail)?;
        if let Some(id) = &self.request_id {
            write!(f, " (request id {id})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

/// The wire form; every member optional so a partial body still yields what it has.
#[derive(Deserialize)]
struct ProblemBody {
    status: Option<u16>,
    code: Option<String>,
    title: Option<String>,
    detail: Option<String>,
    request_id: Option<String>,
    retryable: Option<bool>,
}

impl ApiError {
    /// Build from a non-2xx response's status, `x-request-id` header and body bytes.
    pub(crate) fn from_response(
        status: u16,
        header_request_id: Option<String>,
        body: &[u8],
    ) -> Self {
        match serde_json::from_slice::<ProblemBody>(body) {
            Ok(p) => ApiError {
                status: p.status.unwrap_or(status),
                code: p.code.unwrap_or_else(|| "unexpected_response".into()),
                detail: p
                    .detail
                    .or(p.title)
                    .unwrap_or_else(|| format!("HTTP {status}")),
                request_id: p.request_id.or(header_request_id),
                retryable: p.retryable.unwrap_or(status == 429 || status >= 500),
            },
            Err(_) => {
                let text = String::from_utf8_lossy(body);
                let text = text.trim();
                let detail = if text.is_empty() {
                    format!("HTTP {status} with an empty body")
                } else {
                    text.chars().take(200).collect()
                };
                ApiError {
                    status,
                    code: "unexpected_response".into(),
                    detail,
                    request_id: header_request_id,
                    retryable: status == 429 || status >= 500,
                }
            }
        }
    }

    /// True for a 401 caused by an expired access token: code `token_expired` (older servers
    /// said `unauthorized` with a detail mentioning expiry, which is still recognised).
    pub(crate) fn says_expired(&self) -> bool {
        self.status == 401 && (self.code == "token_expired" || self.detail.contains("expired"))
    }
}

/// Everything a [`crate::Client`] call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with an error status.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The request did not complete: connection refused, reset, timed out, ...
    #[error("request to {url} failed: {reason}")]
    Transport {
        /// The URL that was being requested.
        url: String,
        /// The innermost cause, for a one-line message.
        reason: String,
        /// The underlying error.
        #[source]
        source: reqwest::Error,
    },
    /// A 2xx answer whose body is not what this client expects (a version mismatch).
    #[error("unexpected response body from {url}: {source}")]
    Decode {
        /// The URL that was requested.
        url: String,
        /// Why the body did not parse.
        #[source]
        source: serde_json::Error,
    },
    /// The call needs a token and the client has none (log in first).
    #[error("not logged in")]
    NotLoggedIn,
    /// The base URL given to [`crate::Client::new`] is not an http(s) URL.
    #[error("invalid server URL '{url}': {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl Error {
    /// The HTTP status when the server answered, `None` for transport and local errors.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api(e) => Some(e.status),
            _ => None,
        }
    }

    /// The server's error body, when there is one.
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            Error::Api(e) => Some(e),
            _ => None,
        }
    }

    /// Whether repeating the call may succeed: the server said so, or the transport failed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Api(e) => e.retryable,
            Error::Transport { .. } => true,
            _ => false,
        }
    }

    pub(crate) fn transport(url: &str, source: reqwest::Error) -> Self {
        let mut reason = source.to_string();
        let mut cause: Option<&dyn std::error::Error> = std::error::Error::source(&source);
        while let Some(c) = cause {
            reason = c.to_string();
            cause = c.source();
        }
        if source.is_timeout() {
            reason = format!("timed out ({reason})");
        }
        Error::Transport {
            url: url.to_owned(),
            reason,
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_problem_json() {
        let body = br#"{"type":"https://firemode.dev/problems/unauthorized","title":"Unauthorized",
            "status":401,"detail":"the access token has expired","code":"unauthorized",
            "request_id":"r-1","retryable":false}"#;
        let e = ApiError::from_response(401, None, body);
        assert_eq!(e.status, 401);
        assert_eq!(e.code, "unauthorized");
        assert_eq!(e.request_id.as_deref(), Some("r-1"));
        assert!(!e.retryable);
        assert!(e.says_expired());
        assert_eq!(
            e.to_string(),
            "401 unauthorized: the access token has expired (request id r-1)"
        );
    }

    #[test]
    fn non_problem_body_still_gives_an_error() {
        let e = ApiError::from_response(502, Some("h-1".into()), b"<html>Bad gateway</html>");
        assert_eq!(e.code, "unexpected_response");
        assert_eq!(e.detail, "<html>Bad gateway</html>");
        assert_eq!(e.request_id.as_deref(), Some("h-1"));
        assert!(e.retryable);
        let e = ApiError::from_response(404, None, b"");
        assert_eq!(e.detail, "HTTP 404 with an empty body");
        assert!(!e.retryable);
    }

    #[test]
    fn revoked_is_not_expired() {
        let body =
            br#"{"status":401,"code":"unauthorized","detail":"the access token has been revoked"}"#;
        assert!(!ApiError::from_response(401, None, body).says_expired());
    }
}
