//! Our own extractors: axum's, with rejections turned into problem+json, and one rule for text
//! applied to everything they hand a handler.
//!
//! **Text rule.** PostgreSQL `text` and `jsonb` cannot hold U+0000 (NUL); SQLite can. So that
//! both databases store exactly the same inputs, text containing NUL is refused where it
//! arrives, naming the field, before a handler runs: in JSON bodies (every string and every
//! object key, at any depth) 422 `invalid_text`; in query parameters 400 `invalid_query`; in
//! path parameters 400 `invalid_path` (the codes of those extractors' other refusals). NUL is
//! the only character concerned: lone surrogates cannot reach a handler (Rust strings are valid
//! UTF-8 and the JSON parser refuses `\ud800` alone), and every other code point is valid
//! `text`. The CSV import, the evidence form and its metadata apply [`nul_in`] /
//! [`nul_in_json`] themselves.

use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::error::ApiError;

/// Whether `s` holds a character a database text column cannot store.
pub fn nul_in(s: &str) -> bool {
    s.contains('\0')
}

/// The path (`results[0].notes`, `readings.<key>` for a key) of the first string or object key
/// in `v` that holds a NUL; `prefix` names `v` itself.
pub fn nul_in_json(v: &Value, prefix: &str) -> Option<String> {
    match v {
        Value::String(s) => nul_in(s).then(|| prefix.to_owned()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| nul_in_json(item, &format!("{prefix}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(k, item)| {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            if nul_in(k) {
                Some(format!("{} (a key)", path.replace('\0', "\\u0000")))
            } else {
                nul_in_json(item, &path)
            }
        }),
        _ => None,
    }
}

/// The refusal of a text with NUL in a body field.
pub fn nul_refused(field: &str) -> ApiError {
    ApiError::unprocessable(
        "invalid_text",
        format!(
            "{}: text must not contain the NUL character (U+0000)",
            display_field(field)
        ),
    )
}

fn display_field(field: &str) -> &str {
    if field.is_empty() {
        "the body"
    } else {
        field
    }
}

/// `application/json` or any `application/*+json`, as axum's `Json` accepts.
fn json_content_type(headers: &HeaderMap) -> bool {
    let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.split_once('/') {
        Some(("application", sub)) => sub == "json" || sub.ends_with("+json"),
        _ => false,
    }
}

/// JSON body in, JSON body out. Malformed JSON is 400 `malformed_json`; a well-formed body of
/// the wrong shape (types, missing or unknown fields) is 422 `invalid_body`; a NUL in any text
/// 422 `invalid_text`.
pub struct Json<T>(pub T);

impl<S, T> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !json_content_type(req.headers()) {
            return Err(ApiError::UnsupportedMediaType(
                "expected a JSON body with Content-Type: application/json".into(),
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                too_large()
            } else {
                ApiError::bad_request("invalid_body", r.body_text())
            }
        })?;
        let axum::Json(value) = axum::Json::<T>::from_bytes(&bytes).map_err(json_rejection)?;
        // JSON spells NUL only as the escape \u0000 (a raw control character is malformed), so
        // bodies without that sequence skip the walk.
        if memchr_seq(&bytes, b"\\u0000") {
            if let Ok(tree) = serde_json::from_slice::<Value>(&bytes) {
                if let Some(field) = nul_in_json(&tree, "") {
                    return Err(nul_refused(&field));
                }
            }
        }
        Ok(Json(value))
    }
}

fn memchr_seq(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn too_large() -> ApiError {
    ApiError::PayloadTooLarge("the request body is larger than this endpoint accepts".into())
}

fn json_rejection(r: JsonRejection) -> ApiError {
    if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return too_large();
    }
    match r {
        JsonRejection::JsonDataError(e) => ApiError::unprocessable("invalid_body", e.body_text()),
        JsonRejection::JsonSyntaxError(e) => ApiError::bad_request("malformed_json", e.body_text()),
        JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType(
            "expected a JSON body with Content-Type: application/json".into(),
        ),
        other => ApiError::bad_request("invalid_body", other.body_text()),
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// Path parameters; a bad UUID or number, or a NUL in any parameter, is 400 `invalid_path`.
pub struct Path<T>(pub T);

impl<S, T> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let bad = |e: PathRejection| ApiError::bad_request("invalid_path", e.body_text());
        // Parameters arrive percent-encoded: a NUL can only be `%00`.
        if parts.uri.path().contains("%00") {
            let axum::extract::Path(params) =
                axum::extract::Path::<Vec<(String, String)>>::from_request_parts(parts, state)
                    .await
                    .map_err(bad)?;
            if let Some((name, _)) = params.iter().find(|(_, v)| nul_in(v)) {
                return Err(ApiError::bad_request(
                    "invalid_path",
                    format!("path parameter `{name}` must not contain the NUL character (U+0000)"),
                ));
            }
        }
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| Path(v))
            .map_err(bad)
    }
}

/// Query string; bad values, or a NUL in any parameter, are 400 `invalid_query`.
pub struct Query<T>(pub T);

impl<S, T> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let bad = |e: QueryRejection| ApiError::bad_request("invalid_query", e.body_text());
        // Percent-encodings that are not UTF-8 (`%FF`, overlong `%C0%80`, surrogates) would be
        // decoded lossily into U+FFFD and searched for; refuse them instead.
        if let Some(name) = parts.uri.query().and_then(non_utf8_query_param) {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!("query parameter `{name}` is not valid UTF-8 once percent-decoded"),
            ));
        }
        if parts.uri.query().is_some_and(|q| q.contains("%00")) {
            let axum::extract::Query(pairs) =
                axum::extract::Query::<Vec<(String, String)>>::from_request_parts(parts, state)
                    .await
                    .map_err(bad)?;
            if let Some((name, _)) = pairs.iter().find(|(k, v)| nul_in(k) || nul_in(v)) {
                return Err(ApiError::bad_request(
                    "invalid_query",
                    format!(
                        "query parameter `{}` must not contain the NUL character (U+0000)",
                        name.replace('\0', "\\u0000")
                    ),
                ));
            }
        }
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| Query(v))
            .map_err(bad)
    }
}

/// Percent-decode (with `+` as a space) a query string component into bytes.
fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match b[i] {
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    out
}

/// The name (lossily decoded) of the first query parameter whose name or value is not UTF-8
/// once percent-decoded.
fn non_utf8_query_param(query: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (percent_decode(k), percent_decode(v));
        (std::str::from_utf8(&k).is_err() || std::str::from_utf8(&v).is_err())
            .then(|| String::from_utf8_lossy(&k).into_owned())
    })
}

/// For PATCH bodies: a missing field is `None`, an explicit `null` is `Some(None)`.
pub fn double_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    use serde::Deserialize;
    Option::<T>::deserialize(d).map(Some)
}

#[cfg(test)]
mod query_tests {
    use super::*;

    #[test]
    fn non_utf8_percent_encodings_are_found() {
        assert_eq!(non_utf8_query_param("q=caf%C3%A9&limit=5"), None);
        assert_eq!(non_utf8_query_param("q=a+b&x=%zz&y=%"), None);
        for bad in ["%FF%FE", "%C0%80", "%ED%A0%80", "%E2%82"] {
            assert_eq!(
                non_utf8_query_param(&format!("limit=5&q={bad}")).as_deref(),
                Some("q"),
                "{bad}"
            );
        }
    }
}
