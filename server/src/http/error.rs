//! The HTTP error type: every error leaves as RFC 9457 `application/problem+json` with a stable
//! `code`, the request id and whether a retry may help. 5xx details are logged, never sent.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::store::StoreError;

tokio::task_local! {
    /// The current request's id, set by the request middleware for the handler's lifetime.
    pub static REQUEST_ID: String;
}

pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{detail}")]
    BadRequest { code: &'static str, detail: String },
    #[error("{0}")]
    Unauthorized(String),
    /// A well-formed, correctly signed token past its `exp`: the client should refresh.
    #[error("the access token has expired")]
    TokenExpired,
    #[error("{0}")]
    Forbidden(String),
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{detail}")]
    Conflict { code: &'static str, detail: String },
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{detail}")]
    Unprocessable { code: &'static str, detail: String },
    #[error("too many requests")]
    TooManyRequests { retry_after_secs: u64 },
    #[error("{0}")]
    Unavailable(String),
    /// Busy or cut off from the database: the request did no work and may be retried after
    /// `retry_after_secs` (sent as `Retry-After`).
    #[error("{detail}")]
    Overloaded {
        detail: String,
        retry_after_secs: u64,
    },
    /// A problem `ApiError`'s other variants cannot express: a specific code on another status
    /// (`rule_not_found` on a 404) or extension members (the CSV import's `errors`).
    #[error("{}", .0.detail)]
    Custom(Box<CustomProblem>),
    /// Not `#[from]`: `From<anyhow::Error>` below first looks for an outage or a full password
    /// hasher inside the error, so every `?` on the way maps them to 503, not 500.
    #[error(transparent)]
    Internal(anyhow::Error),
}

impl ApiError {
    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            detail: detail.into(),
        }
    }
    pub fn unprocessable(code: &'static str, detail: impl Into<String>) -> Self {
        Self::Unprocessable {
            code,
            detail: detail.into(),
        }
    }
    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        Self::Conflict {
            code,
            detail: detail.into(),
        }
    }
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::Forbidden(detail.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) | Self::TokenExpired => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) | Self::Overloaded { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Custom(p) => p.status,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest { code, .. }
            | Self::Conflict { code, .. }
            | Self::Unprocessable { code, .. } => code,
            Self::Unauthorized(_) => "unauthorized",
            Self::TokenExpired => "token_expired",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::TooManyRequests { .. } => "rate_limited",
            Self::Unavailable(_) | Self::Overloaded { .. } => "unavailable",
            Self::Internal(_) => "internal_error",
            Self::Custom(p) => p.code,
        }
    }

    fn retryable(&self) -> bool {
        matches!(
            self,
            Self::TooManyRequests { .. }
                | Self::Unavailable(_)
                | Self::Overloaded { .. }
                | Self::Internal(_)
        ) || matches!(self, Self::Conflict { code, .. } if *code == "in_flight")
    }

    fn detail(&self) -> String {
        match self {
            Self::Internal(_) => "an internal error occurred; it has been logged".into(),
            Self::NotFound => "no such resource".into(),
            Self::MethodNotAllowed => "this method is not allowed on this resource".into(),
            Self::TooManyRequests { retry_after_secs } => {
                format!("too many attempts; retry after {retry_after_secs} seconds")
            }
            other => other.to_string(),
        }
    }
}

/// A problem with its own status, code and extension members; answered through
/// [`ApiError::Custom`], so every problem+json body is written by one function.
#[derive(Debug)]
pub struct CustomProblem {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
    pub extensions: serde_json::Map<String, serde_json::Value>,
}

impl CustomProblem {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            extensions: serde_json::Map::new(),
        }
    }

    pub fn with(mut self, member: &str, value: serde_json::Value) -> Self {
        self.extensions.insert(member.to_owned(), value);
        self
    }
}

impl From<CustomProblem> for ApiError {
    fn from(p: CustomProblem) -> Self {
        ApiError::Custom(Box::new(p))
    }
}

/// Handlers that answer custom problems used to have an error type of their own; it is the
/// same type now.
pub type HandlerError = ApiError;

/// The problem+json body (RFC 9457 members plus our extensions).
#[derive(Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI naming the problem type: `https://firemode.dev/problems/<code with dashes>`.
    #[serde(rename = "type")]
    #[schema(example = "https://firemode.dev/problems/not-found")]
    pub type_: String,
    /// The HTTP status's reason phrase.
    #[schema(example = "Not Found")]
    pub title: String,
    #[schema(example = 404)]
    pub status: u16,
    /// For people; may change between versions.
    #[schema(example = "no such resource")]
    pub detail: String,
    /// Stable, for programs: `not_found`, `invalid_body`, `invalid_csv`, `rate_limited`...
    #[schema(example = "not_found")]
    pub code: String,
    /// Also the `x-request-id` response header and in the server's log lines.
    pub request_id: Option<String>,
    /// Whether the same request may succeed later (429, 503, 500, `in_flight`).
    pub retryable: bool,
    /// `invalid_csv`: every problem found in the file (with its row); `invalid_field` from the
    /// reference-value routes: every problem of the body (field and message only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<crate::http::csv_upload::RowError>>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let request_id = current_request_id();
        if let Self::Internal(err) = &self {
            tracing::error!(error = ?err, request_id = request_id.as_deref(), "internal error");
        }
        let code = self.code();
        let problem = Problem {
            type_: format!("https://firemode.dev/problems/{}", code.replace('_', "-")),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: self.detail(),
            code: code.to_owned(),
            request_id,
            retryable: self.retryable(),
            errors: None,
        };
        let mut body = match serde_json::to_value(problem) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        };
        if let Self::Custom(p) = &self {
            body.extend(p.extensions.clone());
        }
        let mut res = (status, serde_json::to_vec(&body).unwrap_or_default()).into_response();
        let h = res.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        match &self {
            Self::Unauthorized(_) | Self::TokenExpired => {
                h.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"firemode\", error=\"invalid_token\""),
                );
            }
            Self::TooManyRequests { retry_after_secs }
            | Self::Overloaded {
                retry_after_secs, ..
            } => {
                if let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string()) {
                    h.insert(header::RETRY_AFTER, v);
                }
            }
            _ => {}
        }
        res
    }
}

/// What a client is told while the database cannot be reached: the request did nothing and may
/// be retried (the pool reconnects by itself once the database is back).
fn database_unavailable() -> ApiError {
    ApiError::Overloaded {
        detail: "the database is unavailable; retry shortly".into(),
        retry_after_secs: 2,
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::NotFound,
            StoreError::Conflict(what) => ApiError::conflict(
                "already_exists",
                format!("a resource with this {what} already exists"),
            ),
            ref other if other.is_unavailable() => {
                tracing::warn!(error = %other, "database unavailable");
                database_unavailable()
            }
            other => ApiError::Internal(other.into()),
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        if let Some(busy) = e.downcast_ref::<crate::auth::password::Busy>() {
            return ApiError::Overloaded {
                detail: busy.to_string(),
                retry_after_secs: busy.retry_after_secs,
            };
        }
        // Store calls reached through helpers that return anyhow (audit, idempotency...).
        let outage = e.chain().any(|cause| {
            cause
                .downcast_ref::<StoreError>()
                .is_some_and(StoreError::is_unavailable)
                || cause
                    .downcast_ref::<sqlx::Error>()
                    .is_some_and(crate::store::is_unavailable)
        });
        if outage {
            tracing::warn!(error = %e, "database unavailable");
            return database_unavailable();
        }
        ApiError::Internal(e)
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
